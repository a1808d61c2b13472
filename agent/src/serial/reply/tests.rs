//! Grammar edge cases from protocols.md §3.2–§3.8 and §3.11 (composed lines; the recorded
//! ones are replayed in `transcript_tests.rs`).

use super::*;

fn ok_plain() -> Reply<'static> {
    Reply::Ok {
        line: None,
        planner_free: None,
        buffer_free: None,
        temps: None,
        payload: OkPayload::None,
    }
}

fn temps_of(line: &str) -> Temps {
    *parse_reply(line)
        .temps()
        .unwrap_or_else(|| panic!("no temps in {line:?}: {:?}", parse_reply(line)))
}

fn r(actual: f32, target: Option<f32>, power: Option<f32>) -> Option<Reading> {
    Some(Reading {
        actual,
        target,
        power,
    })
}

#[test]
fn ok_forms() {
    assert_eq!(parse_reply("ok"), ok_plain());
    assert_eq!(parse_reply("ok\r"), ok_plain());
    assert_eq!(parse_reply("  ok  "), ok_plain());
    assert_eq!(
        parse_reply("ok N10 P15 B3"),
        Reply::Ok {
            line: Some(10),
            planner_free: Some(15),
            buffer_free: Some(3),
            temps: None,
            payload: OkPayload::None,
        }
    );
    // ADVANCED_OK without a line number (unnumbered command).
    assert_eq!(
        parse_reply("ok P15 B3"),
        Reply::Ok {
            line: None,
            planner_free: Some(15),
            buffer_free: Some(3),
            temps: None,
            payload: OkPayload::None,
        }
    );
    // Trailing text stays available.
    assert_eq!(
        parse_reply("ok 0 something"),
        Reply::Ok {
            line: None,
            planner_free: None,
            buffer_free: None,
            temps: None,
            payload: OkPayload::Text("0 something"),
        }
    );
    // `ok` must be a word.
    assert!(matches!(parse_reply("okay"), Reply::Other("okay")));
    assert!(matches!(parse_reply("ok_x"), Reply::Other(_)));
    // Klipper's M115 answer arrives on the ok line.
    let Reply::Ok {
        payload: OkPayload::Firmware(info),
        ..
    } = parse_reply("ok FIRMWARE_NAME:Klipper FIRMWARE_VERSION:?")
    else {
        panic!("klipper M115");
    };
    assert_eq!(info.name, "Klipper");
    assert_eq!(info.version.as_deref(), Some("?"));
    // Position on the ok line, and the `Count` tail ignored.
    assert_eq!(
        parse_reply("ok X:0.0 Y:150.0 Z:5.0 E:11.2 Count: A:0 B:15000 C:500"),
        Reply::Ok {
            line: None,
            planner_free: None,
            buffer_free: None,
            temps: None,
            payload: OkPayload::Position(Position {
                x: 0.0,
                y: 150.0,
                z: 5.0,
                e: Some(11.2)
            }),
        }
    );
}

#[test]
fn ok_with_temperatures() {
    let t = temps_of("ok T:210.00 /210.00 B:60.00 /60.00 @:127 B@:0");
    assert_eq!(t.active, r(210.0, Some(210.0), Some(127.0)));
    assert_eq!(t.bed, r(60.0, Some(60.0), Some(0.0)));
    assert_eq!(t.hotend(0), t.active);
    // Klipper: bed first, indexed tool, no plain T; `B:` is not an ADVANCED_OK field.
    let Reply::Ok {
        buffer_free, temps, ..
    } = parse_reply("ok B:0.0 /0.0 T0:0.0 /0.0")
    else {
        panic!("klipper M105");
    };
    assert_eq!(buffer_free, None);
    let t = temps.expect("temps");
    assert_eq!(t.bed, r(0.0, Some(0.0), None));
    assert_eq!(t.tools[0], r(0.0, Some(0.0), None));
    assert_eq!(t.active, None);
    assert_eq!(t.hotend(0), t.tools[0]);
    // Prusa MK3: PINDA and ambient.
    let t = temps_of("ok T:25.0 /0.0 B:24.9 /0.0 T0:25.0 /0.0 @:0 B@:0 P:0.0 A:26.4");
    assert_eq!(t.probe, r(0.0, None, None));
    assert_eq!(t.ambient, r(26.4, None, None));
    assert_eq!(t.hotend(0), r(25.0, Some(0.0), None));
}

#[test]
fn temperature_reports() {
    // Auto-report with leading space (Marlin), two hot ends with their own power fields.
    let t = temps_of(
        " T:210.00 /210.00 B:60.00 /60.00 T0:210.00 /210.00 T1:25.00 /0.00 @:127 B@:0 @0:127 @1:0",
    );
    assert_eq!(t.tools[0], r(210.0, Some(210.0), Some(127.0)));
    assert_eq!(t.tools[1], r(25.0, Some(0.0), Some(0.0)));
    assert_eq!(t.hotend(1), t.tools[1]);
    assert_eq!(t.hotend(2), None);
    // M109 wait line with residency `W:?` and `W:2`.
    let t = temps_of(" T:209.87 /210.00 B:60.01 /60.00 @:64 B@:0 W:?");
    assert_eq!(t.active, r(209.87, Some(210.0), Some(64.0)));
    let t = temps_of(" T:214.90 /215.00 B:59.98 /60.00 @:61 B@:14 W:2");
    assert_eq!(t.bed, r(59.98, Some(60.0), Some(14.0)));
    // `/target` missing (Virtual Printer heating progress, Prusa heating lines).
    assert_eq!(temps_of("T:21.36").active, r(21.36, None, None));
    assert_eq!(temps_of("B:31.40").bed, r(31.4, None, None));
    let t = temps_of("T:210.5 E:0 W:?");
    assert_eq!(t.active, r(210.5, None, None));
    assert_eq!(t.bed, None);
    let t = temps_of("T:60.0 E:0 B:59.8");
    assert_eq!(t.bed, r(59.8, None, None));
    // No space before the slash, space after it (Virtual Printer).
    let t = temps_of("T:158.23/ 0.00 B:21.79/ 0.00 @:64");
    assert_eq!(t.active, r(158.23, Some(0.0), Some(64.0)));
    // Chamber with its power; negative values; tool index out of range ignored.
    let t = temps_of("T:20.0 /0.0 C:35.5 /40.0 C@:90 T9:1.0 /0.0");
    assert_eq!(t.chamber, r(35.5, Some(40.0), Some(90.0)));
    assert!(t.tools.iter().all(Option::is_none));
    assert_eq!(temps_of("B:-5.5 /0").bed, r(-5.5, Some(0.0), None));
    assert!(matches!(parse_reply("T:"), Reply::Other("T:")));
    assert!(matches!(parse_reply("T:abc"), Reply::Other(_)));
}

#[test]
fn positions() {
    assert_eq!(
        parse_reply("X:10.00 Y:20.00 Z:0.20 E:123.45 Count X:800 Y:1600 Z:80"),
        Reply::Position(Position {
            x: 10.0,
            y: 20.0,
            z: 0.2,
            e: Some(123.45)
        })
    );
    assert_eq!(
        parse_reply("X:0.000 Y:0.000 Z:0.000 E:0.000"),
        Reply::Position(Position {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            e: Some(0.0)
        })
    );
    assert_eq!(
        parse_reply("X:1 Y:2 Z:3 E0:4 E1:5"),
        Reply::Position(Position {
            x: 1.0,
            y: 2.0,
            z: 3.0,
            e: Some(4.0)
        })
    );
}

#[test]
fn resend_forms() {
    for (line, n) in [
        ("Resend: 42", 42),
        ("Resend:20", 20),
        ("Resend:  5", 5),
        ("resend: 7", 7),
        ("Resend: N5", 5),
        ("Resend:N:6", 6),
        ("rs 42", 42),
        ("rs N42", 42),
        ("RS N:3", 3),
        ("rs:9", 9),
    ] {
        assert_eq!(parse_reply(line), Reply::Resend(n), "{line}");
    }
    assert!(matches!(parse_reply("Resend:"), Reply::Other(_)));
    assert!(matches!(parse_reply("rst"), Reply::Other(_)));
    assert!(matches!(
        parse_reply("Resend: 99999999999999999999999"),
        Reply::Other(_)
    ));
}

#[test]
fn comm_errors_are_not_fatal() {
    for (line, last) in [
        ("Error:checksum mismatch, Last Line: 41", Some(41)),
        (
            "Error:Line Number is not Last Line Number+1, Last Line: 41",
            Some(41),
        ),
        ("Error:No Checksum with line number, Last Line: 7", Some(7)),
        (
            "Error: No Line Number with checksum, Last Line: 109",
            Some(109),
        ),
        ("Error: expected line 40 got 41", None),
        ("Error: Missing checksum", None),
        ("Error: Checksum mismatch", None),
    ] {
        let Reply::CommError { last_line, .. } = parse_reply(line) else {
            panic!("{line}: {:?}", parse_reply(line));
        };
        assert_eq!(last_line, last, "{line}");
    }
}

#[test]
fn fatal_and_other_errors() {
    for line in [
        "Error:Printer halted. kill() called!",
        "Error:Thermal Runaway, system stopped! Heater_ID: bed",
        "Error: MINTEMP triggered!",
        "Error: MAXTEMP triggered!",
        "Error:Heating failed, system stopped! Heater_ID: 0",
        "Error:Printer stopped due to errors. Fix the error and use M999 to restart.",
        "!! Must home axis first: -50.000 0.000 0.000 [0.000]",
        "!!",
        "fatal: something",
        "// Klipper state: Shutdown",
        "echo:EMERGENCY SHUTDOWN DETECTED. KILLED.",
    ] {
        assert!(
            matches!(parse_reply(line), Reply::Halted(t) if t == line.trim()),
            "{line}: {:?}",
            parse_reply(line)
        );
    }
    assert_eq!(
        parse_reply("Error: Unknown command F"),
        Reply::Error("Unknown command F")
    );
    assert_eq!(parse_reply("Error:"), Reply::Error(""));
    assert_eq!(
        parse_reply("// Klipper state: Ready"),
        Reply::Echo("Klipper state: Ready")
    );
}

#[test]
fn busy_and_wait() {
    assert_eq!(
        parse_reply("echo:busy: processing"),
        Reply::Busy(BusyReason::Processing)
    );
    assert_eq!(
        parse_reply("busy: processing"),
        Reply::Busy(BusyReason::Processing)
    );
    assert_eq!(
        parse_reply("busy:processing"),
        Reply::Busy(BusyReason::Processing)
    );
    assert_eq!(
        parse_reply("echo:busy paused for user"),
        Reply::Busy(BusyReason::PausedForUser)
    );
    assert_eq!(
        parse_reply("echo:busy: paused for input"),
        Reply::Busy(BusyReason::PausedForInput)
    );
    assert_eq!(
        parse_reply("busy: heating"),
        Reply::Busy(BusyReason::Other("heating"))
    );
    assert_eq!(parse_reply("wait"), Reply::Wait);
    assert_eq!(parse_reply("waiting"), Reply::Other("waiting"));
    assert_eq!(parse_reply("busybody"), Reply::Other("busybody"));
}

#[test]
fn host_actions() {
    let cases: [(&str, HostAction<'_>); 13] = [
        ("//action:pause", HostAction::Pause),
        ("// action:pause", HostAction::Pause),
        ("//action:paused", HostAction::Paused),
        ("//action:resume", HostAction::Resume),
        ("//action:resumed", HostAction::Resumed),
        ("//action:cancel", HostAction::Cancel),
        ("//action:disconnect", HostAction::Disconnect),
        ("//action:probe_failed", HostAction::ProbeFailed),
        (
            "//action:notification Filament low",
            HostAction::Notification("Filament low"),
        ),
        (
            "//action:prompt_begin Filament Runout",
            HostAction::PromptBegin("Filament Runout"),
        ),
        (
            "//action:prompt_button Continue",
            HostAction::PromptButton("Continue"),
        ),
        (
            "//action:prompt_choice Purge more",
            HostAction::PromptButton("Purge more"),
        ),
        ("//action:prompt_show", HostAction::PromptShow),
    ];
    for (line, action) in cases {
        assert_eq!(parse_reply(line), Reply::Action(action), "{line}");
    }
    assert_eq!(
        parse_reply("//action:prompt_end"),
        Reply::Action(HostAction::PromptEnd)
    );
    assert_eq!(
        parse_reply("//action:custom_thing a b"),
        Reply::Action(HostAction::Other {
            name: "custom_thing",
            args: "a b"
        })
    );
    assert_eq!(
        parse_reply("//action:"),
        Reply::Action(HostAction::Other { name: "", args: "" })
    );
}

#[test]
fn m115_and_capabilities() {
    let line = "FIRMWARE_NAME:Marlin 2.1.2.4 (Jun  1 2024 12:00:00) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Farm-01 EXTRUDER_COUNT:2 UUID:cede2a2f-41a2-4748-9b12-c55c62f367ff";
    let Reply::Firmware(info) = parse_reply(line) else {
        panic!("M115");
    };
    assert_eq!(info.name, "Marlin 2.1.2.4 (Jun  1 2024 12:00:00)");
    assert_eq!(
        info.source_code_url.as_deref(),
        Some("github.com/MarlinFirmware/Marlin")
    );
    assert_eq!(info.protocol_version.as_deref(), Some("1.0"));
    assert_eq!(info.machine_type.as_deref(), Some("Farm-01"));
    assert_eq!(info.extruder_count, Some(2));
    assert_eq!(
        info.uuid.as_deref(),
        Some("cede2a2f-41a2-4748-9b12-c55c62f367ff")
    );
    // RepRapFirmware style: spaces after the colons, URL with lower-case scheme kept whole.
    let Reply::Firmware(rrf) = parse_reply(
        "FIRMWARE_NAME: RepRapFirmware for Duet 3 MB6HC FIRMWARE_VERSION: 3.4.5 ELECTRONICS: Duet 3 MB6HC v1.01 FIRMWARE_DATE: 2022-11-30 SOURCE_CODE_URL:https://github.com/Duet3D",
    ) else {
        panic!("RRF M115");
    };
    assert_eq!(rrf.name, "RepRapFirmware for Duet 3 MB6HC");
    assert_eq!(rrf.version.as_deref(), Some("3.4.5"));
    assert_eq!(
        rrf.source_code_url.as_deref(),
        Some("https://github.com/Duet3D")
    );
    assert_eq!(
        rrf.other,
        vec![
            ("ELECTRONICS".to_string(), "Duet 3 MB6HC v1.01".to_string()),
            ("FIRMWARE_DATE".to_string(), "2022-11-30".to_string()),
        ]
    );

    assert_eq!(
        parse_reply("Cap:AUTOREPORT_TEMP:1"),
        Reply::Capability {
            name: "AUTOREPORT_TEMP",
            enabled: true
        }
    );
    assert_eq!(
        parse_reply("Cap:EXTENDED_M20:0"),
        Reply::Capability {
            name: "EXTENDED_M20",
            enabled: false
        }
    );
    assert!(matches!(parse_reply("Cap:lower:1"), Reply::Other(_)));
    assert!(matches!(parse_reply("Cap:X:2"), Reply::Other(_)));
    assert!(matches!(parse_reply("Cap:"), Reply::Other(_)));
}

#[test]
fn sd_lines() {
    assert_eq!(
        parse_reply("SD printing byte 514/1547"),
        Reply::SdProgress {
            done: 514,
            total: 1547
        }
    );
    assert_eq!(
        parse_reply("Not SD printing."),
        Reply::Sd(SdEvent::NotPrinting)
    );
    assert_eq!(
        parse_reply("File opened: fixture-sd.gcode  Size: 1547"),
        Reply::Sd(SdEvent::FileOpened {
            name: "fixture-sd.gcode",
            size: 1547
        })
    );
    assert_eq!(parse_reply("echo:SD card ok"), Reply::Sd(SdEvent::CardOk));
    assert!(matches!(
        parse_reply("SD printing byte 5/"),
        Reply::Other(_)
    ));
    assert_eq!(
        parse_file_list_entry("fixtur~1.gco 1547 0x5d7613cb \"fixture-sd.gcode\""),
        Some(FileListEntry {
            short_name: "fixtur~1.gco",
            size: Some(1547),
            long_name: Some("fixture-sd.gcode")
        })
    );
    assert_eq!(
        parse_file_list_entry("pause.gcode 930529"),
        Some(FileListEntry {
            short_name: "pause.gcode",
            size: Some(930_529),
            long_name: None
        })
    );
    assert_eq!(parse_file_list_entry("  "), None);
}

#[test]
fn prusa_progress_and_misc() {
    assert_eq!(
        parse_reply(
            "NORMAL MODE: Percent done: 32; print time remaining in mins: 8; Change in mins: -1"
        ),
        Reply::Progress(PrusaProgress {
            silent: false,
            percent: Some(32),
            remaining_min: Some(8)
        })
    );
    assert_eq!(
        parse_reply("SILENT MODE: Percent done: -1; print time remaining in mins: -1"),
        Reply::Progress(PrusaProgress {
            silent: true,
            percent: None,
            remaining_min: None
        })
    );
    assert_eq!(parse_reply("start"), Reply::Start);
    assert_eq!(parse_reply("echo:Hello"), Reply::Echo("Hello"));
    assert_eq!(
        parse_reply("// Unknown command:\"M155\""),
        Reply::Echo("Unknown command:\"M155\"")
    );
    assert_eq!(parse_reply("\u{80}"), Reply::Other("\u{80}"));
    assert_eq!(parse_reply(""), Reply::Other(""));
}

/// No input panics: lossy-decoded random bytes, and every prefix of tricky lines.
#[test]
fn never_panics() {
    let tricky = [
        "ok N1 P2 B3 T:1/2 X:3",
        "Resend: N:ä",
        "Error:ä kill() called",
        "FIRMWARE_NAME:ÄÖ X: Y:",
        "T:1.2.3 /é B@:",
        "X:é Y:1 Z:",
        "//action:prompt_begin 🙂",
        "File opened: ü Size:",
        "SD printing byte 1/ü",
        "NORMAL MODE: Percent done: ü;",
    ];
    for line in tricky {
        for (i, _) in line.char_indices() {
            let _ = parse_reply(&line[..i]);
            let _ = parse_reply(&line[i..]);
        }
    }
    // xorshift: deterministic, no dependency.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let alphabet = b"okNPB0123456789 :/.-TBC@EXYZrsResendError!wait/action\xc2\x80\xff";
    let mut buf = Vec::with_capacity(64);
    for _ in 0..20_000 {
        buf.clear();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 40) as usize;
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        let text = String::from_utf8_lossy(&buf);
        let _ = parse_reply(&text);
    }
}

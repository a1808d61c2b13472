//! Replays the recorded Virtual Printer transcripts in `agent/tests/data/serial/` (copied
//! from the shared fixtures; see the README there): every received line through
//! [`parse_reply`], every sent `N…*cs` line through the framing code.

use super::framing::{clean_line, frame, parse_framed};
use super::reply::{
    BusyReason, FileListEntry, HostAction, OkPayload, Position, Reading, Reply, SdEvent,
    parse_file_list_entry, parse_reply,
};
use std::collections::BTreeMap;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/serial/");

const FILES: [&str; 8] = [
    "actions-errors-estop.jsonl",
    "busy-wait.jsonl",
    "handshake-temps.jsonl",
    "print-stream.jsonl",
    "resend.jsonl",
    "sd-pause-resume-emulator-bug.jsonl",
    "sd-print-m27.jsonl",
    "sd-upload-m28.jsonl",
];

/// Received lines accepted as [`Reply::Other`]: genuinely unstructured. (`M20` file-list
/// entries are also `Other`; they are checked separately with `parse_file_list_entry`.)
const ACCEPTED_OTHER: [&str; 2] = [
    // The Virtual Printer's banner text after `start`.
    "Marlin: Virtual Marlin!",
    // Simulated line noise in the banner (bytes c2 80).
    "\u{80}",
];

/// Sent lines whose checksum is wrong on purpose (the recorded fault injection).
const DELIBERATELY_BAD: [(&str, &str); 1] = [("resend.jsonl", "N20 G1 X45 Y15 F12000*76")];

struct Transcript {
    sent: Vec<String>,
    recv: Vec<String>,
}

impl Transcript {
    fn load(name: &'static str) -> Transcript {
        let path = format!("{DIR}{name}");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (mut sent, mut recv) = (Vec::new(), Vec::new());
        for rec in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(rec).expect("json record");
            if v["kind"] != "line" {
                continue;
            }
            let line = v["line"].as_str().expect("line text").to_string();
            if let Some(hex) = v["raw_hex"].as_str() {
                // The recorded text is the bytes' lossy decoding.
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                    .collect();
                assert_eq!(String::from_utf8_lossy(&bytes), line, "{name}");
            }
            match v["dir"].as_str() {
                Some("send") => sent.push(line),
                Some("recv") => recv.push(line),
                other => panic!("{name}: unknown dir {other:?}"),
            }
        }
        Transcript { sent, recv }
    }

    fn replies(&self) -> Vec<Reply<'_>> {
        self.recv.iter().map(|l| parse_reply(l)).collect()
    }
}

fn class(r: &Reply<'_>) -> &'static str {
    match r {
        Reply::Ok { temps: Some(_), .. } => "ok+temps",
        Reply::Ok {
            payload: OkPayload::Position(_),
            ..
        } => "ok+position",
        Reply::Ok { .. } => "ok",
        Reply::Resend(_) => "resend",
        Reply::CommError { .. } => "comm_error",
        Reply::Busy(_) => "busy",
        Reply::Wait => "wait",
        Reply::Error(_) => "error",
        Reply::Halted(_) => "halted",
        Reply::Start => "start",
        Reply::Firmware(_) => "firmware",
        Reply::Capability { .. } => "cap",
        Reply::Action(_) => "action",
        Reply::Temperature(_) => "temperature",
        Reply::Position(_) => "position",
        Reply::SdProgress { .. } => "sd_progress",
        Reply::Sd(_) => "sd",
        Reply::Progress(_) => "progress",
        Reply::Echo(_) => "echo",
        Reply::Other(_) => "other",
    }
}

fn counts(replies: &[Reply<'_>]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for r in replies {
        *m.entry(class(r)).or_insert(0) += 1;
    }
    m
}

fn count(replies: &[Reply<'_>], c: &str) -> usize {
    replies.iter().filter(|r| class(r) == c).count()
}

fn actions<'a>(replies: &[Reply<'a>]) -> Vec<HostAction<'a>> {
    replies
        .iter()
        .filter_map(|r| match r {
            Reply::Action(a) => Some(*a),
            _ => None,
        })
        .collect()
}

fn reading(actual: f32, target: Option<f32>, power: Option<f32>) -> Option<Reading> {
    Some(Reading {
        actual,
        target,
        power,
    })
}

/// Rules every transcript obeys: the common banner, `Other` only for accepted lines and
/// file-list entries, consistent classes for the obvious prefixes, valid checksums.
#[test]
fn every_transcript_classifies_and_checksums() {
    let mut framed_total = 0;
    for name in FILES {
        let t = Transcript::load(name);
        let replies = t.replies();
        assert!(!replies.is_empty(), "{name}");
        // Banner: opening the port resets the printer.
        assert_eq!(replies[0], Reply::Start, "{name}");
        assert_eq!(
            replies[1],
            Reply::Other("Marlin: Virtual Marlin!"),
            "{name}"
        );
        assert_eq!(replies[2], Reply::Other("\u{80}"), "{name}");
        assert_eq!(replies[3], Reply::Sd(SdEvent::CardOk), "{name}");

        let mut in_file_list = false;
        for (line, r) in t.recv.iter().zip(&replies) {
            match r {
                Reply::Sd(SdEvent::FileListBegin) => in_file_list = true,
                Reply::Sd(SdEvent::FileListEnd) => in_file_list = false,
                Reply::Other(text) if in_file_list => {
                    let entry = parse_file_list_entry(text).expect("file list entry");
                    assert!(entry.size.is_some(), "{name}: {line}");
                }
                Reply::Other(text) => {
                    assert!(
                        ACCEPTED_OTHER.contains(text),
                        "{name}: unclassified {line:?}"
                    )
                }
                _ => {}
            }
            // The obvious prefixes always land in their class.
            let l = line.trim();
            if l == "ok" || l.starts_with("ok ") {
                assert!(r.is_ok(), "{name}: {line}");
            }
            if l.starts_with("Resend") {
                assert!(matches!(r, Reply::Resend(_)), "{name}: {line}");
            }
            if l.starts_with("T:") || l.starts_with("B:") || l.starts_with("ok T:") {
                assert!(r.temps().is_some(), "{name}: {line}");
            }
            if l.starts_with("Error:") {
                assert!(
                    matches!(
                        r,
                        Reply::Error(_) | Reply::CommError { .. } | Reply::Halted(_)
                    ),
                    "{name}: {line}"
                );
            }
        }
        assert!(!in_file_list, "{name}: unterminated file list");

        for line in &t.sent {
            let Some(f) = parse_framed(line) else {
                assert!(
                    !line.starts_with('N'),
                    "{name}: unparsed framed line {line}"
                );
                continue;
            };
            framed_total += 1;
            let expected_bad = DELIBERATELY_BAD.contains(&(name, line.as_str()));
            assert_eq!(f.is_valid(), !expected_bad, "{name}: {line}");
            if !expected_bad {
                // Our framing produces the recorded bytes exactly.
                assert_eq!(frame(f.number, f.command), format!("{line}\n"), "{name}");
            }
        }
    }
    assert_eq!(framed_total, 178, "framed lines across all transcripts");
}

#[test]
fn handshake_temps() {
    let t = Transcript::load("handshake-temps.jsonl");
    let r = t.replies();
    let c = counts(&r);
    assert_eq!(c["start"], 1);
    assert_eq!(c["firmware"], 1);
    assert_eq!(c["cap"], 6);
    assert_eq!(c["ok"], 8);
    assert_eq!(c["ok+temps"], 2);
    assert_eq!(c["ok+position"], 1);
    assert_eq!(c["temperature"], 7);
    assert_eq!(c["wait"], 10);
    assert_eq!(c.get("other"), Some(&2));

    let Reply::Firmware(info) = &r[6] else {
        panic!("M115 reply at index 6: {:?}", r[6]);
    };
    assert_eq!(info.name, "Virtual Marlin 1.0");
    let caps: Vec<(&str, bool)> = r
        .iter()
        .filter_map(|x| match x {
            Reply::Capability { name, enabled } => Some((*name, *enabled)),
            _ => None,
        })
        .collect();
    assert_eq!(
        caps,
        [
            ("AUTOREPORT_TEMP", true),
            ("AUTOREPORT_SD_STATUS", true),
            ("AUTOREPORT_POS", false),
            ("EMERGENCY_PARSER", true),
            ("EXTENDED_M20", false),
            ("LFN_WRITE", false),
        ]
    );
    // M105 → `ok T:21.30/ 0.00 B:21.30/ 0.00 @:64`.
    let m105 = r.iter().find_map(|x| match x {
        Reply::Ok { temps: Some(t), .. } => Some(*t),
        _ => None,
    });
    let m105 = m105.expect("ok T:");
    assert_eq!(m105.active, reading(21.3, Some(0.0), Some(64.0)));
    assert_eq!(m105.bed, reading(21.3, Some(0.0), None));
    assert!(r.iter().any(|x| matches!(
        x,
        Reply::Ok {
            payload: OkPayload::Position(Position {
                x: 0.0,
                y: 0.0,
                z: 0.0,
                e: Some(0.0)
            }),
            ..
        }
    )));
    // Auto-reports follow the M104 S60 / M140 S40 targets.
    let heated: Vec<(f32, Option<f32>, Option<f32>)> = r
        .iter()
        .filter_map(|x| match x {
            Reply::Temperature(t) => Some((
                t.active.expect("T").actual,
                t.active.expect("T").target,
                t.bed.expect("B").target,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(heated.len(), 7);
    assert_eq!(heated[3], (25.83, Some(60.0), Some(40.0)));
    assert_eq!(heated[6], (55.83, Some(60.0), Some(40.0)));
}

#[test]
fn print_stream() {
    let t = Transcript::load("print-stream.jsonl");
    let r = t.replies();
    let c = counts(&r);
    assert_eq!(c["ok"] + c.get("ok+position").copied().unwrap_or(0), 38);
    assert_eq!(c["temperature"], 29);
    assert_eq!(c.get("error"), None);
    assert_eq!(c.get("comm_error"), None);
    let echoes: Vec<&str> = r
        .iter()
        .filter_map(|x| match x {
            Reply::Echo(e) => Some(*e),
            _ => None,
        })
        .collect();
    assert_eq!(echoes, ["Layer 1/2", "Layer 2/2"]);
    // M190 progress lines carry only the bed, without target; auto-reports carry both.
    let temps: Vec<_> = r.iter().filter_map(Reply::temps).collect();
    assert_eq!(temps[0].bed, reading(22.91, None, None));
    assert_eq!(temps[0].active, None);
    assert_eq!(temps[2].active, reading(32.4, Some(200.0), Some(64.0)));
    assert_eq!(temps[2].bed, reading(32.91, Some(60.0), None));
    assert_eq!(
        temps.last().and_then(|t| t.hotend(0)),
        reading(200.0, Some(200.0), Some(64.0))
    );
    assert!(matches!(
        r[r.len() - 3],
        Reply::Ok {
            payload: OkPayload::Position(Position {
                x: 0.0,
                y: 150.0,
                z: 5.0,
                e: Some(11.2)
            }),
            ..
        }
    ));

    // The job lines are the fixture G-code, cleaned and framed N1…N31.
    let gcode = std::fs::read_to_string(format!("{DIR}fixture-square-marlin.gcode"))
        .expect("fixture gcode");
    let mut n = 0;
    let expected: Vec<String> = gcode
        .lines()
        .filter_map(|l| {
            let cmd = clean_line(l);
            if cmd.is_empty() {
                return None;
            }
            n += 1;
            Some(frame(n, &cmd).trim_end().to_string())
        })
        .collect();
    assert_eq!(expected.len(), 31);
    let sent_job: Vec<&String> = t
        .sent
        .iter()
        .skip_while(|l| !l.starts_with("N1 M140"))
        .take(31)
        .collect();
    assert_eq!(sent_job, expected.iter().collect::<Vec<_>>());
}

#[test]
fn resend_faults() {
    let t = Transcript::load("resend.jsonl");
    let r = t.replies();
    let c = counts(&r);
    assert_eq!(c["ok"], 128);
    assert_eq!(c["resend"], 6);
    assert_eq!(c["comm_error"], 7);
    assert_eq!(
        c.get("error"),
        None,
        "no comm error may look like a job failure"
    );
    assert_eq!(c.get("halted"), None);

    // Each error → (resend, ok) as recorded.
    let mut seen = Vec::new();
    for (i, x) in r.iter().enumerate() {
        let Reply::CommError { text, last_line } = x else {
            continue;
        };
        let resend = match r.get(i + 1) {
            Some(Reply::Resend(n)) => {
                assert!(r[i + 2].is_ok(), "ok after Resend:{n}");
                Some(*n)
            }
            _ => None,
        };
        seen.push((*text, *last_line, resend));
    }
    assert_eq!(
        seen,
        [
            ("Missing checksum", None, Some(20)),
            ("expected line 40 got 41", None, Some(40)),
            ("Missing checksum", None, Some(100)),
            ("Missing checksum", None, Some(105)),
            ("expected line 106 got 105", None, Some(106)),
            // No ok and no resend: the host had to time out.
            (
                "No Line Number with checksum, Last Line: 109",
                Some(109),
                None
            ),
            ("Checksum mismatch", None, Some(115)),
        ]
    );
    // The deliberately corrupted N20 and its correct re-send.
    let n20: Vec<_> = t
        .sent
        .iter()
        .filter_map(|l| parse_framed(l))
        .filter(|f| f.number == 20)
        .collect();
    assert_eq!(n20.len(), 2);
    assert!(!n20[0].is_valid() && n20[1].is_valid());
    assert_eq!(n20[0].command, n20[1].command);
}

#[test]
fn busy_wait() {
    let t = Transcript::load("busy-wait.jsonl");
    let r = t.replies();
    let reasons: Vec<BusyReason<'_>> = r
        .iter()
        .filter_map(|x| match x {
            Reply::Busy(b) => Some(*b),
            _ => None,
        })
        .collect();
    let processing = reasons
        .iter()
        .filter(|b| **b == BusyReason::Processing)
        .count();
    let user = reasons
        .iter()
        .filter(|b| **b == BusyReason::PausedForUser)
        .count();
    assert_eq!((processing, user, reasons.len()), (9, 4, 13));
    assert_eq!(count(&r, "wait"), 7);
    assert_eq!(count(&r, "ok"), 9);
    assert_eq!(
        actions(&r),
        [
            HostAction::Paused,
            HostAction::PromptEnd,
            HostAction::PromptBegin("Heater Timeout"),
            HostAction::PromptButton("Reheat"),
            HostAction::PromptShow,
            HostAction::PromptEnd,
        ]
    );
    // M109 / M190 progress without target.
    let temps: Vec<_> = r.iter().filter_map(Reply::temps).collect();
    assert_eq!(temps.len(), 8);
    assert_eq!(temps[0].active, reading(21.36, None, None));
    assert_eq!(temps[4].active, reading(60.0, None, None));
    assert_eq!(temps[7].bed, reading(40.0, None, None));
}

#[test]
fn actions_errors_estop() {
    let t = Transcript::load("actions-errors-estop.jsonl");
    let r = t.replies();
    assert_eq!(
        actions(&r),
        [
            HostAction::Pause,
            HostAction::Resume,
            HostAction::Disconnect,
            HostAction::Notification("Filament low"),
            HostAction::Notification("Layer 2/2"),
        ]
    );
    let notable: Vec<&Reply<'_>> = r
        .iter()
        .filter(|x| {
            matches!(
                x,
                Reply::Echo(_) | Reply::Error(_) | Reply::Halted(_) | Reply::Resend(_)
            )
        })
        .collect();
    assert_eq!(
        notable,
        [
            &Reply::Echo("Hello"),
            &Reply::Echo("hello host"),
            &Reply::Error("Unknown command F"),
            &Reply::Halted("Error: MINTEMP triggered!"),
            &Reply::Halted("Error: MAXTEMP triggered!"),
            &Reply::Halted("Error:Thermal Runaway, system stopped! Heater_ID: bed"),
            &Reply::Halted("Error:Printer halted. kill() called!"),
            // M999 → Marlin's spelling with a space.
            &Reply::Resend(1),
            // M112 on the Virtual Printer.
            &Reply::Halted("echo:EMERGENCY SHUTDOWN DETECTED. KILLED."),
        ]
    );
    // The M112 answer is the last line: nothing answers after an e-stop.
    assert!(matches!(r.last(), Some(Reply::Halted(_))));
    assert_eq!(t.sent.last().map(String::as_str), Some("M105"));
    let m105 = r.iter().find_map(Reply::temps).expect("M105 reply");
    assert_eq!(m105.active, reading(21.3, Some(0.0), Some(64.0)));
}

fn sd_progress(r: &[Reply<'_>]) -> Vec<(u64, u64)> {
    r.iter()
        .filter_map(|x| match x {
            Reply::SdProgress { done, total } => Some((*done, *total)),
            _ => None,
        })
        .collect()
}

fn sd_events<'a>(r: &[Reply<'a>]) -> Vec<SdEvent<'a>> {
    r.iter()
        .filter_map(|x| match x {
            Reply::Sd(e) => Some(*e),
            _ => None,
        })
        .collect()
}

#[test]
fn sd_print_m27() {
    let t = Transcript::load("sd-print-m27.jsonl");
    let r = t.replies();
    let done: Vec<u64> = sd_progress(&r).iter().map(|p| p.0).collect();
    assert_eq!(done, [514, 514, 710, 882, 1053, 1249, 1421]);
    assert!(sd_progress(&r).iter().all(|p| p.1 == 1547));
    let ev = sd_events(&r);
    assert!(ev.contains(&SdEvent::FileOpened {
        name: "fixture-sd.gcode",
        size: 1547
    }));
    assert_eq!(
        ev.iter().filter(|e| **e == SdEvent::DonePrinting).count(),
        1
    );
    assert_eq!(ev.iter().filter(|e| **e == SdEvent::NotPrinting).count(), 5);
    let entries: Vec<FileListEntry<'_>> = r
        .iter()
        .filter_map(|x| match x {
            Reply::Other(o) if o.starts_with("fixtur") => parse_file_list_entry(o),
            _ => None,
        })
        .collect();
    assert_eq!(
        entries,
        [
            FileListEntry {
                short_name: "fixtur~1.gco",
                size: Some(1547),
                long_name: None
            },
            FileListEntry {
                short_name: "fixtur~1.gco",
                size: Some(1547),
                long_name: Some("fixture-sd.gcode")
            },
        ]
    );
}

#[test]
fn sd_pause_resume_emulator_bug() {
    let t = Transcript::load("sd-pause-resume-emulator-bug.jsonl");
    let r = t.replies();
    let done: Vec<u64> = sd_progress(&r).iter().map(|p| p.0).collect();
    assert_eq!(done, [514, 514, 710, 882, 1053, 1102, 1127, 1127]);
    // The emulator bug: `Done printing file` right after the resume, at 1127/1547.
    let ev = sd_events(&r);
    let done_at = ev
        .iter()
        .position(|e| *e == SdEvent::DonePrinting)
        .expect("done");
    assert_eq!(ev[done_at + 1], SdEvent::NotPrinting);
}

#[test]
fn sd_upload_m28() {
    let t = Transcript::load("sd-upload-m28.jsonl");
    let r = t.replies();
    let ev = sd_events(&r);
    assert!(ev.contains(&SdEvent::WritingToFile("upload-demo.gcode")));
    assert!(ev.contains(&SdEvent::DoneSavingFile));
    assert_eq!(count(&r, "ok"), 14);
    let uploaded = r.iter().find_map(|x| match x {
        Reply::Other(o) if o.starts_with("upload~1") => parse_file_list_entry(o),
        _ => None,
    });
    assert_eq!(
        uploaded,
        Some(FileListEntry {
            short_name: "upload~1.gco",
            size: Some(41),
            long_name: None
        })
    );
}

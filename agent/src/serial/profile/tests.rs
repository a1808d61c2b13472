use super::*;
use crate::serial::reply::{Reply, parse_reply};

fn info(name: &str) -> FirmwareInfo {
    FirmwareInfo {
        name: name.to_string(),
        ..FirmwareInfo::default()
    }
}

fn marlin_text() -> &'static str {
    BUILTIN[0].1
}

#[test]
fn every_builtin_profile_parses_and_is_named_after_its_file() {
    let all = builtin();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["marlin2", "prusa", "reprapfirmware3", "klipper"]);
    for p in &all {
        assert!(
            p.buffers.max_in_flight <= p.buffers.command_slots,
            "{}",
            p.name
        );
        assert!(!p.emergency.stop.is_empty(), "{}", p.name);
        assert_eq!(p.emergency.stop[0], "M112", "{}", p.name);
        assert!(!p.scripts.cancel.is_empty(), "{}", p.name);
    }
    let m = &all[0];
    // Marlin defaults the brief and protocols.md §3.6 name.
    assert_eq!(m.buffers.rx_bytes, 128);
    assert_eq!(m.buffers.command_slots, 4);
    assert_eq!(m.framing.max_line_bytes, 96);
    assert!(m.framing.flushes_rx_on_error && m.framing.checksums);
    assert_eq!(m.emergency.break_wait, "M108");
    assert_eq!(m.motion.corner, Corner::JunctionDeviation(0.013));
    assert_eq!(m.timeouts.long_command_allowance("M109 S215"), Some(900.0));
    assert_eq!(m.timeouts.long_command_allowance("g28"), Some(300.0));
    assert_eq!(m.timeouts.long_command_allowance("M600"), Some(0.0));
    assert_eq!(m.timeouts.long_command_allowance("G1 X1"), None);
    assert_eq!(m.timeouts.long_command_allowance(""), None);
    let k = &all[3];
    assert!(!k.framing.line_numbers && !k.framing.resend_requests && !k.temperature.autoreport);
    assert_eq!(k.motion.corner, Corner::SquareCornerVelocity(5.0));
}

#[test]
fn detect_picks_the_family() {
    assert_eq!(
        detect(&info("Marlin 2.1.2.4 (Jun  1 2024)")).profile.name,
        "marlin2"
    );
    // Longest pattern wins: a Prusa name also contains "Marlin".
    let d = detect(&info("Prusa-Firmware 3.13.3 based on Marlin"));
    assert_eq!((d.profile.name.as_str(), d.fallback), ("prusa", false));
    assert_eq!(
        detect(&info("RepRapFirmware for Duet 3 MB6HC"))
            .profile
            .name,
        "reprapfirmware3"
    );
    assert_eq!(detect(&info("Klipper")).profile.name, "klipper");
    let unknown = detect(&info("Repetier_1.0.4"));
    assert_eq!(
        (unknown.profile.name.as_str(), unknown.fallback),
        ("marlin2", true)
    );
    let nothing = detect(&FirmwareInfo::default());
    assert!(nothing.fallback);
}

/// The real handshake from the Virtual Printer (`handshake-temps.jsonl`) → marlin2, and its
/// Cap: lines decide the capabilities.
#[test]
fn detect_on_the_recorded_handshake() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/serial/handshake-temps.jsonl"
    ))
    .expect("fixture");
    let mut info = None::<FirmwareInfo>;
    for rec in text.lines() {
        let v: serde_json::Value = serde_json::from_str(rec).expect("json");
        if v["dir"] != "recv" || v["kind"] != "line" {
            continue;
        }
        let line = v["line"].as_str().expect("line");
        match parse_reply(line) {
            Reply::Firmware(i) => info = Some(*i),
            Reply::Capability { name, enabled } => info
                .as_mut()
                .expect("Cap: after FIRMWARE_NAME")
                .set_capability(name, enabled),
            _ => {}
        }
    }
    let info = info.expect("M115 reply in the transcript");
    assert_eq!(info.name, "Virtual Marlin 1.0");
    assert_eq!(info.protocol_version.as_deref(), Some("1.0"));
    assert_eq!(info.capabilities.len(), 6);
    let d = detect(&info);
    assert_eq!((d.profile.name.as_str(), d.fallback), ("marlin2", false));
    assert!(d.profile.capability(&info, "AUTOREPORT_TEMP"));
    assert!(d.profile.capability(&info, "EMERGENCY_PARSER"));
    assert!(!d.profile.capability(&info, "AUTOREPORT_POS"));
    assert!(!d.profile.capability(&info, "ADVANCED_OK"));
    // A profile's assumptions fill in what the firmware did not report…
    let klipper = ProfileSet::builtin();
    let klipper = klipper.get("klipper").expect("klipper");
    assert!(klipper.capability(&FirmwareInfo::default(), "EMERGENCY_PARSER"));
    // …but a reported Cap: line wins.
    let mut reported = FirmwareInfo::default();
    reported.set_capability("EMERGENCY_PARSER", false);
    assert!(!klipper.capability(&reported, "EMERGENCY_PARSER"));
}

#[test]
fn unknown_key_is_an_error_naming_the_key_and_file() {
    let text = marlin_text().replace("rx_bytes = 128", "rx_bytes = 128\nrx_byte_count = 64");
    let err = FirmwareProfile::from_toml(&text, Path::new("/etc/farm/marlin2.toml"))
        .expect_err("unknown key");
    let msg = err.to_string();
    assert!(msg.contains("rx_byte_count"), "{msg}");
    assert!(msg.contains("/etc/farm/marlin2.toml"), "{msg}");
    // Top-level too.
    let text = format!("colour = \"red\"\n{}", marlin_text());
    let msg = FirmwareProfile::from_toml(&text, Path::new("marlin2.toml"))
        .expect_err("unknown key")
        .to_string();
    assert!(msg.contains("colour"), "{msg}");
}

#[test]
fn missing_and_invalid_values_name_the_key() {
    let text = marlin_text().replace("command_slots = 4\n", "");
    let msg = FirmwareProfile::from_toml(&text, Path::new("marlin2.toml"))
        .expect_err("missing key")
        .to_string();
    assert!(msg.contains("command_slots"), "{msg}");

    let text = marlin_text().replace("max_in_flight = 3", "max_in_flight = 9");
    let msg = FirmwareProfile::from_toml(&text, Path::new("marlin2.toml"))
        .expect_err("window > slots")
        .to_string();
    assert!(msg.contains("buffers.max_in_flight"), "{msg}");

    let text = marlin_text().replace(
        "ok_after_resend = \"detect\"",
        "ok_after_resend = \"maybe\"",
    );
    let msg = FirmwareProfile::from_toml(&text, Path::new("marlin2.toml"))
        .expect_err("bad enum")
        .to_string();
    assert!(msg.contains("maybe"), "{msg}");

    let msg = FirmwareProfile::from_toml(marlin_text(), Path::new("prusa.toml"))
        .expect_err("name mismatch")
        .to_string();
    assert!(
        msg.contains("`name`") && msg.contains("prusa.toml"),
        "{msg}"
    );
}

#[test]
fn load_override_replaces_only_same_named_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Not a profile name: ignored (the config dir also holds agent.toml).
    std::fs::write(dir.path().join("agent.toml"), "printer_id = 1").expect("write");
    let set = load_override(dir.path()).expect("no overrides");
    assert_eq!(set, ProfileSet::builtin());

    let text = marlin_text().replace("rx_bytes = 128", "rx_bytes = 256");
    std::fs::write(dir.path().join("marlin2.toml"), text).expect("write");
    let set = load_override(dir.path()).expect("override");
    assert_eq!(set.get("marlin2").expect("marlin2").buffers.rx_bytes, 256);
    assert_eq!(set.get("prusa"), ProfileSet::builtin().get("prusa"));
    assert_eq!(
        set.detect(&info("Marlin 2.1")).profile.buffers.rx_bytes,
        256
    );

    let bad = BUILTIN[3].1.replace("[motion]", "[motion]\nspeed = 1");
    std::fs::write(dir.path().join("klipper.toml"), bad).expect("write");
    let msg = load_override(dir.path())
        .expect_err("bad override")
        .to_string();
    assert!(
        msg.contains("klipper.toml") && msg.contains("speed"),
        "{msg}"
    );
}

#[test]
fn motion_becomes_the_analyzers_starting_limits() {
    use farm_protocol::gcode::{self, analyze_with};
    let all = builtin();
    let marlin = all[0].motion.limits();
    assert_eq!(marlin.corner, gcode::Corner::Deviation(0.013));
    assert_eq!(marlin.max_feed, all[0].motion.max_feed);
    assert_eq!(marlin.retraction.length_mm, 3.0);
    let klipper = all[3].motion.limits();
    assert_eq!(klipper.corner, gcode::Corner::SquareCorner(5.0));
    assert_eq!(klipper.retraction.length_mm, 0.0);
    // G10/G11 cost Marlin's 3 mm out at 45 mm/s and back at 8 mm/s; Klipper's default is 0 mm.
    let g = b"M83\nG1 X10 E1 F600\nG10\nG1 X20 F6000\nG11\nG1 X30 E1 F600\nM190 S65\n";
    let run = |l| analyze_with(&g[..], l).expect("in memory");
    let without = gcode::Limits {
        retraction: klipper.retraction,
        ..marlin
    };
    let extra = run(marlin).estimated_s - run(without).estimated_s;
    assert!(extra > 0.4 && extra < 0.6, "{extra}");
    // Heat-up: bed 25 → 65 °C at the profile's 0.4 °C/s.
    assert!((run(marlin).heat_s - 100.0).abs() < 1e-9);
}

#[test]
fn bad_heating_or_retraction_is_refused_with_the_key() {
    let text = include_str!("../../../../firmware-profiles/marlin2.toml");
    for (from, to, key) in [
        ("bed_up = 0.4", "bed_up = 0.0", "motion.heating"),
        (
            "recover_speed = 8.0",
            "recover_speed = -1.0",
            "motion.retraction",
        ),
    ] {
        assert!(text.contains(from), "{from}");
        let e = FirmwareProfile::from_toml(&text.replace(from, to), Path::new("marlin2.toml"))
            .expect_err("invalid");
        assert!(e.to_string().contains(key), "{e}");
    }
}

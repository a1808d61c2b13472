use super::*;
use farm_protocol::gcode::{Corner, Estimator, analyze_seekable_with};
use std::io::{Cursor, Read};

#[test]
fn every_builtin_printer_model_parses_and_is_named_after_its_file() {
    let all = builtin();
    let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, names_from_files());
    for p in &all {
        assert!(!p.detect.models.is_empty(), "{}", p.name);
        assert!(p.motion.max_feed.iter().all(|v| *v > 0.0), "{}", p.name);
    }
}

/// The stems of `firmware-profiles/printers/*.toml`: a file added there without an entry in
/// `BUILTIN` fails here.
fn names_from_files() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware-profiles/printers");
    let mut stems: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            (p.extension()? == "toml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    let order: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
    stems.sort_by_key(|s| order.iter().position(|o| o == s).unwrap_or(usize::MAX));
    stems
}

#[test]
fn models_are_found_by_code_slicer_name_or_profile_name() {
    let name = |m: &str| find(m).map(|p| p.name);
    assert_eq!(name("C12").as_deref(), Some("bambu-p1"));
    assert_eq!(name("c11").as_deref(), Some("bambu-p1"));
    assert_eq!(name("BL-P001").as_deref(), Some("bambu-x1"));
    assert_eq!(name("N1").as_deref(), Some("bambu-a1-mini"));
    assert_eq!(name("N2S").as_deref(), Some("bambu-a1"));
    // Exact names: "Bambu Lab A1 mini" is not the A1, "Bambu Lab X1" is not the X1 Carbon's.
    assert_eq!(name("Bambu Lab A1 mini").as_deref(), Some("bambu-a1-mini"));
    assert_eq!(name("Bambu Lab A1").as_deref(), Some("bambu-a1"));
    assert_eq!(name("MK4S").as_deref(), Some("prusa-mk4"));
    assert_eq!(name("COREONE").as_deref(), Some("prusa-core-one"));
    assert_eq!(name("prusa-core-one").as_deref(), Some("prusa-core-one"));
    assert_eq!(name("O1D").as_deref(), Some("bambu-h2d"));
    assert_eq!(name("H2C"), None);
    assert_eq!(name("Bambu Lab"), None);
}

/// A plate's G-code: plain `.gcode.gz` or plate 1 of a `.gcode.3mf` in the protocol crate's
/// real slicer fixtures.
fn fixture(file: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/data/slicers")
        .join(file);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut out = vec![];
    if file.ends_with(".3mf") {
        let mut zip = farm_protocol::threemf::ThreeMf::open(Cursor::new(bytes)).expect("3MF");
        zip.plate(1)
            .expect("plate 1")
            .read_to_end(&mut out)
            .expect("inflate");
    } else {
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .expect("gunzip");
    }
    out
}

/// The profile says what the slicer's own preset says: its limits equal the `machine_max_*`
/// values the slicer wrote into a real file for that printer.
#[test]
fn bambu_limits_are_those_the_slicer_wrote_for_that_printer() {
    for (profile, file) in [
        ("bambu-p1", "bambustudio-02.05.00.66-p1s-single.gcode.3mf"),
        (
            "bambu-a1-mini",
            "bambustudio-02.01.01.52-a1mini-m83.gcode.gz",
        ),
    ] {
        let p = find(profile).expect("profile");
        let mut stated = Limits::default();
        stated.apply_config_text(&fixture(file));
        let ours = p.limits();
        assert_eq!(ours.max_feed, stated.max_feed, "{profile} vs {file}");
        assert_eq!(ours.max_accel, stated.max_accel, "{profile} vs {file}");
        assert_eq!(ours.corner, stated.corner, "{profile} vs {file}");
        assert_eq!(
            [ours.print_accel, ours.retract_accel, ours.travel_accel],
            stated.accel_caps,
            "{profile} vs {file}"
        );
        let a = &stated.allowances;
        assert_eq!(
            (a.machine_load_s, a.machine_unload_s),
            (p.allowances.load_filament_s, p.allowances.unload_filament_s),
            "{profile} vs {file}"
        );
    }
}

#[test]
fn limits_carry_the_allowances_and_a_file_overrides_them() {
    let p = find("bambu-p1").expect("profile");
    let l = p.limits();
    assert_eq!(l.corner, Corner::Jerk([9.0, 9.0, 3.0, 2.5]));
    assert_eq!(l.allowances.estimator, Estimator::Firmware);
    assert_eq!(
        (l.allowances.load_s(3), l.allowances.unload_s(0)),
        (29.0, 28.0)
    );
    // A plain stream for a P1S (no slicer header or config): the first change loads into an
    // empty nozzle, the next one unloads and loads; the default limits know nothing of either.
    let gcode = "G1 X10 Y10 F6000\nT0\nG1 X20 E1 F1200\nT1\nG1 X30 E1 F1200\nT0\nG1 X40 E1\n";
    let with = analyze_seekable_with(Cursor::new(gcode), l).expect("analyze");
    let without = analyze_seekable_with(Cursor::new(gcode), Limits::default()).expect("analyze");
    let change = with.estimated_s - without.estimated_s;
    assert!(
        (change - (29.0 + 28.0 + 29.0)).abs() < 1.0,
        "load, then unload + load, got {change:.1} s"
    );
    // The file's own statement wins over the profile.
    let stated = format!("; machine_load_filament_time = 10\n{gcode}");
    let a = analyze_seekable_with(Cursor::new(stated), l).expect("analyze");
    assert!(a.estimated_s < with.estimated_s - 10.0);
}

#[test]
fn bad_values_and_unknown_keys_name_the_file_and_key() {
    let text = BUILTIN[1].1;
    let origin = Path::new("firmware-profiles/printers/bambu-p1.toml");
    let err = ModelProfile::from_toml(
        &text.replace("levelling_s = 260.0", "levelling_s = -1.0"),
        origin,
    )
    .expect_err("negative allowance");
    assert!(err.to_string().contains("allowances.levelling_s"), "{err}");
    let err = ModelProfile::from_toml(
        &text.replace("max_feed = [500.0", "max_feed = [0.0"),
        origin,
    )
    .expect_err("zero feed");
    assert!(err.to_string().contains("`motion`"), "{err}");
    let err =
        ModelProfile::from_toml(&format!("{text}\nextra = 1\n"), origin).expect_err("unknown key");
    assert!(err.to_string().contains("bambu-p1.toml"), "{err}");
    let err = ModelProfile::from_toml(text, Path::new("other.toml")).expect_err("wrong name");
    assert!(err.to_string().contains("other.toml"), "{err}");
}

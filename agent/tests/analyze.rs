//! `farm-agent analyze` on a `.gcode.3mf`: the plate named by `--plate` is analysed in place and
//! gives what the same G-code gives as a plain file; a missing plate is refused with the list.

use std::io::Write;
use std::path::Path;
use std::process::Command;

fn gcode(seed: usize) -> String {
    let mut g = String::from(
        "; HEADER_BLOCK_START\n; BambuStudio 01.08.04.51\n; model printing time: 1m 0s; total estimated time: 1m 30s\n; HEADER_BLOCK_END\nM83\nG28\n",
    );
    for layer in 1..=5 {
        g.push_str(&format!(
            ";LAYER_CHANGE\n;Z:{}\nG1 Z{} F600\n",
            layer as f64 * 0.2,
            layer as f64 * 0.2
        ));
        for i in 0..100 {
            g.push_str(&format!(
                "G1 X{} Y{} E0.{} F3000\n",
                (i * seed) % 90,
                (i * 7) % 90,
                1 + i % 8
            ));
        }
    }
    g
}

fn analyze(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_farm-agent"))
        .arg("analyze")
        .args(args)
        .output()
        .expect("run farm-agent")
}

fn json_of(out: std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn write_3mf(path: &Path, plates: &[String]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).expect("create"));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (i, g) in plates.iter().enumerate() {
        w.start_file(format!("Metadata/plate_{}.gcode", i + 1), opts)
            .expect("entry");
        w.write_all(g.as_bytes()).expect("write");
    }
    w.start_file("Metadata/slice_info.config", opts)
        .expect("entry");
    w.write_all(br##"<config><plate><metadata key="index" value="2"/><metadata key="prediction" value="90"/><filament id="1" type="PETG" color="#00AE42" used_m="0.1" used_g="0.3"/></plate></config>"##).expect("write");
    w.finish().expect("finish");
}

#[test]
fn analyses_a_plate_of_a_gcode_3mf_like_the_plain_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (one, two) = (gcode(3), gcode(11));
    let plain = dir.path().join("two.gcode");
    std::fs::write(&plain, &two).expect("write");
    let archive = dir.path().join("job.gcode.3mf");
    write_3mf(&archive, &[one, two]);
    let archive = archive.to_str().expect("utf-8 path");

    let from_zip = json_of(analyze(&[archive, "--plate", "2", "--json"]));
    let from_file = json_of(analyze(&[plain.to_str().expect("utf-8"), "--json"]));
    assert_eq!(from_zip["analysis"], from_file["analysis"]);
    assert!(from_zip["analysis"]["filament_mm"][0].as_f64().expect("mm") > 10.0);
    assert_eq!(from_zip["plate"], 2);
    assert_eq!(from_zip["plates"], serde_json::json!([1, 2]));
    assert_eq!(from_zip["plate_facts"]["slice"]["prediction_s"], 90.0);
    assert_eq!(
        from_zip["plate_facts"]["slice"]["filaments"][0]["type"],
        "PETG"
    );

    let table = analyze(&[archive, "--plate", "2"]);
    assert!(table.status.success());
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("plate                  2 (plates: 1, 2)"),
        "{table}"
    );
    assert!(
        table.contains("slicer filament 1      PETG #00AE42"),
        "{table}"
    );

    // Two plates and none named; a plate that is not there; --plate on plain G-code.
    for (args, says) in [
        (vec![archive], "name the one to print"),
        (vec![archive, "--plate", "3"], "its plates are 1, 2"),
        (
            vec![plain.to_str().expect("utf-8"), "--plate", "1"],
            "has no plates",
        ),
    ] {
        let out = analyze(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `--printer-model` starts the analysis from a printer's profile: a plain stream with a
/// filament change is charged the P1S's unload + load, by profile name or model code, and an
/// unknown model is refused with the names to use.
#[test]
fn printer_model_profile_sets_the_starting_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("two-tools.gcode");
    let text = "G1 X10 Y10 F6000\nT0\nG1 X20 E1 F1200\nT1\nG1 X30 E1 F1200\nT0\nG1 X40 E1\n";
    std::fs::write(&file, text).expect("write");
    let f = file.to_str().expect("utf-8");
    let secs = |v: &serde_json::Value| v["analysis"]["estimated_s"].as_f64().expect("time");
    let plain = secs(&json_of(analyze(&[f, "--json"])));
    let p1 = secs(&json_of(analyze(&[
        f,
        "--json",
        "--printer-model",
        "bambu-p1",
    ])));
    let c12 = secs(&json_of(analyze(&[f, "--json", "--printer-model", "C12"])));
    assert_eq!(p1, c12);
    // First change loads (29 s), the second unloads and loads (28 + 29 s).
    assert!((p1 - plain - 86.0).abs() < 1.0, "{plain} s vs {p1} s");

    let out = analyze(&[f, "--printer-model", "H2C"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bambu-p1") && err.contains("prusa-core-one"),
        "{err}"
    );
}

//! `farm-agent analyze FILE` on a real PrusaSlicer `.bgcode` (farm-protocol's test data) and
//! on libbgcode's text form of it: the same analysis and metadata, told apart by magic only.

use std::path::Path;
use std::process::Command;

fn analyze(file: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_farm-agent"))
        .args(["analyze", "--json"])
        .arg(file)
        .output()
        .expect("run farm-agent");
    assert!(
        out.status.success(),
        "analyze {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn analyze_reads_bgcode_as_its_text_twin() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocol/tests/data/bgcode");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("twin.gcode");
    let gz = std::fs::read(data.join("prusaslicer-2.8.1-mini-cube.ref.gcode.gz")).expect("ref");
    let mut plain = vec![];
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain)
        .expect("gunzip");
    std::fs::write(&text, plain).expect("write");
    let b = analyze(&data.join("prusaslicer-2.8.1-mini-cube.bgcode"));
    let t = analyze(&text);
    assert_eq!(b["analysis"], t["analysis"]);
    assert_eq!(b["metadata"], t["metadata"]);
    assert_eq!(b["metadata"]["slicer"]["name"], "PrusaSlicer");
    assert!(b["analysis"]["filament_mm"][0].as_f64().expect("mm") > 240.0);

    // A damaged file: the error says what to do.
    let mut bad = std::fs::read(data.join("prusaslicer-2.8.1-mini-cube.bgcode")).expect("bin");
    let n = bad.len();
    bad[n - 100] ^= 1;
    let broken = dir.path().join("broken.bgcode");
    std::fs::write(&broken, bad).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_farm-agent"))
        .args(["analyze"])
        .arg(&broken)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CRC32") && err.contains("upload it again"),
        "{err}"
    );
}

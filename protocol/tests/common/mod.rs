//! Shared by the integration tests: the real slicer fixtures in `tests/data/slicers`.

use std::io::Read;

/// A fixture's G-code bytes (stored gzipped; `name` without `.gcode.gz`).
#[allow(dead_code)] // not every test binary uses it
pub fn slicer_fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/slicers")
        .join(format!("{name}.gcode.gz"));
    let f = std::fs::File::open(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()));
    let mut out = vec![];
    flate2::read::GzDecoder::new(f)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("fixture {} does not decompress: {e}", p.display()));
    out
}

/// Sum of E on `G0`/`G1` lines that also move X or Y, before the first layer comment, in a
/// relative-E (M83) file: the start G-code extrusion OrcaSlicer's processor counts.
#[allow(dead_code)] // not every test binary uses it
pub fn start_xy_extrusion(text: &[u8]) -> f64 {
    use farm_protocol::gcode::parse_line;
    let mut sum = 0.0;
    for raw in text.split(|&b| b == b'\n') {
        let l = parse_line(raw);
        if l.comment == Some("CHANGE_LAYER") || l.comment == Some("LAYER_CHANGE") {
            break;
        }
        if (l.is(b'G', 0) || l.is(b'G', 1)) && (l.has('X') || l.has('Y')) {
            sum += l.get('E').filter(|e| *e > 0.0).unwrap_or(0.0);
        }
    }
    sum
}

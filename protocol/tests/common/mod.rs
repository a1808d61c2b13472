//! Shared by the integration tests: the real slicer fixtures in `tests/data/slicers`.

use std::io::Read;

/// A fixture's G-code bytes (stored gzipped; `name` without `.gcode.gz`).
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

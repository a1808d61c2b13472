//! `.gcode.3mf` archives (Bambu Studio / OrcaSlicer sliced plates) for the tests: the real ones
//! in `protocol/tests/data/slicers/` (one plate each; licences in MANIFEST.md there), and
//! several-plate archives assembled around the repo's real slicer G-code in the layout the
//! slicers write (`Metadata/plate_<N>.gcode`,
//! `Metadata/slice_info.config` in BambuStudio's `bbs_3mf.cpp` names).

use anyhow::{Context, Result};
use std::io::{Read, Write};

/// A real slicer's G-code from farm-protocol's fixtures, decompressed.
pub fn slicer_gcode(name: &str) -> Result<Vec<u8>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/data/slicers")
        .join(format!("{name}.gcode.gz"));
    let mut out = vec![];
    flate2::read::GzDecoder::new(std::fs::File::open(&p).with_context(|| p.display().to_string())?)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// A real `.gcode.3mf` from farm-protocol's fixtures (provenance and licence in MANIFEST.md).
pub fn real_3mf(name: &str) -> Result<Vec<u8>> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../protocol/tests/data/slicers")
        .join(format!("{name}.gcode.3mf"));
    std::fs::read(&p).with_context(|| p.display().to_string())
}

/// An archive with these plates (number, G-code, the slicer's prediction in s and filament in g).
pub fn gcode_3mf(plates: &[(u32, &[u8], f64, f64)]) -> Result<Vec<u8>> {
    let mut info = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config>\n  <header>\n    <header_item key=\"X-BBL-Client-Type\" value=\"slicer\"/>\n  </header>\n",
    );
    for (n, _, prediction, grams) in plates {
        info.push_str(&format!(
            "  <plate>\n    <metadata key=\"index\" value=\"{n}\"/>\n    <metadata key=\"prediction\" value=\"{prediction}\"/>\n    <metadata key=\"weight\" value=\"{grams}\"/>\n    <filament id=\"1\" type=\"PLA\" color=\"#FF6A13\" used_m=\"1.0\" used_g=\"{grams}\"/>\n  </plate>\n"
        ));
    }
    info.push_str("</config>\n");
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("[Content_Types].xml", stored)?;
    w.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Types/>")?;
    w.start_file("Metadata/slice_info.config", stored)?;
    w.write_all(info.as_bytes())?;
    for (n, gcode, ..) in plates {
        w.start_file(format!("Metadata/plate_{n}.gcode"), stored)?;
        w.write_all(gcode)?;
    }
    Ok(w.finish()?.into_inner())
}

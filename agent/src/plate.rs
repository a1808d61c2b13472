//! A `.gcode.3mf` job (Bambu Studio / OrcaSlicer sliced plates) on a back end that prints
//! plain G-code: the job's plate is extracted from the cached archive into a G-code file
//! beside it, streamed through `farm_protocol::threemf` (one entry inflated as it is read,
//! its size and CRC-32 checked; bounded memory), and that file is printed like any other.
//! Its byte offsets are the plate's G-code offsets, so each back end's extrusion index and
//! billing work on it unchanged.
//!
//! Bambu printers take the archive itself and are told the plate (`project_file`), so for them
//! nothing is extracted ([`crate::printable`] decides).
//!
//! Layout under `state_dir/files/`: `<sha256>.plate<N>.part` while extracting,
//! `<sha256>.plate<N>.gcode` once whole; the cache's eviction treats it like a fetched file.

use farm_protocol::threemf::{ThreeMf, ThreeMfError};
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// The G-code of plate `plate` of the archive at `archive` (a verified cached job file), as a
/// file beside it; reused if it was extracted whole before.
pub fn extract(archive: &Path, plate: u32) -> Result<PathBuf, ThreeMfError> {
    let out = crate::printable::beside(archive, &format!("plate{plate}"));
    let file = std::fs::File::open(archive)?;
    let mut zip = ThreeMf::open(BufReader::with_capacity(1 << 16, file))?;
    zip.choose_plate(Some(plate))?;
    let gcode = zip.plate(plate)?;
    let len = gcode.len();
    crate::printable::write_whole(&out, Some(len), gcode)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn archive(dir: &Path, plates: &[(&str, &[u8])]) -> PathBuf {
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
        let deflated = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in plates {
            w.start_file(*name, deflated).expect("entry");
            w.write_all(data).expect("write");
        }
        let path = dir.join(format!("{}.gcode", "ab".repeat(32)));
        std::fs::write(&path, w.finish().expect("zip").into_inner()).expect("write");
        path
    }

    #[test]
    fn the_plates_gcode_is_extracted_byte_for_byte_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plate2 = crate::test_gcode::sample(40).into_bytes();
        let path = archive(
            dir.path(),
            &[
                ("Metadata/plate_1.gcode", b"; other plate\nG28\n"),
                ("Metadata/plate_2.gcode", &plate2),
            ],
        );
        let out = extract(&path, 2).expect("extract");
        assert_eq!(
            out.file_name().and_then(|n| n.to_str()),
            Some(format!("{}.plate2.gcode", "ab".repeat(32)).as_str())
        );
        let mut got = vec![];
        std::fs::File::open(&out)
            .expect("open")
            .read_to_end(&mut got)
            .expect("read");
        assert!(got == plate2, "plate 2 extracted whole");
        let again = extract(&path, 2).expect("reuse");
        assert_eq!(again, out);
        assert!(!out.with_extension("part").exists());
    }

    #[test]
    fn a_missing_plate_or_a_bad_archive_is_refused_with_the_plates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = archive(dir.path(), &[("Metadata/plate_1.gcode", b"G28\n")]);
        let e = extract(&path, 3).expect_err("no plate 3");
        assert!(e.to_string().contains("plates are 1"), "{e}");
        std::fs::write(&path, b"G28\n").expect("write");
        assert_eq!(
            extract(&path, 1).expect_err("not a zip").reason(),
            "not_zip"
        );
    }
}

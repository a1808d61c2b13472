//! `.bgcode`: our decoder against libbgcode's own output, the analysis against the ASCII
//! twin's, the extrusion index by binary offset, and bad input.
//!
//! The reference is libbgcode itself: a real PrusaSlicer 2.8.1 file with libbgcode's text
//! form (`tests/data/bgcode/`, README there), and ASCII fixtures converted both ways by
//! `pybgcode-jneilliii` (libbgcode's Python binding, installed by `scripts/install-peers.sh`
//! into `$FARM_PEERS_DIR/bgcode/venv`).

mod common;

use farm_protocol::bgcode::{self, BgcodeError, Decoder};
use farm_protocol::gcode::index::DEFAULT_STRIDE;
use farm_protocol::gcode::{ExtrusionIndex, Limits, analyze_seekable, read_metadata};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

fn data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/bgcode")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("gunzip");
    out
}

fn decode(bin: &[u8]) -> Result<Vec<u8>, BgcodeError> {
    let mut out = vec![];
    Decoder::new(bin)?
        .read_to_end(&mut out)
        .map_err(BgcodeError::from_io)?;
    Ok(out)
}

fn real() -> (Vec<u8>, Vec<u8>) {
    (
        data("prusaslicer-2.8.1-mini-cube.bgcode"),
        gunzip(&data("prusaslicer-2.8.1-mini-cube.ref.gcode.gz")),
    )
}

/// Decoded text, analysis and metadata of a `.bgcode` equal those of libbgcode's text form.
fn same_as_reference(bin: &[u8], reference: &[u8], what: &str) {
    let text = decode(bin).unwrap_or_else(|e| panic!("{what}: {e}"));
    if text != reference {
        let at = text
            .iter()
            .zip(reference)
            .position(|(a, b)| a != b)
            .unwrap_or(text.len().min(reference.len()));
        panic!(
            "{what}: decoded text differs from libbgcode's at byte {at} ({} vs {} bytes): {:?} vs {:?}",
            text.len(),
            reference.len(),
            String::from_utf8_lossy(&text[at.saturating_sub(40)..(at + 40).min(text.len())]),
            String::from_utf8_lossy(
                &reference[at.saturating_sub(40)..(at + 40).min(reference.len())]
            ),
        );
    }
    let a = analyze_seekable(Cursor::new(bin)).expect("analyze bgcode");
    let b = analyze_seekable(Cursor::new(reference)).expect("analyze text");
    assert_eq!(a, b, "{what}: analysis");
    let m = bgcode::read_metadata(bin).expect("metadata");
    assert_eq!(
        m,
        read_metadata(reference).expect("metadata"),
        "{what}: metadata"
    );
}

#[test]
fn a_real_prusaslicer_file_decodes_to_libbgcodes_text() {
    let (bin, reference) = real();
    same_as_reference(&bin, &reference, "mini cube");
    let m = bgcode::read_metadata(&bin[..]).expect("metadata");
    let slicer = m.slicer.expect("slicer");
    assert_eq!(
        (slicer.name.as_str(), slicer.version.as_deref()),
        ("PrusaSlicer", Some("2.8.1"))
    );
    assert_eq!(m.estimated_time_s, Some(221.0));
    assert_eq!(m.printer_model.as_deref(), Some("MK4S"));
    assert_eq!(m.filament_types, vec!["PLA".to_string()]);
    let sizes: Vec<_> = m.thumbnails.iter().map(|t| (t.width, t.height)).collect();
    assert_eq!(sizes, vec![(16, 16), (313, 173)]);
    assert_eq!(m.thumbnails_skipped, 0);
    let a = analyze_seekable(Cursor::new(&bin)).expect("analyze");
    assert!(a.filament_mm[0] > 240.0 && a.layers > 10, "{a:?}");
}

// ---- the reference converter ------------------------------------------------------------

/// libbgcode's Python binding, or `None` (outside CI) with a note; under `CI=true` a missing
/// converter fails the test.
fn pybgcode() -> Option<PathBuf> {
    let root = std::env::var_os("FARM_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.peers"));
    let python = root.join("bgcode/venv/bin/python");
    if python.is_file() {
        return Some(python);
    }
    let msg = format!(
        "pybgcode is not installed ({} is missing): run scripts/install-peers.sh",
        python.display()
    );
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("SKIPPED: {msg}");
    None
}

/// argv: source, binary, text, variant. Variant 0 is PrusaSlicer's choice (heatshrink 12/4 +
/// MeatPack keeping comments, CRC32); 1: deflate everywhere + MeatPack dropping comments;
/// 2: heatshrink 11/4, no MeatPack, no checksum.
const CONVERT: &str = r#"
import sys, pybgcode
from pybgcode._bgcode import ChecksumType, CompressionType, GCodeEncodingType
src, binary, back, variant = sys.argv[1:5]
c = pybgcode.get_config()
if variant == "1":
    c.compression.gcode = CompressionType.Deflate
    c.compression.printer_metadata = CompressionType.Deflate
    c.gcode_encoding = GCodeEncodingType.MeatPack
elif variant == "2":
    c.compression.gcode = CompressionType.Heatshrink_11_4
    c.compression.print_metadata = CompressionType.Heatshrink_11_4
    c.gcode_encoding = GCodeEncodingType.none
    c.checksum = ChecksumType.none
i = pybgcode.open(src, "r"); o = pybgcode.open(binary, "wb")
r = pybgcode.from_ascii_to_binary(i, o, c); pybgcode.close(i); pybgcode.close(o)
assert str(r).endswith("Success"), r
i = pybgcode.open(binary, "rb"); o = pybgcode.open(back, "w")
r = pybgcode.from_binary_to_ascii(i, o, True); pybgcode.close(i); pybgcode.close(o)
assert str(r).endswith("Success"), r
"#;

/// ASCII → `.bgcode` → ASCII with libbgcode: (binary, libbgcode's text of it).
fn convert(python: &Path, ascii: &[u8], variant: u8) -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, bin, back) = (
        dir.path().join("a.gcode"),
        dir.path().join("b.bgcode"),
        dir.path().join("c.gcode"),
    );
    std::fs::write(&src, ascii).expect("write");
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(CONVERT)
        .args([src.as_os_str(), bin.as_os_str(), back.as_os_str()])
        .arg(variant.to_string())
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "pybgcode: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::read(bin).expect("bgcode"),
        std::fs::read(back).expect("text"),
    )
}

/// The fixtures converted: PrusaSlicer's single-tool cube (relative E), a benchy with PNG
/// thumbnails (2 MB), a cube with absolute E, and a four-extruder Slic3r file (3.8 MB).
/// `true`: libbgcode converts only files that PrusaSlicer wrote, with print and slicer
/// metadata, so that one gets PrusaSlicer's first line and those two sections added.
const CONVERTED: &[(&str, bool)] = &[
    ("prusaslicer-2.8.1-mini-cube-m83", false),
    ("prusaslicer-2.6.1-benchy-m83", false),
    ("prusaslicer-2.9.2-xyz-cube-m82", false),
    ("slic3r-1.2.9-benchy-4extruder-m83", true),
];

/// The body of another slicer's file under the lines libbgcode needs to see PrusaSlicer's.
fn as_if_prusaslicer(ascii: &[u8]) -> Vec<u8> {
    let body = ascii.splitn(2, |&c| c == b'\n').nth(1).unwrap_or_default();
    let mut out = b"; generated by PrusaSlicer 2.8.1 on 2017-06-15 at 21:21:52 UTC\n".to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(b"; estimated printing time (normal mode) = 1h 0m 0s\n\n");
    out.extend_from_slice(
        b"; prusaslicer_config = begin\n; printer_model = MK4\n; prusaslicer_config = end\n",
    );
    out
}

#[test]
fn converted_fixtures_decode_and_analyse_as_their_ascii_twins() {
    let Some(python) = pybgcode() else { return };
    for &(name, dress) in CONVERTED {
        let mut ascii = common::slicer_fixture(name);
        if dress {
            ascii = as_if_prusaslicer(&ascii);
        }
        let (bin, reference) = convert(&python, &ascii, 0);
        same_as_reference(&bin, &reference, name);
        // Against the slicer's own file: MeatPack rewrites G-lines (spaces, comments) and
        // drops blank lines, so sizes and line counts differ; what the file does does not.
        let a = analyze_seekable(Cursor::new(&bin)).expect("analyze bgcode");
        let o = analyze_seekable(Cursor::new(&ascii)).expect("analyze ascii");
        assert_eq!(a.filament_mm, o.filament_mm, "{name}: filament");
        assert_eq!(
            a.start_filament_mm, o.start_filament_mm,
            "{name}: start filament"
        );
        assert_eq!(a.estimated_s, o.estimated_s, "{name}: time");
        assert_eq!(a.layer_times_s, o.layer_times_s, "{name}: layer times");
        assert_eq!(
            (a.first_layer_s, a.start_s, a.heat_s),
            (o.first_layer_s, o.start_s, o.heat_s),
            "{name}"
        );
        assert_eq!(
            (a.layers, a.bounds),
            (o.layers, o.bounds),
            "{name}: layers, bounds"
        );
        index_matches_text(&bin, &reference, name);
    }
}

#[test]
fn other_compressions_and_encodings_decode_as_libbgcode_does() {
    let Some(python) = pybgcode() else { return };
    let ascii = common::slicer_fixture("prusaslicer-2.8.1-mini-cube-m83");
    for variant in [1, 2] {
        let (bin, reference) = convert(&python, &ascii, variant);
        same_as_reference(&bin, &reference, &format!("variant {variant}"));
        index_matches_text(&bin, &reference, &format!("variant {variant}"));
    }
}

// ---- the extrusion index by binary offset -------------------------------------------------

/// At every block boundary the binary index answers what the text index answers at the
/// matching text offset; everywhere it never decreases; at the end it is the analysis total.
fn index_matches_text(bin: &[u8], text: &[u8], what: &str) {
    let bi = ExtrusionIndex::build_seekable(Cursor::new(bin), Limits::default(), DEFAULT_STRIDE)
        .expect("bgcode index");
    let ti = ExtrusionIndex::build_seekable(Cursor::new(text), Limits::default(), DEFAULT_STRIDE)
        .expect("text index");
    let map = bi.binary.clone().expect("a binary map");
    assert_eq!(map.bytes, bin.len() as u64);
    assert_eq!(
        (bi.bytes, bi.lines, &bi.total_mm, bi.total_s),
        (ti.bytes, ti.lines, &ti.total_mm, ti.total_s),
        "{what}"
    );
    assert!(map.spans.len() > 1, "{what}: G-code blocks mapped");
    for s in &map.spans {
        let c = bi.consumed_at(Cursor::new(bin), s.bin).expect("consumed");
        assert_eq!(
            c,
            ti.consumed_at(Cursor::new(text), s.ascii)
                .expect("consumed"),
            "{what}: block at {}",
            s.bin
        );
        let e = bi.elapsed_at(Cursor::new(bin), s.bin).expect("elapsed");
        assert_eq!(
            e,
            ti.elapsed_at(Cursor::new(text), s.ascii).expect("elapsed"),
            "{what}: block at {}",
            s.bin
        );
        // Inside the block nothing of it is billed yet.
        if s.bin > 0 {
            let inside = bi
                .consumed_at(Cursor::new(bin), s.bin + 20)
                .expect("inside");
            assert_eq!(inside, c, "{what}: inside the block at {}", s.bin);
        }
    }
    let a = analyze_seekable(Cursor::new(bin)).expect("analysis");
    let end = bin.len() as u64;
    assert_eq!(
        bi.consumed_at(Cursor::new(bin), end).expect("end"),
        a.filament_mm,
        "{what}"
    );
    assert_eq!(
        bi.elapsed_at(Cursor::new(bin), end).expect("end"),
        bi.total_s,
        "{what}"
    );
    // The index sums its time in another order than the analyzer: equal to 1e-9.
    assert!(
        (bi.total_s - a.estimated_s).abs() <= 1e-9 * a.estimated_s,
        "{what}"
    );
    assert_eq!(
        bi.remaining_at(Cursor::new(bin), end).expect("end"),
        0.0,
        "{what}"
    );
    // Monotonic at 40 offsets spread over the file, and at and inside every boundary.
    let mut offsets: Vec<u64> = (0..=40).map(|i| end * i / 40).collect();
    for s in &map.spans {
        offsets.extend([s.bin, s.bin + 1]);
    }
    offsets.sort_unstable();
    offsets.dedup();
    let (mut last_c, mut last_e) = (0.0f64, 0.0f64);
    for off in offsets {
        let c: f64 = bi
            .consumed_at(Cursor::new(bin), off)
            .expect("consumed")
            .iter()
            .sum();
        let e = bi.elapsed_at(Cursor::new(bin), off).expect("elapsed");
        assert!(
            c >= last_c && e >= last_e,
            "{what}: decreases at {off}: {c} < {last_c} or {e} < {last_e}"
        );
        (last_c, last_e) = (c, e);
    }
}

#[test]
fn the_index_of_a_real_file_follows_its_binary_offsets() {
    let (bin, reference) = real();
    index_matches_text(&bin, &reference, "mini cube");
    // A stored (JSON) index is cold; warming it re-derives the same map from the file.
    let built =
        ExtrusionIndex::build_seekable(Cursor::new(&bin), Limits::default(), 4096).expect("index");
    let mut cold: ExtrusionIndex =
        serde_json::from_str(&serde_json::to_string(&built).expect("json")).expect("parse");
    cold.set_limits(*built.limits());
    let mid = bin.len() as u64 * 2 / 3;
    let want = built.consumed_at(Cursor::new(&bin), mid).expect("warm");
    assert_eq!(
        cold.consumed_at(Cursor::new(&bin), mid).expect("cold"),
        want
    );
    cold.warm(&bin[..]).expect("warm");
    assert_eq!(
        cold.consumed_at(Cursor::new(&bin), mid).expect("warmed"),
        want
    );
}

// ---- bad input ------------------------------------------------------------------------------

/// One block as the format stores it, CRC32 included.
fn block(ty: u16, compression: u16, params: &[u8], data: &[u8], declared: Option<u32>) -> Vec<u8> {
    let mut b = ty.to_le_bytes().to_vec();
    b.extend(compression.to_le_bytes());
    b.extend(declared.unwrap_or(data.len() as u32).to_le_bytes());
    if compression != 0 {
        b.extend((data.len() as u32).to_le_bytes());
    }
    b.extend(params);
    b.extend(data);
    let crc = crc32fast::hash(&b);
    b.extend(crc.to_le_bytes());
    b
}

/// A minimal valid file: printer, print and slicer metadata, then these G-code blocks.
fn file(gcode: &[Vec<u8>]) -> Vec<u8> {
    let mut f = b"GCDE".to_vec();
    f.extend(1u32.to_le_bytes());
    f.extend(1u16.to_le_bytes());
    f.extend(block(3, 0, &[0, 0], b"printer_model=MK4\n", None));
    f.extend(block(
        4,
        0,
        &[0, 0],
        b"estimated printing time (normal mode)=1m 0s\n",
        None,
    ));
    f.extend(block(
        2,
        0,
        &[0, 0],
        b"machine_max_acceleration_x=500,500\n",
        None,
    ));
    for g in gcode {
        f.extend(g);
    }
    f
}

#[test]
fn a_hand_made_file_decodes_as_libbgcode_would() {
    let f = file(&[block(1, 0, &[0, 0], b"M83\n\nG1 X10 E1 F600\n", None)]);
    let text = decode(&f).expect("decode");
    // The slicer's limits come from the slicer metadata block, before the first move.
    let limits = Decoder::new(&f[..])
        .expect("open")
        .limits(Limits::default());
    assert_eq!(limits.max_accel[0], 500.0);
    assert_eq!(
        String::from_utf8_lossy(&text),
        "; printer_model = MK4\n\nM83\nG1 X10 E1 F600\n\n; estimated printing time (normal mode) = 1m 0s\n\n; prusaslicer_config = begin\n; machine_max_acceleration_x = 500,500\n; prusaslicer_config = end\n\n"
    );
}

fn err(f: &[u8]) -> BgcodeError {
    match decode(f) {
        Ok(t) => panic!("decoded {} bytes of a broken file", t.len()),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains(':') && msg.len() > 40,
                "message says what to do: {msg}"
            );
            e
        }
    }
}

#[test]
fn bad_files_get_clear_errors() {
    let (bin, _) = real();
    let good = file(&[block(1, 0, &[0, 0], b"G1 X1 E1\n", None)]);
    assert!(matches!(err(b""), BgcodeError::Empty));
    assert!(matches!(
        err(b"; plain G-code\nG1 X1\n"),
        BgcodeError::BadMagic
    ));
    let mut v2 = good.clone();
    v2[4] = 2;
    assert!(matches!(err(&v2), BgcodeError::Version(2)));

    // A flipped byte in the last block's data: its CRC names the block and its offset.
    let mut flipped = bin.clone();
    let at = flipped.len() - 100;
    flipped[at] ^= 0x40;
    let e = err(&flipped);
    assert!(
        matches!(e, BgcodeError::Crc { block, offset, .. } if block > 5 && offset < at as u64),
        "{e}"
    );
    assert!(e.to_string().contains("CRC32"), "{e}");

    // Cut inside a block.
    for cut in [12, 40, bin.len() / 2, bin.len() - 1] {
        assert!(
            matches!(err(&bin[..cut]), BgcodeError::Truncated { .. }),
            "cut at {cut}"
        );
    }
    // Wrong compression id on the G-code block (the header is read before the CRC).
    let mut comp = good.clone();
    let g = good.len() - (8 + 2 + 9 + 4);
    comp[g + 2] = 7;
    assert!(matches!(err(&comp), BgcodeError::Compression { id: 7, .. }));
    // A MeatPack stream with an unknown command.
    let mp = file(&[block(
        1,
        0,
        &[1, 0],
        &[0xFF, 0xFF, 0xFB, 0x1D, 0xFF, 0xFF, 0x05],
        None,
    )]);
    assert!(matches!(err(&mp), BgcodeError::MeatPack { .. }));
    // Unknown G-code encoding.
    let enc = file(&[block(1, 0, &[9, 0], b"G1\n", None)]);
    assert!(matches!(
        err(&enc),
        BgcodeError::Encoding { encoding: 9, .. }
    ));
    // A declared 4 GiB block is refused before anything is allocated.
    let huge = file(&[block(1, 1, &[0, 0], b"x", Some(u32::MAX))]);
    assert!(matches!(
        err(&huge),
        BgcodeError::Oversized {
            size: 4_294_967_295,
            ..
        }
    ));
    // Deflate that does not inflate to the stated size.
    let short = file(&[block(
        1,
        1,
        &[0, 0],
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        Some(10),
    )]);
    assert!(matches!(err(&short), BgcodeError::Corrupt { .. }));
    // Blocks out of order: G-code before the metadata.
    let mut order = b"GCDE\x01\0\0\0\x01\0".to_vec();
    order.extend(block(1, 0, &[0, 0], b"G1\n", None));
    assert!(matches!(err(&order), BgcodeError::Order { .. }));

    // The analyzer's entry point says the same through io::Error.
    let e = analyze_seekable(Cursor::new(&flipped)).expect_err("bad crc");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("CRC32"), "{e}");
}

#[test]
fn junk_after_the_magic_never_panics() {
    let (bin, _) = real();
    // A fixed pseudo-random sequence: junk, and the real file with bytes overwritten.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..400 {
        let f = if i % 2 == 0 {
            let mut f = b"GCDE\x01\0\0\0".to_vec();
            f.extend((0..next() % 300).map(|_| next() as u8));
            f
        } else {
            let mut f = bin.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % f.len();
                f[at] = next() as u8;
            }
            f
        };
        let _ = decode(&f);
        let _ = analyze_seekable(Cursor::new(&f));
    }
}

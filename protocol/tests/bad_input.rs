//! Hostile input end to end: binary junk, NUL bytes, a 10 MB line, NaN / inf / huge numbers,
//! files cut short. The analyzer, the index and the metadata reader must answer (no panic),
//! count the junk, and keep every figure finite; memory stays bounded because a 10 MB line is
//! streamed from a reader that never holds it (the splitter drops it past 64 KiB).

mod common;

use farm_protocol::gcode::{ExtrusionIndex, analyze, analyze_seekable, read_metadata};
use std::io::{BufReader, Cursor, Read};

/// `n` bytes of `b`, produced on the fly (never held in memory).
struct Repeat(u8, u64);

impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.1) as usize;
        buf[..n].fill(self.0);
        self.1 -= n as u64;
        Ok(n)
    }
}

fn finite(a: &farm_protocol::gcode::Analysis) {
    assert!(
        a.estimated_s.is_finite() && a.estimated_s >= 0.0,
        "{}",
        a.estimated_s
    );
    assert!(a.heat_s.is_finite() && a.heat_s >= 0.0, "{}", a.heat_s);
    for f in &a.filament_mm {
        assert!(f.is_finite() && *f >= 0.0, "{:?}", a.filament_mm);
    }
    for v in a.bounds.iter().flat_map(|b| b.min.iter().chain(&b.max)) {
        assert!(v.is_finite(), "{:?}", a.bounds);
    }
}

#[test]
fn a_ten_megabyte_line_is_counted_and_skipped_while_streaming() {
    let head = Cursor::new(b"M83\nG1 X1 E1 F600\nG1 X2 ".to_vec());
    let tail = Cursor::new(b"\nG1 X3 E2\n".to_vec());
    let r = head.chain(Repeat(b'9', 10 * 1024 * 1024)).chain(tail);
    let a = analyze(BufReader::with_capacity(64 * 1024, r)).expect("analyze");
    assert_eq!(a.overlong_lines, 1);
    assert_eq!(a.lines, 4);
    assert_eq!(a.filament_mm, vec![3.0], "the lines around it still count");
    assert_eq!(a.bytes, 24 + 10 * 1024 * 1024 + 10);
    finite(&a);
}

#[test]
fn nan_inf_and_huge_numbers_keep_every_figure_finite() {
    let g = b"M83\nG1 X1e308 Y-1e308 E1e308 F1e308\nG1 Xnan Yinf E-inf\nG1 X1e400 E1\n\
              G92 E1e300\nM221 S1e309\nM220 S-5\nG4 P1e300\nG4 S-1\nM109 S1e300\nM190 Sinf\n\
              G2 X10 Y10 I1e-300 J0 E1\nG3 X0 Y0 R1e308 E1\nM204 S1e308 T-1\nM205 J1e-320\n\
              M207 S1e300 F0\nG10\nG11\nT99999999999\nG1 X5 Y5 E1 F1800\n";
    let a = analyze_seekable(Cursor::new(&g[..])).expect("analyze");
    finite(&a);
    assert!(a.commands >= 20);
    let index = ExtrusionIndex::build(&g[..], 16).expect("index");
    for o in [0, 10, g.len() as u64 / 2, g.len() as u64] {
        let mm = index.consumed_at(Cursor::new(&g[..]), o).expect("query");
        assert!(mm.iter().all(|v| v.is_finite() && *v >= 0.0), "{mm:?}");
        let left = index.remaining_at(Cursor::new(&g[..]), o).expect("query");
        assert!(left.is_finite() && left >= 0.0, "{left}");
    }
}

#[test]
fn binary_junk_and_nul_bytes_are_counted_not_fatal() {
    // A PNG's first bytes, random-looking binary, NULs mid-line, invalid UTF-8 in a comment.
    let mut g = b"M83\nG1 X1 E1\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\n".to_vec();
    let mut x: u32 = 0x1234_5678;
    for _ in 0..100_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        g.push(x as u8);
    }
    g.extend_from_slice(b"\nG1 X2 E1 ; caf\xe9\nG1 X3\x00 E5\nG1 X4 E1\n");
    let a = analyze(&g[..]).expect("analyze");
    finite(&a);
    assert!(a.binary_lines >= 2, "{}", a.binary_lines);
    assert_eq!(
        a.filament_mm[0], 3.0,
        "the NUL line is junk, the others count"
    );
    read_metadata(&g[..]).expect("metadata reads junk");
}

#[test]
fn truncated_files_give_what_is_there() {
    let full = common::slicer_fixture("prusaslicer-2.8.1-mini-cube-m83");
    let whole = analyze(&full[..]).expect("analyze");
    let meta = read_metadata(&full[..]).expect("metadata");
    let mut last = 0.0;
    // Cut anywhere: inside the thumbnail block, a line, the config block; as an upload would.
    for k in 1..=16 {
        let cut = &full[..full.len() * k / 16 - usize::from(k < 16) * 7];
        let a = analyze_seekable(Cursor::new(cut)).expect("analyze");
        finite(&a);
        assert!(a.filament_mm[0] >= last, "more file, more filament");
        last = a.filament_mm[0];
        let m = read_metadata(cut).expect("metadata");
        assert!(m.thumbnails.len() <= meta.thumbnails.len());
    }
    assert_eq!(last, whole.filament_mm[0]);
}

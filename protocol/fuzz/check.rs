//! What the G-code fuzz target checks on every input, shared with the corpus regression test
//! (`protocol/tests/fuzz_corpus.rs`) so that a finding stays fixed in the normal test suite.
//!
//! For arbitrary bytes the analyzer must return (never panic, never hang, bounded memory) and:
//! - every number it reports is finite, and times and filament are never negative;
//! - the extrusion index agrees bit for bit with a full re-parse: at the end of the file with
//!   the analysis, and at offsets chosen from the input with a re-parse of the prefix that
//!   holds exactly the lines the index's line rule counts;
//! - the index's planned time: its total is the analysis's (to rounding: summed in another
//!   order), and the time at an offset is finite, never more than the total, and grows with
//!   the offset;
//! - metadata and thumbnails are read without a panic, within their documented bounds.
//!
//! Inputs that start with the `.bgcode` magic go to [`check_bgcode`] (the `bgcode` target's
//! check): decoding either fails with an error that says what is wrong (and the analyzer
//! fails the same way), or gives text bounded by the input whose analysis is the `.bgcode`
//! analysis, and whose extrusion index agrees with the binary-offset index at every block
//! boundary; the binary-offset index never decreases and ends at the totals.

use farm_protocol::bgcode::{self, Decoder};
use farm_protocol::gcode::{ExtrusionIndex, Limits, analyze_seekable, analyze_with, read_metadata};
use std::io::{Cursor, Read};

/// A small stride so that even short inputs get several checkpoints to resume from.
const STRIDE: u64 = 64;

pub fn check_gcode(data: &[u8]) {
    if data.starts_with(bgcode::MAGIC) {
        return check_bgcode(data);
    }
    let seekable = analyze_seekable(Cursor::new(data)).expect("in-memory reads cannot fail");
    assert_sane(
        &seekable.filament_mm,
        seekable.estimated_s,
        &seekable.layer_times_s,
    );
    assert!(
        seekable.heat_s.is_finite() && seekable.heat_s >= 0.0,
        "heat_s {}",
        seekable.heat_s
    );
    if let Some(b) = &seekable.bounds {
        for v in b.min.iter().chain(&b.max) {
            assert!(v.is_finite(), "bounds {b:?}");
        }
    }

    // The index replays with default limits; compare with an analysis from the same machine
    // setup (filament depends on limits through firmware retraction, time everywhere).
    let whole = analyze_with(Cursor::new(data), Limits::default()).expect("in-memory");
    let index = ExtrusionIndex::build(Cursor::new(data), STRIDE).expect("in-memory");
    assert_eq!(index.bytes, data.len() as u64);
    assert_eq!(
        bits(&index.total_mm),
        bits(&whole.filament_mm),
        "index total vs analysis"
    );
    let at_end = index
        .consumed_at(Cursor::new(data), data.len() as u64)
        .expect("in-memory");
    assert_eq!(
        bits(&at_end),
        bits(&whole.filament_mm),
        "index at end of file"
    );

    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
    assert!(
        close(index.total_s, whole.estimated_s),
        "index time {} vs analysis {}",
        index.total_s,
        whole.estimated_s
    );
    let mut offs = offsets(data);
    offs.sort_unstable();
    let mut last = 0.0;
    for &offset in &offs {
        let t = index
            .elapsed_at(Cursor::new(data), offset)
            .expect("in-memory");
        assert!(
            t.is_finite() && t >= last && t <= index.total_s,
            "elapsed {t} at {offset} (before: {last}, total {})",
            index.total_s
        );
        last = t;
    }

    for offset in offsets(data) {
        let got = index
            .consumed_at(Cursor::new(data), offset)
            .expect("in-memory");
        let prefix = &data[..counted_prefix(data, offset)];
        let want = analyze_with(Cursor::new(prefix), Limits::default()).expect("in-memory");
        assert_eq!(
            bits(&got[..want.filament_mm.len().min(got.len())]),
            bits(&want.filament_mm[..want.filament_mm.len().min(got.len())]),
            "index at offset {offset} vs re-parse of {} bytes",
            prefix.len()
        );
    }

    let meta = read_metadata(Cursor::new(data)).expect("in-memory");
    for t in &meta.thumbnails {
        assert!(!t.data.is_empty(), "an empty thumbnail was kept");
    }
}

fn assert_sane(filament_mm: &[f64], estimated_s: f64, layer_times_s: &[f64]) {
    for f in filament_mm {
        assert!(f.is_finite() && *f >= 0.0, "filament {filament_mm:?}");
    }
    assert!(
        estimated_s.is_finite() && estimated_s >= 0.0,
        "estimated_s {estimated_s}"
    );
    for t in layer_times_s {
        assert!(t.is_finite() && *t >= 0.0, "layer time {t}");
    }
}

/// Up to four offsets derived from the input itself, so the fuzzer can steer them.
fn offsets(data: &[u8]) -> Vec<u64> {
    let n = data.len() as u64;
    if n == 0 {
        return vec![0];
    }
    let mut seed = data.len() as u64;
    for b in data.iter().take(8) {
        seed = seed.wrapping_mul(31).wrapping_add(u64::from(*b));
    }
    (0..4)
        .map(|i| seed.wrapping_mul(2654435761).wrapping_add(i * 7919) % (n + 1))
        .collect()
}

/// Bytes of the lines that end (newline included) at or before `offset` — the index's rule.
/// At the end of the data a last line without a newline counts too.
fn counted_prefix(data: &[u8], offset: u64) -> usize {
    let offset = offset as usize;
    if offset >= data.len() {
        return data.len();
    }
    data[..offset]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|f| f.to_bits()).collect()
}

pub fn check_bgcode(data: &[u8]) {
    let limits = match Decoder::new(data) {
        Ok(d) => d.limits(Limits::default()),
        Err(e) => return refused(data, e),
    };
    let mut text = vec![];
    let decoded = Decoder::new(data)
        .expect("opened once")
        .read_to_end(&mut text);
    // Heatshrink can grow a byte ~8 times and MeatPack with its spaces 4 times; the block
    // limits bound it as well.
    assert!(
        text.len() <= 64 * data.len() + (64 << 10),
        "{} bytes of text from {}",
        text.len(),
        data.len()
    );
    if let Err(e) = decoded {
        return refused(data, e);
    }
    let a = analyze_seekable(Cursor::new(data)).expect("decoded once");
    assert_sane(&a.filament_mm, a.estimated_s, &a.layer_times_s);
    let t = analyze_with(Cursor::new(&text), limits).expect("in-memory");
    assert_eq!(a, t, "the .bgcode analysis is its text's");
    bgcode::read_metadata(data).expect("decoded once");

    let bi = bgcode::build_index(data, Limits::default(), STRIDE).expect("decoded once");
    let ti = ExtrusionIndex::build_with(Cursor::new(&text), limits, STRIDE).expect("in-memory");
    assert_eq!(bits(&bi.total_mm), bits(&ti.total_mm), "index totals");
    let map = bi.binary.clone().expect("a binary map");
    let end = data.len() as u64;
    assert_eq!(map.bytes, end);
    assert_eq!(map.text_bytes, text.len() as u64);
    let spans = map.spans.iter().take(16).chain(map.spans.last());
    for s in spans {
        let got = bi.consumed_at(Cursor::new(data), s.bin).expect("in-memory");
        let want = ti
            .consumed_at(Cursor::new(&text), s.ascii)
            .expect("in-memory");
        assert_eq!(bits(&got), bits(&want), "block at {}", s.bin);
    }
    let mut offs = offsets(data);
    offs.extend(map.spans.iter().take(16).flat_map(|s| [s.bin, s.bin + 1]));
    offs.sort_unstable();
    let (mut last_c, mut last_e) = (0.0, 0.0);
    for off in offs {
        let c: f64 = bi
            .consumed_at(Cursor::new(data), off)
            .expect("in-memory")
            .iter()
            .sum();
        let e = bi.elapsed_at(Cursor::new(data), off).expect("in-memory");
        assert!(
            c >= last_c && e >= last_e && e <= bi.total_s,
            "decreases at {off}"
        );
        (last_c, last_e) = (c, e);
    }
    let at_end = bi.consumed_at(Cursor::new(data), end).expect("in-memory");
    assert_eq!(bits(&at_end), bits(&bi.total_mm), "index at end of file");
}

/// Input the decoder refused: the error says what is wrong, and the analyzer refuses it too
/// when it has the magic (without it, the analyzer reads it as ASCII G-code).
fn refused(data: &[u8], e: impl std::fmt::Display) {
    assert!(
        e.to_string().len() > 20,
        "an error that says what is wrong: {e}"
    );
    assert!(
        !data.starts_with(bgcode::MAGIC) || analyze_seekable(Cursor::new(data)).is_err(),
        "analyzer accepted {e}"
    );
}

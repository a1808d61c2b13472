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

use farm_protocol::gcode::{ExtrusionIndex, Limits, analyze_seekable, analyze_with, read_metadata};
use std::io::Cursor;

/// A small stride so that even short inputs get several checkpoints to resume from.
const STRIDE: u64 = 64;

pub fn check_gcode(data: &[u8]) {
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

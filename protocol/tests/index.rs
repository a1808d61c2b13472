//! The extrusion index against a full re-parse, on real slicer files.

mod common;

use farm_protocol::gcode::index::{Checkpoint, DEFAULT_STRIDE, checkpoint_bytes};
use farm_protocol::gcode::{
    Content, ExtrusionIndex, Limits, LineSplitter, Machine, analyze, parse_line,
};
use proptest::prelude::*;
use std::io::Cursor;
use std::sync::OnceLock;

fn fixture(name: &str) -> Vec<u8> {
    common::slicer_fixture(name)
}

/// A file, its index, and the full re-parse: consumed after every line, with the line's end.
struct Case {
    bytes: Vec<u8>,
    index: ExtrusionIndex,
    /// (end offset of line, consumed per tool after it), from one pass from the start.
    after_line: Vec<(u64, Vec<f64>)>,
}

impl Case {
    fn new(name: &str) -> Self {
        let bytes = fixture(name);
        let index = ExtrusionIndex::build(&bytes[..], DEFAULT_STRIDE).expect("index builds");
        let mut m = Machine::default();
        let mut after_line = Vec::new();
        let mut lines = LineSplitter::default();
        let mut end = 0u64;
        let mut rest = &bytes[..];
        let mut done = |l: &LineSplitter, m: &mut Machine, end: &mut u64| {
            if let Content::Text(t) = l.content() {
                m.step(&parse_line(t));
            }
            *end += l.len();
            after_line.push((*end, m.consumed_mm()));
        };
        while !rest.is_empty() {
            let (take, eol) = lines.feed(rest);
            rest = &rest[take..];
            if eol {
                done(&lines, &mut m, &mut end);
                lines.clear();
            }
        }
        if lines.pending() {
            done(&lines, &mut m, &mut end);
        }
        Case {
            bytes,
            index,
            after_line,
        }
    }

    /// The full re-parse's answer: every line ending at or before `offset` counts.
    fn expected(&self, offset: u64) -> Vec<f64> {
        let n = self.after_line.partition_point(|(end, _)| *end <= offset);
        match n {
            0 => Machine::default().consumed_mm(),
            n => self.after_line[n - 1].1.clone(),
        }
    }

    fn at(&self, offset: u64) -> Vec<f64> {
        self.index
            .consumed_at(Cursor::new(&self.bytes), offset)
            .expect("query")
    }
}

fn absolute() -> &'static Case {
    static C: OnceLock<Case> = OnceLock::new();
    C.get_or_init(|| Case::new("prusaslicer-2.9.2-xyz-cube-m82"))
}

fn relative() -> &'static Case {
    static C: OnceLock<Case> = OnceLock::new();
    C.get_or_init(|| Case::new("superslicer-2.3.55-benchy-klipper-m83"))
}

fn four_tools() -> &'static Case {
    static C: OnceLock<Case> = OnceLock::new();
    C.get_or_init(|| Case::new("slic3r-1.2.9-benchy-4extruder-m83"))
}

fn cases() -> [&'static Case; 3] {
    [absolute(), relative(), four_tools()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn m82_absolute_matches_full_reparse(f in 0.0f64..1.0) {
        let c = absolute();
        let offset = (f * c.bytes.len() as f64) as u64;
        prop_assert_eq!(c.at(offset), c.expected(offset));
    }

    #[test]
    fn m83_relative_matches_full_reparse(f in 0.0f64..1.0) {
        let c = relative();
        let offset = (f * c.bytes.len() as f64) as u64;
        prop_assert_eq!(c.at(offset), c.expected(offset));
    }

    #[test]
    fn four_extruders_match_full_reparse(f in 0.0f64..1.0) {
        let c = four_tools();
        let offset = (f * c.bytes.len() as f64) as u64;
        prop_assert_eq!(c.at(offset), c.expected(offset));
    }
}

#[test]
fn edges_start_end_mid_line_and_checkpoints() {
    for c in cases() {
        let len = c.bytes.len() as u64;
        assert_eq!(c.at(0), vec![0.0]);
        assert_eq!(c.at(len), c.expected(len));
        assert_eq!(c.at(len + 1000), c.expected(len));
        // Around every checkpoint and some line ends: at the end, one byte short (mid-line:
        // that line not counted), one byte past.
        let probes = c
            .index
            .checkpoints
            .iter()
            .map(|k| k.offset)
            .chain(c.after_line.iter().step_by(997).map(|(end, _)| *end));
        for p in probes {
            for o in [p.saturating_sub(1), p, p + 1] {
                assert_eq!(c.at(o), c.expected(o), "offset {o}");
            }
        }
    }
    // Mid-line: an extruding line is not counted until its newline has been read.
    let c = relative();
    let w = c
        .after_line
        .windows(2)
        .find(|w| w[1].1 != w[0].1)
        .expect("some line extrudes");
    let (start, end) = (w[0].0, w[1].0);
    assert!(end - start > 2);
    assert_eq!(c.at(start + 1), w[0].1);
    assert_eq!(c.at(end - 1), w[0].1);
    assert_eq!(c.at(end), w[1].1);
}

#[test]
fn end_of_file_equals_the_analyzer() {
    for c in cases() {
        let a = analyze(&c.bytes[..]).expect("analyze");
        let len = c.bytes.len() as u64;
        assert_eq!(c.index.total_mm, a.filament_mm);
        assert_eq!(c.at(len), a.filament_mm);
        assert_eq!(c.expected(len), a.filament_mm);
        assert_eq!(c.index.bytes, len);
        assert_eq!(c.index.lines, a.lines);
    }
    assert_eq!(four_tools().index.total_mm.len(), 4);
}

#[test]
fn checkpoints_are_sparse_and_small() {
    let c = four_tools();
    let len = c.bytes.len() as u64;
    let n = c.index.checkpoints.len() as u64;
    // One at the start, then about one per 64 KiB.
    assert!(
        n >= len / DEFAULT_STRIDE && n <= len / DEFAULT_STRIDE + 2,
        "{n}"
    );
    let per = c.index.memory_bytes() as u64 / n;
    eprintln!(
        "checkpoints {n}, inline {} B, ~{per} B each, index {} B for {len} B; 200 MB → {} checkpoints ≈ {} KiB",
        size_of::<Checkpoint>(),
        c.index.memory_bytes(),
        200_000_000 / DEFAULT_STRIDE + 1,
        (200_000_000 / DEFAULT_STRIDE + 1) * per / 1024
    );
    assert!(
        c.index
            .checkpoints
            .iter()
            .all(|k| checkpoint_bytes(k) < 16 * 1024)
    );
}

#[test]
fn cached_index_is_cold_then_warm_and_exact() {
    let c = relative();
    let json = serde_json::to_string(&c.index).expect("serialises");
    let mut cold: ExtrusionIndex = serde_json::from_str(&json).expect("deserialises");
    assert!(!cold.is_warm());
    let len = c.bytes.len() as u64;
    for o in [0, 1, len / 3, len / 2 + 7, len - 1, len] {
        let got = cold.consumed_at(Cursor::new(&c.bytes), o).expect("query");
        assert_eq!(got, c.expected(o), "cold at {o}");
    }
    // Another file is refused and leaves the index cold.
    let other = absolute();
    assert!(cold.warm(&other.bytes[..]).is_err());
    assert!(!cold.is_warm());
    cold.warm(&c.bytes[..]).expect("same file warms");
    assert!(cold.is_warm());
    assert_eq!(at(&cold, &c.bytes, len), c.expected(len));
}

fn at(index: &ExtrusionIndex, bytes: &[u8], offset: u64) -> Vec<f64> {
    index
        .consumed_at(Cursor::new(bytes), offset)
        .expect("query")
}

#[test]
fn small_strides_junk_and_no_final_newline() {
    let mut g = b"M83\nG1 X1 E1\n\x00\x00\nT1\nG1 X2 E2.5\n".to_vec();
    g.extend(std::iter::repeat_n(b'x', 70 * 1024));
    g.extend_from_slice(b"\nG1 X3 E-1\nG1 X4 E1.5\nT0\nG1 X5 E0.25");
    let a = analyze(&g[..]).expect("analyze");
    for stride in [1, 7, 4096, DEFAULT_STRIDE] {
        let idx = ExtrusionIndex::build(&g[..], stride).expect("build");
        assert_eq!(idx.total_mm, a.filament_mm);
        let full = g.len() as u64;
        assert_eq!(at(&idx, &g, full), vec![1.25, 3.0]);
        assert_eq!(
            at(&idx, &g, full - 1),
            vec![1.0, 3.0],
            "last line has no newline"
        );
        assert_eq!(at(&idx, &g, 4), vec![0.0]);
        assert_eq!(at(&idx, &g, 12), vec![0.0]);
        assert_eq!(at(&idx, &g, 13), vec![1.0]);
        // A file shorter than the index thinks (truncated since): no panic, what is there.
        assert!(idx.consumed_at(Cursor::new(&g[..20]), full - 1).is_ok());
    }
}

/// The full re-parse's planned time of the lines ending at or before `offset`: one pass from
/// the start with `limits`; at the offset the machine marks, then runs on until those moves are
/// committed (or the file ends).
fn elapsed_by_reparse(bytes: &[u8], limits: Limits, offset: u64) -> f64 {
    let mut m = Machine::new(limits);
    let mut lines = LineSplitter::default();
    let mut end = 0u64;
    let mut rest = bytes;
    let mut marked = false;
    let line = |l: &LineSplitter, m: &mut Machine, end: &mut u64, marked: &mut bool| {
        if !*marked && *end + l.len() > offset {
            m.mark();
            *marked = true;
        }
        if let Content::Text(t) = l.content() {
            m.step(&parse_line(t));
        }
        *end += l.len();
    };
    while !rest.is_empty() {
        let (take, eol) = lines.feed(rest);
        rest = &rest[take..];
        if eol {
            line(&lines, &mut m, &mut end, &mut marked);
            lines.clear();
            if let Some(t) = m.marked_elapsed_s() {
                return t;
            }
        }
    }
    if lines.pending() {
        line(&lines, &mut m, &mut end, &mut marked);
    }
    if !marked {
        m.mark();
    }
    m.finish();
    m.marked_elapsed_s().expect("finish commits every move")
}

fn time_at(c: &Case, offset: u64) -> f64 {
    c.index
        .elapsed_at(Cursor::new(&c.bytes), offset)
        .expect("query")
}

proptest! {
    // Each case re-parses from the start (debug build): few cases, on the two smaller files.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn elapsed_time_matches_full_reparse(f in 0.0f64..1.0, which in 0usize..2) {
        let c = [absolute(), relative()][which];
        let offset = (f * c.bytes.len() as f64) as u64;
        let want = elapsed_by_reparse(&c.bytes, Limits::default(), offset);
        prop_assert_eq!(time_at(c, offset), want);
        let left = c.index.remaining_at(Cursor::new(&c.bytes), offset).expect("query");
        prop_assert_eq!(left, (c.index.total_s - want).max(0.0));
    }
}

#[test]
fn time_at_edges_and_checkpoints_and_the_analyzers_total() {
    let c = absolute();
    let len = c.bytes.len() as u64;
    let a = analyze(&c.bytes[..]).expect("analyze");
    let rel = |x: f64, y: f64| (x - y).abs() <= 1e-9 * y.abs().max(1.0);
    assert!(
        rel(c.index.total_s, a.estimated_s),
        "{} vs {}",
        c.index.total_s,
        a.estimated_s
    );
    assert_eq!(time_at(c, 0), 0.0);
    assert_eq!(time_at(c, len), c.index.total_s);
    assert_eq!(
        c.index.remaining_at(Cursor::new(&c.bytes), len).expect("q"),
        0.0
    );
    assert_eq!(
        elapsed_by_reparse(&c.bytes, Limits::default(), len),
        c.index.total_s
    );
    // Just before, at and after a checkpoint: the replay starts from it or from the one before.
    let mut last = 0.0;
    for k in c.index.checkpoints.iter().skip(1).take(4) {
        for o in [k.offset - 1, k.offset, k.offset + 1] {
            let t = time_at(c, o);
            assert_eq!(
                t,
                elapsed_by_reparse(&c.bytes, Limits::default(), o),
                "offset {o}"
            );
            assert!(t >= last, "time only grows with the offset");
            last = t;
        }
    }
    // Built with the slicer's limits (as `analyze_seekable`), totals agree with that analysis.
    let idx =
        ExtrusionIndex::build_seekable(Cursor::new(&c.bytes), Limits::default(), DEFAULT_STRIDE)
            .expect("index");
    let s = farm_protocol::gcode::analyze_seekable(Cursor::new(&c.bytes)).expect("analyze");
    assert!(
        rel(idx.total_s, s.estimated_s),
        "{} vs {}",
        idx.total_s,
        s.estimated_s
    );
    let mid = len / 2;
    assert_eq!(
        idx.elapsed_at(Cursor::new(&c.bytes), mid).expect("q"),
        elapsed_by_reparse(&c.bytes, *idx.limits(), mid)
    );
}

//! Whole-file analysis: streams bytes through the [`Machine`] with bounded memory.
//!
//! Time is the motion planner's (acceleration, junction speeds, machine limits; see
//! [`planner`](super::planner)). Limits come from the file's own commands, else from the
//! slicer's configuration comments, else [`Limits::default`]. PrusaSlicer and SuperSlicer write
//! their configuration at the *end* of the file: [`analyze_seekable`] reads that tail first;
//! plain [`analyze`] (a stream) only sees it when it is too late for the moves.

use super::limits::Limits;
use super::line::parse_line;
use super::lines::{Content, for_each_line};
use super::machine::{Bounds, Machine};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Seek, SeekFrom};

/// How much of a file's end [`analyze_seekable`] reads for configuration comments.
pub const CONFIG_TAIL_BYTES: u64 = 256 * 1024;

pub use super::lines::MAX_LINE_BYTES;

/// What a file will do on a printer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub bytes: u64,
    pub lines: u64,
    /// Filament consumed per tool, mm.
    pub filament_mm: Vec<f64>,
    /// Part of `filament_mm` consumed before the first layer (start G-code purge/prime lines),
    /// per tool, mm. Slicers' "filament used" figures usually exclude it.
    #[serde(default)]
    pub start_filament_mm: Vec<f64>,
    /// Motion and dwell time from the motion planner, s (heat-up not included).
    pub estimated_s: f64,
    /// Planned time per layer, s (layers as the slicer's layer-change comments mark them, else
    /// by extrusion at a new Z); their sum plus `start_s` is `estimated_s`.
    #[serde(default)]
    pub layer_times_s: Vec<f64>,
    /// Time until the end of the first layer, start G-code included (PrusaSlicer's "first
    /// layer printing time"), s.
    #[serde(default)]
    pub first_layer_s: f64,
    /// Time before the first layer starts (start G-code: homing, purge), s.
    #[serde(default)]
    pub start_s: f64,
    /// Estimated heat-up waits (`M109`/`M190`) with a default heater model, s; not in `estimated_s`.
    #[serde(default)]
    pub heat_s: f64,
    pub layers: u32,
    pub bounds: Option<Bounds>,
    /// Lines that carried a G/M/T command.
    pub commands: u64,
    /// Lines longer than [`MAX_LINE_BYTES`] that were skipped.
    pub overlong_lines: u64,
    /// Lines with bytes that are not text (NUL, invalid UTF-8 in a command).
    pub binary_lines: u64,
}

/// Mass of `length_mm` of filament: volume (π·(d/2)²·length) times density (g/cm³).
pub fn filament_grams(length_mm: f64, diameter_mm: f64, density_g_cm3: f64) -> f64 {
    let area_mm2 = std::f64::consts::PI * (diameter_mm / 2.0).powi(2);
    length_mm * area_mm2 / 1000.0 * density_g_cm3
}

/// Reads a whole G-code stream. I/O errors are returned; bad content is counted, not fatal.
pub fn analyze(r: impl BufRead) -> std::io::Result<Analysis> {
    analyze_with(r, Limits::default())
}

/// Like [`analyze`], but first reads the file's last [`CONFIG_TAIL_BYTES`] for the slicer's
/// machine limits (PrusaSlicer, SuperSlicer), then analyses from the current position.
pub fn analyze_seekable<R: BufRead + Seek>(r: R) -> std::io::Result<Analysis> {
    analyze_seekable_with(r, Limits::default())
}

/// [`analyze_seekable`] for a printer whose limits (its firmware profile: motion, retraction,
/// heater rates) are `base`; the slicer's comments and the file's commands override them.
///
/// A `.bgcode` file (magic `GCDE`) is decoded on the fly ([`crate::bgcode::analyze_with`]);
/// its errors come back as `InvalidData` with a [`crate::bgcode::BgcodeError`] inside.
pub fn analyze_seekable_with<R: BufRead + Seek>(
    mut r: R,
    base: Limits,
) -> std::io::Result<Analysis> {
    if crate::bgcode::sniff(&mut r)? {
        return Ok(crate::bgcode::analyze_with(r, base)?);
    }
    let limits = limits_from_tail_with(&mut r, base)?;
    analyze_with(r, limits)
}

/// The machine limits a slicer states in its config block at the end of the file (PrusaSlicer,
/// SuperSlicer), read from the last [`CONFIG_TAIL_BYTES`]; the reader is left where it was.
/// Whoever replays the file line by line (the simulated printer) starts its [`Machine`] with
/// these, so its timing matches the analysis.
pub fn limits_from_tail<R: Read + Seek>(r: &mut R) -> std::io::Result<Limits> {
    limits_from_tail_with(r, Limits::default())
}

/// [`limits_from_tail`] over a printer's own limits `base` (its firmware profile).
pub fn limits_from_tail_with<R: Read + Seek>(r: &mut R, base: Limits) -> std::io::Result<Limits> {
    let start = r.stream_position()?;
    let end = r.seek(SeekFrom::End(0))?;
    let from = end.saturating_sub(CONFIG_TAIL_BYTES).max(start);
    r.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::with_capacity((end - from) as usize);
    (&mut *r).take(end - from).read_to_end(&mut tail)?;
    let mut limits = base;
    limits.apply_config_text(&tail);
    r.seek(SeekFrom::Start(start))?;
    Ok(limits)
}

/// [`analyze`] with these starting machine limits (e.g. a firmware profile); the file's own
/// commands still change them.
pub fn analyze_with(r: impl BufRead, limits: Limits) -> std::io::Result<Analysis> {
    let mut m = Machine::new(limits);
    let mut a = Analysis {
        bytes: 0,
        lines: 0,
        filament_mm: vec![],
        start_filament_mm: vec![],
        estimated_s: 0.0,
        layer_times_s: vec![],
        first_layer_s: 0.0,
        start_s: 0.0,
        heat_s: 0.0,
        layers: 0,
        bounds: None,
        commands: 0,
        overlong_lines: 0,
        binary_lines: 0,
    };
    for_each_line(r, |content, len| finish_line(&mut m, &mut a, content, len))?;
    a.estimated_s += m.finish();
    a.layer_times_s = m.layer_times_s().to_vec();
    a.start_s = m.start_s();
    a.first_layer_s = a.start_s + a.layer_times_s.first().copied().unwrap_or(0.0);
    a.heat_s = m.heat_s();
    a.filament_mm = m.consumed_mm();
    a.start_filament_mm = m.start_consumed_mm();
    a.layers = m.layers();
    a.bounds = m.bounds();
    Ok(a)
}

/// Filament consumed per tool when each layer begins, mm: element `k` is the cumulative
/// total (start G-code included) at the start of layer `k + 1`, layers counted as
/// [`Analysis::layer_times_s`] counts them. A printer that reports only its layer number
/// (Bambu Lab) is billed from this: exact at each layer boundary, and the whole layer in
/// progress is billed only once the next one begins.
pub fn layer_starts_mm(r: impl BufRead, limits: Limits) -> std::io::Result<Vec<Vec<f64>>> {
    let mut m = Machine::new(limits);
    let mut starts: Vec<Vec<f64>> = vec![];
    for_each_line(r, |content, _| {
        if let Content::Text(text) = content {
            let before = m.layer();
            let step = m.step(&parse_line(text));
            let now = m.layer() as usize;
            if now != before as usize && now > 0 {
                // What this line consumed belongs to the new layer.
                let mut at = m.consumed_mm();
                if let Some(t) = at.get_mut(step.tool) {
                    *t -= step.consumed_mm;
                }
                // The first layer comment can renumber the layers seen by Z (a purge line
                // looked like one): keep only the layers before this one.
                starts.truncate(now - 1);
                while starts.len() < now {
                    starts.push(at.clone());
                }
            }
        }
    })?;
    Ok(starts)
}

fn finish_line(m: &mut Machine, a: &mut Analysis, content: Content<'_>, len: u64) {
    a.lines += 1;
    a.bytes += len;
    match content {
        Content::Overlong => a.overlong_lines += 1,
        Content::Binary => a.binary_lines += 1,
        Content::Text(text) => {
            let l = parse_line(text);
            if l.letter.is_some() {
                a.commands += 1;
            }
            a.estimated_s += m.step(&l).duration_s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_starts_hold_the_total_at_each_layer_change() {
        let g = b"M83\nG1 Z5 F600\nG1 E3\n;LAYER_CHANGE\nG1 Z0.2\nG1 X10 E1\n;LAYER_CHANGE\nG1 Z0.4\nG1 X20 E2\n";
        let starts = layer_starts_mm(&g[..], Limits::default()).expect("read");
        let a = analyze(&g[..]).expect("analyze");
        assert_eq!(a.layer_times_s.len(), starts.len());
        assert_eq!(
            starts[0], a.start_filament_mm,
            "layer 1 starts after the start G-code"
        );
        assert_eq!(starts[1], vec![4.0]);
        assert_eq!(a.filament_mm, vec![6.0]);
    }

    #[test]
    fn grams_follow_the_reference_table() {
        // protocols.md §4.3: 75 mm of 1.75 mm PLA (1.24 g/cm³) = 0.18040 cm³ = 0.2237 g.
        assert!((filament_grams(75.0, 1.75, 1.24) - 0.2237).abs() < 1e-4);
        assert!((filament_grams(1000.0, 2.85, 1.24) - 7.9105).abs() < 1e-3);
    }

    #[test]
    fn sums_a_small_file_with_crlf_and_no_final_newline() {
        let g = b"M83\r\nG1 Z0.2 F600\r\nG1 X10 E1 F600\r\nG1 X20 E1";
        let a = analyze(&g[..]).expect("analyze");
        assert_eq!(a.lines, 4);
        assert_eq!(a.bytes, g.len() as u64);
        assert_eq!(a.filament_mm, vec![2.0]);
        assert_eq!(a.layers, 1);
        assert!(a.estimated_s > 2.0);
        assert_eq!(a.layer_times_s.len(), 1);
        let parts = a.start_s + a.layer_times_s.iter().sum::<f64>();
        assert!((parts - a.estimated_s).abs() < 1e-9);
    }

    #[test]
    fn seekable_reads_the_config_at_the_end() {
        let mut g = b"M83\nG1 X100 E5 F6000\nG1 Y100 E5\n".to_vec();
        let plain = analyze(&g[..]).expect("analyze").estimated_s;
        g.extend_from_slice(b"; machine_max_acceleration_x = 100,50\n");
        g.extend_from_slice(b"; machine_max_acceleration_y = 100,50\n");
        let seek = analyze_seekable(std::io::Cursor::new(&g)).expect("analyze");
        assert!(
            seek.estimated_s > plain * 1.5,
            "{} vs {plain}",
            seek.estimated_s
        );
        assert_eq!(seek.bytes, g.len() as u64);
    }

    #[test]
    fn junk_is_counted_not_fatal() {
        let mut g = b"G1 X1 E1\n\x00\x01\x02\n".to_vec();
        g.extend(std::iter::repeat_n(b'X', MAX_LINE_BYTES * 2));
        g.extend_from_slice(b"\nG1 X2 E2\n");
        let a = analyze(&g[..]).expect("analyze");
        assert_eq!(a.binary_lines, 1);
        assert_eq!(a.overlong_lines, 1);
        assert_eq!(a.filament_mm, vec![2.0]);
        assert_eq!(a.lines, 4);
    }
}

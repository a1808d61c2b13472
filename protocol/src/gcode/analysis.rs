//! Whole-file analysis: streams bytes through the [`Machine`] with bounded memory.

use super::line::parse_line;
use super::lines::{Content, LineSplitter};
use super::machine::{Bounds, Machine};
use serde::{Deserialize, Serialize};
use std::io::BufRead;

pub use super::lines::MAX_LINE_BYTES;

/// What a file will do on a printer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub bytes: u64,
    pub lines: u64,
    /// Filament consumed per tool, mm.
    pub filament_mm: Vec<f64>,
    /// Motion and dwell time, s (heat-up not included).
    pub estimated_s: f64,
    pub layers: u32,
    pub bounds: Option<Bounds>,
    /// Lines that carried a G/M/T command.
    pub commands: u64,
    /// Lines longer than [`MAX_LINE_BYTES`] that were skipped.
    pub overlong_lines: u64,
    /// Lines with bytes that are not text (NUL, invalid UTF-8 in a command).
    pub binary_lines: u64,
}

/// Reads a whole G-code stream. I/O errors are returned; bad content is counted, not fatal.
pub fn analyze(mut r: impl BufRead) -> std::io::Result<Analysis> {
    let mut m = Machine::default();
    let mut a = Analysis {
        bytes: 0,
        lines: 0,
        filament_mm: vec![],
        estimated_s: 0.0,
        layers: 0,
        bounds: None,
        commands: 0,
        overlong_lines: 0,
        binary_lines: 0,
    };
    let mut lines = LineSplitter::default();
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let (take, eol) = lines.feed(chunk);
        r.consume(take);
        if eol {
            finish_line(&mut m, &mut a, &lines);
            lines.clear();
        }
    }
    if lines.pending() {
        finish_line(&mut m, &mut a, &lines);
    }
    a.filament_mm = m.consumed_mm();
    a.layers = m.layers();
    a.bounds = m.bounds();
    Ok(a)
}

fn finish_line(m: &mut Machine, a: &mut Analysis, line: &LineSplitter) {
    a.lines += 1;
    a.bytes += line.len();
    match line.content() {
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
    fn sums_a_small_file_with_crlf_and_no_final_newline() {
        let g = b"M83\r\nG1 Z0.2 F600\r\nG1 X10 E1 F600\r\nG1 X20 E1";
        let a = analyze(&g[..]).expect("analyze");
        assert_eq!(a.lines, 4);
        assert_eq!(a.bytes, g.len() as u64);
        assert_eq!(a.filament_mm, vec![2.0]);
        assert_eq!(a.layers, 1);
        assert!(a.estimated_s > 2.0);
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

//! One streamed print: reading the file, and the ledger of lines sent but not yet
//! acknowledged.
//!
//! Material is counted from acknowledged lines only. Each command read from the file is
//! cleaned (`framing::clean_line`), handed to the streamer, and parked in the ledger with its
//! line number; when the firmware acknowledges that number, the raw line goes through the
//! shared [`Machine`] (the analyzer's own model, line by line with the same rules), so the
//! final total is exactly the analyzer's figure and every report before it is what the
//! printer really accepted. Comment-only lines need no acknowledgement and are applied as
//! they are read (they carry no filament).
//!
//! The file is read with plain blocking reads through a 64 KiB buffer: a local file in the
//! page cache or on an SD card answers in microseconds to a few milliseconds, less than one
//! line's round trip to the printer, and it keeps the hot loop free of task hand-offs.

use super::framing::clean_line;
use super::park::Position;
use farm_protocol::gcode::{
    Content, Limits, LineSplitter, Machine, analyze_with, limits_from_tail_with, parse_line,
};
use farm_protocol::messages::JobProgress;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

/// A command read from the file, not yet sent.
#[derive(Debug)]
pub struct NextLine {
    /// Cleaned, ready to frame.
    pub cmd: String,
    raw: Vec<u8>,
    /// File bytes it accounts for (its own and the comment lines before it).
    bytes: u64,
    /// Its line number in the file (1-based), for error messages.
    pub file_line: u64,
}

#[derive(Debug)]
struct Pending {
    n: u64,
    raw: Vec<u8>,
    bytes: u64,
}

/// Where the job is in its lifecycle, as the streamer sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    Printing,
    /// Host-side pause requested: no new job lines; the script runs once all are acknowledged.
    Pausing {
        reason: Option<String>,
    },
    Paused,
    /// Cancel requested: no new job lines; the cancel script runs once all are acknowledged.
    Cancelling,
    /// The whole file is acknowledged; a final `M400` waits for the moves to finish.
    Finishing,
}

/// See the module docs.
pub struct Job {
    pub id: String,
    pub phase: Phase,
    reader: BufReader<std::fs::File>,
    splitter: LineSplitter,
    eof: bool,
    file_line: u64,
    /// Bytes of comment lines read since the last command.
    carry: u64,
    next: Option<NextLine>,
    ledger: VecDeque<Pending>,
    machine: Machine,
    pub position: Position,
    acked_pos: u64,
    size: u64,
    layer_count: u32,
    estimated_s: f64,
    /// The slicer's own remaining time from `M73 R<min>`, when the file has it.
    slicer_eta: Option<(f64, Instant)>,
    started: Instant,
    /// Commands the firmware acknowledged (for logs and the benchmark).
    pub acked_lines: u64,
}

/// Why a job could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the job file {path}: {source}")]
pub struct OpenJobError {
    path: String,
    source: std::io::Error,
}

impl Job {
    /// Analyses the file (size, layers, time estimate) and opens it for streaming. `base`:
    /// the firmware profile's limits (motion, retraction, heater rates), which the slicer's
    /// comments and the file's commands override. Blocking: call from `spawn_blocking`.
    pub fn open(id: String, path: &Path, base: Limits) -> Result<Job, OpenJobError> {
        let err = |source| OpenJobError {
            path: path.display().to_string(),
            source,
        };
        let mut r = BufReader::new(std::fs::File::open(path).map_err(err)?);
        let limits = limits_from_tail_with(&mut r, base).map_err(err)?;
        let analysis = analyze_with(r, limits).map_err(err)?;
        let file = std::fs::File::open(path).map_err(err)?;
        Ok(Job {
            id,
            phase: Phase::Printing,
            reader: BufReader::with_capacity(64 * 1024, file),
            splitter: LineSplitter::default(),
            eof: false,
            file_line: 0,
            carry: 0,
            next: None,
            ledger: VecDeque::with_capacity(8),
            machine: Machine::new(limits),
            position: Position::default(),
            acked_pos: 0,
            size: analysis.bytes,
            layer_count: analysis.layers,
            estimated_s: analysis.estimated_s,
            slicer_eta: None,
            started: Instant::now(),
            acked_lines: 0,
        })
    }

    /// The next command to send (read ahead and kept until [`Job::sent`]), or `None` at the
    /// end of the file.
    pub fn peek(&mut self) -> std::io::Result<Option<&NextLine>> {
        if self.next.is_none() && !self.eof {
            self.next = self.read_command()?;
        }
        Ok(self.next.as_ref())
    }

    /// The peeked command went out as line `n`.
    pub fn sent(&mut self, n: u64) {
        if let Some(l) = self.next.take() {
            self.ledger.push_back(Pending {
                n,
                raw: l.raw,
                bytes: l.bytes,
            });
        }
    }

    fn read_command(&mut self) -> std::io::Result<Option<NextLine>> {
        loop {
            self.splitter.clear();
            let more = loop {
                let chunk = self.reader.fill_buf()?;
                if chunk.is_empty() {
                    break self.splitter.pending();
                }
                let (take, eol) = self.splitter.feed(chunk);
                self.reader.consume(take);
                if eol {
                    break true;
                }
            };
            if !more {
                self.eof = true;
                if self.ledger.is_empty() {
                    self.acked_pos += std::mem::take(&mut self.carry);
                }
                return Ok(None);
            }
            self.file_line += 1;
            self.carry += self.splitter.len();
            let Content::Text(text) = self.splitter.content() else {
                continue; // overlong or binary junk: never sent, as the analyzer skips it
            };
            let line = String::from_utf8_lossy(text);
            let cmd = clean_line(&line);
            // A `*` would end the command early on the firmware's side (a line already framed
            // in the file); the host owns line numbers, so `M110` in a file is not sent.
            let cmd = strip_line_number(cmd.split('*').next().unwrap_or_default()).trim_end();
            if cmd.is_empty() || super::framing::m110_target(cmd).is_some() {
                let raw = text.to_vec();
                apply(
                    &mut self.machine,
                    &mut self.position,
                    &mut self.slicer_eta,
                    &raw,
                );
                if self.ledger.is_empty() && self.next.is_none() {
                    self.acked_pos += std::mem::take(&mut self.carry);
                }
                continue;
            }
            return Ok(Some(NextLine {
                cmd: cmd.to_string(),
                raw: text.to_vec(),
                bytes: std::mem::take(&mut self.carry),
                file_line: self.file_line,
            }));
        }
    }

    fn apply(&mut self, raw: &[u8]) {
        apply(
            &mut self.machine,
            &mut self.position,
            &mut self.slicer_eta,
            raw,
        );
    }

    /// The firmware acknowledged line `n` (and so everything before it).
    pub fn acked(&mut self, n: u64) {
        while self.ledger.front().is_some_and(|p| p.n <= n) {
            if let Some(p) = self.ledger.pop_front() {
                self.apply(&p.raw);
                self.acked_pos += p.bytes;
                self.acked_lines += 1;
            }
        }
        if self.eof && self.ledger.is_empty() {
            self.acked_pos += std::mem::take(&mut self.carry);
        }
    }

    /// Every line of the file is read and acknowledged.
    #[must_use]
    pub fn all_acked(&self) -> bool {
        self.eof && self.next.is_none() && self.ledger.is_empty()
    }

    /// Nothing of the job is waiting for an acknowledgement.
    #[must_use]
    pub fn drained(&self) -> bool {
        self.ledger.is_empty()
    }

    /// Exact cumulative filament per tool from the acknowledged lines.
    #[must_use]
    pub fn extruded_mm(&self) -> Vec<f64> {
        self.machine.consumed_mm()
    }

    #[must_use]
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    #[must_use]
    pub fn progress(&self) -> JobProgress {
        let progress = if self.size == 0 {
            1.0
        } else {
            (self.acked_pos as f64 / self.size as f64).min(1.0)
        };
        let eta_s = match self.slicer_eta {
            Some((s, at)) => (s - at.elapsed().as_secs_f64()).max(0.0),
            None => (self.estimated_s - self.machine.elapsed_s()).max(0.0),
        };
        JobProgress {
            job_id: self.id.clone(),
            progress,
            file_pos: self.acked_pos.min(self.size),
            file_size: self.size,
            layer: Some(self.machine.layers()),
            layer_count: Some(self.layer_count),
            elapsed_s: self.elapsed_s(),
            eta_s: Some(eta_s),
            extruded_mm: self.machine.consumed_mm(),
        }
    }
}

/// One line through the machine model and the position tracker; `M73 R` sets the ETA.
fn apply(
    machine: &mut Machine,
    position: &mut Position,
    eta: &mut Option<(f64, Instant)>,
    raw: &[u8],
) {
    let l = parse_line(raw);
    machine.step(&l);
    position.step(&l);
    if l.is(b'M', 73)
        && let Some(r) = l.get('R').filter(|r| r.is_finite() && *r >= 0.0)
    {
        *eta = Some((r * 60.0, Instant::now()));
    }
}

/// `N12 G1 X1` → `G1 X1`: a line number already in the file would clash with the host's.
fn strip_line_number(cmd: &str) -> &str {
    let Some(rest) = cmd.strip_prefix(['N', 'n']) else {
        return cmd;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    match rest[digits..].strip_prefix(' ') {
        Some(tail) if digits > 0 => tail.trim_start(),
        _ => cmd,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_protocol::gcode::analyze;

    fn job(text: &str) -> (tempfile::TempDir, Job) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("j.gcode");
        std::fs::write(&p, text).expect("write");
        let j = Job::open("j".into(), &p, Limits::default()).expect("open");
        (dir, j)
    }

    #[test]
    fn material_counts_only_acknowledged_lines_and_ends_at_the_analyzers_figure() {
        let text = "; start\nG90\nM83\nG1 X10 E1.5 ; first\n\n;LAYER:1\nG1 X20 E2 (paren)\nN9 G1 X30 E0.5*77\nM110 N4\nG1 X40 E1\n; end";
        let (_d, mut j) = job(text);
        let want = analyze(text.as_bytes()).expect("analyze").filament_mm;
        let mut sent = vec![];
        let mut n = 0;
        while let Some(l) = j.peek().expect("read") {
            sent.push(l.cmd.clone());
            n += 1;
            j.sent(n);
            if n == 3 {
                assert_eq!(j.extruded_mm(), vec![0.0], "nothing acknowledged yet");
                j.acked(2);
                assert_eq!(j.extruded_mm(), vec![0.0], "G90 and M83 carry no filament");
                j.acked(3);
                assert_eq!(j.extruded_mm(), vec![1.5]);
            }
        }
        assert_eq!(
            sent,
            [
                "G90",
                "M83",
                "G1 X10 E1.5",
                "G1 X20 E2",
                "G1 X30 E0.5",
                "G1 X40 E1"
            ],
            "comments, blank lines and M110 are not sent; a number and checksum in the file are cut"
        );
        assert!(!j.all_acked());
        j.acked(n);
        j.acked(n); // a repeated acknowledgement counts nothing twice
        assert!(j.all_acked());
        assert_eq!(j.extruded_mm(), want);
        let p = j.progress();
        assert_eq!((p.file_pos, p.progress), (text.len() as u64, 1.0));
    }

    #[test]
    fn the_slicers_m73_remaining_time_sets_the_eta_once_acknowledged() {
        let (_d, mut j) = job("G90\nM73 P0 R42\nG1 X10 F600\nM73 P50 R7\nG1 X20\n");
        let model = j.progress().eta_s.expect("eta");
        for n in 1..=2 {
            j.peek().expect("read");
            j.sent(n);
        }
        assert_eq!(
            j.progress().eta_s,
            Some(model),
            "M73 sent, not yet acknowledged"
        );
        j.acked(2);
        let eta = j.progress().eta_s.expect("eta");
        assert!((41.0 * 60.0..=42.0 * 60.0).contains(&eta), "{eta}");
        for n in 3..=4 {
            j.peek().expect("read");
            j.sent(n);
        }
        j.acked(4);
        let eta = j.progress().eta_s.expect("eta");
        assert!((6.0 * 60.0..=7.0 * 60.0).contains(&eta), "{eta}");
    }
}

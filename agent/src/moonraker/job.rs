//! Following one farm job on a Klipper printer from the status diffs (pure, no I/O).
//!
//! Klipper keeps the *last* job's `print_stats` (state `complete`, its filename, its
//! `file_position`) until the next job starts, and a new job's first diff can arrive before or
//! without a `state` change. So a [`JobWatch`] trusts only what arrives in diffs *after* the
//! start was accepted:
//!
//! - the job is **confirmed** by a fresh `print_stats.state` of `printing`/`paused`, or a fresh
//!   `virtual_sdcard.file_position`, while `print_stats.filename` names our file;
//! - it ends on a fresh `complete` / `cancelled` / `error`, and also when a file shorter than
//!   Klipper's look-ahead was read to its end before the first poll: then Moonraker never shows
//!   `printing` and the (stale) state stays `complete` (fixture b3).
//!
//! Material is billed from the highest `file_position` seen, through the extrusion index; the
//! shell does that. Klipper's `filament_used` under-counts the end of a job (fixture b2) and
//! `file_position` drops to 0 on cancel (fixture c), hence the high-water mark.

use farm_protocol::messages::Outcome;
use serde_json::Value;

use super::state::{Objects, first_line};

/// What a diff did to the job.
#[derive(Clone, Debug, PartialEq)]
pub enum JobChange {
    Paused,
    Resumed,
    Finished {
        outcome: Outcome,
        reason: Option<String>,
    },
}

/// One job we started; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct JobWatch {
    /// The path we gave `printer.print.start` (relative to the gcodes root).
    pub filename: String,
    pub file_size: u64,
    pub confirmed: bool,
    /// Highest `virtual_sdcard.file_position` reported for this job.
    pub max_pos: u64,
    /// Klipper's reader was active at `max_pos`: then the line starting there is in flight
    /// (see [`JobWatch::in_flight`]).
    pub reading: bool,
    /// Last `print_stats.state` that arrived in a diff since the start.
    pub state: Option<String>,
    pub finished: bool,
}

impl JobWatch {
    pub fn new(filename: &str, file_size: u64) -> Self {
        Self {
            filename: filename.to_string(),
            file_size,
            confirmed: false,
            max_pos: 0,
            reading: false,
            state: None,
            finished: false,
        }
    }

    /// Fraction of the file read, 0..=1.
    pub fn progress(&self) -> f64 {
        if self.file_size == 0 {
            0.0
        } else {
            (self.max_pos as f64 / self.file_size as f64).min(1.0)
        }
    }

    /// Whether the line that starts at `max_pos` counts as consumed. Klipper's reader sets
    /// `file_position` only after a line's command returned, and a move's command returns
    /// only once the move is in the motion queue (it blocks while the queue is full), so
    /// while the reader is active the line at `file_position` is already queued and will be
    /// executed, also on cancel (Klipper finishes the line in hand before it stops). While
    /// paused, the reader has finished its line and `file_position` is exact. This makes the
    /// farm's figure agree with Klipper's own counter at every poll of the captures (c: 10.0 mm
    /// at byte 295, d: 7.0 mm at byte 225).
    pub fn in_flight(&self) -> bool {
        self.reading && self.max_pos < self.file_size
    }

    pub fn paused(&self) -> bool {
        self.state.as_deref() == Some("paused")
    }

    /// Reads one diff, already merged into `objects`.
    pub fn observe(&mut self, diff: &Value, objects: &Objects) -> Vec<JobChange> {
        if self.finished {
            return vec![];
        }
        let ours = objects.str("print_stats", "filename") == Some(self.filename.as_str());
        let fresh_state = diff["print_stats"]["state"].as_str();
        let fresh_pos = diff["virtual_sdcard"]["file_position"].as_u64();
        if !self.confirmed {
            let running = matches!(fresh_state, Some("printing" | "paused"));
            if ours && (running || fresh_pos.is_some()) {
                self.confirmed = true;
            } else {
                return vec![];
            }
        }
        if !ours {
            self.finished = true;
            let other = objects.str("print_stats", "filename").unwrap_or("");
            return vec![JobChange::Finished {
                outcome: Outcome::Failed,
                reason: Some(format!(
                    "another file ({other:?}) was started on the printer while this job ran"
                )),
            }];
        }
        if let Some(p) = fresh_pos
            && p >= self.max_pos
        {
            self.max_pos = p;
            self.reading = objects.get("virtual_sdcard", "is_active") == Some(&Value::Bool(true))
                && objects.print_state() == Some("printing");
        }
        let mut changes = vec![];
        let before = self.state.clone();
        if let Some(s) = fresh_state {
            self.state = Some(s.to_string());
        }
        match (before.as_deref(), fresh_state) {
            (Some("printing"), Some("paused")) | (None, Some("paused")) => {
                changes.push(JobChange::Paused)
            }
            (Some("paused"), Some("printing")) => changes.push(JobChange::Resumed),
            _ => {}
        }
        let end = match fresh_state {
            Some("complete") => Some((Outcome::Completed, None)),
            Some("cancelled") => Some((Outcome::Cancelled, None)),
            Some("error") => {
                let msg = objects.str("print_stats", "message").unwrap_or("");
                Some((
                    Outcome::Failed,
                    Some(format!(
                        "Klipper stopped the print: {}",
                        if msg.is_empty() {
                            "no reason given"
                        } else {
                            first_line(msg)
                        }
                    )),
                ))
            }
            Some("standby") => Some((
                Outcome::Failed,
                Some("Klipper dropped the job (print_stats back to standby)".into()),
            )),
            // Read to the end before the first poll: no `printing` was ever reported.
            None if self.state.is_none()
                && objects.print_state() == Some("complete")
                && objects.get("virtual_sdcard", "is_active") != Some(&Value::Bool(true))
                && self.max_pos >= self.file_size =>
            {
                Some((Outcome::Completed, None))
            }
            _ => None,
        };
        if let Some((outcome, reason)) = end {
            self.finished = true;
            if outcome == Outcome::Completed {
                // Klipper reports `complete` at end of file: every line was read.
                self.max_pos = self.max_pos.max(self.file_size);
                self.reading = false;
            }
            changes.push(JobChange::Finished { outcome, reason });
        }
        changes
    }
}

#[cfg(test)]
mod tests;

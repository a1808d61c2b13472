//! Following one farm job on a Bambu printer through its reports (pure, no I/O), and billing
//! its material by layer.
//!
//! `FINISH` and `FAILED` stay in `gcode_state` after a job until the next one starts, and the
//! X1 repeats its whole state in every push, so the last job's end keeps arriving after we
//! asked for a new one. A [`JobWatch`] therefore trusts only news that arrives after our start
//! and after the printer took it up:
//!
//! - the job is **confirmed** by a `gcode_state` of `PREPARE`/`RUNNING`/`PAUSE` reported after
//!   the start while `subtask_name` or `gcode_file` names our file;
//! - only then does `FINISH` (completed) or `FAILED` end it: cancelled when `print_error` is
//!   the cancel code or we sent `stop`, else failed with the HMS / `print_error` text.
//!
//! **Billing by layer.** Bambu reports no file position, only `layer_num` (the layer being
//! printed). The job file's per-layer totals ([`layer_starts_mm`]) give the filament consumed
//! when each layer begins, start G-code included, so at layer `n` the farm bills what was
//! consumed before layer `n` began: exact at each layer boundary, behind by at most the layer
//! in progress between boundaries (a cancel or failure mid-layer is billed to the last
//! boundary). At completion it bills exactly the analyzer's total. The figure only rises.
//!
//! [`layer_starts_mm`]: farm_protocol::gcode::layer_starts_mm

use farm_protocol::messages::Outcome;
use serde_json::Value;

use super::hms::{self, CANCELLED};
use super::report::Report;

/// What a report did to the job.
#[derive(Clone, Debug, PartialEq)]
pub enum JobChange {
    Confirmed,
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
    /// The file name as the printer reports it (`subtask_name`, or the end of `gcode_file`).
    pub name: String,
    pub confirmed: bool,
    pub finished: bool,
    /// We sent `stop`: a `FAILED` that follows is our cancel.
    pub stop_sent: bool,
    /// Highest `layer_num` reported while our job ran.
    pub max_layer: u32,
    /// Last `gcode_state` reported since the start.
    state: Option<String>,
}

impl JobWatch {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            confirmed: false,
            finished: false,
            stop_sent: false,
            max_layer: 0,
            state: None,
        }
    }

    fn ours(&self, report: &Report) -> bool {
        let subtask = report.get("subtask_name").as_str().unwrap_or("");
        let file = report.get("gcode_file").as_str().unwrap_or("");
        let stem = |s: &str| {
            s.trim_end_matches(".gcode")
                .trim_end_matches(".3mf")
                .trim_end_matches(".gcode")
                .to_string()
        };
        let name = stem(&self.name);
        stem(subtask) == name || file.rsplit('/').next().is_some_and(|f| stem(f) == name)
    }

    /// Reads one `push_status` body (`delta`), already merged into `report`.
    pub fn observe(&mut self, delta: &Value, report: &Report) -> Vec<JobChange> {
        if self.finished {
            return vec![];
        }
        let fresh = delta["gcode_state"].as_str();
        let mut changes = vec![];
        if !self.confirmed {
            if matches!(fresh, Some("PREPARE" | "RUNNING" | "PAUSE")) && self.ours(report) {
                self.confirmed = true;
                changes.push(JobChange::Confirmed);
            } else {
                return vec![];
            }
        }
        let state = report.gcode_state().unwrap_or("");
        if matches!(state, "RUNNING" | "PAUSE")
            && let (Some(n), total) = report.layer()
            && total.is_none_or(|t| n <= t)
        {
            self.max_layer = self.max_layer.max(n);
        }
        let before = self.state.replace(state.to_string());
        match (before.as_deref(), fresh) {
            (Some("PAUSE"), Some("RUNNING")) => changes.push(JobChange::Resumed),
            (b, Some("PAUSE")) if b != Some("PAUSE") => changes.push(JobChange::Paused),
            _ => {}
        }
        let end = match fresh {
            Some("FINISH") => Some((Outcome::Completed, None)),
            Some("FAILED") => {
                let err = report.print_error();
                if err == CANCELLED || (self.stop_sent && err == 0) {
                    Some((Outcome::Cancelled, None))
                } else {
                    let why = report.problems().unwrap_or_else(|| {
                        if err == 0 {
                            "the printer reports the print FAILED without an error code; check its screen".into()
                        } else {
                            hms::print_error_text(err)
                        }
                    });
                    Some((Outcome::Failed, Some(why)))
                }
            }
            // The printer went back to idle without an end (a reboot): the job is lost.
            Some("IDLE") => Some((
                Outcome::Failed,
                Some("the printer went idle without finishing the job (restarted?); check it before reprinting".into()),
            )),
            _ => None,
        };
        if let Some((outcome, reason)) = end {
            self.finished = true;
            changes.push(JobChange::Finished { outcome, reason });
        }
        changes
    }

    /// Filament billed now per tool, mm, never below `had`: the total when layer
    /// `max_layer` began (see the module docs), or `total` once the job completed.
    pub fn billed_mm(
        &self,
        starts: &[Vec<f64>],
        total: &[f64],
        completed: bool,
        had: &[f64],
    ) -> Vec<f64> {
        let now: &[f64] = if completed {
            total
        } else {
            match (self.max_layer as usize).checked_sub(1) {
                Some(i) => starts.get(i).or(starts.last()).map_or(&[], Vec::as_slice),
                None => &[],
            }
        };
        let n = now.len().max(had.len());
        (0..n)
            .map(|i| {
                let a = now.get(i).copied().unwrap_or(0.0);
                a.max(had.get(i).copied().unwrap_or(0.0))
            })
            .collect()
    }
}

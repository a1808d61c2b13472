//! The functional core of the PrusaLink back end: status readings in, the farm's snapshot and
//! events out. No I/O; time is passed in.
//!
//! The [`Tracker`] follows at most one farm job (the file the agent uploaded and started) and
//! decides when it started, paused, resumed and ended, and how far into the file it is billed.
//! It does not compute filament: a job's end is an [`Effect::Finish`] naming a [`MaterialAt`],
//! and the shell turns that into millimetres through the file's extrusion index.
//!
//! Invariants:
//! - A job ends exactly once, and only on news about it seen after our start: PrusaLink's job
//!   id shown before the start (a `FINISHED` left over from the previous print) is never ours;
//!   without job ids only a print seen running after our start is.
//! - The billed position only grows (the highest progress seen): material never goes down.
//! - `printer_error` is sent when the printer enters `Error` or `Disconnected`, and
//!   `printer_ready` when it is idle again, never once per retry.

use super::wire::{Observation, PrinterState};
/// The same shapes as the OctoPrint back end's: whether the host is reachable (a refused
/// login is `Refused`), where a job is billed to, and what the shell must do.
pub use crate::octoprint::state::{Effect, MaterialAt, Reach};
use crate::printer::Snapshot;
use farm_protocol::messages::{Activity, Event, Heater, JobProgress, Outcome};
use std::time::Duration;
use tokio::time::Instant;

/// After PrusaLink accepted the start, how long it may take to show the print before a
/// printer that still looks ready counts as "never started".
pub const START_GRACE: Duration = Duration::from_secs(20);

/// The farm job on the printer.
#[derive(Clone, Debug, PartialEq)]
pub struct FarmJob {
    pub job_id: String,
    /// The file's name on the printer's storage.
    pub file: String,
    pub size: u64,
    pub started: Instant,
    /// PrusaLink's job id shown when we started: not ours.
    pub prior: Option<u64>,
    /// PrusaLink's id of our job, once seen.
    pub printer_job: Option<u64>,
    /// Our print was seen on the printer (printing, paused, held) after the start.
    pub seen_active: bool,
    pub paused: bool,
    /// The printer waits for someone at it; the text said.
    pub attention: Option<String>,
    /// We asked PrusaLink to stop it: a `STOPPED` is a cancel, not someone at the printer.
    pub stopping: bool,
    /// Highest progress seen, percent.
    pub progress: f64,
    pub time_left_s: Option<f64>,
}

impl FarmJob {
    /// The byte offset the progress stands for (bytes × percent, rounded down).
    pub fn offset(&self) -> u64 {
        let at = (self.progress.clamp(0.0, 100.0) / 100.0 * self.size as f64).floor();
        (at as u64).min(self.size)
    }
}

/// What the printer says while it waits for a person.
pub fn attention_text(message: Option<&str>) -> String {
    format!(
        "the printer waits for someone at it: {}; the agent cannot clear this, a person at \
         the printer must",
        message.unwrap_or("see its screen")
    )
}

/// The state of one PrusaLink printer as the farm sees it; see the module docs.
#[derive(Debug)]
pub struct Tracker {
    reach: Reach,
    last: Option<Observation>,
    temps: Vec<Heater>,
    job: Option<FarmJob>,
    /// The activity last settled, to send events on changes only.
    shown: Activity,
    /// A `printer_error` went out and no `printer_ready` since.
    announced: bool,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

impl Tracker {
    pub fn new() -> Self {
        Self {
            reach: Reach::Starting,
            last: None,
            temps: vec![],
            job: None,
            shown: Activity::Disconnected,
            announced: false,
        }
    }

    pub fn job(&self) -> Option<&FarmJob> {
        self.job.as_ref()
    }

    pub fn reach(&self) -> &Reach {
        &self.reach
    }

    /// The farm's activity and the message that goes with it.
    pub fn activity(&self) -> (Activity, Option<String>) {
        match &self.reach {
            Reach::Starting => {
                return (
                    Activity::Disconnected,
                    Some("connecting to PrusaLink".into()),
                );
            }
            Reach::Unreachable(m) => return (Activity::Disconnected, Some(m.clone())),
            Reach::Refused(m) => return (Activity::Error, Some(m.clone())),
            Reach::Up => {}
        }
        let Some(o) = &self.last else {
            return (
                Activity::Disconnected,
                Some("waiting for PrusaLink's first status".into()),
            );
        };
        let ours = self.job.as_ref().is_some_and(|j| j.seen_active);
        match &o.state {
            s if s.ready() && self.job.is_some() => (Activity::Printing, None),
            s if s.ready() => (Activity::Idle, None),
            PrinterState::Printing if self.job.is_some() => (Activity::Printing, None),
            PrinterState::Printing => (
                Activity::Printing,
                Some("printing a file that is not a farm job (started at the printer?)".into()),
            ),
            PrinterState::Busy => (
                Activity::Printing,
                Some(format!(
                    "the printer is busy{}",
                    o.message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                )),
            ),
            PrinterState::Paused if ours || self.job.is_none() => (Activity::Paused, None),
            PrinterState::Paused => (Activity::Printing, None),
            PrinterState::Attention if ours => {
                (Activity::Paused, Some(attention_text(o.message.as_deref())))
            }
            PrinterState::Attention => {
                (Activity::Error, Some(attention_text(o.message.as_deref())))
            }
            PrinterState::Error => (
                Activity::Error,
                Some(format!(
                    "the printer reports an error: {}; clear it on the printer's screen",
                    o.message.as_deref().unwrap_or("no text")
                )),
            ),
            other => (
                Activity::Error,
                Some(format!(
                    "PrusaLink reports the printer state {other:?}, which this agent does not \
                     know; see the printer's screen"
                )),
            ),
        }
    }

    /// Why a new job cannot start now, if it cannot.
    pub fn refuse_start(&self) -> Option<String> {
        if let Some(j) = &self.job {
            return Some(format!("printer busy with job {}", j.job_id));
        }
        match self.activity() {
            (Activity::Idle, _) => None,
            (Activity::Error, m) => Some(format!(
                "printer is in error ({}); recover it first",
                m.unwrap_or_default()
            )),
            (other, m) => Some(format!(
                "printer is not ready ({other:?}{})",
                m.map(|m| format!(": {m}")).unwrap_or_default()
            )),
        }
    }

    /// PrusaLink's id of our job, for pause, resume and stop; why not, if there is none.
    pub fn printer_job(&self) -> Result<u64, String> {
        let j = self.job.as_ref().ok_or("nothing is printing")?;
        j.printer_job.ok_or_else(|| {
            "PrusaLink has not shown this job's id yet (the print is starting); try again in a \
             moment"
                .to_string()
        })
    }

    /// Why a resume cannot be sent now, if it cannot.
    pub fn refuse_resume(&self) -> Option<String> {
        match &self.job {
            None => Some("nothing is printing".into()),
            Some(j) if j.attention.is_some() => Some(attention_text(
                self.last.as_ref().and_then(|o| o.message.as_deref()),
            )),
            Some(j) if j.paused => None,
            Some(_) => Some("the job is not paused".into()),
        }
    }

    /// Whether the agent can reach PrusaLink (or tells why not).
    pub fn set_reach(&mut self, reach: Reach) -> Vec<Effect> {
        let mut out = vec![];
        if reach != Reach::Up {
            // Whatever was known about the printer is stale now.
            self.last = None;
        }
        self.reach = reach;
        self.settle(&mut out);
        out
    }

    /// A job is about to be uploaded as `file`.
    pub fn begin(&mut self, job_id: &str, file: &str, size: u64, now: Instant) {
        let prior = self.last.as_ref().and_then(|o| o.job.as_ref()?.id);
        self.job = Some(FarmJob {
            job_id: job_id.to_string(),
            file: file.to_string(),
            size,
            started: now,
            prior,
            printer_job: None,
            seen_active: false,
            paused: false,
            attention: None,
            stopping: false,
            progress: 0.0,
            time_left_s: None,
        });
    }

    /// The upload failed or PrusaLink did not start the print: forget the job, send nothing
    /// (the runner reports the refusal).
    pub fn abandon(&mut self) {
        self.job = None;
    }

    /// PrusaLink took the file and the start.
    pub fn started(&mut self, now: Instant) -> Vec<Effect> {
        let mut out = vec![];
        if let Some(j) = &mut self.job {
            // The grace for showing the print counts from here, not from the upload's start.
            j.started = now;
            out.push(Effect::Emit(Event::job_started(j.job_id.clone())));
        }
        self.settle(&mut out);
        out
    }

    /// We asked PrusaLink to stop the job.
    pub fn stopping(&mut self) {
        if let Some(j) = &mut self.job {
            j.stopping = true;
        }
    }

    /// Ends the current job now (a stop PrusaLink had no job for).
    pub fn end_job(&mut self, outcome: Outcome, reason: &str, now: Instant) -> Vec<Effect> {
        let mut out = vec![];
        if let Some(j) = &self.job {
            let at = MaterialAt::Offset(j.offset());
            self.finish(outcome, Some(reason.to_string()), at, now, &mut out);
        }
        self.settle(&mut out);
        out
    }

    fn finish(
        &mut self,
        outcome: Outcome,
        reason: Option<String>,
        at: MaterialAt,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        if let Some(j) = self.job.take() {
            out.push(Effect::Finish {
                job_id: j.job_id,
                outcome,
                reason,
                at,
                duration_s: now.saturating_duration_since(j.started).as_secs_f64(),
            });
        }
    }

    /// One reading of `/api/v1/status`.
    pub fn observe(&mut self, obs: Observation, now: Instant) -> Vec<Effect> {
        let mut out = vec![];
        if !obs.temps.is_empty() {
            self.temps = obs.temps.clone();
        }
        if self.job.is_some() {
            self.follow(&obs, now, &mut out);
        }
        self.last = Some(obs);
        self.settle(&mut out);
        out
    }

    /// Our job through one reading: is this news about it, and what does it say?
    fn follow(&mut self, obs: &Observation, now: Instant, out: &mut Vec<Effect>) {
        let Some(j) = self.job.as_mut() else { return };
        let id = obs.job.as_ref().and_then(|s| s.id);
        let news = match (j.printer_job, id) {
            (Some(ours), Some(shown)) => ours == shown,
            (None, Some(shown)) => Some(shown) != j.prior,
            (_, None) => obs.state.has_print() || j.seen_active,
        };
        if !news {
            if j.seen_active || obs.state.ready() {
                let why = if obs.state.has_print() {
                    "another print took the printer (started at the printer?)"
                } else {
                    "the print is gone from the printer"
                };
                self.gone(why, now, out);
            }
            return;
        }
        if id.is_some() {
            j.printer_job = id;
        }
        if let Some(s) = &obs.job {
            if let Some(p) = s.progress.filter(|p| p.is_finite()) {
                j.progress = j.progress.max(p.clamp(0.0, 100.0));
            }
            j.time_left_s = s.time_remaining.or(j.time_left_s);
        }
        match &obs.state {
            PrinterState::Printing | PrinterState::Busy => {
                j.seen_active = true;
                j.attention = None;
                if j.paused {
                    j.paused = false;
                    out.push(Effect::Emit(Event::JobResumed {
                        job_id: j.job_id.clone(),
                    }));
                }
            }
            PrinterState::Paused => {
                j.seen_active = true;
                j.attention = None;
                pause(j, None, out);
            }
            PrinterState::Attention => {
                j.seen_active = true;
                let text = attention_text(obs.message.as_deref());
                if j.attention.as_deref() != Some(text.as_str()) {
                    j.attention = Some(text.clone());
                    out.push(Effect::Emit(Event::FirmwareMessage {
                        message: text.clone(),
                    }));
                    pause(j, Some(text), out);
                }
            }
            PrinterState::Finished => {
                self.finish(Outcome::Completed, None, MaterialAt::Whole, now, out);
            }
            PrinterState::Stopped => {
                let reason = (!j.stopping).then(|| "stopped at the printer".to_string());
                let at = MaterialAt::Offset(j.offset());
                self.finish(Outcome::Cancelled, reason, at, now, out);
            }
            PrinterState::Error => {
                let why = format!(
                    "the printer reported an error: {}",
                    obs.message.as_deref().unwrap_or("no text")
                );
                let at = MaterialAt::Offset(j.offset());
                self.finish(Outcome::Failed, Some(why), at, now, out);
            }
            PrinterState::Idle | PrinterState::Ready => {
                self.gone("the print is gone from the printer", now, out)
            }
            PrinterState::Other(_) => {}
        }
    }

    /// Our print is not (or no longer) on the printer and its end was not seen.
    fn gone(&mut self, why: &str, now: Instant, out: &mut Vec<Effect>) {
        let Some(j) = &self.job else { return };
        if !j.seen_active {
            if now.saturating_duration_since(j.started) < START_GRACE {
                return; // started, not shown yet
            }
            let why = "PrusaLink accepted the start but never showed the print".to_string();
            let at = MaterialAt::Offset(j.offset());
            return self.finish(Outcome::Failed, Some(why), at, now, out);
        }
        if j.progress >= 100.0 {
            return self.finish(Outcome::Completed, None, MaterialAt::Whole, now, out);
        }
        let why = format!(
            "{why} while the agent was not looking (stopped there?); filament billed to the \
             last progress seen ({:.1} %)",
            j.progress
        );
        let at = MaterialAt::Offset(j.offset());
        self.finish(Outcome::Cancelled, Some(why), at, now, out);
    }

    /// Sends `printer_error` / `printer_ready` on changes of the farm activity.
    fn settle(&mut self, out: &mut Vec<Effect>) {
        let (activity, message) = self.activity();
        // Moments on the way up are no news: not started yet, connected but no status yet.
        let passing = matches!(self.reach, Reach::Starting)
            || (self.reach == Reach::Up && self.last.is_none());
        if passing {
            return;
        }
        let fault = matches!(activity, Activity::Error | Activity::Disconnected);
        if fault && (!self.announced || activity != self.shown) {
            // The first fault of an outage, or Error ⇄ Disconnected: a different fault.
            self.announced = true;
            out.push(Effect::Emit(Event::PrinterError {
                message: message.unwrap_or_default(),
            }));
        } else if !fault && self.announced && activity == Activity::Idle {
            self.announced = false;
            out.push(Effect::Emit(Event::PrinterReady {}));
        }
        self.shown = activity;
    }

    /// The back end's snapshot; `extruded_mm` is the filament at the job's offset.
    pub fn snapshot(&self, extruded_mm: Vec<f64>, now: Instant) -> Snapshot {
        let (state, message) = self.activity();
        let job = self.job.as_ref().map(|j| JobProgress {
            job_id: j.job_id.clone(),
            progress: j.progress / 100.0,
            file_pos: j.offset(),
            file_size: j.size,
            layer: None,
            layer_count: None,
            elapsed_s: now.saturating_duration_since(j.started).as_secs_f64(),
            eta_s: j.time_left_s,
            extruded_mm,
        });
        Snapshot {
            state,
            temps: self.temps.clone(),
            job,
            message,
            trays: vec![],
        }
    }
}

fn pause(j: &mut FarmJob, reason: Option<String>, out: &mut Vec<Effect>) {
    if !j.paused {
        j.paused = true;
        out.push(Effect::Emit(Event::JobPaused {
            job_id: j.job_id.clone(),
            reason,
        }));
    }
}

#[cfg(test)]
mod tests;

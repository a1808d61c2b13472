//! The functional core of the OctoPrint back end: OctoPrint's observations and events in,
//! the farm's snapshot and events out. No I/O; time is passed in.
//!
//! The [`Tracker`] follows at most one farm job (the file the agent uploaded) and decides
//! when it started, paused, resumed and ended, and at which file position it ended. It does
//! not compute filament: a job's end is an [`Effect::Finish`] naming a [`MaterialAt`], and the
//! shell turns that into millimetres through the file's extrusion index.
//!
//! Invariants:
//! - A job ends exactly once, from OctoPrint's own event (`PrintDone`, `PrintCancelled`,
//!   `PrintFailed`) while the push channel is live. Observations alone end a job only when
//!   events may have been missed (polling, or the first frame after a reconnect), so a
//!   `current` frame that races ahead of its event can never decide the outcome.
//! - `filepos` only grows: material never goes down.
//! - `printer_error` is sent when the printer enters `Error` or `Disconnected`, and
//!   `printer_ready` when it comes back, never once per retry.

use super::wire::{Observation, OpEvent, Phase};
use crate::printer::Snapshot;
use farm_protocol::messages::{Activity, Event, Heater, JobProgress, Outcome};
use std::time::Duration;
use tokio::time::Instant;

/// After a successful upload, how long OctoPrint may take to show the print before a polled
/// idle state counts as "never started".
pub const START_GRACE: Duration = Duration::from_secs(15);

/// Whether the agent can talk to OctoPrint at all.
#[derive(Clone, Debug, PartialEq)]
pub enum Reach {
    /// Not tried yet.
    Starting,
    Up,
    /// Network error, timeout, OctoPrint down: the message says which and what to check.
    Unreachable(String),
    /// The host refused the login (OctoPrint: 403 to the API key; PrusaLink: a wrong key,
    /// user or password).
    Refused(String),
}

/// Where on the file a job's filament is counted up to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MaterialAt {
    /// The whole file (the analyzer's figure).
    Whole,
    /// The lines that end at or before this byte offset.
    Offset(u64),
}

/// What the shell must do after feeding the tracker.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    Emit(Event),
    /// Send `job_finished` with the filament at `at`.
    Finish {
        job_id: String,
        outcome: Outcome,
        reason: Option<String>,
        at: MaterialAt,
        duration_s: f64,
    },
}

/// The farm job OctoPrint prints.
#[derive(Clone, Debug, PartialEq)]
pub struct FarmJob {
    pub job_id: String,
    /// The file's path in OctoPrint's local storage.
    pub file: String,
    pub size: u64,
    pub started: Instant,
    /// OctoPrint has shown this print (event or state); before that an idle state is expected.
    pub seen_printing: bool,
    pub paused: bool,
    /// Highest file position seen, bytes.
    pub filepos: u64,
    pub time_left_s: Option<f64>,
}

/// The state of one OctoPrint printer as the farm sees it; see the module docs.
#[derive(Debug)]
pub struct Tracker {
    reach: Reach,
    last: Option<Observation>,
    /// An `Error` event's text, shown until OctoPrint is operational again.
    fault: Option<String>,
    temps: Vec<Heater>,
    job: Option<FarmJob>,
    /// The activity (and message) last settled, to send events on changes only.
    shown: (Activity, Option<String>),
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
            fault: None,
            temps: vec![],
            job: None,
            shown: (Activity::Disconnected, None),
            announced: false,
        }
    }

    pub fn job(&self) -> Option<&FarmJob> {
        self.job.as_ref()
    }

    pub fn reach(&self) -> &Reach {
        &self.reach
    }

    /// The phase OctoPrint last reported (None until the first observation).
    pub fn phase(&self) -> Option<Phase> {
        self.last.as_ref().map(|o| o.phase)
    }

    /// The farm's activity and the message that goes with it.
    pub fn activity(&self) -> (Activity, Option<String>) {
        match &self.reach {
            Reach::Starting => {
                return (
                    Activity::Disconnected,
                    Some("connecting to OctoPrint".into()),
                );
            }
            Reach::Unreachable(m) => return (Activity::Disconnected, Some(m.clone())),
            Reach::Refused(m) => return (Activity::Error, Some(m.clone())),
            Reach::Up => {}
        }
        let halted = |e: &str| {
            Some(format!(
                "{e}; fix the printer, then send raw G-code M999 to reconnect it"
            ))
        };
        if let Some(e) = &self.fault {
            return (Activity::Error, halted(e));
        }
        let Some(o) = &self.last else {
            return (
                Activity::Disconnected,
                Some("waiting for OctoPrint's first status".into()),
            );
        };
        match o.phase {
            Phase::Offline => (
                Activity::Disconnected,
                Some(format!(
                    "OctoPrint is not connected to the printer ({}): connect it in OctoPrint, \
                     or send raw G-code M999 to have the agent connect it",
                    o.text
                )),
            ),
            Phase::Connecting => (
                Activity::Disconnected,
                Some(format!(
                    "OctoPrint is connecting to the printer ({})",
                    o.text
                )),
            ),
            Phase::Error => (
                Activity::Error,
                halted(o.error.as_deref().unwrap_or(&o.text)),
            ),
            Phase::Idle if self.job.is_some() => (Activity::Printing, None),
            Phase::Idle => (Activity::Idle, None),
            Phase::Busy => (
                Activity::Printing,
                Some(format!("OctoPrint is busy: {}", o.text)),
            ),
            Phase::Pausing => (
                Activity::Paused,
                Some(
                    "pausing: OctoPrint waits for the current command (e.g. heating) to finish"
                        .into(),
                ),
            ),
            Phase::Paused => (Activity::Paused, None),
            Phase::Printing | Phase::Resuming | Phase::Cancelling | Phase::Finishing => {
                match (&self.job, &o.file) {
                    (None, Some(f)) => (
                        Activity::Printing,
                        Some(format!("printing {f}, which is not a farm job")),
                    ),
                    _ => (Activity::Printing, None),
                }
            }
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

    /// Why a resume cannot be sent now, if it cannot. The job's own paused flag decides, not
    /// the last reported phase: OctoPrint's `PrintPaused` event comes at once, its state
    /// report only at its next (throttled) push, so for a moment the phase still says
    /// `Pausing` of a printer that has paused.
    pub fn refuse_resume(&self) -> Option<String> {
        match &self.job {
            None => Some("nothing is printing".into()),
            Some(j) if j.paused => None,
            Some(_) if self.phase() == Some(Phase::Pausing) => Some(
                "the printer is still pausing (OctoPrint waits for the current command, e.g. \
                 heating, to finish); resume once it shows paused"
                    .into(),
            ),
            Some(_) => Some("the job is not paused".into()),
        }
    }

    /// Whether the agent can reach OctoPrint (or tells why not).
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

    /// A job is about to be uploaded as `file`. Its events may arrive before the upload's answer.
    pub fn begin(&mut self, job_id: &str, file: &str, size: u64, now: Instant) {
        self.job = Some(FarmJob {
            job_id: job_id.to_string(),
            file: file.to_string(),
            size,
            started: now,
            seen_printing: false,
            paused: false,
            filepos: 0,
            time_left_s: None,
        });
    }

    /// The upload failed or OctoPrint did not start the print: forget the job, send nothing
    /// (the runner reports the refusal).
    pub fn abandon(&mut self) {
        self.job = None;
    }

    /// OctoPrint took the file and started printing it, stored under `path`.
    pub fn started(&mut self, path: &str) -> Vec<Effect> {
        let mut out = vec![];
        if let Some(j) = &mut self.job {
            j.file = path.to_string();
            out.push(Effect::Emit(Event::job_started(j.job_id.clone())));
        }
        self.settle(&mut out);
        out
    }

    /// Ends the current job now (emergency stop; a cancel OctoPrint had nothing to cancel for).
    pub fn end_job(&mut self, outcome: Outcome, reason: &str, now: Instant) -> Vec<Effect> {
        let mut out = vec![];
        let at = self.job.as_ref().map(|j| MaterialAt::Offset(j.filepos));
        if let Some(at) = at {
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

    /// The job when `path` is its file, with its position raised to `filepos`.
    fn ours(&mut self, path: &str, filepos: Option<u64>) -> Option<&mut FarmJob> {
        let j = self.job.as_mut().filter(|j| j.file == path)?;
        if let Some(p) = filepos {
            j.filepos = j.filepos.max(p.min(j.size));
        }
        Some(j)
    }

    /// One push event.
    pub fn event(&mut self, ev: OpEvent, now: Instant) -> Vec<Effect> {
        let mut out = vec![];
        match ev {
            OpEvent::PrintStarted { path } => {
                if let Some(j) = self.ours(&path, None) {
                    j.seen_printing = true;
                }
            }
            OpEvent::PrintPaused { path, filepos } => {
                if let Some(j) = self.ours(&path, filepos) {
                    j.seen_printing = true;
                    pause(j, &mut out);
                }
            }
            OpEvent::PrintResumed { path } => {
                if let Some(j) = self.ours(&path, None) {
                    resume(j, &mut out);
                }
            }
            OpEvent::PrintDone { path } => {
                if self.ours(&path, None).is_some() {
                    self.finish(Outcome::Completed, None, MaterialAt::Whole, now, &mut out);
                }
            }
            OpEvent::PrintCancelled { path, filepos } => {
                if let Some(j) = self.ours(&path, filepos) {
                    let at = MaterialAt::Offset(j.filepos);
                    self.finish(Outcome::Cancelled, None, at, now, &mut out);
                }
            }
            OpEvent::PrintFailed {
                path,
                reason,
                error,
                filepos,
            } => {
                if let Some(j) = self.ours(&path, filepos) {
                    let at = MaterialAt::Offset(j.filepos);
                    if reason == "cancelled" {
                        self.finish(Outcome::Cancelled, None, at, now, &mut out);
                    } else {
                        let why = error.unwrap_or_else(|| format!("OctoPrint reported: {reason}"));
                        self.finish(Outcome::Failed, Some(why), at, now, &mut out);
                    }
                }
            }
            OpEvent::Error { error } => self.fault = Some(error),
            OpEvent::Disconnected | OpEvent::Other(_) => {}
        }
        self.settle(&mut out);
        out
    }

    /// One view of OctoPrint's state. `events_reliable` is false when OctoPrint's events for
    /// the time before this observation may have been missed (polling, first frame after a
    /// reconnect): then the observation alone may end the job.
    pub fn observe(
        &mut self,
        obs: Observation,
        events_reliable: bool,
        now: Instant,
    ) -> Vec<Effect> {
        let mut out = vec![];
        if !obs.temps.is_empty() {
            self.temps = obs.temps.clone();
        }
        if obs.phase.operational() {
            self.fault = None;
        }
        let path = obs.file.clone().unwrap_or_default();
        let ours = self.ours(&path, obs.filepos).is_some();
        if let Some(j) = self.job.as_mut() {
            if ours && obs.phase.has_print() {
                j.seen_printing = true;
                j.time_left_s = obs.time_left_s;
                match obs.phase {
                    Phase::Paused => pause(j, &mut out),
                    Phase::Printing | Phase::Resuming | Phase::Finishing => resume(j, &mut out),
                    _ => {}
                }
            } else if !events_reliable {
                self.ended_unseen(&obs, ours, now, &mut out);
            }
        }
        self.last = Some(obs);
        self.settle(&mut out);
        out
    }

    /// The job is not printing in this observation and its end event may have been missed.
    fn ended_unseen(&mut self, obs: &Observation, ours: bool, now: Instant, out: &mut Vec<Effect>) {
        let Some(j) = &self.job else { return };
        let waiting = !j.seen_printing && now.saturating_duration_since(j.started) < START_GRACE;
        if waiting && obs.phase.operational() {
            return; // uploaded, not shown yet
        }
        let at = MaterialAt::Offset(j.filepos);
        let whole = ours && (obs.completion.is_some_and(|c| c >= 100.0) || j.filepos >= j.size);
        if whole {
            self.finish(Outcome::Completed, None, MaterialAt::Whole, now, out);
        } else if !j.seen_printing && obs.phase.operational() {
            let why = "OctoPrint accepted the file but never showed the print".to_string();
            self.finish(Outcome::Failed, Some(why), at, now, out);
        } else if !obs.phase.operational() {
            let why = format!(
                "the print ended while OctoPrint was {}: {}",
                obs.text,
                obs.error.as_deref().unwrap_or("no error text")
            );
            self.finish(Outcome::Failed, Some(why), at, now, out);
        } else {
            let why = "the print stopped on OctoPrint while the agent was not watching \
                       (cancelled there?); filament counted to the last position seen"
                .to_string();
            self.finish(Outcome::Cancelled, Some(why), at, now, out);
        }
    }

    /// Sends `printer_error` / `printer_ready` on changes of the farm activity.
    fn settle(&mut self, out: &mut Vec<Effect>) {
        let (activity, message) = self.activity();
        // Moments on the way up are no news: not started yet, connected but no status yet,
        // OctoPrint opening the serial port.
        let passing = match (&self.reach, &self.last) {
            (Reach::Starting, _) => true,
            (Reach::Up, None) => self.fault.is_none(),
            (Reach::Up, Some(o)) => o.phase == Phase::Connecting && self.fault.is_none(),
            _ => false,
        };
        let fault = matches!(activity, Activity::Error | Activity::Disconnected) && !passing;
        let was = self.shown.0;
        if passing {
            // Keep `shown` as it was, so the next real state is compared with the last one.
            return;
        }
        if fault && !self.announced {
            self.announced = true;
            out.push(Effect::Emit(Event::PrinterError {
                message: message.clone().unwrap_or_default(),
            }));
        } else if fault && activity != was && self.announced {
            // Error ⇄ Disconnected: a different fault, worth its own line.
            out.push(Effect::Emit(Event::PrinterError {
                message: message.clone().unwrap_or_default(),
            }));
        } else if !fault && self.announced && activity == Activity::Idle {
            self.announced = false;
            out.push(Effect::Emit(Event::PrinterReady {}));
        }
        self.shown = (activity, message);
    }

    /// The back end's snapshot; `extruded_mm` is the filament at the job's `filepos`.
    pub fn snapshot(&self, extruded_mm: Vec<f64>, now: Instant) -> Snapshot {
        let (state, message) = self.activity();
        let job = self.job.as_ref().map(|j| JobProgress {
            job_id: j.job_id.clone(),
            progress: if j.size == 0 {
                0.0
            } else {
                (j.filepos as f64 / j.size as f64).min(1.0)
            },
            file_pos: j.filepos,
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

fn pause(j: &mut FarmJob, out: &mut Vec<Effect>) {
    if !j.paused {
        j.paused = true;
        out.push(Effect::Emit(Event::JobPaused {
            job_id: j.job_id.clone(),
            reason: None,
        }));
    }
}

fn resume(j: &mut FarmJob, out: &mut Vec<Effect>) {
    if j.paused {
        j.paused = false;
        out.push(Effect::Emit(Event::JobResumed {
            job_id: j.job_id.clone(),
        }));
    }
}

#[cfg(test)]
mod tests;

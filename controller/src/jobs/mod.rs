//! Jobs and their lifecycle (DESIGN §5), as pure functions over plain data.
//!
//! `queued → assigned → transferring → printing ⇄ paused → completed | failed | cancelled`.
//! [`apply`] is the only place a job's state changes in response to its printer; the API's
//! own transitions (cancel a queued job, assign) are the small functions beside it.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | the job record and its lifecycle (pure) |
//! | [`scheduler`] | hard constraints, queue order, starts now and the timeline (pure) |
//! | [`learning`] | per-printer/material correction of the analyzer's time estimate (pure) |
//! | [`table`] | the farm's jobs in memory; the queued ones kept as the scheduler's input |
//! | [`queue`] | farm writes from operators and the scheduler: jobs, cancel, bed clear, commands, assignment |
//! | [`production`] | farm side of scheduling: settings, scheduler input, latest plan, learnt corrections, queue actions |
//! | [`http`] | `/api/v1/jobs`: upload, list, show, cancel; file download for agents |
//! | [`queue_http`] | `/api/v1/queue`: the timeline and operators' queue actions |

pub mod actions;
pub mod http;
pub mod learning;
pub mod production;
pub mod queue;
pub mod queue_http;
pub mod scheduler;
pub mod table;

use farm_protocol::messages::{Event, Outcome};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Assigned,
    Transferring,
    Printing,
    Paused,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 8] = [
        JobState::Queued,
        JobState::Assigned,
        JobState::Transferring,
        JobState::Printing,
        JobState::Paused,
        JobState::Completed,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Assigned => "assigned",
            JobState::Transferring => "transferring",
            JobState::Printing => "printing",
            JobState::Paused => "paused",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Cancelled
        )
    }

    /// On a printer (assigned to it and not finished).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Assigned | JobState::Transferring | JobState::Printing | JobState::Paused
        )
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|j| j.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|j| j.as_str()).collect();
                format!("unknown job state {s:?}; use one of {}", names.join(", "))
            })
    }
}

/// A queued job's hold: an operator held it (`PATCH /queue/{id}`).
pub const HELD_BY_OPERATOR: &str = "held by an operator";
/// A queued job's hold: its order waits for an operator's release (manual release mode).
pub const AWAITING_RELEASE: &str = "awaiting release";

/// One job: one copy of one G-code file to print once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    /// Store key and queue age order.
    pub number: u64,
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub state: JobState,
    pub printer_id: Option<String>,
    pub priority: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub assigned_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub progress: f64,
    /// Filament consumed on the printer so far, per tool, mm (cumulative, from the agent).
    pub extruded_mm: Vec<f64>,
    /// The analyzer's figure for the whole file, per tool, mm.
    pub filament_mm: Vec<f64>,
    /// The analyzer's motion-time estimate, s.
    pub estimated_s: f64,
    pub failure_reason: Option<String>,
    pub attempts: u32,
    /// Id of the `assign_job` command, resent unchanged until the agent answers (it runs it once).
    #[serde(default)]
    pub assign_command_id: Option<String>,
    /// The order copy this job prints; `None` for jobs queued directly.
    #[serde(default)]
    pub order: Option<OrderRef>,
    /// What must be loaded to print it; `None`: anything.
    #[serde(default)]
    pub material: Option<String>,
    #[serde(default)]
    pub colour: Option<String>,
    #[serde(default)]
    pub nozzle_mm: Option<f64>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub due: Option<OffsetDateTime>,
    /// Only this printer may take it (an operator's pin).
    #[serde(default)]
    pub pinned_printer: Option<String>,
    /// Why it is held out of the schedule: [`HELD_BY_OPERATOR`] or [`AWAITING_RELEASE`].
    #[serde(default)]
    pub hold: Option<String>,
    /// Queue position set by an operator's reorder; default: the job number (age).
    #[serde(default)]
    pub position: Option<i64>,
    /// Extent of the printed part, mm (max − min of the analyzer's bounds).
    #[serde(default)]
    pub size_mm: Option<[f64; 3]>,
    /// Which print of its copy this is: 1, then 2 for the first retry after a failure, …
    #[serde(default = "one")]
    pub attempt: u32,
    /// The failed job this one retries, and the job that retries this one.
    #[serde(default)]
    pub retry_of: Option<String>,
    #[serde(default)]
    pub retried_by: Option<String>,
    /// Filament a failed or cancelled print used without producing a part, g.
    #[serde(default)]
    pub wasted_g: Option<f64>,
    /// For a `.gcode.3mf`: the plate printed (N of `Metadata/plate_<N>.gcode`); `null` otherwise.
    #[serde(default)]
    pub plate: Option<u32>,
    /// On a printer with a filament changer (Bambu's AMS): per tool (index = tool, as in
    /// `extruded_mm`), the changer slot the agent said feeds it (`job_started`), `null` for a
    /// tool no slot feeds; each tool's grams go to the spool in that slot. Empty otherwise,
    /// and reset when the job is assigned again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_trays: Vec<Option<u32>>,
}

fn one() -> u32 {
    1
}

/// Which order, item, copy and part (file of the item) a job prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderRef {
    pub order_id: String,
    /// 0-based indexes into the order's items and the item's files; copies count from 1.
    pub item: u32,
    pub copy: u32,
    pub part: u32,
}

impl Job {
    /// A new queued job for a stored file.
    pub fn new(number: u64, name: String, sha256: String, size: u64, now: OffsetDateTime) -> Job {
        Job {
            id: format!("job-{number}"),
            number,
            name,
            sha256,
            size,
            state: JobState::Queued,
            printer_id: None,
            priority: 0,
            created_at: now,
            assigned_at: None,
            started_at: None,
            finished_at: None,
            progress: 0.0,
            extruded_mm: vec![],
            filament_mm: vec![],
            estimated_s: 0.0,
            failure_reason: None,
            attempts: 0,
            assign_command_id: None,
            order: None,
            material: None,
            colour: None,
            nozzle_mm: None,
            due: None,
            pinned_printer: None,
            hold: None,
            position: None,
            size_mm: None,
            attempt: 1,
            retry_of: None,
            retried_by: None,
            wasted_g: None,
            plate: None,
            tool_trays: vec![],
        }
    }

    /// Queue position: where an operator put it, else its age.
    pub fn queue_position(&self) -> i64 {
        self.position.unwrap_or_else(|| {
            i64::try_from(self.number)
                .unwrap_or(i64::MAX)
                .saturating_mul(1024)
        })
    }
}

/// The next attempt at a failed print: a new job (new id, so the agent and the material ledger
/// see a fresh print) for the same copy, same file and requirements, back in the queue.
pub fn retry(failed: &mut Job, number: u64, now: OffsetDateTime) -> Job {
    let mut j = Job::new(
        number,
        failed.name.clone(),
        failed.sha256.clone(),
        failed.size,
        now,
    );
    j.priority = failed.priority;
    j.filament_mm = failed.filament_mm.clone();
    j.estimated_s = failed.estimated_s;
    j.order = failed.order.clone();
    j.material = failed.material.clone();
    j.colour = failed.colour.clone();
    j.nozzle_mm = failed.nozzle_mm;
    j.due = failed.due;
    j.pinned_printer = failed.pinned_printer.clone();
    j.size_mm = failed.size_mm;
    j.plate = failed.plate;
    // Keep its place in the queue: a retry is not new work and should not wait behind it.
    j.position = Some(failed.queue_position());
    j.attempt = failed.attempt.saturating_add(1);
    j.retry_of = Some(failed.id.clone());
    failed.retried_by = Some(j.id.clone());
    j
}

/// Why an event did not change the job. Not an error: counted and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("job {job} is {state:?}; event {event} does not apply")]
    WrongState {
        job: String,
        state: JobState,
        event: &'static str,
    },
    #[error("job {job} is on printer {on:?}, not {from}")]
    WrongPrinter {
        job: String,
        on: Option<String>,
        from: String,
    },
}

/// What changed, so the caller can update the printer too.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Changed,
    /// The job left the printer; `printed` says whether anything reached the bed.
    Finished {
        outcome: Outcome,
        printed: bool,
    },
}

fn event_name(e: &Event) -> &'static str {
    match e {
        Event::JobAccepted { .. } => "job_accepted",
        Event::JobStarted { .. } => "job_started",
        Event::JobPaused { .. } => "job_paused",
        Event::JobResumed { .. } => "job_resumed",
        Event::Material { .. } => "material",
        Event::JobFinished { .. } => "job_finished",
        _ => "other",
    }
}

/// Merges cumulative per-tool totals: never goes down, so a replay or a reordering cannot lose
/// or double a millimetre.
pub fn merge_material(have: &mut Vec<f64>, new: &[f64]) {
    if have.len() < new.len() {
        have.resize(new.len(), 0.0);
    }
    for (h, n) in have.iter_mut().zip(new) {
        if n.is_finite() && *n > *h {
            *h = *n;
        }
    }
}

/// Applies a job event from printer `from` at `now`.
pub fn apply(
    job: &mut Job,
    from: &str,
    ev: &Event,
    now: OffsetDateTime,
) -> Result<Effect, Refused> {
    use JobState::*;
    if job.printer_id.as_deref() != Some(from) {
        return Err(Refused::WrongPrinter {
            job: job.id.clone(),
            on: job.printer_id.clone(),
            from: from.into(),
        });
    }
    let refuse = |job: &Job| Refused::WrongState {
        job: job.id.clone(),
        state: job.state,
        event: event_name(ev),
    };
    match ev {
        Event::JobAccepted { .. } => match job.state {
            Assigned => job.state = Transferring,
            _ => return Err(refuse(job)),
        },
        Event::JobStarted { tool_trays, .. } => match job.state {
            Assigned | Transferring => {
                job.state = Printing;
                job.started_at = Some(now);
                job.tool_trays = tool_trays.clone();
            }
            _ => return Err(refuse(job)),
        },
        Event::JobPaused { .. } => match job.state {
            Printing => job.state = Paused,
            _ => return Err(refuse(job)),
        },
        Event::JobResumed { .. } => match job.state {
            Paused => job.state = Printing,
            _ => return Err(refuse(job)),
        },
        Event::Material { extruded_mm, .. } => {
            if job.state.is_final() && job.finished_at.is_some() {
                return Err(refuse(job));
            }
            merge_material(&mut job.extruded_mm, extruded_mm);
        }
        Event::JobFinished {
            outcome,
            reason,
            extruded_mm,
            ..
        } => {
            if !job.state.is_active() {
                return Err(refuse(job));
            }
            merge_material(&mut job.extruded_mm, extruded_mm);
            let printed = job.started_at.is_some();
            job.state = match outcome {
                Outcome::Completed => Completed,
                Outcome::Failed => Failed,
                Outcome::Cancelled => Cancelled,
            };
            if *outcome == Outcome::Completed {
                job.progress = 1.0;
            }
            job.failure_reason = reason.clone().filter(|_| *outcome != Outcome::Completed);
            job.finished_at = Some(now);
            return Ok(Effect::Finished {
                outcome: *outcome,
                printed,
            });
        }
        _ => return Err(refuse(job)),
    }
    Ok(Effect::Changed)
}

/// Puts a queued job on a printer.
pub fn assign(job: &mut Job, printer: &str, command_id: String, now: OffsetDateTime) {
    job.state = JobState::Assigned;
    job.printer_id = Some(printer.to_string());
    job.assign_command_id = Some(command_id);
    job.assigned_at = Some(now);
    job.attempts += 1;
    job.tool_trays.clear();
}

/// The agent refused the assignment (busy, offline printer): back to the queue.
pub fn unassign(job: &mut Job, why: &str) {
    if job.state == JobState::Assigned {
        job.state = JobState::Queued;
        job.printer_id = None;
        job.assign_command_id = None;
        job.assigned_at = None;
        job.failure_reason = Some(why.to_string());
    }
}

/// Cancels a job that is not on a printer. On a printer it takes a command instead.
pub fn cancel_queued(job: &mut Job, now: OffsetDateTime) -> Result<(), Refused> {
    if job.state != JobState::Queued {
        return Err(Refused::WrongState {
            job: job.id.clone(),
            state: job.state,
            event: "cancel",
        });
    }
    job.state = JobState::Cancelled;
    job.finished_at = Some(now);
    job.failure_reason = Some("cancelled while queued".into());
    Ok(())
}

/// What must be loaded to print a job queued by upload: the operator's choice of filament.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Needs {
    pub material: Option<String>,
    pub colour: Option<String>,
}

impl Needs {
    /// Blank means any; otherwise 1 to 64 printable characters.
    pub fn new(material: Option<String>, colour: Option<String>) -> Result<Needs, String> {
        let clean = |what: &str, v: Option<String>| -> Result<Option<String>, String> {
            let Some(t) = v.map(|v| v.trim().to_string()).filter(|t| !t.is_empty()) else {
                return Ok(None);
            };
            if t.len() > 64 || t.chars().any(char::is_control) {
                return Err(format!(
                    "{what} must be 1 to 64 printable characters (e.g. PLA), or left out for any"
                ));
            }
            Ok(Some(t))
        };
        Ok(Needs {
            material: clean("material", material)?,
            colour: clean("colour", colour)?,
        })
    }
}

#[cfg(test)]
pub(crate) fn sample(number: u64) -> Job {
    let mut j = Job::new(
        number,
        "cube.gcode".into(),
        "00".repeat(32),
        10,
        OffsetDateTime::UNIX_EPOCH,
    );
    j.filament_mm = vec![100.0];
    j.estimated_s = 60.0;
    j
}

#[cfg(test)]
mod tests;

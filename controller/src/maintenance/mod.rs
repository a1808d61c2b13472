//! Maintenance: per-printer counters and tasks that fall due (pure).
//!
//! Counters (print hours, filament, jobs, failures) are derived from finished jobs, never
//! kept as running totals: a job counts once because it finished once (its `job_finished`
//! event is applied exactly once), and a replay or a restart cannot add it again.
//! A task falls due by hours, filament, jobs or calendar days since it was last done,
//! whichever comes first. A *blocking* task that is due takes its printer out of scheduling
//! until someone completes it.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | counters, tasks, when they fall due (pure) |
//! | [`writes`] | farm writes: tasks and completions; which printers a due task blocks |
//! | [`http`] | `/api/v1/maintenance`: tasks, completions, due list, printer counters |

pub mod http;
pub mod writes;

use crate::jobs::{Job, JobState};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// What a printer has done over some period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Counters {
    pub print_hours: f64,
    /// Filament extruded, m (all tools).
    pub filament_m: f64,
    /// Jobs that reached the printer and ended (completed, failed or cancelled).
    pub jobs: u64,
    pub failures: u64,
}

/// Counters of `printer` from its jobs that finished after `since` (all, if `None`).
/// Jobs that never started printing (refused, download failed) count for nothing.
pub fn counters<'a>(
    jobs: impl IntoIterator<Item = &'a Job>,
    printer: &str,
    since: Option<OffsetDateTime>,
) -> Counters {
    let mut c = Counters::default();
    for j in jobs {
        let (Some(start), Some(end)) = (j.started_at, j.finished_at) else {
            continue;
        };
        if j.printer_id.as_deref() != Some(printer)
            || !j.state.is_final()
            || since.is_some_and(|s| end <= s)
        {
            continue;
        }
        c.print_hours += ((end - start).as_seconds_f64() / 3600.0).max(0.0);
        c.filament_m += j.extruded_mm.iter().filter(|v| v.is_finite()).sum::<f64>() / 1000.0;
        c.jobs += 1;
        if j.state == JobState::Failed {
            c.failures += 1;
        }
    }
    c
}

/// How often a task is due: whichever limit is reached first. At least one is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub print_hours: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filament_m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<f64>,
}

impl Interval {
    pub fn validate(&self) -> Result<(), String> {
        let pos = |what: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x > 0.0) => {
                Err(format!("interval.{what} must be a number > 0 (got {x})"))
            }
            _ => Ok(()),
        };
        pos("print_hours", self.print_hours)?;
        pos("filament_m", self.filament_m)?;
        pos("days", self.days)?;
        if self.jobs == Some(0) {
            return Err("interval.jobs must be at least 1".into());
        }
        if self.print_hours.is_none()
            && self.filament_m.is_none()
            && self.jobs.is_none()
            && self.days.is_none()
        {
            return Err(
                "set at least one of interval.print_hours, interval.filament_m, interval.jobs, interval.days"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Someone did the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Completion {
    pub task_id: String,
    pub printer: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub by: String,
    #[serde(default)]
    pub notes: Option<String>,
}

/// A recurring maintenance task on one printer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// `mt-<number>`.
    pub id: String,
    pub printer: String,
    pub name: String,
    pub interval: Interval,
    /// When due, the printer takes no new jobs until the task is completed.
    pub blocking: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Counting starts here: the last completion, else when the task was added (or the date
    /// the operator gave for the last time it was done).
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    #[serde(default)]
    pub last_done: Option<Completion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Due {
    Ok,
    /// Past the warning fraction of an interval.
    DueSoon,
    /// An interval is used up.
    Overdue,
}

/// A task with where it stands now.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TaskStatus {
    #[serde(flatten)]
    pub task: Task,
    /// Counters since the task was last done.
    pub used: Counters,
    pub days: f64,
    /// The largest fraction of any interval used (1.0 = due).
    pub progress: f64,
    /// Which limit `progress` comes from.
    pub by: &'static str,
    pub due: Due,
    /// True when this task keeps its printer out of scheduling.
    pub blocks_printer: bool,
}

/// Where `task` stands, given its printer's counters since `task.since`.
pub fn status(task: &Task, used: Counters, now: OffsetDateTime, due_soon: f64) -> TaskStatus {
    let days = ((now - task.since).as_seconds_f64() / 86_400.0).max(0.0);
    let i = &task.interval;
    let parts = [
        ("print_hours", i.print_hours.map(|l| used.print_hours / l)),
        ("filament_m", i.filament_m.map(|l| used.filament_m / l)),
        ("jobs", i.jobs.map(|l| used.jobs as f64 / l as f64)),
        ("days", i.days.map(|l| days / l)),
    ];
    let (by, progress) = parts
        .iter()
        .filter_map(|(n, p)| p.map(|p| (*n, p)))
        .fold(("none", 0.0f64), |a, b| if b.1 > a.1 { b } else { a });
    let due = if progress >= 1.0 {
        Due::Overdue
    } else if progress >= due_soon {
        Due::DueSoon
    } else {
        Due::Ok
    };
    TaskStatus {
        task: task.clone(),
        used,
        days,
        progress,
        by,
        due,
        blocks_printer: task.blocking && due == Due::Overdue,
    }
}

/// Records a completion: counting starts again from `at`.
pub fn complete(
    task: &mut Task,
    by: &str,
    notes: Option<String>,
    at: OffsetDateTime,
) -> Completion {
    let c = Completion {
        task_id: task.id.clone(),
        printer: task.printer.clone(),
        at,
        by: by.into(),
        notes,
    };
    task.since = at;
    task.last_done = Some(c.clone());
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn job(n: u64, printer: &str, state: JobState, hours: i64, end_h: i64, mm: f64) -> Job {
        let mut j = crate::jobs::sample(n);
        j.printer_id = Some(printer.into());
        j.state = state;
        j.started_at = Some(T0 + Duration::hours(end_h - hours));
        j.finished_at = Some(T0 + Duration::hours(end_h));
        j.extruded_mm = vec![mm, 500.0];
        j
    }

    fn task(interval: Interval, blocking: bool) -> Task {
        Task {
            id: "mt-1".into(),
            printer: "p-1".into(),
            name: "nozzle".into(),
            interval,
            blocking,
            created_at: T0,
            since: T0,
            last_done: None,
        }
    }

    #[test]
    fn counters_come_from_finished_jobs_of_the_printer() {
        let mut never_started = job(4, "p-1", JobState::Failed, 1, 1, 0.0);
        never_started.started_at = None;
        let mut printing = job(5, "p-1", JobState::Printing, 1, 9, 10.0);
        printing.finished_at = None;
        let jobs = [
            job(1, "p-1", JobState::Completed, 2, 2, 1500.0),
            job(2, "p-1", JobState::Failed, 1, 4, 500.0),
            job(3, "p-2", JobState::Completed, 5, 5, 9000.0),
            never_started,
            printing,
        ];
        let c = counters(&jobs, "p-1", None);
        assert_eq!((c.jobs, c.failures), (2, 1));
        assert!((c.print_hours - 3.0).abs() < 1e-9);
        assert!((c.filament_m - 3.0).abs() < 1e-9);
        let since = counters(&jobs, "p-1", Some(T0 + Duration::hours(3)));
        assert_eq!((since.jobs, since.failures), (1, 1));
    }

    #[test]
    fn a_task_goes_ok_due_soon_overdue_and_back_to_ok_when_done() {
        let mut t = task(
            Interval {
                print_hours: Some(10.0),
                jobs: Some(100),
                ..Interval::default()
            },
            true,
        );
        let used = |h: f64| Counters {
            print_hours: h,
            ..Counters::default()
        };
        let s = status(&t, used(5.0), T0, 0.9);
        assert_eq!(
            (s.due, s.blocks_printer, s.by),
            (Due::Ok, false, "print_hours")
        );
        assert_eq!(status(&t, used(9.5), T0, 0.9).due, Due::DueSoon);
        let s = status(&t, used(10.0), T0, 0.9);
        assert_eq!((s.due, s.blocks_printer), (Due::Overdue, true));
        let c = complete(
            &mut t,
            "ana",
            Some("new nozzle".into()),
            T0 + Duration::hours(20),
        );
        assert_eq!(c.by, "ana");
        assert_eq!(t.since, T0 + Duration::hours(20));
        // The caller now counts from `since`: nothing used yet.
        assert_eq!(
            status(&t, used(0.0), T0 + Duration::hours(20), 0.9).due,
            Due::Ok
        );
    }

    #[test]
    fn calendar_and_warning_only_tasks() {
        let t = task(
            Interval {
                days: Some(30.0),
                ..Interval::default()
            },
            false,
        );
        let s = status(&t, Counters::default(), T0 + Duration::days(31), 0.9);
        assert_eq!(
            (s.due, s.blocks_printer, s.by),
            (Due::Overdue, false, "days")
        );
    }

    #[test]
    fn intervals_must_say_something_sensible() {
        assert!(Interval::default().validate().is_err());
        assert!(
            Interval {
                jobs: Some(0),
                ..Interval::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Interval {
                days: Some(-1.0),
                ..Interval::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Interval {
                filament_m: Some(f64::NAN),
                ..Interval::default()
            }
            .validate()
            .is_err()
        );
        assert!(
            Interval {
                filament_m: Some(1000.0),
                ..Interval::default()
            }
            .validate()
            .is_ok()
        );
    }
}

//! Operators' actions on jobs, decided (pure): what a cancel, a queue change or a requeue
//! does to the job as it is now, or why it is refused. The writes live in `jobs/queue.rs`
//! and `jobs/production.rs`; they stage only what these accept.

use crate::jobs::{self, HELD_BY_OPERATOR, Job, JobState};
use serde::Deserialize;
use time::OffsetDateTime;

/// `PATCH /api/v1/queue/{job}`: an operator's change to a queued job.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    pub priority: Option<i32>,
    /// A printer id to pin to, or `""` to unpin.
    pub pin: Option<String>,
    pub hold: Option<bool>,
    /// Move it just before this queued job (taking its priority and due date).
    pub before: Option<String>,
}

/// Why an action on a job is refused (each says what to do instead).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("no printer {0:?}")]
    NoPrinter(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

/// What cancelling a job means now.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancel {
    /// It is on a printer: send that printer a cancel command (the agent ends the job).
    OnPrinter(String),
    /// It was queued: this is the cancelled job to write.
    Queued(Box<Job>),
    Refused(String),
}

pub fn decide_cancel(job: &Job, now: OffsetDateTime) -> Cancel {
    if job.state.is_active() {
        return Cancel::OnPrinter(job.printer_id.clone().unwrap_or_default());
    }
    let mut j = job.clone();
    match jobs::cancel_queued(&mut j, now) {
        Ok(()) => Cancel::Queued(Box::new(j)),
        Err(e) => Cancel::Refused(e.to_string()),
    }
}

/// The queued job after an operator's change (reorder, pin, hold, priority).
/// `printer_exists` answers for a pin; `queued` finds the job to move before.
pub fn decide_queue_patch<'a>(
    job: &Job,
    p: QueuePatch,
    printer_exists: impl Fn(&str) -> bool,
    queued: impl Fn(&str) -> Option<&'a Job>,
) -> Result<Job, Refusal> {
    if job.state != JobState::Queued {
        return Err(Refusal::Conflict(format!(
            "job {} is {}; only queued jobs can be moved, pinned or held",
            job.id,
            job.state.as_str()
        )));
    }
    let mut j = job.clone();
    if let Some(prio) = p.priority {
        j.priority = prio;
    }
    if let Some(pin) = p.pin {
        if pin.is_empty() {
            j.pinned_printer = None;
        } else if printer_exists(&pin) {
            j.pinned_printer = Some(pin);
        } else {
            return Err(Refusal::NoPrinter(pin));
        }
    }
    if let Some(hold) = p.hold {
        j.hold = hold.then(|| HELD_BY_OPERATOR.to_string());
    }
    if let Some(before) = p.before {
        let target = queued(&before)
            .filter(|t| t.state == JobState::Queued)
            .ok_or_else(|| {
                Refusal::Invalid(format!(
                    "`before` must name a queued job; {before:?} is not one"
                ))
            })?;
        j.priority = target.priority;
        j.due = target.due;
        j.position = Some(target.queue_position() - 1);
    }
    Ok(j)
}

/// Whether a failed or cancelled job may be queued again (whatever the attempt limit);
/// `order_final`: the state of its order if that order is closed.
pub fn decide_requeue(job: &Job, order_final: Option<(&str, &str)>) -> Result<(), Refusal> {
    if !matches!(job.state, JobState::Failed | JobState::Cancelled) || job.retried_by.is_some() {
        return Err(Refusal::Conflict(format!(
            "job {} is {}{}; only a failed or cancelled job that was not retried yet can be requeued",
            job.id,
            job.state.as_str(),
            job.retried_by
                .as_ref()
                .map(|r| format!(" (retried by {r})"))
                .unwrap_or_default()
        )));
    }
    if let Some((order, state)) = order_final {
        return Err(Refusal::Conflict(format!(
            "its order {order} is {state}; nothing more is printed for it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::sample;

    fn t() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    #[test]
    fn cancel_sends_a_command_for_a_running_job_and_cancels_a_queued_one() {
        let mut running = sample(1);
        running.state = JobState::Printing;
        running.printer_id = Some("p-1".into());
        assert_eq!(
            decide_cancel(&running, t()),
            Cancel::OnPrinter("p-1".into())
        );
        let Cancel::Queued(j) = decide_cancel(&sample(2), t()) else {
            panic!("a queued job is cancelled directly");
        };
        assert_eq!(j.state, JobState::Cancelled);
        assert_eq!(j.finished_at, Some(t()));
        assert!(matches!(decide_cancel(&j, t()), Cancel::Refused(_)));
    }

    #[test]
    fn queue_patch_pins_holds_and_moves_before_another_job() {
        let job = sample(3);
        let mut target = sample(1);
        target.priority = 7;
        let printers = |p: &str| p == "p-1";
        let find = |id: &str| (id == target.id).then_some(&target);
        let p = QueuePatch {
            pin: Some("p-1".into()),
            hold: Some(true),
            before: Some(target.id.clone()),
            ..Default::default()
        };
        let j = decide_queue_patch(&job, p, printers, find).expect("accepted");
        assert_eq!(j.pinned_printer.as_deref(), Some("p-1"));
        assert_eq!(j.hold.as_deref(), Some(HELD_BY_OPERATOR));
        assert_eq!(j.priority, 7);
        assert!(j.queue_position() < target.queue_position());

        let unknown = QueuePatch {
            pin: Some("p-9".into()),
            ..Default::default()
        };
        assert_eq!(
            decide_queue_patch(&job, unknown, printers, find),
            Err(Refusal::NoPrinter("p-9".into()))
        );
        let mut done = sample(4);
        done.state = JobState::Completed;
        assert!(matches!(
            decide_queue_patch(&done, QueuePatch::default(), printers, find),
            Err(Refusal::Conflict(_))
        ));
    }

    #[test]
    fn requeue_only_a_failed_job_not_yet_retried_of_an_open_order() {
        let mut j = sample(5);
        assert!(decide_requeue(&j, None).is_err(), "queued");
        j.state = JobState::Failed;
        assert_eq!(decide_requeue(&j, None), Ok(()));
        assert!(decide_requeue(&j, Some(("ord-1", "cancelled"))).is_err());
        j.retried_by = Some("job-6".into());
        assert!(decide_requeue(&j, None).is_err());
    }
}

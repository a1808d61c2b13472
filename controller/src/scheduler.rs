//! Placing queued jobs on printers: a pure function of the farm's state (DESIGN §6).
//!
//! This first scheduler honours the hard constraint that matters today (the printer is idle:
//! online, bed clear, not in maintenance, nothing assigned) and the queue order (priority,
//! then age). Material, nozzle, build volume, power budget and the timeline arrive with the
//! production core; they extend [`plan`], not its callers.

use crate::fleet::PrinterState;
use crate::jobs::{Job, JobState};

/// One placement: start `job_id` on `printer_id` now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub job_id: String,
    pub printer_id: String,
}

/// Which queued jobs start now, and where.
pub fn plan<'a>(
    printers: impl IntoIterator<Item = (&'a str, PrinterState)>,
    jobs: impl IntoIterator<Item = &'a Job>,
) -> Vec<Start> {
    let mut idle: Vec<&str> = printers
        .into_iter()
        .filter(|(_, s)| *s == PrinterState::Idle)
        .map(|(id, _)| id)
        .collect();
    if idle.is_empty() {
        return vec![];
    }
    idle.sort_unstable();
    let mut queued: Vec<&Job> = jobs
        .into_iter()
        .filter(|j| j.state == JobState::Queued)
        .collect();
    queued.sort_by_key(|j| (std::cmp::Reverse(j.priority), j.number));
    queued
        .into_iter()
        .zip(idle)
        .map(|(j, p)| Start {
            job_id: j.id.clone(),
            printer_id: p.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::sample;

    #[test]
    fn idle_printers_take_jobs_by_priority_then_age() {
        let mut a = sample(1);
        let mut b = sample(2);
        b.priority = 5;
        let c = sample(3);
        a.state = JobState::Queued;
        let mut done = sample(4);
        done.state = JobState::Completed;
        let printers = [
            ("p-2", PrinterState::Idle),
            ("p-1", PrinterState::Idle),
            ("p-3", PrinterState::Busy),
            ("p-4", PrinterState::AwaitingClear),
            ("p-5", PrinterState::Offline),
        ];
        let starts = plan(printers, [&a, &b, &c, &done]);
        assert_eq!(
            starts,
            vec![
                Start {
                    job_id: "job-2".into(),
                    printer_id: "p-1".into()
                },
                Start {
                    job_id: "job-1".into(),
                    printer_id: "p-2".into()
                },
            ]
        );
    }

    #[test]
    fn nothing_starts_without_an_idle_printer_or_a_queued_job() {
        assert!(plan([("p", PrinterState::Error)], [&sample(1)]).is_empty());
        let mut j = sample(1);
        j.state = JobState::Printing;
        assert!(plan([("p", PrinterState::Idle)], [&j]).is_empty());
    }
}

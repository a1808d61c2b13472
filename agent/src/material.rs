//! Material tracking: turns the printer's cumulative extrusion into `material` events.
//!
//! Pure (no I/O, time passed in). The controller books `new_total − already_booked` per job
//! and tool, so every report must be cumulative and never lower than an earlier one; this
//! meter enforces that even if a back end's reading wobbles, and the final total in
//! `job_finished` goes through [`MaterialMeter::final_totals`] for the same reason.

use farm_protocol::messages::{Event, JobProgress};
use std::time::{Duration, Instant};

/// How often a `material` event goes out while a job prints (wall time).
pub const REPORT_EVERY: Duration = Duration::from_secs(5);

/// Material reporting for the current job.
#[derive(Debug, Clone)]
pub struct MaterialMeter {
    job_id: Option<String>,
    reported: Vec<f64>,
    last_at: Option<Instant>,
    every: Duration,
}

impl MaterialMeter {
    pub fn new(every: Duration) -> Self {
        Self {
            job_id: None,
            reported: vec![],
            last_at: None,
            every,
        }
    }

    /// Starts metering a job, optionally from totals already reported for it.
    pub fn begin(&mut self, job_id: &str, already_reported: Vec<f64>, now: Instant) {
        self.job_id = Some(job_id.to_string());
        self.reported = already_reported;
        self.last_at = Some(now);
    }

    pub fn end(&mut self) {
        self.job_id = None;
        self.reported.clear();
        self.last_at = None;
    }

    /// The cumulative totals reported so far for the current job.
    pub fn reported(&self) -> &[f64] {
        &self.reported
    }

    /// A `material` event when one is due and something changed.
    pub fn observe(&mut self, progress: &JobProgress, now: Instant) -> Option<Event> {
        let job_id = self.job_id.as_deref()?;
        if progress.job_id != job_id {
            return None;
        }
        if self
            .last_at
            .is_some_and(|t| now.saturating_duration_since(t) < self.every)
        {
            return None;
        }
        let totals = self.final_totals(&progress.extruded_mm);
        if totals == self.reported {
            return None;
        }
        self.reported = totals.clone();
        self.last_at = Some(now);
        Some(Event::Material {
            job_id: job_id.to_string(),
            extruded_mm: totals,
        })
    }

    /// Per tool, the larger of the back end's figure and what was already reported.
    pub fn final_totals(&self, from_printer: &[f64]) -> Vec<f64> {
        let n = from_printer.len().max(self.reported.len());
        (0..n)
            .map(|i| {
                let a = from_printer.get(i).copied().unwrap_or(0.0);
                let b = self.reported.get(i).copied().unwrap_or(0.0);
                a.max(b)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(job: &str, mm: &[f64]) -> JobProgress {
        JobProgress {
            job_id: job.into(),
            progress: 0.5,
            file_pos: 1,
            file_size: 2,
            layer: None,
            layer_count: None,
            elapsed_s: 1.0,
            eta_s: None,
            extruded_mm: mm.to_vec(),
        }
    }

    #[test]
    fn reports_every_interval_only_when_changed_and_never_backwards() {
        let t0 = Instant::now();
        let mut m = MaterialMeter::new(Duration::from_secs(5));
        assert_eq!(m.observe(&progress("j", &[1.0]), t0), None, "no job yet");
        m.begin("j", vec![], t0);
        assert_eq!(
            m.observe(&progress("j", &[1.0]), t0 + Duration::from_secs(1)),
            None
        );
        let e = m.observe(&progress("j", &[2.0]), t0 + Duration::from_secs(5));
        assert_eq!(
            e,
            Some(Event::Material {
                job_id: "j".into(),
                extruded_mm: vec![2.0]
            })
        );
        // Unchanged: nothing. Another job's progress: nothing.
        assert_eq!(
            m.observe(&progress("j", &[2.0]), t0 + Duration::from_secs(11)),
            None
        );
        assert_eq!(
            m.observe(&progress("k", &[9.0]), t0 + Duration::from_secs(20)),
            None
        );
        // A lower reading never lowers the report; a new tool appears.
        let e = m.observe(&progress("j", &[1.5, 3.0]), t0 + Duration::from_secs(20));
        assert_eq!(
            e,
            Some(Event::Material {
                job_id: "j".into(),
                extruded_mm: vec![2.0, 3.0]
            })
        );
        assert_eq!(m.final_totals(&[1.0]), vec![2.0, 3.0]);
        m.end();
        assert_eq!(
            m.observe(&progress("j", &[5.0]), t0 + Duration::from_secs(60)),
            None
        );
    }
}

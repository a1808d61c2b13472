//! The mirror's jobs, with the queue kept the way the scheduler reads it.
//!
//! Every plan used to copy each queued job into the scheduler's input under the farm lock —
//! 30,000 jobs, 10 ms, on every plan. Here the queued jobs' [`JobInput`]s are kept up to date
//! on every insert (the one way a job changes in the mirror), in chunks of [`CHUNK`] job
//! numbers stored side by side and shared with plans by `Arc` (copy-on-write): building a
//! plan's input copies one pointer per chunk, and a change while a plan runs copies only its
//! own chunk. Jobs on printers are indexed too, for the power budget.

use crate::jobs::production::job_input;
use crate::jobs::scheduler::{JobInput, Queue};
use crate::jobs::{Job, JobState};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::Arc;

/// Job numbers per chunk of the queue.
pub const CHUNK: u64 = 256;

/// Queued jobs whose numbers share one `n / CHUNK`, in number order.
#[derive(Default)]
struct Chunk {
    numbers: Vec<u64>,
    jobs: Arc<Vec<JobInput>>,
}

#[derive(Default)]
pub(crate) struct JobTable {
    all: BTreeMap<u64, Job>,
    /// The queued jobs as the scheduler's input, by job number / [`CHUNK`].
    queued: BTreeMap<u64, Chunk>,
    /// Jobs on a printer (assigned, printing, paused).
    active: BTreeSet<u64>,
}

/// Reads go straight to the map; writes go through [`JobTable::insert`].
impl Deref for JobTable {
    type Target = BTreeMap<u64, Job>;
    fn deref(&self) -> &Self::Target {
        &self.all
    }
}

impl JobTable {
    /// Inserts or replaces job `n`, keeping the queue and the active set in step.
    pub fn insert(&mut self, n: u64, j: Job) {
        if j.state == JobState::Queued {
            let input = job_input(&j);
            let chunk = self.queued.entry(n / CHUNK).or_default();
            match chunk.numbers.binary_search(&n) {
                // Unchanged scheduling facts leave the chunk shared (most updates are elsewhere).
                Ok(i) if chunk.jobs[i] == input => {}
                Ok(i) => Arc::make_mut(&mut chunk.jobs)[i] = input,
                Err(i) => {
                    chunk.numbers.insert(i, n);
                    Arc::make_mut(&mut chunk.jobs).insert(i, input);
                }
            }
        } else if let Some(chunk) = self.queued.get_mut(&(n / CHUNK))
            && let Ok(i) = chunk.numbers.binary_search(&n)
        {
            chunk.numbers.remove(i);
            Arc::make_mut(&mut chunk.jobs).remove(i);
            if chunk.numbers.is_empty() {
                self.queued.remove(&(n / CHUNK));
            }
        }
        if j.state.is_active() {
            self.active.insert(n);
        } else {
            self.active.remove(&n);
        }
        self.all.insert(n, j);
    }

    /// Telemetry that changes nothing the scheduler reads: an active job's progress.
    pub fn set_progress(&mut self, n: u64, progress: f64) -> Option<&Job> {
        let j = self.all.get_mut(&n)?;
        j.progress = progress;
        Some(j)
    }

    /// The queued jobs' scheduler input, in job order, sharing the chunks.
    pub fn queued(&self) -> Queue {
        Queue::from_chunks(self.queued.values().map(|c| c.jobs.clone()).collect())
    }

    /// The queued jobs' numbers, in the order of [`JobTable::queued`].
    pub fn queued_numbers(&self) -> Vec<u64> {
        self.queued
            .values()
            .flat_map(|c| c.numbers.iter().copied())
            .collect()
    }

    /// Jobs on printers.
    pub fn active(&self) -> impl Iterator<Item = &Job> {
        self.active.iter().filter_map(|n| self.all.get(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;

    fn job(n: u64) -> Job {
        Job::new(
            n,
            "clip".into(),
            "ab".repeat(32),
            10,
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn the_queue_follows_every_state_change_and_scheduling_fact() {
        let mut t = JobTable::default();
        t.insert(1, job(1));
        t.insert(2, job(2));
        let ids = |t: &JobTable| {
            t.queued()
                .iter()
                .map(|j| j.id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&t), [job(1).id, job(2).id]);
        let mut j = job(1);
        j.priority = 5;
        t.insert(1, j.clone());
        assert_eq!(t.queued().iter().next().map(|q| q.priority), Some(5));
        j.state = JobState::Assigned;
        t.insert(1, j.clone());
        assert_eq!(ids(&t), [job(2).id]);
        assert_eq!(t.active().count(), 1);
        j.state = JobState::Completed;
        t.insert(1, j);
        assert_eq!(t.active().count(), 0);
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_plan_keeps_the_queue_it_was_given_while_the_table_moves_on() {
        let mut t = JobTable::default();
        // Numbers across three chunks, inserted out of order.
        for n in [600, 1, 300, 2, 255, 256] {
            t.insert(n, job(n));
        }
        let numbers = |q: &Queue| q.iter().map(|j| j.position / 1024).collect::<Vec<_>>();
        let before = t.queued();
        assert_eq!(numbers(&before), [1, 2, 255, 256, 300, 600]);
        let mut j = job(256);
        j.state = JobState::Assigned;
        t.insert(256, j);
        t.insert(601, job(601));
        let mut j = job(2);
        j.priority = 9;
        t.insert(2, j);
        assert_eq!(numbers(&t.queued()), [1, 2, 255, 300, 600, 601]);
        assert_eq!(t.queued().iter().nth(1).map(|j| j.priority), Some(9));
        // The earlier snapshot is unchanged: copy-on-write, not shared mutation.
        assert_eq!(numbers(&before), [1, 2, 255, 256, 300, 600]);
        assert_eq!(before.iter().nth(1).map(|j| j.priority), Some(0));
        // The last job of a chunk leaving drops the chunk.
        let mut j = job(300);
        j.state = JobState::Cancelled;
        t.insert(300, j);
        assert_eq!(t.queued.len(), 2);
    }
}

//! Maintenance writes and reads: tasks, completions, counters, and which printers a due
//! blocking task keeps out of scheduling.

use crate::farm::{Farm, Mirror, clean_name, now};
use crate::jobs::Job;
use crate::maintenance::{
    self, Completion, Counters, Interval, MaintenanceError, Task, TaskStatus,
};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;

/// Why a maintenance write did not happen: the rules refused it, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Refused(#[from] MaintenanceError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A task as the API receives it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    pub printer: String,
    pub name: String,
    pub interval: Interval,
    #[serde(default)]
    pub blocking: bool,
    /// When it was last done, if before today (counting starts there). Default: now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_done_at: Option<OffsetDateTime>,
}

fn status_in(m: &Mirror, t: &Task, at: OffsetDateTime, due_soon: f64) -> TaskStatus {
    let used = maintenance::counters(m.jobs.values(), &t.printer, Some(t.since));
    maintenance::status(t, used, at, due_soon)
}

/// The finished jobs of each of `printers`, in one pass over the jobs (the scheduler asks on
/// every run, so this must not scan all jobs once per task).
fn finished_jobs_of<'a>(m: &'a Mirror, printers: &HashSet<&str>) -> HashMap<&'a str, Vec<&'a Job>> {
    let mut out: HashMap<&str, Vec<&Job>> = HashMap::new();
    for j in m.jobs.values().filter(|j| j.finished_at.is_some()) {
        if let Some(p) = j.printer_id.as_deref().filter(|p| printers.contains(p)) {
            out.entry(p).or_default().push(j);
        }
    }
    out
}

/// Tasks with their status, counting each printer's jobs once.
fn statuses<'a>(
    m: &Mirror,
    tasks: impl IntoIterator<Item = &'a Task>,
    at: OffsetDateTime,
    due_soon: f64,
) -> Vec<TaskStatus> {
    let tasks: Vec<&Task> = tasks.into_iter().collect();
    let printers: HashSet<&str> = tasks.iter().map(|t| t.printer.as_str()).collect();
    let jobs = finished_jobs_of(m, &printers);
    tasks
        .into_iter()
        .map(|t| {
            let of = jobs
                .get(t.printer.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let used = maintenance::counters(of.iter().copied(), &t.printer, Some(t.since));
            maintenance::status(t, used, at, due_soon)
        })
        .collect()
}

/// Printers that an overdue blocking task keeps out of scheduling.
pub(crate) fn blocked_printers(m: &Mirror) -> HashSet<String> {
    let blocking = m.tasks.values().filter(|task| task.blocking);
    if m.tasks.values().all(|t| !t.blocking) {
        return HashSet::new(); // the common case costs nothing
    }
    statuses(m, blocking, now(), 1.0)
        .into_iter()
        .filter(|s| s.blocks_printer)
        .map(|s| s.task.printer)
        .collect()
}

fn no_task(id: &str) -> MaintenanceError {
    MaintenanceError::NotFound(format!(
        "no maintenance task {id:?}; list them with GET /api/v1/maintenance/tasks"
    ))
}

impl Farm {
    /// True when a due blocking task keeps `printer` from taking new jobs (scheduler seam).
    pub fn maintenance_blocked(&self, printer: &str) -> bool {
        blocked_printers(&self.lock()).contains(printer)
    }

    /// What `printer` has done since it was enrolled.
    pub fn printer_counters(&self, printer: &str) -> Option<Counters> {
        let m = self.lock();
        m.printers
            .contains_key(printer)
            .then(|| maintenance::counters(m.jobs.values(), printer, None))
    }

    /// Tasks with their status, optionally of one printer, most urgent first.
    pub fn tasks(&self, printer: Option<&str>, due_soon: f64) -> Vec<TaskStatus> {
        let m = self.lock();
        let t = now();
        let mut out = statuses(
            &m,
            m.tasks
                .values()
                .filter(|task| printer.is_none_or(|p| task.printer == p)),
            t,
            due_soon,
        );
        out.sort_by(|a, b| b.progress.total_cmp(&a.progress));
        out
    }

    pub fn task(&self, id: &str, due_soon: f64) -> Option<TaskStatus> {
        let m = self.lock();
        m.tasks
            .get(id)
            .map(|task| status_in(&m, task, now(), due_soon))
    }

    pub fn task_log(&self, id: &str, limit: usize) -> Result<Vec<Completion>, WriteError> {
        if !self.lock().tasks.contains_key(id) {
            return Err(no_task(id).into());
        }
        Ok(self.store.maintenance_log(id, limit)?)
    }

    pub async fn add_task(&self, n: NewTask, due_soon: f64) -> Result<TaskStatus, WriteError> {
        let name = clean_name(&n.name).map_err(|e| MaintenanceError::Invalid(e.to_string()))?;
        n.interval.validate().map_err(MaintenanceError::Invalid)?;
        let t = now();
        if n.last_done_at.is_some_and(|d| d > t) {
            return Err(MaintenanceError::Invalid(
                "last_done_at is in the future; give the date it was last done, or leave it out"
                    .into(),
            )
            .into());
        }
        self.write(move |_, s| {
        if !s.m.printers.contains_key(&n.printer) {
            return Err(MaintenanceError::NotFound(format!(
                "no printer {:?}; list printers with GET /api/v1/printers",
                n.printer
            ))
            .into());
        }
        let task = s.put(|_, tx| {
            let number = tx.next_task_number()?;
            let task = Task {
                id: format!("mt-{number}"),
                printer: n.printer.clone(),
                name,
                interval: n.interval.clone(),
                blocking: n.blocking,
                created_at: t,
                since: n.last_done_at.unwrap_or(t),
                last_done: None,
            };
            tx.put_task(&task)?;
            Ok::<_, WriteError>(task)
        });
        s.m.tasks.insert(task.id.clone(), task.clone());
        let st = status_in(s.m, &task, t, due_soon);
        if st.blocks_printer {
            tracing::info!(printer = %task.printer, task = %task.id, "blocking maintenance due");
        }
        Ok(st)
        })
        .await
    }

    /// Someone did the task: logged with who, when and notes; counting starts again.
    pub async fn complete_task(
        &self,
        id: &str,
        by: &str,
        notes: Option<String>,
        due_soon: f64,
    ) -> Result<TaskStatus, WriteError> {
        let notes = notes
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        if notes.as_ref().is_some_and(|n| n.len() > 2000) {
            return Err(MaintenanceError::Invalid("notes are limited to 2000 bytes".into()).into());
        }
        let (id, by) = (id.to_string(), by.to_string());
        self.write(move |farm, s| {
            let mut task = s.m.tasks.get(&id).cloned().ok_or_else(|| no_task(&id))?;
            let t = now();
            let c = maintenance::complete(&mut task, &by, notes, t);
            s.put(|_, tx| {
                tx.put_task(&task)?;
                tx.add_completion(&c)
            });
            s.m.tasks.insert(task.id.clone(), task.clone());
            // The printer may be free for work again.
            farm.kick.notify_one();
            Ok(status_in(s.m, &task, t, due_soon))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_protocol::messages::Activity;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_due_blocking_task_keeps_the_printer_out_of_scheduling_until_completed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(&dir.path().join("farm.redb")).expect("store");
        let topics = farm_protocol::Topics::new("farm").expect("topics");
        let (farm, _rx) = Farm::load(store, topics, "http://x".into()).expect("load");
        farm.add_printer("p-1", None, true).await.expect("printer");
        let long_ago = OffsetDateTime::UNIX_EPOCH;
        let new = |blocking| NewTask {
            printer: "p-1".into(),
            name: "belts".into(),
            interval: Interval {
                days: Some(30.0),
                ..Interval::default()
            },
            blocking,
            last_done_at: Some(long_ago),
        };
        // A warning-only task that is due does not block.
        let warn = farm.add_task(new(false), 0.9).await.expect("task");
        assert_eq!(
            (warn.due, warn.blocks_printer),
            (maintenance::Due::Overdue, false)
        );
        assert!(!farm.maintenance_blocked("p-1"));
        let t = farm.add_task(new(true), 0.9).await.expect("task");
        assert!(t.blocks_printer && farm.maintenance_blocked("p-1"));

        let analysis = farm_protocol::gcode::analyze(&b"G1 X1 E1\n"[..]).expect("analysis");
        let stored = crate::catalog::files::Stored {
            sha256: "cd".repeat(32),
            size: 9,
            analysis,
            plates: vec![],
        };
        farm.add_jobs("part", &stored, 1, 0).await.expect("job");
        farm.apply_status("p-1", crate::printers::fleet::status(Activity::Idle));
        assert_eq!(
            farm.schedule().await.expect("schedule"),
            0,
            "blocked: nothing starts"
        );

        let done = farm
            .complete_task(&t.task.id, "ana", Some("new belts".into()), 0.9)
            .await
            .expect("complete");
        assert_eq!(done.due, maintenance::Due::Ok);
        assert_eq!(farm.task_log(&t.task.id, 10).expect("log")[0].by, "ana");
        assert!(!farm.maintenance_blocked("p-1"));
        assert_eq!(farm.schedule().await.expect("schedule"), 1, "free again");
        assert!(matches!(
            farm.complete_task("mt-99", "ana", None, 0.9).await,
            Err(WriteError::Refused(MaintenanceError::NotFound(_)))
        ));
    }
}

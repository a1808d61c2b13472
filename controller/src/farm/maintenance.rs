//! Maintenance writes and reads: tasks, completions, counters, and which printers a due
//! blocking task keeps out of scheduling.

use super::{Farm, Mirror, clean_name, now};
use crate::maintenance::{
    self, Completion, Counters, Interval, MaintenanceError, Task, TaskStatus,
};
use serde::Deserialize;
use std::collections::HashSet;
use time::OffsetDateTime;

/// A task as the API receives it.
#[derive(Debug, Clone, Deserialize)]
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

/// Printers that an overdue blocking task keeps out of scheduling.
pub(super) fn blocked_printers(m: &Mirror) -> HashSet<String> {
    let t = now();
    m.tasks
        .values()
        .filter(|task| task.blocking)
        .filter(|task| status_in(m, task, t, 1.0).blocks_printer)
        .map(|task| task.printer.clone())
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
        let mut out: Vec<TaskStatus> = m
            .tasks
            .values()
            .filter(|task| printer.is_none_or(|p| task.printer == p))
            .map(|task| status_in(&m, task, t, due_soon))
            .collect();
        out.sort_by(|a, b| b.progress.total_cmp(&a.progress));
        out
    }

    pub fn task(&self, id: &str, due_soon: f64) -> Option<TaskStatus> {
        let m = self.lock();
        m.tasks
            .get(id)
            .map(|task| status_in(&m, task, now(), due_soon))
    }

    pub fn task_log(&self, id: &str, limit: usize) -> Result<Vec<Completion>, MaintenanceError> {
        if !self.lock().tasks.contains_key(id) {
            return Err(no_task(id));
        }
        Ok(self.store.maintenance_log(id, limit)?)
    }

    pub fn add_task(&self, n: NewTask, due_soon: f64) -> Result<TaskStatus, MaintenanceError> {
        let name = clean_name(&n.name).map_err(|e| MaintenanceError::Invalid(e.to_string()))?;
        n.interval.validate().map_err(MaintenanceError::Invalid)?;
        let t = now();
        if n.last_done_at.is_some_and(|d| d > t) {
            return Err(MaintenanceError::Invalid(
                "last_done_at is in the future; give the date it was last done, or leave it out"
                    .into(),
            ));
        }
        let mut m = self.lock();
        if !m.printers.contains_key(&n.printer) {
            return Err(MaintenanceError::NotFound(format!(
                "no printer {:?}; list printers with GET /api/v1/printers",
                n.printer
            )));
        }
        let task = self.store.write(|tx| {
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
            Ok::<_, MaintenanceError>(task)
        })?;
        m.tasks.insert(task.id.clone(), task.clone());
        let s = status_in(&m, &task, t, due_soon);
        drop(m);
        if s.blocks_printer {
            tracing::info!(printer = %task.printer, task = %task.id, "blocking maintenance due");
        }
        Ok(s)
    }

    /// Someone did the task: logged with who, when and notes; counting starts again.
    pub fn complete_task(
        &self,
        id: &str,
        by: &str,
        notes: Option<String>,
        due_soon: f64,
    ) -> Result<TaskStatus, MaintenanceError> {
        let notes = notes
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        if notes.as_ref().is_some_and(|n| n.len() > 2000) {
            return Err(MaintenanceError::Invalid(
                "notes are limited to 2000 bytes".into(),
            ));
        }
        let mut m = self.lock();
        let mut task = m.tasks.get(id).cloned().ok_or_else(|| no_task(id))?;
        let t = now();
        let c = maintenance::complete(&mut task, by, notes, t);
        self.store.write(|tx| {
            tx.put_task(&task)?;
            tx.add_completion(&c)
        })?;
        m.tasks.insert(task.id.clone(), task.clone());
        let s = status_in(&m, &task, t, due_soon);
        drop(m);
        // The printer may be free for work again.
        self.kick.notify_one();
        Ok(s)
    }
}

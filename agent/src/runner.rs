//! The job runner: executes the controller's commands (each command id at most once), takes
//! a job through fetch → verify → printer, turns printer events into durable outbox events,
//! and meters material while a job prints.
//!
//! Rules it keeps:
//! - Every command ends with exactly one `command_result`, committed in the same transaction
//!   that marks its id executed. A repeated command id is ignored (logged): its result is
//!   already in the outbox, or already applied by the controller, so re-sending it would only
//!   be a duplicate.
//! - An accepted job is stored (same transaction as `job_accepted`) until its
//!   `job_finished`; if the agent restarts in between, start-up reports it failed, because a
//!   simulated print cannot survive a restart.
//! - Reported material never goes down for a job ([`MaterialMeter`]).

use crate::config::{Config, STATUS_INTERVAL_MS};
use crate::fetch::{FetchError, Fetcher};
use crate::material::{MaterialMeter, REPORT_EVERY};
use crate::outbox::{Batch, CurrentJob, JobChange, Outbox, OutboxError};
use crate::printable;
use crate::printer::{Printer, PrinterCommand};
use crate::status::Transfer;
use farm_protocol::Envelope;
use farm_protocol::messages::{Activity, Command, Event, JobAssignment, Outcome};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::Instant;

/// Longest message text put into an event; keeps every event far below the payload limit.
const MAX_TEXT: usize = 2000;

fn clip(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn now_unix() -> f64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

/// The job the agent holds.
struct Job {
    record: CurrentJob,
    assignment: JobAssignment,
}

/// What executing a command did, before it is committed.
struct Executed {
    ok: bool,
    message: String,
    /// Events after the `command_result`.
    events: Vec<Event>,
    job: JobChange,
    /// Start fetching this job once the acceptance is durable.
    fetch: Option<JobAssignment>,
}

impl Executed {
    fn reply(ok: bool, message: impl Into<String>) -> Self {
        Self {
            ok,
            message: message.into(),
            events: vec![],
            job: JobChange::Keep,
            fetch: None,
        }
    }

    fn from_printer(r: Result<String, String>) -> Self {
        match r {
            Ok(m) => Self::reply(true, m),
            Err(m) => Self::reply(false, m),
        }
    }
}

type FetchTask = JoinHandle<Result<PathBuf, FetchError>>;

async fn join_fetch(
    task: &mut Option<FetchTask>,
) -> Result<Result<PathBuf, FetchError>, JoinError> {
    match task {
        Some(h) => h.await,
        None => std::future::pending().await,
    }
}

/// Channels the runner drives.
pub struct RunnerIo {
    pub commands: mpsc::UnboundedReceiver<Envelope<Command>>,
    pub interval_ms: watch::Sender<u32>,
    pub transfer: watch::Sender<Option<Transfer>>,
}

pub struct Runner {
    config: Config,
    outbox: Outbox,
    printer: Printer,
    fetcher: Fetcher,
    io: RunnerIo,
    job: Option<Job>,
    fetch_task: Option<FetchTask>,
    meter: MaterialMeter,
}

impl Runner {
    pub fn new(
        config: Config,
        outbox: Outbox,
        printer: Printer,
        fetcher: Fetcher,
        io: RunnerIo,
    ) -> Self {
        Self {
            config,
            outbox,
            printer,
            fetcher,
            io,
            job: None,
            fetch_task: None,
            meter: MaterialMeter::new(REPORT_EVERY),
        }
    }

    /// Runs until `stop` fires. Returns an error only if start-up cannot write the outbox.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), OutboxError> {
        self.startup().await?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = crate::stopped(&mut stop) => break,
                cmd = self.io.commands.recv() => match cmd {
                    Some(env) => self.on_command(env).await,
                    None => break,
                },
                Some(ev) = self.printer.events.recv() => self.on_printer_event(ev).await,
                res = join_fetch(&mut self.fetch_task) => {
                    self.fetch_task = None;
                    self.on_fetched(res).await;
                }
                _ = tick.tick() => self.meter_tick().await,
            }
        }
        if let Some(t) = self.fetch_task.take() {
            t.abort();
        }
        self.printer.stop().await;
        Ok(())
    }

    async fn commit(&self, batch: Batch) {
        if let Err(e) = self.outbox.commit(batch).await {
            tracing::error!(error = %e, "could not store events; they are lost");
        }
    }

    /// `agent_started`, and the end of a job a previous run left unfinished.
    async fn startup(&mut self) -> Result<(), OutboxError> {
        let mut batch = Batch::event(Event::AgentStarted {
            version: env!("CARGO_PKG_VERSION").into(),
            backend: self.printer.backend.into(),
        });
        if let Some(old) = self.outbox.current_job().await? {
            let during = if old.printing {
                "the print"
            } else {
                "the file transfer"
            };
            tracing::warn!(job = %old.job_id, "the agent restarted during {during}; reporting the job failed");
            batch.events.push(Event::JobFinished {
                job_id: old.job_id.clone(),
                outcome: Outcome::Failed,
                reason: Some(format!(
                    "agent restarted during {during}; the {} back end cannot resume a job after a restart",
                    self.printer.backend
                )),
                extruded_mm: old.extruded_mm.clone(),
                duration_s: (now_unix() - old.accepted_unix).max(0.0),
            });
            batch.job = JobChange::Clear;
        }
        self.outbox.commit(batch).await?;
        tracing::info!(backend = self.printer.backend, "agent started");
        Ok(())
    }

    async fn on_command(&mut self, env: Envelope<Command>) {
        let Some(command_id) = env.command_id else {
            return;
        };
        match self.outbox.command_seen(command_id.clone()).await {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(command_id, "command already executed; ignoring the repeat");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, command_id, "cannot check the command id; not executing it");
                return;
            }
        }
        tracing::info!(command_id, kind = kind_of(&env.body), "executing command");
        let done = self.execute(env.body).await;
        let message = clip(done.message);
        if !done.ok {
            tracing::warn!(command_id, message, "command refused");
        }
        let result = serde_json::json!({ "ok": done.ok, "message": message }).to_string();
        let mut events = vec![Event::CommandResult {
            command_id: command_id.clone(),
            ok: done.ok,
            message,
        }];
        events.extend(done.events);
        self.commit(Batch {
            events,
            command: Some((command_id, result)),
            job: done.job,
        })
        .await;
        if let Some(a) = done.fetch {
            self.start_fetch(a);
        }
    }

    async fn execute(&mut self, cmd: Command) -> Executed {
        match cmd {
            Command::AssignJob(a) => self.assign(a),
            Command::Pause { job_id } => match self.check_job(&job_id, "pause") {
                Err(e) => Executed::reply(false, e),
                Ok(()) => Executed::from_printer(self.printer.send(PrinterCommand::Pause).await),
            },
            Command::Resume { job_id } => match self.check_job(&job_id, "resume") {
                Err(e) => Executed::reply(false, e),
                Ok(()) => Executed::from_printer(self.printer.send(PrinterCommand::Resume).await),
            },
            Command::Cancel { job_id } => {
                if self.fetch_task.is_some() && self.holds(&job_id) {
                    return self
                        .drop_transfer(Outcome::Cancelled, "cancelled during the file transfer");
                }
                match self.check_job(&job_id, "cancel") {
                    Err(e) => Executed::reply(false, e),
                    Ok(()) => {
                        Executed::from_printer(self.printer.send(PrinterCommand::Cancel).await)
                    }
                }
            }
            Command::EmergencyStop {} => {
                let mut done = if self.fetch_task.is_some() {
                    self.drop_transfer(Outcome::Failed, "emergency stop")
                } else {
                    Executed::reply(true, "")
                };
                let r = self.printer.send(PrinterCommand::EmergencyStop).await;
                done.ok = r.is_ok();
                done.message = r.unwrap_or_else(|e| e);
                done
            }
            Command::SetTelemetry { interval_ms } => {
                let v = interval_ms.clamp(*STATUS_INTERVAL_MS.start(), *STATUS_INTERVAL_MS.end());
                self.io.interval_ms.send_replace(v);
                let note = if v == interval_ms {
                    String::new()
                } else {
                    format!(" (clamped from {interval_ms})")
                };
                Executed::reply(true, format!("status every {v} ms{note}"))
            }
            Command::RawGcode { lines } => {
                Executed::from_printer(self.printer.send(PrinterCommand::Gcode(lines)).await)
            }
            Command::ReloadConfig {} => self.reload().await,
        }
    }

    fn holds(&self, job_id: &str) -> bool {
        self.job.as_ref().is_some_and(|j| j.record.job_id == job_id)
    }

    /// Pause/resume/cancel apply only to the job on the printer.
    fn check_job(&self, job_id: &str, what: &str) -> Result<(), String> {
        match &self.job {
            None => Err(format!(
                "cannot {what} job {job_id}: this printer has no job"
            )),
            Some(j) if j.record.job_id != job_id => Err(format!(
                "cannot {what} job {job_id}: this printer's job is {}",
                j.record.job_id
            )),
            Some(_) if self.fetch_task.is_some() => Err(format!(
                "cannot {what} job {job_id}: its file is still being transferred"
            )),
            Some(_) => Ok(()),
        }
    }

    fn assign(&mut self, a: JobAssignment) -> Executed {
        if let Some(j) = &self.job {
            return Executed::reply(false, format!("printer busy with job {}", j.record.job_id));
        }
        let snap = self.printer.snapshot.borrow().clone();
        match snap.state {
            Activity::Idle => {}
            Activity::Error => {
                return Executed::reply(
                    false,
                    format!(
                        "printer is in error ({}); recover it first (raw G-code M999)",
                        snap.message.unwrap_or_default()
                    ),
                );
            }
            Activity::Printing | Activity::Paused => {
                let other = snap.job.map(|j| j.job_id).unwrap_or_else(|| "?".into());
                return Executed::reply(false, format!("printer busy with job {other}"));
            }
            other => {
                return Executed::reply(false, format!("printer is not ready ({other:?})"));
            }
        }
        let record = CurrentJob {
            job_id: a.job_id.clone(),
            name: a.name.clone(),
            sha256: a.sha256.clone(),
            accepted_unix: now_unix(),
            extruded_mm: vec![],
            printing: false,
        };
        self.job = Some(Job {
            record: record.clone(),
            assignment: a.clone(),
        });
        Executed {
            ok: true,
            message: format!("accepted job {}", a.job_id),
            events: vec![Event::JobAccepted {
                job_id: a.job_id.clone(),
            }],
            job: JobChange::Set(record),
            fetch: Some(a),
        }
    }

    fn start_fetch(&mut self, a: JobAssignment) {
        self.io.transfer.send_replace(Some(Transfer {
            job_id: a.job_id.clone(),
            size: a.size,
            started: Instant::now(),
        }));
        let fetcher = self.fetcher.clone();
        tracing::info!(job = %a.job_id, url = %a.url, size = a.size, "fetching the job file");
        self.fetch_task = Some(tokio::spawn(async move { fetcher.fetch(&a).await }));
    }

    /// Stops a transfer in progress and ends its job.
    fn drop_transfer(&mut self, outcome: Outcome, reason: &str) -> Executed {
        if let Some(t) = self.fetch_task.take() {
            t.abort();
        }
        self.io.transfer.send_replace(None);
        let mut done = Executed::reply(true, reason);
        if let Some(j) = self.job.take() {
            done.events.push(Event::JobFinished {
                job_id: j.record.job_id,
                outcome,
                reason: Some(reason.into()),
                extruded_mm: vec![],
                duration_s: 0.0,
            });
            done.job = JobChange::Clear;
        }
        done
    }

    async fn on_fetched(&mut self, res: Result<Result<PathBuf, FetchError>, JoinError>) {
        let Some(job) = &self.job else {
            self.io.transfer.send_replace(None);
            return;
        };
        let (job_id, name) = (job.record.job_id.clone(), job.assignment.name.clone());
        let filament = crate::printer::Filament {
            material: job.assignment.material.clone(),
            colour: job.assignment.colour.clone(),
            trays: job.assignment.trays.clone(),
        };
        let plate = job.assignment.plate;
        let failure = match res {
            Ok(Ok(path)) => match printable::for_backend(self.printer.backend, path, plate).await {
                Ok((path, plate)) => {
                    let start = PrinterCommand::Start {
                        job_id: job_id.clone(),
                        name,
                        path,
                        filament,
                        plate,
                    };
                    match self.printer.send(start).await {
                        Ok(_) => None,
                        Err(reason) => Some(format!("the printer refused the job: {reason}")),
                    }
                }
                Err(reason) => Some(reason),
            },
            Ok(Err(e)) => Some(format!("file transfer failed: {e}")),
            Err(e) if e.is_cancelled() => return,
            Err(e) => Some(format!("file transfer stopped: {e}")),
        };
        // Cleared after the printer took the job, so the status never flashes `idle`.
        self.io.transfer.send_replace(None);
        if let Some(reason) = failure {
            tracing::warn!(job = %job_id, reason, "job failed before printing");
            self.job = None;
            self.commit(Batch {
                events: vec![Event::JobFinished {
                    job_id,
                    outcome: Outcome::Failed,
                    reason: Some(clip(reason)),
                    extruded_mm: vec![],
                    duration_s: 0.0,
                }],
                job: JobChange::Clear,
                ..Batch::default()
            })
            .await;
        }
    }

    async fn on_printer_event(&mut self, ev: Event) {
        let mut batch = Batch::default();
        let ev = match ev {
            Event::JobStarted { job_id, tool_trays } => {
                if let Some(j) = self.job.as_mut().filter(|j| j.record.job_id == job_id) {
                    j.record.printing = true;
                    self.meter.begin(
                        &job_id,
                        j.record.extruded_mm.clone(),
                        std::time::Instant::now(),
                    );
                    batch.job = JobChange::Set(j.record.clone());
                }
                Event::JobStarted { job_id, tool_trays }
            }
            Event::JobFinished {
                job_id,
                outcome,
                reason,
                extruded_mm,
                duration_s,
            } => {
                let mut extruded_mm = extruded_mm;
                if self.holds(&job_id) {
                    extruded_mm = self.meter.final_totals(&extruded_mm);
                    self.meter.end();
                    self.job = None;
                    batch.job = JobChange::Clear;
                }
                tracing::info!(job = %job_id, ?outcome, ?reason, "job finished");
                Event::JobFinished {
                    job_id,
                    outcome,
                    reason: reason.map(clip),
                    extruded_mm,
                    duration_s,
                }
            }
            Event::PrinterError { message } => {
                tracing::warn!(message, "printer error");
                Event::PrinterError {
                    message: clip(message),
                }
            }
            Event::FirmwareMessage { message } => Event::FirmwareMessage {
                message: clip(message),
            },
            other => other,
        };
        batch.events.push(ev);
        self.commit(batch).await;
    }

    async fn meter_tick(&mut self) {
        let Some(job) = self.job.as_mut().filter(|j| j.record.printing) else {
            return;
        };
        let progress = self.printer.snapshot.borrow().job.clone();
        let Some(progress) = progress else { return };
        if let Some(ev) = self.meter.observe(&progress, std::time::Instant::now()) {
            job.record.extruded_mm = self.meter.reported().to_vec();
            let batch = Batch {
                events: vec![ev],
                job: JobChange::Set(job.record.clone()),
                ..Batch::default()
            };
            self.commit(batch).await;
        }
    }

    async fn reload(&mut self) -> Executed {
        let Some(path) = self.config.source.clone() else {
            return Executed::reply(
                false,
                "reload_config is not supported: this agent was started without a config file",
            );
        };
        let new = match tokio::task::spawn_blocking(move || Config::load(&path)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Executed::reply(false, format!("config not reloaded: {e}")),
            Err(e) => return Executed::reply(false, format!("config not reloaded: {e}")),
        };
        let old = &self.config;
        let mut restart = vec![];
        for (key, changed) in [
            ("printer_id", old.printer_id != new.printer_id),
            ("secret", old.secret != new.secret),
            ("token", old.token != new.token),
            ("controller_url", old.controller_url != new.controller_url),
            ("broker_url", old.broker_url != new.broker_url),
            ("topic_root", old.topic_root != new.topic_root),
            ("state_dir", old.state_dir != new.state_dir),
            (
                "cache_max_bytes",
                old.cache_max_bytes != new.cache_max_bytes,
            ),
            (
                "printer.backend",
                old.printer.backend != new.printer.backend,
            ),
        ] {
            if changed {
                restart.push(key);
            }
        }
        self.io.interval_ms.send_replace(new.status_interval_ms);
        let mut message = format!("applied status_interval_ms = {}", new.status_interval_ms);
        if old.printer.backend == new.printer.backend {
            match self
                .printer
                .send(PrinterCommand::Reconfigure(new.printer.clone()))
                .await
            {
                Ok(_) => message.push_str(" and the [printer] settings"),
                Err(e) => message.push_str(&format!("; [printer] settings not applied: {e}")),
            }
        }
        if !restart.is_empty() {
            message.push_str(&format!(
                "; restart the agent to apply changes to: {}",
                restart.join(", ")
            ));
        }
        // Keep the running identity; remember the rest for the next comparison.
        let mut kept = self.config.clone();
        kept.status_interval_ms = new.status_interval_ms;
        kept.printer.sim = new.printer.sim;
        self.config = kept;
        Executed::reply(true, message)
    }
}

fn kind_of(c: &Command) -> &'static str {
    match c {
        Command::AssignJob(_) => "assign_job",
        Command::Pause { .. } => "pause",
        Command::Resume { .. } => "resume",
        Command::Cancel { .. } => "cancel",
        Command::EmergencyStop {} => "emergency_stop",
        Command::SetTelemetry { .. } => "set_telemetry",
        Command::RawGcode { .. } => "raw_gcode",
        Command::ReloadConfig {} => "reload_config",
    }
}

#[cfg(test)]
mod tests;

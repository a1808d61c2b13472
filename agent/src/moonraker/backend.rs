//! The imperative shell of the Moonraker back end: one task that owns the websocket session,
//! reconnects with backoff, answers the agent's commands, and turns Moonraker's notifications
//! into the farm's snapshot and events (through the pure core in `state` and `job`).
//!
//! Session: connect → `server.connection.identify` (with `api_key` when set) → `server.info`;
//! when Klippy is `ready` (or `shutdown`, whose status still flows): `printer.objects.list`
//! then `printer.objects.subscribe`. Otherwise poll `server.info` every [`KLIPPY_POLL`] and
//! wait for `notify_klippy_ready`. Subscriptions die with every Klippy restart (fixture d), so
//! `notify_klippy_ready` always re-subscribes.

use super::MoonrakerConfig;
use super::billing::{consumed, remaining};
use super::commands::{PRINT_CALL_TIMEOUT, spawn_call, special};
use super::http::{self, Http};
use super::job::{JobChange, JobWatch};
use super::rpc::{self, Notification, Rpc, RpcError};
use super::state::{self, Klippy, Link, Objects};
use crate::printer::{Envelope, Port, PrinterCommand, Reply, Snapshot};
use farm_protocol::Backoff;
use farm_protocol::gcode::ExtrusionIndex;
use farm_protocol::messages::{Event, JobProgress, Outcome};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// `server.info` poll while Klippy is not ready (a missed `notify_klippy_ready` costs this).
pub const KLIPPY_POLL: Duration = Duration::from_secs(5);
/// Reconnects: 1 s doubling to 30 s, no jitter (one agent per Moonraker, on its LAN; a
/// Klipper host restart takes tens of seconds, so 30 s between tries costs little).
const RECONNECT: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// A session that lasted this long was a success: the next loss starts the schedule over.
const SESSION_OK: Duration = Duration::from_secs(30);
/// After Moonraker refused our credentials: retrying sooner would only fill its log.
pub const AUTH_RETRY: Duration = Duration::from_secs(30);

/// Why a session ended.
enum Ended {
    /// The agent is stopping.
    Stop,
    /// Reconnect after `wait`; `reason` is what the operator sees meanwhile.
    Lost { reason: String, wait: Wait },
}

enum Wait {
    Backoff,
    Auth,
    Now,
}

/// The job on the printer.
struct ActiveJob {
    job_id: String,
    watch: JobWatch,
    index: Arc<ExtrusionIndex>,
    path: PathBuf,
    /// Cumulative mm per tool at `watch.max_pos`.
    extruded: Vec<f64>,
    /// Planned time left from `watch.max_pos`, s (the index's; `None` until known).
    remaining_s: Option<f64>,
    started: Instant,
}

pub(super) struct Shell {
    cfg: MoonrakerConfig,
    snapshot: watch::Sender<Snapshot>,
    events: mpsc::UnboundedSender<Event>,
    link: Link,
    klippy: Klippy,
    klippy_message: String,
    objects: Objects,
    job: Option<ActiveJob>,
    /// A `printer_error` went out and no `printer_ready` since.
    error_reported: bool,
}

pub(super) async fn run(cfg: MoonrakerConfig, port: Port) {
    let Port {
        mut commands,
        snapshot,
        events,
    } = port;
    let mut sh = Shell {
        cfg,
        snapshot,
        events,
        link: Link::Down("connecting to Moonraker".into()),
        klippy: Klippy::Disconnected,
        klippy_message: String::new(),
        objects: Objects::default(),
        job: None,
        error_reported: false,
    };
    let mut backoff = RECONNECT;
    loop {
        sh.publish();
        let began = Instant::now();
        let (reason, wait) = match sh.session(&mut commands).await {
            Ended::Stop => return,
            Ended::Lost { reason, wait } => (reason, wait),
        };
        if began.elapsed() > SESSION_OK {
            backoff.reset();
        }
        let delay = match wait {
            Wait::Now => Duration::ZERO,
            Wait::Auth => AUTH_RETRY,
            Wait::Backoff => backoff.next(0.0),
        };
        tracing::warn!(reason, retry_in_s = delay.as_secs(), "Moonraker link down");
        sh.link_down(format!("{reason}; retrying in {} s", delay.as_secs()));
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some((PrinterCommand::Reconfigure(pc), reply)) => {
                        let r = sh.reconfigure(pc);
                        let _ = reply.send(r);
                        break;
                    }
                    Some((_, reply)) => {
                        let _ = reply.send(Err(format!("the printer is not reachable: {reason}")));
                    }
                },
            }
        }
    }
}

/// `Lost` for a failed call: credentials refused → polite retry; else reconnect with backoff.
fn lost(e: RpcError, key_set: bool) -> Ended {
    if e.is_unauthorized() {
        return Ended::Lost {
            reason: format!(
                "Moonraker refused this agent ({}): {}",
                e.peer_message(),
                http::auth_hint(key_set)
            ),
            wait: Wait::Auth,
        };
    }
    Ended::Lost {
        reason: e.to_string(),
        wait: Wait::Backoff,
    }
}

impl Shell {
    fn emit(&self, e: Event) {
        // Whoever reads an event sees a snapshot at least as new as it.
        self.publish();
        // A closed channel means the agent is stopping; nothing left to tell.
        let _ = self.events.send(e);
    }

    fn key_set(&self) -> bool {
        !self.cfg.api_key.is_empty()
    }

    async fn session(&mut self, commands: &mut mpsc::Receiver<Envelope>) -> Ended {
        let url = rpc::websocket_url(&self.cfg.url);
        let (rpc, mut notes) = match rpc::connect(&url).await {
            Ok(c) => c,
            Err(e) => return lost(e, self.key_set()),
        };
        let mut hello = json!({
            "client_name": "farm-agent",
            "version": env!("CARGO_PKG_VERSION"),
            "type": "agent",
            "url": "https://example.invalid/printfarm",
        });
        if self.key_set() {
            hello["api_key"] = Value::from(self.cfg.api_key.clone());
        }
        if let Err(e) = rpc.call("server.connection.identify", hello).await {
            return lost(e, self.key_set());
        }
        self.link = Link::Up;
        if let Err(e) = self.refresh(&rpc).await {
            return lost(e, self.key_set());
        }
        loop {
            self.publish();
            let poll = matches!(
                self.klippy,
                Klippy::Disconnected | Klippy::Startup | Klippy::Error
            );
            tokio::select! {
                note = notes.recv() => match note {
                    None => return Ended::Lost {
                        reason: "Moonraker closed the connection".into(),
                        wait: Wait::Backoff,
                    },
                    Some(n) => if let Err(e) = self.on_notification(&rpc, n).await {
                        return lost(e, self.key_set());
                    },
                },
                cmd = commands.recv() => match cmd {
                    None => return Ended::Stop,
                    Some((PrinterCommand::Reconfigure(pc), reply)) => {
                        let changed = pc.moonraker.as_ref().is_some_and(|c| *c != self.cfg);
                        let _ = reply.send(self.reconfigure(pc));
                        if changed {
                            return Ended::Lost {
                                reason: "reconnecting with the new [printer.moonraker] settings".into(),
                                wait: Wait::Now,
                            };
                        }
                    }
                    Some((cmd, reply)) => self.command(&rpc, cmd, reply).await,
                },
                _ = tokio::time::sleep(KLIPPY_POLL), if poll => {
                    if let Err(e) = self.refresh(&rpc).await {
                        return lost(e, self.key_set());
                    }
                }
            }
        }
    }

    /// Asks Moonraker for Klippy's state and (re)subscribes when there is status to follow.
    async fn refresh(&mut self, rpc: &Rpc) -> Result<(), RpcError> {
        let info = rpc.call("server.info", Value::Null).await?;
        let klippy = Klippy::parse(info["klippy_state"].as_str().unwrap_or(""));
        if !matches!(klippy, Klippy::Ready | Klippy::Shutdown) {
            self.set_klippy(klippy, String::new());
            return Ok(());
        }
        let listed: Vec<String> = match rpc.call("printer.objects.list", Value::Null).await {
            Ok(v) => v["objects"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect(),
            Err(e) if e.is_method_not_found() => {
                // Klippy went away between the two calls.
                self.set_klippy(Klippy::Disconnected, String::new());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let answer = match rpc
            .call("printer.objects.subscribe", state::subscription(&listed))
            .await
        {
            Ok(a) => a,
            Err(e) if e.is_method_not_found() => {
                self.set_klippy(Klippy::Disconnected, String::new());
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let status = &answer["status"];
        self.objects.replace(status);
        let hooks = self.objects.str("webhooks", "state").map(Klippy::parse);
        let message = self
            .objects
            .str("webhooks", "state_message")
            .unwrap_or("")
            .to_string();
        self.set_klippy(hooks.unwrap_or(klippy), message);
        // After a reconnect the full status tells how our job fared meanwhile.
        self.observe_job(status);
        Ok(())
    }

    async fn on_notification(&mut self, rpc: &Rpc, n: Notification) -> Result<(), RpcError> {
        match n.method.as_str() {
            "notify_status_update" => {
                let diff = &n.params[0];
                self.objects.merge(diff);
                if let Some(s) = diff["webhooks"]["state"].as_str() {
                    let msg = diff["webhooks"]["state_message"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    self.set_klippy(Klippy::parse(s), msg);
                }
                self.observe_job(diff);
            }
            "notify_klippy_ready" => self.refresh(rpc).await?,
            "notify_klippy_shutdown" => {
                let msg = self.klippy_message.clone();
                self.set_klippy(Klippy::Shutdown, msg);
            }
            "notify_klippy_disconnected" => {
                self.set_klippy(Klippy::Disconnected, String::new());
            }
            "notify_gcode_response" => {
                if let Some(line) = n.params[0].as_str()
                    && line.starts_with("!!")
                {
                    self.emit(Event::FirmwareMessage {
                        message: line.to_string(),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Klippy's state changed (or its message did). Reports errors once, recovery once, and
    /// fails the job when Klippy stops running it.
    fn set_klippy(&mut self, klippy: Klippy, message: String) {
        if klippy == self.klippy && message == self.klippy_message {
            return;
        }
        let keep_message = message.is_empty() && klippy == self.klippy;
        self.klippy = klippy;
        if !keep_message {
            self.klippy_message = message;
        }
        let text = state::state_message(&self.link, klippy, &self.klippy_message);
        match klippy {
            Klippy::Ready => {
                if self.error_reported {
                    self.error_reported = false;
                    self.emit(Event::PrinterReady {});
                }
            }
            Klippy::Shutdown | Klippy::Error => {
                if !self.error_reported {
                    self.error_reported = true;
                    self.emit(Event::PrinterError {
                        message: text.clone().unwrap_or_default(),
                    });
                }
            }
            Klippy::Disconnected | Klippy::Startup => {}
        }
        if klippy != Klippy::Ready && self.job.is_some() {
            let why = match klippy {
                Klippy::Shutdown | Klippy::Error => {
                    format!(
                        "Klipper shut down during the print: {}",
                        state::first_line(&self.klippy_message)
                    )
                }
                _ => "Klippy disconnected from Moonraker during the print".into(),
            };
            self.finish(Outcome::Failed, Some(why));
        }
    }

    fn link_down(&mut self, reason: String) {
        let was_up = self.link == Link::Up;
        self.link = Link::Down(reason.clone());
        // Klippy's state is unknown until we can ask again.
        self.klippy = Klippy::Disconnected;
        if !self.error_reported && (was_up || self.snapshot.borrow().message.is_some()) {
            self.error_reported = true;
            self.emit(Event::PrinterError { message: reason });
        }
        self.publish();
    }

    fn observe_job(&mut self, diff: &Value) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        let before = (job.watch.max_pos, job.watch.in_flight());
        let changes = job.watch.observe(diff, &self.objects);
        if (job.watch.max_pos, job.watch.in_flight()) != before {
            job.extruded = consumed(&job.index, &job.path, &job.watch, &job.extruded);
            job.remaining_s =
                remaining(&job.index, &job.path, job.watch.max_pos).or(job.remaining_s);
        }
        let job_id = job.job_id.clone();
        for c in changes {
            match c {
                JobChange::Paused => self.emit(Event::JobPaused {
                    job_id: job_id.clone(),
                    reason: None,
                }),
                JobChange::Resumed => self.emit(Event::JobResumed {
                    job_id: job_id.clone(),
                }),
                JobChange::Finished { outcome, reason } => self.finish(outcome, reason),
            }
        }
    }

    /// Ends the job with the material up to the highest position Klipper read.
    fn finish(&mut self, outcome: Outcome, reason: Option<String>) {
        let Some(job) = self.job.take() else { return };
        tracing::info!(job = %job.job_id, ?outcome, ?reason, pos = job.watch.max_pos, "job finished on Klipper");
        self.emit(Event::JobFinished {
            job_id: job.job_id,
            outcome,
            reason,
            extruded_mm: job.extruded,
            duration_s: job.started.elapsed().as_secs_f64(),
        });
    }

    async fn command(
        &mut self,
        rpc: &Rpc,
        cmd: PrinterCommand,
        reply: tokio::sync::oneshot::Sender<Reply>,
    ) {
        let activity = state::activity(&self.link, self.klippy, self.objects.print_state());
        let not_ready = || {
            state::state_message(&self.link, self.klippy, &self.klippy_message)
                .unwrap_or_else(|| "Klipper is not ready".into())
        };
        use farm_protocol::messages::Activity as A;
        match cmd {
            PrinterCommand::Start {
                job_id, name, path, ..
            } => {
                let r = self.start(rpc, job_id, &name, &path).await;
                let _ = reply.send(r);
            }
            PrinterCommand::Pause => match (&self.job, activity) {
                (Some(_), A::Printing) => spawn_call(rpc, "printer.print.pause", Value::Null, "paused".into(), reply),
                (Some(_), A::Paused) => {
                    let _ = reply.send(Err("the job is already paused".into()));
                }
                _ => {
                    let _ = reply.send(Err("nothing is printing".into()));
                }
            },
            PrinterCommand::Resume => match (&self.job, activity) {
                (Some(_), A::Paused) => spawn_call(rpc, "printer.print.resume", Value::Null, "resumed".into(), reply),
                (Some(_), _) => {
                    let _ = reply.send(Err("the job is not paused".into()));
                }
                _ => {
                    let _ = reply.send(Err("nothing is printing".into()));
                }
            },
            PrinterCommand::Cancel => match self.job {
                Some(_) => spawn_call(
                    rpc,
                    "printer.print.cancel",
                    Value::Null,
                    "cancel requested; Klipper stops after the moves already queued".into(),
                    reply,
                ),
                None => {
                    let _ = reply.send(Err("no job to cancel".into()));
                }
            },
            PrinterCommand::EmergencyStop => spawn_call(
                rpc,
                "printer.emergency_stop",
                Value::Null,
                "emergency stop: Klipper halted, heaters off; send FIRMWARE_RESTART (or M999) to recover".into(),
                reply,
            ),
            PrinterCommand::Gcode(lines) => match special(&lines) {
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
                Ok(Some((method, done))) => spawn_call(rpc, method, Value::Null, done.into(), reply),
                Ok(None) if activity == A::Disconnected => {
                    let _ = reply.send(Err(not_ready()));
                }
                Ok(None) => spawn_call(
                    rpc,
                    "printer.gcode.script",
                    json!({"script": lines.join("\n")}),
                    format!("{} line(s) sent", lines.len()),
                    reply,
                ),
            },
            PrinterCommand::Reconfigure(pc) => {
                let _ = reply.send(self.reconfigure(pc));
            }
        }
    }

    async fn start(&mut self, rpc: &Rpc, job_id: String, name: &str, path: &Path) -> Reply {
        if let Some(j) = &self.job {
            return Err(format!("printer busy with job {}", j.job_id));
        }
        let activity = state::activity(&self.link, self.klippy, self.objects.print_state());
        if activity != farm_protocol::messages::Activity::Idle {
            return Err(
                match state::state_message(&self.link, self.klippy, &self.klippy_message) {
                    Some(m) => format!("printer is not ready: {m}"),
                    None => format!("printer is not idle ({activity:?})"),
                },
            );
        }
        // The index is what turns Klipper's file position into exact millimetres.
        let p = path.to_path_buf();
        let index = tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&p)?;
            // With the slicer's limits, as the analyzer: the index's time is the estimate.
            ExtrusionIndex::build_seekable(
                std::io::BufReader::with_capacity(64 * 1024, f),
                farm_protocol::gcode::Limits::default(),
                farm_protocol::gcode::index::DEFAULT_STRIDE,
            )
        })
        .await
        .map_err(|e| format!("file indexing stopped: {e}"))?
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let remote = http::remote_name(name, &job_id);
        let client = Http::new(&self.cfg.url, &self.cfg.api_key).map_err(|e| e.to_string())?;
        let stored = client
            .upload(path, &remote)
            .await
            .map_err(|e| e.to_string())?;
        if stored.size != index.bytes {
            return Err(format!(
                "Moonraker stored {} bytes of {} but the file has {}; the upload was damaged, try again",
                stored.size, stored.path, index.bytes
            ));
        }
        rpc.call_within(
            "printer.print.start",
            json!({"filename": stored.path}),
            PRINT_CALL_TIMEOUT,
        )
        .await
        .map_err(|e| {
            format!(
                "Klipper refused to start {}: {}",
                stored.path,
                e.peer_message()
            )
        })?;
        let tools = index.total_mm.len().max(1);
        self.job = Some(ActiveJob {
            job_id: job_id.clone(),
            watch: JobWatch::new(&stored.path, index.bytes),
            index: Arc::new(index),
            path: path.to_path_buf(),
            extruded: vec![0.0; tools],
            remaining_s: None,
            started: Instant::now(),
        });
        self.emit(Event::job_started(job_id));
        Ok(format!("printing {} on Klipper", stored.path))
    }

    fn reconfigure(&mut self, pc: crate::config::PrinterConfig) -> Reply {
        match pc.moonraker {
            Some(c) if c != self.cfg => {
                self.cfg = c;
                Ok("new [printer.moonraker] settings applied; reconnecting".into())
            }
            Some(_) => Ok("[printer.moonraker] unchanged".into()),
            None => {
                Err("the new config has no [printer.moonraker] section; nothing applied".into())
            }
        }
    }

    fn snapshot_now(&self) -> Snapshot {
        let state = state::activity(&self.link, self.klippy, self.objects.print_state());
        let message = state::state_message(&self.link, self.klippy, &self.klippy_message);
        let job = self.job.as_ref().map(|j| {
            let progress = j.watch.progress();
            let printed = self
                .objects
                .f64("print_stats", "print_duration")
                .unwrap_or(0.0);
            let info = |k: &str| {
                self.objects
                    .get("print_stats", "info")
                    .and_then(|i| i.get(k))
                    .and_then(Value::as_u64)
                    .map(|v| v as u32)
            };
            JobProgress {
                job_id: j.job_id.clone(),
                progress,
                file_pos: j.watch.max_pos,
                file_size: j.watch.file_size,
                layer: info("current_layer"),
                layer_count: info("total_layer"),
                elapsed_s: j.started.elapsed().as_secs_f64(),
                // The analyzer's planned time left from Klipper's file position; before the
                // first position, Klipper's print time scaled by what is left of the file.
                eta_s: j.remaining_s.or_else(|| {
                    (progress > 0.01 && printed > 0.0).then(|| printed / progress - printed)
                }),
                extruded_mm: j.extruded.clone(),
            }
        });
        Snapshot {
            state,
            temps: self.objects.heaters(),
            job,
            message,
            trays: vec![],
        }
    }

    fn publish(&self) {
        let next = self.snapshot_now();
        self.snapshot.send_if_modified(|cur| {
            if *cur == next {
                false
            } else {
                *cur = next;
                true
            }
        });
    }
}

#[cfg(test)]
mod tests;

//! The running farm: the store, its in-memory mirror, and the stream of changes.
//!
//! Every write goes through [`Farm`] while holding one lock: commit to the store first, then
//! update the mirror, then announce the change. So the mirror never shows what is not durable,
//! and the live stream sees changes in commit order. Reads copy out of the mirror.
//!
//! Messages for agents (commands, acks) are queued to the MQTT link as [`Outbound`]; the link
//! owns the socket.

use crate::auth::{Principal, Role, new_token, random_hex, token_hash};
use crate::fleet::{self, Live, PrinterRecord, PrinterState, PrinterView};
use crate::jobs::{self, Effect, Job, JobState};
use crate::metrics::{Gauges, Metrics};
use crate::store::{CommandRecord, Store, StoreError, TokenRecord};
use farm_protocol::messages::{AckMessage, Body, Command, Event, JobAssignment, Status};
use farm_protocol::{Channel, Envelope, PrinterId, Topics, seal};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};
use time::OffsetDateTime;
use tokio::sync::{Notify, broadcast, mpsc};

/// A message for the broker.
#[derive(Debug, Clone)]
pub struct Outbound {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos1: bool,
}

/// One change on the live stream (`/api/v1/stream`).
#[derive(Debug, Clone)]
pub enum Change {
    /// Changed fields of one printer, with its `id`.
    Printer(serde_json::Value),
    Job(Box<Job>),
}

/// Everything the stream sends first.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub printers: Vec<PrinterView>,
    pub jobs: Vec<Job>,
}

#[derive(Debug, thiserror::Error)]
pub enum FarmError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no printer {0:?}")]
    NoPrinter(String),
    #[error("no job {0:?}")]
    NoJob(String),
    #[error("a printer with id {0:?} already exists")]
    PrinterExists(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
}

struct PrinterEntry {
    rec: PrinterRecord,
    live: Live,
    view: PrinterView,
}

#[derive(Default)]
struct Mirror {
    printers: BTreeMap<String, PrinterEntry>,
    jobs: BTreeMap<u64, Job>,
    job_numbers: HashMap<String, u64>,
    applied: HashMap<String, u64>,
    /// Token hash → who holds it (API tokens and printers' agent tokens).
    credentials: HashMap<String, Principal>,
}

pub struct Farm {
    store: Store,
    mirror: Mutex<Mirror>,
    changes: broadcast::Sender<Change>,
    outbound: mpsc::Sender<Outbound>,
    topics: Topics,
    /// Base URL agents fetch files from.
    public_url: String,
    pub metrics: Metrics,
    /// Wakes the scheduler when a printer may have become free or a job was queued.
    pub kick: Notify,
    pub sse_clients: std::sync::atomic::AtomicU64,
    /// The controller's MQTT link is up and subscribed (shown in `/api/v1/health`).
    pub broker_connected: std::sync::atomic::AtomicBool,
    pub started: std::time::Instant,
}

/// What applying one event did, for the caller to acknowledge.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Applied(u64),
    Replay(u64),
    Gap { have: u64 },
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Printer names are free text for people, but bounded and printable.
fn clean_name(name: &str) -> Result<String, FarmError> {
    let n = name.trim();
    if n.is_empty() || n.len() > 128 || n.chars().any(char::is_control) {
        return Err(FarmError::Invalid(
            "a name must be 1 to 128 printable characters".into(),
        ));
    }
    Ok(n.to_string())
}

impl Farm {
    /// Loads the store into memory. Returns the farm and the receiving end of the broker queue.
    pub fn load(
        store: Store,
        topics: Topics,
        public_url: String,
    ) -> Result<(Arc<Farm>, mpsc::Receiver<Outbound>), FarmError> {
        let mut m = Mirror::default();
        for rec in store.printers()? {
            m.credentials.insert(
                rec.token_sha256.clone(),
                Principal {
                    role: Role::Agent,
                    printer: Some(rec.id.clone()),
                    name: rec.id.clone(),
                },
            );
            let live = Live::default();
            let view = fleet::view(&rec, &live);
            m.printers
                .insert(rec.id.clone(), PrinterEntry { rec, live, view });
        }
        for job in store.jobs()? {
            m.job_numbers.insert(job.id.clone(), job.number);
            m.jobs.insert(job.number, job);
        }
        m.applied = store.applied_seqs()?.into_iter().collect();
        for (hash, t) in store.tokens()? {
            m.credentials.insert(
                hash,
                Principal {
                    role: t.role,
                    printer: None,
                    name: t.name,
                },
            );
        }
        let (changes, _) = broadcast::channel(4096);
        let (outbound, rx) = mpsc::channel(10_000);
        let farm = Farm {
            store,
            mirror: Mutex::new(m),
            changes,
            outbound,
            topics,
            public_url: public_url.trim_end_matches('/').to_string(),
            metrics: Metrics::default(),
            kick: Notify::new(),
            sse_clients: Default::default(),
            broker_connected: Default::default(),
            started: std::time::Instant::now(),
        };
        Ok((Arc::new(farm), rx))
    }

    fn lock(&self) -> MutexGuard<'_, Mirror> {
        // A panic while holding the lock cannot leave the mirror ahead of the store (the store
        // commits first), so a poisoned lock is still safe to use.
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    fn announce_printer(&self, e: &mut PrinterEntry) {
        let new = fleet::view(&e.rec, &e.live);
        if let Some(d) = fleet::diff(Some(&e.view), &new) {
            if new.state == PrinterState::Idle && e.view.state != PrinterState::Idle {
                self.kick.notify_one();
            }
            e.view = new;
            let _ = self.changes.send(Change::Printer(d));
        }
    }

    fn announce_job(&self, j: &Job) {
        let _ = self.changes.send(Change::Job(Box::new(j.clone())));
    }

    fn send(&self, printer: &str, channel: Channel, payload: Vec<u8>) {
        let Ok(pid) = PrinterId::new(printer) else {
            return;
        };
        let msg = Outbound {
            topic: self.topics.printer(&pid, channel),
            payload,
            qos1: channel == Channel::Commands,
        };
        if self.outbound.try_send(msg).is_err() {
            self.metrics.publish_failed.fetch_add(1, Relaxed);
        }
    }

    // ---- reads -------------------------------------------------------------------------

    /// True once any admin token exists (the first `serve` mints one otherwise).
    pub fn has_admin(&self) -> bool {
        self.lock()
            .credentials
            .values()
            .any(|p| p.role == Role::Admin)
    }

    pub fn principal(&self, token: &str) -> Option<Principal> {
        self.lock().credentials.get(&token_hash(token)).cloned()
    }

    /// The HMAC key of a printer, if it is enrolled.
    pub fn secret(&self, printer: &str) -> Option<String> {
        self.lock()
            .printers
            .get(printer)
            .map(|e| e.rec.secret.clone())
    }

    /// Checks broker credentials of an agent (username = printer id, password = token).
    pub fn broker_login(&self, user: &str, pass: &str) -> bool {
        let m = self.lock();
        m.printers
            .get(user)
            .is_some_and(|e| e.rec.token_sha256 == token_hash(pass))
    }

    pub fn printers(&self) -> Vec<PrinterView> {
        self.lock()
            .printers
            .values()
            .map(|e| e.view.clone())
            .collect()
    }

    pub fn printer(&self, id: &str) -> Option<PrinterView> {
        self.lock().printers.get(id).map(|e| e.view.clone())
    }

    pub fn job(&self, id: &str) -> Option<Job> {
        let m = self.lock();
        m.job_numbers.get(id).and_then(|n| m.jobs.get(n)).cloned()
    }

    /// Jobs in number order after `after`, optionally of one state; at most `limit`.
    pub fn jobs(&self, state: Option<JobState>, after: u64, limit: usize) -> Vec<Job> {
        let m = self.lock();
        m.jobs
            .range(after.saturating_add(1)..)
            .map(|(_, j)| j)
            .filter(|j| state.is_none_or(|s| j.state == s))
            .take(limit)
            .cloned()
            .collect()
    }

    /// True if some job (on an agent's printer, or any for staff) uses the file.
    pub fn may_fetch(&self, who: &Principal, sha256: &str) -> bool {
        if who.role.covers(Role::Viewer) {
            return true;
        }
        let m = self.lock();
        m.jobs
            .values()
            .any(|j| j.sha256 == sha256 && j.printer_id.is_some() && j.printer_id == who.printer)
    }

    /// The full state and a receiver for every change after it, taken atomically.
    pub fn subscribe(&self) -> (Snapshot, broadcast::Receiver<Change>) {
        let m = self.lock();
        let rx = self.changes.subscribe();
        let snap = Snapshot {
            printers: m.printers.values().map(|e| e.view.clone()).collect(),
            jobs: m.jobs.values().cloned().collect(),
        };
        (snap, rx)
    }

    pub fn gauges(&self) -> Gauges {
        let m = self.lock();
        let mut p: BTreeMap<&'static str, u64> =
            PrinterState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for e in m.printers.values() {
            *p.entry(e.view.state.as_str()).or_default() += 1;
        }
        let mut j: BTreeMap<&'static str, u64> =
            JobState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        for job in m.jobs.values() {
            *j.entry(job.state.as_str()).or_default() += 1;
        }
        Gauges {
            printers_by_state: p.into_iter().collect(),
            jobs_by_state: j.into_iter().collect(),
            sse_clients: self.sse_clients.load(Relaxed),
        }
    }

    pub fn online_count(&self) -> usize {
        self.lock()
            .printers
            .values()
            .filter(|e| e.live.online)
            .count()
    }

    // ---- enrolment and tokens ----------------------------------------------------------

    /// Enrols a printer: mints its secret and token. The token is returned once, never stored.
    pub fn add_printer(
        &self,
        id: &str,
        name: Option<&str>,
        auto_eject: bool,
    ) -> Result<(PrinterRecord, String), FarmError> {
        let pid = PrinterId::new(id).map_err(|e| FarmError::Invalid(e.to_string()))?;
        let name = clean_name(name.unwrap_or(id))?;
        let mut m = self.lock();
        if m.printers.contains_key(pid.as_str()) {
            return Err(FarmError::PrinterExists(id.into()));
        }
        let token = new_token();
        let rec = PrinterRecord {
            id: pid.to_string(),
            name,
            secret: random_hex(32),
            token_sha256: token_hash(&token),
            created_at: now(),
            auto_eject,
            awaiting_clear: false,
            maintenance: false,
            current_job: None,
        };
        self.store.write(|tx| tx.put_printer(&rec))?;
        m.credentials.insert(
            rec.token_sha256.clone(),
            Principal {
                role: Role::Agent,
                printer: Some(rec.id.clone()),
                name: rec.id.clone(),
            },
        );
        let live = Live::default();
        let view = fleet::view(&rec, &live);
        let _ = self.changes.send(Change::Printer(
            serde_json::to_value(&view).unwrap_or_default(),
        ));
        m.printers.insert(
            rec.id.clone(),
            PrinterEntry {
                rec: rec.clone(),
                live,
                view,
            },
        );
        Ok((rec, token))
    }

    /// Creates an API token for a role; returns the token (shown once).
    pub fn add_token(&self, name: &str, role: Role) -> Result<String, FarmError> {
        let name = clean_name(name)?;
        let token = new_token();
        let hash = token_hash(&token);
        let rec = TokenRecord {
            name: name.clone(),
            role,
            created_at: now(),
        };
        let mut m = self.lock();
        self.store.write(|tx| tx.put_token(&hash, &rec))?;
        m.credentials.insert(
            hash,
            Principal {
                role,
                printer: None,
                name,
            },
        );
        Ok(token)
    }

    // ---- from agents -------------------------------------------------------------------

    pub fn apply_status(&self, printer: &str, status: Status) {
        let mut m = self.lock();
        let Some(e) = m.printers.get_mut(printer) else {
            return;
        };
        e.live.online = true;
        e.live.last_seen = Some(now());
        let progress = status.job.as_ref().map(|j| (j.job_id.clone(), j.progress));
        e.live.status = Some(status);
        self.announce_printer(e);
        // Progress lives in the mirror only (it is telemetry); announce it in whole percents.
        if let Some((job_id, p)) = progress
            && let Some(n) = m.job_numbers.get(&job_id).copied()
            && let Some(j) = m.jobs.get_mut(&n)
            && j.printer_id.as_deref() == Some(printer)
            && j.state.is_active()
        {
            let step = (p * 100.0).floor() != (j.progress * 100.0).floor();
            j.progress = p.clamp(0.0, 1.0);
            if step {
                self.announce_job(j);
            }
        }
    }

    pub fn apply_online(&self, printer: &str, online: bool) {
        let mut m = self.lock();
        let Some(e) = m.printers.get_mut(printer) else {
            return;
        };
        e.live.online = online;
        if online {
            e.live.last_seen = Some(now());
        }
        self.announce_printer(e);
    }

    /// Marks printers offline whose status stopped arriving (no last will reached us).
    pub fn sweep_stale(&self, older_than: time::Duration) {
        let cutoff = now() - older_than;
        let mut m = self.lock();
        for e in m.printers.values_mut() {
            if e.live.online && e.live.last_seen.is_some_and(|t| t < cutoff) {
                e.live.online = false;
                self.announce_printer(e);
            }
        }
    }

    /// Applies one event exactly once, in seq order (DESIGN §4).
    pub fn apply_event(
        &self,
        printer: &str,
        seq: u64,
        event: &Event,
    ) -> Result<Applied, FarmError> {
        let mut guard = self.lock();
        let m = &mut *guard;
        let have = m.applied.get(printer).copied().unwrap_or(0);
        if seq <= have {
            self.metrics.events_replayed.fetch_add(1, Relaxed);
            return Ok(Applied::Replay(have));
        }
        if seq != have + 1 {
            self.metrics.events_out_of_order.fetch_add(1, Relaxed);
            return Ok(Applied::Gap { have });
        }
        let entry = m
            .printers
            .get(printer)
            .ok_or_else(|| FarmError::NoPrinter(printer.into()))?;
        let mut rec = entry.rec.clone();
        let t = now();
        let job_number = event.job_id().and_then(|id| m.job_numbers.get(id).copied());
        let mut job = job_number.and_then(|n| m.jobs.get(&n).cloned());
        let mut command: Option<CommandRecord> = None;
        let mut refused = None;

        match event {
            Event::CommandResult {
                command_id,
                ok,
                message,
            } => {
                if let Some(mut c) = self.store.command(command_id)? {
                    c.result = Some((*ok, message.clone()));
                    if !ok
                        && c.kind == "assign_job"
                        && let Some(n) = c.job_id.as_ref().and_then(|id| m.job_numbers.get(id))
                        && let Some(mut j) = m.jobs.get(n).cloned()
                        && j.assign_command_id.as_deref() == Some(command_id.as_str())
                    {
                        jobs::unassign(&mut j, &format!("printer {printer} refused it: {message}"));
                        if rec.current_job.as_deref() == Some(j.id.as_str()) {
                            rec.current_job = None;
                        }
                        job = Some(j);
                    }
                    command = Some(c);
                }
            }
            ev if ev.job_id().is_some() => match job.as_mut() {
                Some(j) => match jobs::apply(j, printer, ev, t) {
                    Ok(Effect::Finished { outcome, printed }) => {
                        if rec.current_job.as_deref() == Some(j.id.as_str()) {
                            rec.current_job = None;
                        }
                        if printed && !rec.auto_eject {
                            rec.awaiting_clear = true;
                        }
                        tracing::info!(job = %j.id, printer, ?outcome, reason = ?j.failure_reason, "job finished");
                    }
                    Ok(Effect::Changed) => {}
                    Err(r) => refused = Some(r.to_string()),
                },
                None => refused = Some(format!("unknown job {:?}", ev.job_id())),
            },
            Event::PrinterError { message } => tracing::warn!(printer, %message, "printer error"),
            Event::FirmwareMessage { message } => tracing::info!(printer, %message, "firmware"),
            Event::AgentStarted { version, backend } => {
                tracing::info!(printer, %version, %backend, "agent started")
            }
            _ => {}
        }

        self.store.write(|tx| {
            if let Some(j) = &job {
                tx.put_job(j)?;
            }
            if let Some(c) = &command {
                tx.put_command(c)?;
            }
            if rec != entry.rec {
                tx.put_printer(&rec)?;
            }
            tx.set_applied_seq(printer, seq)
        })?;

        m.applied.insert(printer.to_string(), seq);
        if let Some(r) = refused {
            self.metrics.events_refused.fetch_add(1, Relaxed);
            tracing::debug!(printer, seq, "event recorded without effect: {r}");
        }
        if let Some(j) = job {
            self.announce_job(&j);
            if j.state == JobState::Queued {
                self.kick.notify_one();
            }
            m.jobs.insert(j.number, j);
        }
        if let Some(e) = m.printers.get_mut(printer) {
            e.rec = rec;
            self.announce_printer(e);
        }
        self.metrics.events_applied.fetch_add(1, Relaxed);
        Ok(Applied::Applied(seq))
    }

    /// Tells an agent which events are applied, so it can forget them.
    pub fn ack(&self, printer: &str, applied_seq: u64) {
        let Some(secret) = self.secret(printer) else {
            return;
        };
        let Ok(pid) = PrinterId::new(printer) else {
            return;
        };
        if let Ok(p) = seal(
            &Envelope::new(pid, AckMessage::Ack { applied_seq }),
            secret.as_bytes(),
        ) {
            self.send(printer, Channel::Acks, p);
        }
    }

    // ---- from operators ----------------------------------------------------------------

    /// Queues `copies` jobs for a stored file.
    pub fn add_jobs(
        &self,
        name: &str,
        stored: &crate::files::Stored,
        copies: u32,
        priority: i32,
    ) -> Result<Vec<Job>, FarmError> {
        let name = clean_name(name)?;
        if !(1..=1000).contains(&copies) {
            return Err(FarmError::Invalid(
                "copies must be between 1 and 1000".into(),
            ));
        }
        let mut m = self.lock();
        let t = now();
        let jobs = self.store.write(|tx| {
            let mut out = vec![];
            for _ in 0..copies {
                let number = tx.next_job_number()?;
                let j = Job {
                    id: format!("job-{number}"),
                    number,
                    name: name.clone(),
                    sha256: stored.sha256.clone(),
                    size: stored.size,
                    state: JobState::Queued,
                    printer_id: None,
                    priority,
                    created_at: t,
                    assigned_at: None,
                    started_at: None,
                    finished_at: None,
                    progress: 0.0,
                    extruded_mm: vec![],
                    filament_mm: stored.analysis.filament_mm.clone(),
                    estimated_s: stored.analysis.estimated_s,
                    failure_reason: None,
                    attempts: 0,
                    assign_command_id: None,
                };
                tx.put_job(&j)?;
                out.push(j);
            }
            Ok::<_, FarmError>(out)
        })?;
        for j in &jobs {
            m.job_numbers.insert(j.id.clone(), j.number);
            m.jobs.insert(j.number, j.clone());
            self.announce_job(j);
        }
        self.kick.notify_one();
        Ok(jobs)
    }

    /// Cancels a job: directly if queued, by command if it is on a printer.
    pub fn cancel_job(&self, id: &str) -> Result<Job, FarmError> {
        let job = self.job(id).ok_or_else(|| FarmError::NoJob(id.into()))?;
        if job.state.is_active() {
            let printer = job.printer_id.clone().unwrap_or_default();
            self.send_command(&printer, Command::Cancel { job_id: id.into() })?;
            return Ok(job);
        }
        let mut m = self.lock();
        let n = *m
            .job_numbers
            .get(id)
            .ok_or_else(|| FarmError::NoJob(id.into()))?;
        let mut j = m
            .jobs
            .get(&n)
            .cloned()
            .ok_or_else(|| FarmError::NoJob(id.into()))?;
        jobs::cancel_queued(&mut j, now()).map_err(|e| FarmError::Conflict(e.to_string()))?;
        self.store.write(|tx| tx.put_job(&j))?;
        self.announce_job(&j);
        m.jobs.insert(n, j.clone());
        Ok(j)
    }

    /// The operator confirms the bed is empty.
    pub fn clear_bed(&self, printer: &str) -> Result<PrinterView, FarmError> {
        let mut m = self.lock();
        let e = m
            .printers
            .get_mut(printer)
            .ok_or_else(|| FarmError::NoPrinter(printer.into()))?;
        if !e.rec.awaiting_clear {
            return Err(FarmError::Conflict(format!(
                "printer {printer} is not waiting for its bed to be cleared"
            )));
        }
        let mut rec = e.rec.clone();
        rec.awaiting_clear = false;
        self.store.write(|tx| tx.put_printer(&rec))?;
        e.rec = rec;
        self.announce_printer(e);
        self.kick.notify_one();
        Ok(e.view.clone())
    }

    /// Records and sends a command; returns its id. The result arrives later as an event.
    pub fn send_command(&self, printer: &str, command: Command) -> Result<String, FarmError> {
        let secret = self
            .secret(printer)
            .ok_or_else(|| FarmError::NoPrinter(printer.into()))?;
        let pid = PrinterId::new(printer).map_err(|e| FarmError::Invalid(e.to_string()))?;
        let id = format!("c-{}", random_hex(8));
        let env = Envelope::new(pid, command).with_command_id(id.clone());
        let kind = serde_json::to_value(&env)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string))
            .unwrap_or_default();
        let job_id = match &env.body {
            Command::AssignJob(a) => Some(a.job_id.clone()),
            Command::Pause { job_id } | Command::Resume { job_id } | Command::Cancel { job_id } => {
                Some(job_id.clone())
            }
            _ => None,
        };
        let payload =
            seal(&env, secret.as_bytes()).map_err(|e| FarmError::Invalid(e.to_string()))?;
        let rec = CommandRecord {
            id: id.clone(),
            printer_id: printer.into(),
            kind: kind.clone(),
            job_id,
            sent_at: now(),
            result: None,
        };
        self.store.write(|tx| tx.put_command(&rec))?;
        self.send(printer, Channel::Commands, payload);
        self.metrics.commands_sent.inc(
            Command::KINDS
                .iter()
                .find(|k| **k == kind)
                .copied()
                .unwrap_or("other"),
        );
        Ok(id)
    }

    fn assignment(&self, j: &Job) -> JobAssignment {
        JobAssignment {
            job_id: j.id.clone(),
            name: j.name.clone(),
            url: format!("{}/api/v1/files/{}", self.public_url, j.sha256),
            sha256: j.sha256.clone(),
            size: j.size,
        }
    }

    /// Runs the scheduler once and starts what it places. Returns how many jobs started.
    pub fn schedule(&self) -> Result<usize, FarmError> {
        let starts = {
            let m = self.lock();
            crate::scheduler::plan(
                m.printers
                    .values()
                    .map(|e| (e.rec.id.as_str(), e.view.state)),
                m.jobs.values(),
            )
        };
        let mut started = 0;
        for s in starts {
            let mut m = self.lock();
            let (Some(n), Some(e)) = (
                m.job_numbers.get(&s.job_id).copied(),
                m.printers.get(&s.printer_id),
            ) else {
                continue;
            };
            // Re-check under the lock: the farm may have moved since planning.
            let Some(mut j) = m.jobs.get(&n).cloned() else {
                continue;
            };
            if j.state != JobState::Queued || e.view.state != PrinterState::Idle {
                continue;
            }
            let mut rec = e.rec.clone();
            let secret = rec.secret.clone();
            let command_id = format!("c-{}", random_hex(8));
            jobs::assign(&mut j, &rec.id, command_id.clone(), now());
            rec.current_job = Some(j.id.clone());
            let assignment = self.assignment(&j);
            let pid =
                PrinterId::new(rec.id.as_str()).map_err(|e| FarmError::Invalid(e.to_string()))?;
            let env = Envelope::new(pid, Command::AssignJob(assignment))
                .with_command_id(command_id.clone());
            let payload =
                seal(&env, secret.as_bytes()).map_err(|e| FarmError::Invalid(e.to_string()))?;
            let crec = CommandRecord {
                id: command_id,
                printer_id: rec.id.clone(),
                kind: "assign_job".into(),
                job_id: Some(j.id.clone()),
                sent_at: now(),
                result: None,
            };
            self.store.write(|tx| {
                tx.put_job(&j)?;
                tx.put_printer(&rec)?;
                tx.put_command(&crec)
            })?;
            self.send(&rec.id, Channel::Commands, payload);
            self.metrics.commands_sent.inc("assign_job");
            tracing::info!(job = %j.id, printer = %rec.id, "job assigned");
            self.announce_job(&j);
            m.jobs.insert(n, j);
            if let Some(e) = m.printers.get_mut(&rec.id) {
                e.rec = rec;
                self.announce_printer(e);
            }
            started += 1;
        }
        Ok(started)
    }

    /// Resends assignments that no agent has taken up yet (lost while a link was down, or
    /// sent before a controller restart). The command id is unchanged, so an agent that did
    /// receive it runs it once.
    pub fn resend_assignments(&self, older_than: time::Duration) {
        let cutoff = now() - older_than;
        let pending: Vec<(Job, String)> = {
            let m = self.lock();
            m.jobs
                .values()
                .filter(|j| {
                    j.state == JobState::Assigned && j.assigned_at.is_some_and(|t| t < cutoff)
                })
                .filter_map(|j| {
                    let p = m.printers.get(j.printer_id.as_deref()?)?;
                    p.live.online.then(|| (j.clone(), p.rec.secret.clone()))
                })
                .collect()
        };
        for (j, secret) in pending {
            let (Some(printer), Some(cid)) = (j.printer_id.clone(), j.assign_command_id.clone())
            else {
                continue;
            };
            let Ok(pid) = PrinterId::new(printer.as_str()) else {
                continue;
            };
            let env =
                Envelope::new(pid, Command::AssignJob(self.assignment(&j))).with_command_id(cid);
            if let Ok(p) = seal(&env, secret.as_bytes()) {
                tracing::debug!(job = %j.id, %printer, "resending assignment");
                self.send(&printer, Channel::Commands, p);
            }
        }
    }
}

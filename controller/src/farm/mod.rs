//! The running farm: the store, its in-memory mirror, and the stream of changes.
//!
//! Every write goes through the [`writer`] thread: decided against the mirror, staged into
//! one transaction with whatever else is waiting, committed with one fsync, and only then
//! announced and answered. So nothing outside sees what is not durable, and the live stream
//! sees changes in commit order. Reads copy out of the mirror under a short lock.
//!
//! Messages for agents (commands, acks) are queued to the MQTT link as [`Outbound`]; the link
//! owns the socket.
//!
//! This folder holds only that core: [`Farm`] (the store handle, the mirror, the broadcast and
//! the outbound queue), loading at start, reads, enrolment and tokens. The writes themselves
//! live with their concept, each an `impl Farm` block beside the rules it applies:
//!
//! | file | writes that come from |
//! |---|---|
//! | `farm/mod.rs` | loading, reads, enrolment and tokens |
//! | [`crate::printers::agents`] | agents: status, presence, events (exactly once, in order), acks |
//! | [`crate::printers::registry`] | operators: a printer's registry profile |
//! | [`crate::jobs::table`] | the mirror's jobs; the queued ones kept as the scheduler's input |
//! | [`crate::jobs::queue`] | operators and the scheduler: jobs, cancel, bed clear, commands, assignment |
//! | [`crate::jobs::production`] | scheduler input and latest plan, learnt time corrections, queue actions |
//! | [`crate::orders::intake`] | the shop: order intake (group commit) |
//! | [`crate::orders::follow_up`] | the shop and operators: cancel, release, fulfil; a job's consequences for its order (retry, state, webhooks) |
//! | [`crate::orders::outbox`] | the webhook outbox |
//! | [`crate::inventory::writes`] | materials, spools, loading, adjustments; ledger booking in the event path |
//! | [`crate::inventory::loadout`] | what each printer has loaded, as the scheduler sees it (the seam with the inventory) |
//! | [`crate::maintenance::writes`] | maintenance tasks and completions; which printers a due task blocks |
//! | [`crate::catalog::writes`] | analysed files, catalog entries |

pub mod writer;

use crate::auth::{Principal, Role, new_token, random_hex, token_hash};
use crate::jobs::{Job, JobState};
use crate::metrics::{Gauges, Metrics};
use crate::printers::fleet::{self, Live, PrinterRecord, PrinterState, PrinterView};
use crate::store::{Store, StoreError, TokenRecord};
use farm_protocol::{Channel, PrinterId, Topics};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
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
    /// Changed fields of one printer, with its `id`: JSON text, rendered once for every
    /// stream client (a broadcast hands each receiver a clone: here a reference count).
    Printer(Arc<str>),
    Job(Box<Job>),
}

/// Changes a stream subscriber may fall behind by before it is resynced with a fresh
/// snapshot instead (the ring is shared, so a slow subscriber costs no memory of its own;
/// ~0.8 s of statuses at 5,000 printers).
pub const STREAM_BACKLOG: usize = 4096;

/// A change as the stream's subscribers share it: the first one to send it encodes it and
/// every other reuses those bytes, so a change is serialised once however many dashboards
/// watch (the encoding is the stream's, [`crate::api::stream`]).
#[derive(Debug)]
pub struct SharedChange {
    pub change: Change,
    encoded: std::sync::OnceLock<bytes::Bytes>,
}

impl SharedChange {
    pub fn new(change: Change) -> Arc<Self> {
        Arc::new(Self {
            change,
            encoded: std::sync::OnceLock::new(),
        })
    }

    /// The change encoded by `encode`, the first time only; a cheap clone of it afterwards.
    pub fn encoded(&self, encode: impl FnOnce(&Change) -> bytes::Bytes) -> bytes::Bytes {
        self.encoded.get_or_init(|| encode(&self.change)).clone()
    }
}

/// Everything the stream sends first.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
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

impl From<crate::jobs::actions::Refusal> for FarmError {
    fn from(r: crate::jobs::actions::Refusal) -> Self {
        use crate::jobs::actions::Refusal;
        match r {
            Refusal::NoPrinter(p) => FarmError::NoPrinter(p),
            Refusal::Conflict(c) => FarmError::Conflict(c),
            Refusal::Invalid(c) => FarmError::Invalid(c),
        }
    }
}

pub(crate) struct PrinterEntry {
    pub(crate) rec: PrinterRecord,
    pub(crate) live: Live,
    pub(crate) view: PrinterView,
}

#[derive(Default)]
pub(crate) struct Mirror {
    pub(crate) printers: BTreeMap<String, PrinterEntry>,
    pub(crate) jobs: crate::jobs::table::JobTable,
    pub(crate) job_numbers: HashMap<String, u64>,
    pub(crate) applied: HashMap<String, u64>,
    /// Token hash → who holds it (API tokens and printers' agent tokens).
    pub(crate) credentials: HashMap<String, Principal>,
    /// Materials, spools, ledger sums and job bookings.
    pub(crate) stock: crate::inventory::Stock,
    /// Maintenance tasks by id.
    pub(crate) tasks: BTreeMap<String, crate::maintenance::Task>,
    /// Orders, catalog, analysed files, webhook outbox.
    pub(crate) book: crate::orders::follow_up::OrderBook,
}

impl Mirror {
    /// Adds an enrolled printer (offline until it speaks) and its agent's credential.
    pub(crate) fn insert_printer(&mut self, rec: PrinterRecord) -> PrinterView {
        let agent = Principal {
            role: Role::Agent,
            printer: Some(rec.id.clone()),
            name: rec.id.clone(),
        };
        self.credentials.insert(rec.token_sha256.clone(), agent);
        let live = Live::default();
        let view = fleet::view(&rec, &live);
        self.printers.insert(
            rec.id.clone(),
            PrinterEntry {
                rec,
                live,
                view: view.clone(),
            },
        );
        view
    }
}

pub struct Farm {
    pub(crate) store: Store,
    pub(crate) mirror: Mutex<Mirror>,
    pub(crate) changes: broadcast::Sender<Arc<SharedChange>>,
    pub(crate) outbound: mpsc::Sender<Outbound>,
    pub(crate) topics: Topics,
    /// Base URL agents fetch files from.
    pub(crate) public_url: String,
    pub metrics: Metrics,
    /// Wakes the scheduler when a printer may have become free or a job was queued.
    pub kick: Notify,
    pub sse_clients: std::sync::atomic::AtomicU64,
    /// The controller's MQTT link is up and subscribed (shown in `/api/v1/health`).
    pub broker_connected: std::sync::atomic::AtomicBool,
    pub started: std::time::Instant,
    /// Settings, latest plan and learnt corrections of the production core.
    pub production: crate::jobs::production::Production,
    /// Wakes the webhook delivery task when the outbox has something new.
    pub webhook_kick: Notify,
    /// The thread that commits agents' events ([`writer`]).
    pub(crate) writer: writer::Writer,
    /// While the writer's staged batch awaits its fsync: what must not leave before it.
    pub(crate) held: Mutex<Option<writer::Held>>,
    /// Each enrolled printer's HMAC key, apart from the mirror: ingest checks every message
    /// with it, and must not wait for the mirror's lock (held by the writer for a whole
    /// batch) or copy the key to do so. Keys never change once enrolled.
    keys: RwLock<HashMap<String, Arc<str>>>,
}

/// What applying one event did, for the caller to acknowledge.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Applied(u64),
    Replay(u64),
    Gap { have: u64 },
}

/// A farm on a fresh store in `dir`, for unit tests. The broker queue's receiver is leaked so
/// the queue stays open (nothing reads it in these tests).
#[cfg(test)]
pub(crate) fn open_for_tests(dir: &std::path::Path) -> Arc<Farm> {
    let store = Store::open(&dir.join("farm.redb")).expect("store");
    let topics = Topics::new("farm").expect("topics");
    let (farm, rx) = Farm::load(store, topics, "http://x".into()).expect("load");
    std::mem::forget(rx);
    farm
}

pub(crate) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Printer names are free text for people, but bounded and printable.
pub(crate) fn clean_name(name: &str) -> Result<String, FarmError> {
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
            m.insert_printer(rec);
        }
        for job in store.jobs()? {
            m.job_numbers.insert(job.id.clone(), job.number);
            m.jobs.insert(job.number, job);
        }
        m.applied = store.applied_seqs()?.into_iter().collect();
        m.stock = crate::inventory::Stock {
            materials: store
                .materials()?
                .into_iter()
                .map(|x| (x.id.clone(), x))
                .collect(),
            spools: store.spools()?.into_iter().map(|s| (s.number, s)).collect(),
            ledger_sum_g: store.ledger_sums()?,
            bookings: store
                .bookings()?
                .into_iter()
                .map(|b| {
                    (
                        crate::inventory::ledger::booking_key(&b.job_id, b.attempt),
                        b,
                    )
                })
                .collect(),
        };
        m.tasks = store
            .maintenance_tasks()?
            .into_iter()
            .map(|t| (t.id.clone(), t))
            .collect();
        m.book = crate::orders::follow_up::OrderBook::load(&store, &m.jobs)?;
        let corrections = crate::jobs::production::learn(&m.jobs);
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
        let keys = m
            .printers
            .iter()
            .map(|(id, e)| (id.clone(), Arc::from(e.rec.secret.as_str())))
            .collect();
        let (changes, _) = broadcast::channel(STREAM_BACKLOG);
        let (outbound, rx) = mpsc::channel(10_000);
        let farm = Arc::new_cyclic(|me| Farm {
            writer: writer::Writer::start(me.clone()),
            held: Mutex::new(None),
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
            production: crate::jobs::production::Production::new(corrections),
            webhook_kick: Notify::new(),
            keys: RwLock::new(keys),
        });
        Ok((farm, rx))
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Mirror> {
        // A panic while holding the lock cannot leave the mirror ahead of the store (the store
        // commits first), so a poisoned lock is still safe to use.
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    pub(crate) fn announce_printer(&self, e: &mut PrinterEntry) {
        let new = fleet::view(&e.rec, &e.live);
        if new == e.view {
            return;
        }
        if new.state == PrinterState::Idle && e.view.state != PrinterState::Idle {
            self.kick.notify_one();
        }
        // The diff is only for the stream: with nobody watching it is not worth making (a
        // stream that subscribes later starts from a snapshot of the mirror, which has it).
        let diff = self.watched().then(|| fleet::diff(Some(&e.view), &new));
        e.view = new;
        if let Some(Some(d)) = diff {
            self.publish(Change::Printer(d.into()));
        }
    }

    /// Someone is on the live stream. Checked under the mirror lock, where changes are made
    /// and where a new subscriber takes its snapshot, so a change skipped here is in that
    /// snapshot.
    pub(crate) fn watched(&self) -> bool {
        self.changes.receiver_count() > 0
    }

    /// Puts a job just written to the store into the mirror (indexed by id and by its order)
    /// and on the live stream.
    pub(crate) fn mirror_new_job(&self, m: &mut Mirror, j: Job) {
        if let Some(o) = &j.order {
            m.book
                .jobs_of
                .entry(o.order_id.clone())
                .or_default()
                .push(j.number);
        }
        m.job_numbers.insert(j.id.clone(), j.number);
        self.announce_job(&j);
        m.jobs.insert(j.number, j);
    }

    pub(crate) fn announce_job(&self, j: &Job) {
        if self.watched() {
            self.publish(Change::Job(Box::new(j.clone())));
        }
    }

    pub(crate) fn send(&self, printer: &str, channel: Channel, payload: Vec<u8>) {
        let Ok(pid) = PrinterId::new(printer) else {
            return;
        };
        let msg = Outbound {
            topic: self.topics.printer(&pid, channel),
            payload,
            qos1: channel == Channel::Commands,
        };
        self.publish_outbound(msg);
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
    pub fn secret(&self, printer: &str) -> Option<Arc<str>> {
        // Poisoned only by a panic inside the two short sections below; the map is whole.
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.get(printer).cloned()
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
    pub fn subscribe(&self) -> (Snapshot, broadcast::Receiver<Arc<SharedChange>>) {
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
    pub async fn add_printer(
        &self,
        id: &str,
        name: Option<&str>,
        auto_eject: bool,
    ) -> Result<(PrinterRecord, String), FarmError> {
        let pid = PrinterId::new(id).map_err(|e| FarmError::Invalid(e.to_string()))?;
        let name = clean_name(name.unwrap_or(id))?;
        let token = new_token();
        let mut rec = PrinterRecord::new(
            pid.to_string(),
            name,
            random_hex(32),
            token_hash(&token),
            now(),
        );
        rec.auto_eject = auto_eject;
        self.write(move |farm, s| {
            if s.m.printers.contains_key(&rec.id) {
                return Err(FarmError::PrinterExists(rec.id));
            }
            s.put(|_, tx| tx.put_printer(&rec));
            farm.keys
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(rec.id.clone(), Arc::from(rec.secret.as_str()));
            let view = s.m.insert_printer(rec.clone());
            if let Some(json) = fleet::diff(None, &view) {
                farm.publish(Change::Printer(json.into()));
            }
            Ok((rec, token))
        })
        .await
    }

    /// Creates an API token for a role; returns the token (shown once).
    pub async fn add_token(&self, name: &str, role: Role) -> Result<String, FarmError> {
        let name = clean_name(name)?;
        let token = new_token();
        let hash = token_hash(&token);
        let rec = TokenRecord {
            name: name.clone(),
            role,
            created_at: now(),
        };
        self.write(move |_, s| {
            s.put(|_, tx| tx.put_token(&hash, &rec));
            s.m.credentials.insert(
                hash,
                Principal {
                    role,
                    printer: None,
                    name,
                },
            );
            Ok::<_, FarmError>(token)
        })
        .await
    }
}

//! The durable outbox (redb): events not yet applied by the controller, executed command ids,
//! and the job on the printer.
//!
//! Every event gets the next `seq` and is sealed and committed (redb's default immediate
//! durability, i.e. fsync'd) *before* anyone tries to publish it. It is deleted only when the
//! controller says it has applied it (`ack{applied_seq}`), not on the broker's PUBACK: the
//! embedded broker's PUBACK is not durable, so a controller killed after PUBACK would lose the
//! event. The next seq lives in the same table set and moves in the same transaction as the
//! events, so it survives restarts and can never be reused.
//!
//! redb calls are synchronous; the async methods run them in `spawn_blocking`. Several writes
//! may race: redb serialises write transactions, so seqs stay strictly increasing.

use farm_protocol::messages::Event;
use farm_protocol::{Envelope, PrinterId};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;

/// seq → sealed wire payload.
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
/// Counters: `next_seq`, `next_command`.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// command_id → (insertion number, result JSON).
const COMMANDS: TableDefinition<&str, (u64, &str)> = TableDefinition::new("commands");
/// insertion number → command_id, so the oldest ids can be pruned.
const COMMAND_ORDER: TableDefinition<u64, &str> = TableDefinition::new("command_order");
/// `current` → JSON of [`CurrentJob`].
const JOB: TableDefinition<&str, &str> = TableDefinition::new("job");

/// How many executed command ids are remembered (newest kept). Redeliveries come within
/// seconds or minutes; ten thousand covers days of a busy printer.
pub const COMMAND_IDS_KEPT: u64 = 10_000;

/// The job the agent has taken and not yet finished, kept so that a restart can close it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurrentJob {
    pub job_id: String,
    pub name: String,
    pub sha256: String,
    /// Unix time (s) when the agent accepted it.
    pub accepted_unix: f64,
    /// Last cumulative material reported for it, so a final report after a restart never
    /// goes below what the controller already booked.
    #[serde(default)]
    pub extruded_mm: Vec<f64>,
    /// The file reached the printer (else it was still being fetched).
    #[serde(default)]
    pub printing: bool,
}

/// What a [`Batch`] does to the stored current job.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum JobChange {
    #[default]
    Keep,
    Set(CurrentJob),
    Clear,
}

/// Things that must become durable together, in one transaction (one fsync).
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// Appended in this order with consecutive seqs.
    pub events: Vec<Event>,
    /// Marks a command id as executed, with its result JSON.
    pub command: Option<(String, String)>,
    pub job: JobChange,
}

impl Batch {
    pub fn event(event: Event) -> Self {
        Self {
            events: vec![event],
            ..Self::default()
        }
    }
}

/// Counters for status and for the link's send loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxState {
    /// Highest seq ever assigned (0 before the first event).
    pub last_seq: u64,
    /// Events stored and not yet acknowledged.
    pub pending: u64,
}

/// What an ack did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckOutcome {
    pub deleted: u64,
    /// Events given new seqs because the controller had already applied seqs beyond ours
    /// (this agent's state dir was lost or replaced). See [`Outbox::ack`].
    pub renumbered: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(
        "cannot open the outbox {path}: {source}; check that state_dir is writable and that no other agent uses it"
    )]
    Open { path: PathBuf, source: redb::Error },
    #[error("outbox storage error: {0}; check the disk under state_dir")]
    Store(#[from] redb::Error),
    #[error("cannot seal event: {0}")]
    Seal(#[from] farm_protocol::envelope::EncodeError),
    #[error("stored job record is unreadable: {0}")]
    Json(#[from] serde_json::Error),
    #[error("outbox worker stopped: {0}")]
    Join(#[from] tokio::task::JoinError),
}

fn store<E: Into<redb::Error>>(e: E) -> OutboxError {
    OutboxError::Store(e.into())
}

struct Inner {
    db: Database,
    printer: PrinterId,
    secret: String,
    command_ids_kept: u64,
    state: watch::Sender<OutboxState>,
}

/// A cheap, cloneable handle on the outbox file.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

impl Outbox {
    /// Opens (or creates) `path`. Synchronous: call it from `spawn_blocking` in async code.
    pub fn open(path: &Path, printer: PrinterId, secret: String) -> Result<Outbox, OutboxError> {
        Self::open_keeping(path, printer, secret, COMMAND_IDS_KEPT)
    }

    fn open_keeping(
        path: &Path,
        printer: PrinterId,
        secret: String,
        command_ids_kept: u64,
    ) -> Result<Outbox, OutboxError> {
        let open_err = |e: redb::Error| OutboxError::Open {
            path: path.to_path_buf(),
            source: e,
        };
        let db = Database::create(path).map_err(|e| open_err(e.into()))?;
        let txn = db.begin_write().map_err(|e| open_err(e.into()))?;
        let state = {
            let events = txn.open_table(EVENTS).map_err(|e| open_err(e.into()))?;
            let meta = txn.open_table(META).map_err(|e| open_err(e.into()))?;
            txn.open_table(COMMANDS).map_err(|e| open_err(e.into()))?;
            txn.open_table(COMMAND_ORDER)
                .map_err(|e| open_err(e.into()))?;
            txn.open_table(JOB).map_err(|e| open_err(e.into()))?;
            let next = meta
                .get("next_seq")
                .map_err(|e| open_err(e.into()))?
                .map_or(1, |v| v.value());
            OutboxState {
                last_seq: next - 1,
                pending: events.len().map_err(|e| open_err(e.into()))?,
            }
        };
        txn.commit().map_err(|e| open_err(e.into()))?;
        Ok(Outbox {
            inner: Arc::new(Inner {
                db,
                printer,
                secret,
                command_ids_kept,
                state: watch::Sender::new(state),
            }),
        })
    }

    /// Follows `last_seq` and `pending`; changes after every commit and ack.
    pub fn watch(&self) -> watch::Receiver<OutboxState> {
        self.inner.state.subscribe()
    }

    pub fn state(&self) -> OutboxState {
        *self.inner.state.borrow()
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, OutboxError> + Send + 'static,
    ) -> Result<T, OutboxError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner)).await?
    }

    /// Commits a batch durably and returns the seqs given to its events.
    pub async fn commit(&self, batch: Batch) -> Result<Vec<u64>, OutboxError> {
        self.blocking(move |i| i.commit(batch)).await
    }

    /// Appends one event; returns its seq.
    pub async fn push(&self, event: Event) -> Result<u64, OutboxError> {
        let seqs = self.commit(Batch::event(event)).await?;
        Ok(seqs.first().copied().unwrap_or_default())
    }

    /// Up to `limit` stored events with `seq >= from`, in seq order.
    pub async fn pending_from(
        &self,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, OutboxError> {
        self.blocking(move |i| {
            let txn = i.db.begin_read().map_err(store)?;
            let t = txn.open_table(EVENTS).map_err(store)?;
            let mut out = Vec::new();
            for row in t.range(from..).map_err(store)?.take(limit) {
                let (k, v) = row.map_err(store)?;
                out.push((k.value(), v.value().to_vec()));
            }
            Ok(out)
        })
        .await
    }

    /// The controller has applied every event up to `applied_seq`: forget them.
    ///
    /// If `applied_seq` is at or beyond our own last seq, the controller has applied events
    /// from an earlier life of this printer id (a wiped or replaced state dir) and is ignoring
    /// ours as replays. Then the pending events are re-sealed with seqs after `applied_seq`
    /// so they are applied instead of being lost.
    pub async fn ack(&self, applied_seq: u64) -> Result<AckOutcome, OutboxError> {
        self.blocking(move |i| i.ack(applied_seq)).await
    }

    /// True if this command id was executed before.
    pub async fn command_seen(&self, command_id: String) -> Result<bool, OutboxError> {
        self.blocking(move |i| {
            let txn = i.db.begin_read().map_err(store)?;
            let t = txn.open_table(COMMANDS).map_err(store)?;
            Ok(t.get(command_id.as_str()).map_err(store)?.is_some())
        })
        .await
    }

    /// The job taken and not finished, if any.
    pub async fn current_job(&self) -> Result<Option<CurrentJob>, OutboxError> {
        self.blocking(|i| {
            let txn = i.db.begin_read().map_err(store)?;
            let t = txn.open_table(JOB).map_err(store)?;
            match t.get("current").map_err(store)? {
                Some(v) => Ok(Some(serde_json::from_str(v.value())?)),
                None => Ok(None),
            }
        })
        .await
    }
}

impl Inner {
    fn seal(&self, event: Event, seq: u64) -> Result<Vec<u8>, OutboxError> {
        let env = Envelope::new(self.printer.clone(), event).with_seq(seq);
        Ok(farm_protocol::seal(&env, self.secret.as_bytes())?)
    }

    fn commit(&self, batch: Batch) -> Result<Vec<u64>, OutboxError> {
        let txn = self.db.begin_write().map_err(store)?;
        let mut seqs = Vec::with_capacity(batch.events.len());
        let (last_seq, pending) = {
            let mut events = txn.open_table(EVENTS).map_err(store)?;
            let mut meta = txn.open_table(META).map_err(store)?;
            let mut next = meta
                .get("next_seq")
                .map_err(store)?
                .map_or(1, |v| v.value());
            for event in batch.events {
                let wire = self.seal(event, next)?;
                events.insert(next, wire.as_slice()).map_err(store)?;
                seqs.push(next);
                next += 1;
            }
            meta.insert("next_seq", next).map_err(store)?;

            if let Some((id, result)) = &batch.command {
                let mut commands = txn.open_table(COMMANDS).map_err(store)?;
                let mut order = txn.open_table(COMMAND_ORDER).map_err(store)?;
                let n = meta
                    .get("next_command")
                    .map_err(store)?
                    .map_or(0, |v| v.value());
                meta.insert("next_command", n + 1).map_err(store)?;
                commands
                    .insert(id.as_str(), (n, result.as_str()))
                    .map_err(store)?;
                order.insert(n, id.as_str()).map_err(store)?;
                // Keep the table bounded: drop the oldest ids.
                while order.len().map_err(store)? > self.command_ids_kept {
                    let Some((_, old)) = order.pop_first().map_err(store)? else {
                        break;
                    };
                    let old = old.value().to_string();
                    commands.remove(old.as_str()).map_err(store)?;
                }
            }

            let mut job = txn.open_table(JOB).map_err(store)?;
            match &batch.job {
                JobChange::Keep => {}
                JobChange::Set(j) => {
                    job.insert("current", serde_json::to_string(j)?.as_str())
                        .map_err(store)?;
                }
                JobChange::Clear => {
                    job.remove("current").map_err(store)?;
                }
            }
            (next - 1, events.len().map_err(store)?)
        };
        txn.commit().map_err(store)?;
        self.state.send_replace(OutboxState { last_seq, pending });
        Ok(seqs)
    }

    fn ack(&self, applied_seq: u64) -> Result<AckOutcome, OutboxError> {
        let txn = self.db.begin_write().map_err(store)?;
        let mut outcome = AckOutcome::default();
        let (last_seq, pending) = {
            let mut events = txn.open_table(EVENTS).map_err(store)?;
            let mut meta = txn.open_table(META).map_err(store)?;
            let next = meta
                .get("next_seq")
                .map_err(store)?
                .map_or(1, |v| v.value());
            let stale: Vec<(u64, Vec<u8>)> = events
                .extract_from_if(..=applied_seq, |_, _| true)
                .map_err(store)?
                .map(|r| r.map(|(k, v)| (k.value(), v.value().to_vec())))
                .collect::<Result<_, _>>()
                .map_err(store)?;
            if stale.is_empty() && applied_seq < next {
                // Nothing to forget: skip the commit (and its fsync). Dropping aborts.
                return Ok(outcome);
            }
            let mut new_next = next;
            if applied_seq >= next {
                // The controller is ahead of us: everything we hold was ignored as a replay.
                new_next = applied_seq + 1;
                for (seq, wire) in stale {
                    let key = self.secret.as_bytes();
                    let env: Envelope<Event> = match farm_protocol::open(&wire, key, &self.printer)
                    {
                        Ok(env) => env,
                        Err(e) => {
                            // Sealed with another secret (rotated since): unusable anyway.
                            tracing::warn!(seq, error = %e, "dropping a stored event that no longer verifies");
                            continue;
                        }
                    };
                    let resealed = farm_protocol::seal(&env.with_seq(new_next), key)?;
                    events
                        .insert(new_next, resealed.as_slice())
                        .map_err(store)?;
                    new_next += 1;
                    outcome.renumbered += 1;
                }
                meta.insert("next_seq", new_next).map_err(store)?;
            } else {
                outcome.deleted = stale.len() as u64;
            }
            (new_next - 1, events.len().map_err(store)?)
        };
        txn.commit().map_err(store)?;
        self.state.send_replace(OutboxState { last_seq, pending });
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_protocol::messages::Outcome;

    const KEY: &str = "k";

    fn id() -> PrinterId {
        PrinterId::new("p-1").expect("id")
    }

    fn open_in(dir: &tempfile::TempDir) -> Outbox {
        Outbox::open(&dir.path().join("outbox.redb"), id(), KEY.into()).expect("open")
    }

    fn ready() -> Event {
        Event::PrinterReady {}
    }

    fn seqs_of(rows: &[(u64, Vec<u8>)]) -> Vec<u64> {
        rows.iter().map(|(s, _)| *s).collect()
    }

    #[tokio::test]
    async fn seq_starts_at_one_and_survives_reopen_with_events_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = open_in(&dir);
        assert_eq!(ob.state(), OutboxState::default());
        assert_eq!(ob.push(ready()).await.expect("push"), 1);
        let two = ob
            .commit(Batch {
                events: vec![Event::JobAccepted { job_id: "j".into() }, ready()],
                ..Batch::default()
            })
            .await
            .expect("commit");
        assert_eq!(two, vec![2, 3]);
        drop(ob);

        let ob = open_in(&dir);
        assert_eq!(
            ob.state(),
            OutboxState {
                last_seq: 3,
                pending: 3
            }
        );
        let rows = ob.pending_from(0, 100).await.expect("read");
        assert_eq!(seqs_of(&rows), vec![1, 2, 3]);
        // Stored bytes are the sealed wire form with the seq inside.
        let env: Envelope<Event> =
            farm_protocol::open(&rows[1].1, KEY.as_bytes(), &id()).expect("open");
        assert_eq!(env.seq, Some(2));
        assert_eq!(env.body, Event::JobAccepted { job_id: "j".into() });
        assert_eq!(ob.push(ready()).await.expect("push"), 4);
    }

    #[tokio::test]
    async fn ack_deletes_exactly_up_to_n_and_seq_never_reuses() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = open_in(&dir);
        for _ in 0..5 {
            ob.push(ready()).await.expect("push");
        }
        let out = ob.ack(3).await.expect("ack");
        assert_eq!(out.deleted, 3);
        assert_eq!(
            seqs_of(&ob.pending_from(0, 100).await.expect("r")),
            vec![4, 5]
        );
        assert_eq!(ob.state().pending, 2);
        // A stale (lower) ack changes nothing.
        assert_eq!(ob.ack(2).await.expect("ack").deleted, 0);
        assert_eq!(seqs_of(&ob.pending_from(5, 100).await.expect("r")), vec![5]);
        ob.ack(5).await.expect("ack");
        drop(ob);
        let ob = open_in(&dir);
        assert_eq!(
            ob.state(),
            OutboxState {
                last_seq: 5,
                pending: 0
            }
        );
        assert_eq!(ob.push(ready()).await.expect("push"), 6);
    }

    #[tokio::test]
    async fn an_ack_beyond_our_seq_renumbers_pending_events() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = open_in(&dir);
        ob.push(ready()).await.expect("push");
        ob.push(Event::JobAccepted { job_id: "j".into() })
            .await
            .expect("push");
        let out = ob.ack(40).await.expect("ack");
        assert_eq!(out.renumbered, 2);
        let rows = ob.pending_from(0, 10).await.expect("r");
        assert_eq!(seqs_of(&rows), vec![41, 42]);
        let env: Envelope<Event> =
            farm_protocol::open(&rows[1].1, KEY.as_bytes(), &id()).expect("open");
        assert_eq!((env.seq, env.body.job_id()), (Some(42), Some("j")));
        assert_eq!(ob.push(ready()).await.expect("push"), 43);
    }

    #[tokio::test]
    async fn command_ids_are_remembered_across_reopen_and_pruned() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = open_in(&dir);
        assert!(!ob.command_seen("c-1".into()).await.expect("seen"));
        ob.commit(Batch {
            events: vec![Event::CommandResult {
                command_id: "c-1".into(),
                ok: true,
                message: String::new(),
            }],
            command: Some(("c-1".into(), "{\"ok\":true}".into())),
            ..Batch::default()
        })
        .await
        .expect("commit");
        drop(ob);
        let ob = open_in(&dir);
        assert!(ob.command_seen("c-1".into()).await.expect("seen"));
        assert!(!ob.command_seen("c-2".into()).await.expect("seen"));

        // Pruning keeps the newest ids (a small limit here; COMMAND_IDS_KEPT in service).
        drop(ob);
        let kept = 20;
        let ob = Outbox::open_keeping(&dir.path().join("outbox.redb"), id(), KEY.into(), kept)
            .expect("open");
        for n in 0..kept {
            ob.commit(Batch {
                command: Some((format!("x-{n}"), "{}".into())),
                ..Batch::default()
            })
            .await
            .expect("commit");
        }
        assert!(!ob.command_seen("c-1".into()).await.expect("seen"));
        assert!(ob.command_seen("x-0".into()).await.expect("seen"));
        assert!(
            ob.command_seen(format!("x-{}", kept - 1))
                .await
                .expect("seen")
        );
    }

    #[tokio::test]
    async fn current_job_round_trips_and_clears() {
        let dir = tempfile::tempdir().expect("tmp");
        let ob = open_in(&dir);
        let job = CurrentJob {
            job_id: "j-1".into(),
            name: "cube".into(),
            sha256: "ab".repeat(32),
            accepted_unix: 1.5,
            extruded_mm: vec![1.0],
            printing: true,
        };
        ob.commit(Batch {
            job: JobChange::Set(job.clone()),
            ..Batch::default()
        })
        .await
        .expect("set");
        drop(ob);
        let ob = open_in(&dir);
        assert_eq!(ob.current_job().await.expect("get"), Some(job));
        ob.commit(Batch {
            events: vec![Event::JobFinished {
                job_id: "j-1".into(),
                outcome: Outcome::Failed,
                reason: None,
                extruded_mm: vec![1.0],
                duration_s: 1.0,
            }],
            job: JobChange::Clear,
            ..Batch::default()
        })
        .await
        .expect("clear");
        assert_eq!(ob.current_job().await.expect("get"), None);
    }
}

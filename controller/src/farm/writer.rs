//! The writer: the one OS thread that commits to the store, many writes per fsync (group
//! commit).
//!
//! Ingest hands it verified events ([`Farm::submit_event`]) without waiting for the disk;
//! every other write (API, scheduler, webhook results, order intake) is a [`Request`]: a
//! closure sent with [`Farm::write`], whose async caller awaits a oneshot answer. The thread
//! takes everything waiting (up to [`MAX_BATCH`]) and, under the mirror lock, stages each item
//! in arrival order into the batch's one transaction: an event is decided
//! ([`Farm::decide_event`]), written ([`Farm::write_event`], its `(printer, seq)` mark among
//! the rows) and mirrored ([`Farm::finish_event`]); a request decides against the mirror,
//! refuses having written nothing or writes its rows ([`Staging::put`]) and updates the
//! mirror. Then it drops the lock and commits ([`crate::store::Store::commit_batch`], the
//! batch's only fsync); only after that returns does anything leave the controller: stream
//! changes, commands and webhook wake-ups held back meanwhile ([`Held`]), one ack per
//! printer, then the callers' answers.
//!
//! The mirror is updated while staging, so a later item in the batch sees an earlier one's
//! effects without an overlay. What the outside can observe waits for the fsync; a failed
//! staging or fsync stops the controller (it must not go on with a mirror ahead of the disk:
//! systemd restarts it and agents resend what was not acked). See ARCHITECTURE.md, "One
//! writer owns the store".

use super::{Applied, Change, Farm, Mirror, Outbound};
use crate::printers::agents::Decided;
use crate::store::{Batch, Tx};
use farm_protocol::messages::Event;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, Weak};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{Receiver, Sender, channel};
use tokio::sync::oneshot;

/// Most events and requests in one durable commit.
pub const MAX_BATCH: usize = 1024;
/// Events waiting for the writer before ingest refuses more (not acked, so agents resend).
const QUEUE: usize = 64 * MAX_BATCH;

/// Sent back once the request's batch is durable (answers the caller).
pub(crate) type Answer = Box<dyn FnOnce() + Send>;
/// A write to run on the writer thread: decides against the mirror, stages its rows, updates
/// the mirror; returns how to answer its caller after the commit.
pub(crate) type Request = Box<dyn FnOnce(&Farm, &mut Staging<'_>) -> Answer + Send>;

/// What the writer thread takes, in arrival order.
pub(crate) enum Submitted {
    /// One verified event from an agent (acked after the commit).
    Event {
        printer: String,
        seq: u64,
        event: Event,
    },
    /// Any other durable write (API, scheduler, webhook results, order intake).
    Request(Request),
}

/// Everyone's handle on the writer thread.
pub(crate) struct Writer(Sender<Submitted>);

/// What the outside must not see before the staged batch is durable.
#[derive(Default)]
pub(crate) struct Held {
    changes: Vec<Change>,
    outbound: Vec<Outbound>,
    webhooks: bool,
}

/// One request's view of the batch: the mirror (locked for the whole batch) and the batch's
/// one transaction. A request decides first, against `m`, and writes only once accepted: a
/// refused request returns its error having written nothing, so the rest of the batch stands.
pub(crate) struct Staging<'a> {
    pub(crate) m: &'a mut Mirror,
    batch: &'a mut Batch,
    writes: usize,
}

impl Staging<'_> {
    /// Writes rows into the batch's transaction (`f` also sees the mirror as it is now).
    /// A failure here stops the controller: what is already staged, for this request and
    /// the others in the batch, cannot be taken back on its own.
    pub(crate) fn put<T, E: std::fmt::Display>(
        &mut self,
        f: impl FnOnce(&Mirror, &mut Tx<'_>) -> Result<T, E>,
    ) -> T {
        self.writes += 1;
        let m = &*self.m;
        match self.batch.stage(|tx| f(m, tx)) {
            Ok(t) => t,
            Err(e) => fatal(&format!("could not stage a write: {e}")),
        }
    }
}

impl Writer {
    /// Starts the writer thread for the farm being built (`farm` upgrades once it exists).
    pub(crate) fn start(farm: Weak<Farm>) -> Self {
        let (tx, rx) = channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("farm-writer".into())
            .spawn(move || run(farm, rx));
        if let Err(e) = spawned {
            fatal(&format!("could not start the writer thread: {e}"));
        }
        Writer(tx)
    }
}

fn run(farm: Weak<Farm>, mut rx: Receiver<Submitted>) {
    let _panic = StopOnPanic;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Ends when the farm (and with it the sender) is dropped.
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let Some(farm) = farm.upgrade() else { return };
        let answers = farm.commit_batch(&mut batch);
        // Callers hear back only once this thread holds no reference to the farm, so a
        // caller that drops the farm after its answer really closes the store.
        drop(farm);
        for answer in answers {
            answer();
        }
    }
}

/// A panic in the writer would leave every later write unapplied and unanswered while the
/// controller looks alive: stop instead, so systemd restarts it.
struct StopOnPanic;

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fatal("the writer thread panicked");
        }
    }
}

pub(crate) fn fatal(why: &str) -> ! {
    tracing::error!(
        "{why}; stopping the controller so it restarts from the store (agents resend unacknowledged events)"
    );
    std::process::exit(70)
}

fn lock(m: &Mutex<Option<Held>>) -> MutexGuard<'_, Option<Held>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Wraps a typed write into a [`Request`] and the receiver its answer arrives on.
fn request<T, E>(
    f: impl FnOnce(&Farm, &mut Staging<'_>) -> Result<T, E> + Send + 'static,
) -> (Request, oneshot::Receiver<Result<T, E>>)
where
    T: Send + 'static,
    E: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let req: Request = Box::new(move |farm, s| {
        let before = s.writes;
        let out = f(farm, s);
        if out.is_err() && s.writes != before {
            // A refusal after writing would commit half a request with the others.
            fatal("a refused write had already staged rows (decide first, then write)");
        }
        Box::new(move || {
            let _ = tx.send(out);
        })
    });
    (req, rx)
}

impl Farm {
    /// Runs `f` on the writer thread, in the next group commit, and returns its answer once
    /// that commit is durable. `f` decides against `s.m` and returns an error before any
    /// [`Staging::put`] to refuse; it must not call back into the writer or take the mirror
    /// lock (the writer holds it). For async callers: nothing blocks the worker thread.
    pub(crate) async fn write<T, E>(
        &self,
        f: impl FnOnce(&Farm, &mut Staging<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let (req, rx) = request(f);
        self.submit_request(req).await;
        match rx.await {
            Ok(out) => out,
            // The writer answers every request or stops the process.
            Err(_) => fatal("the writer dropped a request unanswered"),
        }
    }

    /// [`Farm::write`] for threads that may block (tests, the bench, `spawn_blocking`);
    /// never call it on an async worker thread.
    pub(crate) fn write_blocking<T, E>(
        &self,
        f: impl FnOnce(&Farm, &mut Staging<'_>) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let (req, rx) = request(f);
        if self
            .writer
            .0
            .blocking_send(Submitted::Request(req))
            .is_err()
        {
            fatal("the writer thread is gone");
        }
        match rx.blocking_recv() {
            Ok(out) => out,
            Err(_) => fatal("the writer dropped a request unanswered"),
        }
    }

    /// Queues a request that answers its callers itself (order intake's batches); waits only
    /// for room in the queue, never for the disk.
    pub(crate) async fn submit_request(&self, req: Request) {
        if self.writer.0.send(Submitted::Request(req)).await.is_err() {
            fatal("the writer thread is gone");
        }
    }

    /// Hands a verified event to the writer; it is applied, committed and then acked.
    /// False if the writer is too far behind: the event is not acked and the agent resends it.
    pub fn submit_event(&self, printer: &str, seq: u64, event: Event) -> bool {
        let s = Submitted::Event {
            printer: printer.to_string(),
            seq,
            event,
        };
        match self.writer.0.try_send(s) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.metrics.mqtt_dropped.inc("writer_busy");
                false
            }
            Err(TrySendError::Closed(_)) => fatal("the writer thread is gone"),
        }
    }

    /// Stages everything in the batch in one transaction, commits once, then releases what
    /// it produced and acks agents; returns the callers' answers (all after the commit).
    fn commit_batch(&self, batch: &mut Vec<Submitted>) -> Vec<Answer> {
        let mut acks: BTreeMap<String, u64> = BTreeMap::new();
        let mut answers: Vec<Answer> = vec![];
        let staged = {
            // Lock order as everywhere: the mirror, then the store's write transaction.
            let mut guard = self.lock();
            let mut tx = match self.store.begin() {
                Ok(tx) => tx,
                Err(e) => fatal(&format!("could not open a store transaction: {e}")),
            };
            *lock(&self.held) = Some(Held::default());
            let mut s = Staging {
                m: &mut guard,
                batch: &mut tx,
                writes: 0,
            };
            for item in batch.drain(..) {
                match item {
                    Submitted::Request(req) => answers.push(req(self, &mut s)),
                    Submitted::Event {
                        printer,
                        seq,
                        event,
                    } => {
                        if let Some(a) = self.stage_event(&mut s, &printer, seq, &event) {
                            acks.insert(printer, a);
                        }
                    }
                }
            }
            tx
        };
        // The fsync, with no lock held.
        if let Err(e) = self.store.commit_batch(staged) {
            fatal(&format!(
                "could not commit the farm's writes to the store: {e}"
            ));
        }
        self.release_held();
        for (printer, seq) in acks {
            self.ack(&printer, seq);
        }
        answers
    }

    /// Decides, writes and mirrors one event; the seq to ack, or `None` (not acked).
    pub(crate) fn stage_event(
        &self,
        s: &mut Staging<'_>,
        printer: &str,
        seq: u64,
        event: &Event,
    ) -> Option<u64> {
        let applied = match self.decide_event(s.m, printer, seq, event) {
            Ok(Decided::Done(a)) => a,
            Ok(Decided::Apply(mut step)) => {
                s.put(|m, tx| self.write_event(m, tx, &mut step));
                self.finish_event(s.m, *step)
            }
            // Nothing written (e.g. the printer was removed): not acked.
            Err(e) => {
                tracing::error!(printer, seq, "could not apply event: {e}");
                return None;
            }
        };
        let (Applied::Applied(a) | Applied::Replay(a) | Applied::Gap { have: a }) = applied;
        Some(a)
    }

    /// Puts a change on the live stream, or holds it while a staged batch awaits its commit
    /// (from any thread, so the stream keeps the mirror's order).
    pub(crate) fn publish(&self, c: Change) {
        match lock(&self.held).as_mut() {
            Some(h) => h.changes.push(c),
            None => {
                let _ = self.changes.send(super::SharedChange::new(c));
            }
        }
    }

    /// Queues a message for the broker, held like [`Farm::publish`].
    pub(crate) fn publish_outbound(&self, msg: Outbound) {
        let mut held = lock(&self.held);
        match held.as_mut() {
            Some(h) => h.outbound.push(msg),
            None => self.try_outbound(msg),
        }
    }

    /// Wakes the webhook delivery task, held like [`Farm::publish`] (a delivery must not
    /// reach a shop before the commit that wrote it).
    pub(crate) fn wake_webhooks(&self) {
        match lock(&self.held).as_mut() {
            Some(h) => h.webhooks = true,
            None => self.webhook_kick.notify_one(),
        }
    }

    fn try_outbound(&self, msg: Outbound) {
        if self.outbound.try_send(msg).is_err() {
            self.metrics
                .publish_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Sends what the batch held, in order, under the same lock, so nothing published
    /// meanwhile overtakes it.
    fn release_held(&self) {
        let mut held = lock(&self.held);
        if let Some(h) = held.take() {
            for c in h.changes {
                let _ = self.changes.send(super::SharedChange::new(c));
            }
            for msg in h.outbound {
                self.try_outbound(msg);
            }
            if h.webhooks {
                self.webhook_kick.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::FarmError;
    use farm_protocol::messages::AckMessage;
    use farm_protocol::{Channel, open};
    use std::collections::HashMap;
    use std::sync::atomic::Ordering::Relaxed;

    /// Runs one async write from a plain test thread.
    pub(crate) fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    const PRINTERS: usize = 16;
    const EVENTS: u64 = 150;
    const THREADS: usize = 4;

    /// Many printers' events submitted at once from several threads, with resends: each is
    /// applied exactly once, in seq order, and every ack leaves only after the durable commit
    /// that holds its `(printer, seq)` mark (the store's own account of what a crash would keep).
    #[test]
    fn concurrent_events_are_applied_once_in_order_and_acked_after_their_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(&dir.path().join("farm.redb")).expect("store");
        let topics = farm_protocol::Topics::new("farm").expect("topics");
        let (farm, mut outbound) = Farm::load(store, topics, "http://x".into()).expect("load");
        let ids: Vec<String> = (0..PRINTERS).map(|i| format!("p-{i}")).collect();
        let mut secrets = HashMap::new();
        for id in &ids {
            let (rec, _) = block(farm.add_printer(id, None, false)).expect("enrol");
            secrets.insert(id.clone(), rec.secret);
        }

        // Reads acks as the link would send them and checks each against the disk.
        let acks = {
            let farm = farm.clone();
            std::thread::spawn(move || {
                let mut last: HashMap<String, u64> = HashMap::new();
                while last.len() < PRINTERS || last.values().any(|s| *s < EVENTS) {
                    let Some(msg) = outbound.blocking_recv() else {
                        break;
                    };
                    let Some((pid, Channel::Acks)) = farm.topics().parse(&msg.topic) else {
                        continue;
                    };
                    let key = secrets[pid.as_str()].as_bytes();
                    let AckMessage::Ack { applied_seq } =
                        open::<AckMessage>(&msg.payload, key, &pid)
                            .expect("ack")
                            .body;
                    let durable = farm.store.durable_applied_seq(pid.as_str());
                    assert!(
                        durable >= applied_seq,
                        "{pid} acked {applied_seq} while the disk holds only {durable}"
                    );
                    let prev = last.insert(pid.to_string(), applied_seq).unwrap_or(0);
                    assert!(applied_seq >= prev, "acks of {pid} went backwards");
                }
                last
            })
        };

        let senders: Vec<_> = (0..THREADS)
            .map(|t| {
                let farm = farm.clone();
                let mine: Vec<String> = ids.iter().skip(t).step_by(THREADS).cloned().collect();
                std::thread::spawn(move || {
                    for seq in 1..=EVENTS {
                        for p in &mine {
                            let e = Event::FirmwareMessage {
                                message: format!("line {seq}"),
                            };
                            while !farm.submit_event(p, seq, e.clone()) {
                                std::thread::yield_now();
                            }
                            if seq % 10 == 0 {
                                // A resend of an applied event (reconnect): recognised, not reapplied.
                                let again = Event::FirmwareMessage {
                                    message: format!("line {}", seq - 1),
                                };
                                while !farm.submit_event(p, seq - 1, again.clone()) {
                                    std::thread::yield_now();
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        for s in senders {
            s.join().expect("sender");
        }
        let last = acks.join().expect("acks");

        assert!(
            last.values().all(|s| *s == EVENTS),
            "every printer acked to the end"
        );
        let m = &farm.metrics;
        assert_eq!(
            m.events_applied.load(Relaxed),
            PRINTERS as u64 * EVENTS,
            "each event applied exactly once"
        );
        assert_eq!(
            m.events_replayed.load(Relaxed),
            PRINTERS as u64 * EVENTS / 10
        );
        assert_eq!(
            m.events_out_of_order.load(Relaxed),
            0,
            "applied in seq order"
        );
        for id in &ids {
            assert_eq!(farm.store.durable_applied_seq(id), EVENTS);
        }
        let stored: HashMap<String, u64> = farm
            .store
            .applied_seqs()
            .expect("seqs")
            .into_iter()
            .collect();
        assert!(ids.iter().all(|id| stored[id] == EVENTS));
    }

    /// API writes from many async callers at once, some of them refused, all queued while
    /// the writer is held so they share a batch: every accepted write is already in the
    /// store (a fresh read transaction sees it) when its caller hears back, and the refused
    /// ones are answered with their own error without costing the others anything.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn api_writes_are_answered_after_their_commit_and_a_refusal_loses_nothing_else() {
        use crate::inventory::ledger::{Adjust, Reason};
        use crate::inventory::writes::WriteError;
        const GOOD: usize = 40;
        const BAD: usize = 10;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(&dir.path().join("farm.redb")).expect("store");
        let topics = farm_protocol::Topics::new("farm").expect("topics");
        let (farm, _outbound) = Farm::load(store, topics, "http://x".into()).expect("load");
        farm.add_printer("p-1", None, true).await.expect("printer");
        let n = crate::inventory::NewMaterial {
            id: None,
            material: "PLA".into(),
            colour: "black".into(),
            diameter_mm: None,
            density_g_cm3: None,
            cost_per_kg: 20.0,
            low_stock_g: None,
        };
        let mat = crate::inventory::new_material(n, 1.75).expect("material");
        let mat = farm.put_material(mat, false).await.expect("material");
        let spool = farm
            .add_spools(crate::inventory::NewSpool {
                material: mat.id,
                initial_g: 1000.0,
                tare_g: None,
                lot: None,
                location: None,
                count: Some(1),
            })
            .await
            .expect("spool")
            .remove(0)
            .spool;
        let delta = |g| Adjust {
            reason: Reason::Delivery,
            gross_g: None,
            net_g: None,
            delta_g: Some(g),
            note: None,
        };

        // Keep the writer busy inside a request while every other request queues up behind
        // it, so they are all taken into the next batch together.
        let queued = |farm: &Farm| farm.writer.0.max_capacity() - farm.writer.0.capacity();
        let (entered, inside) = std::sync::mpsc::channel::<()>();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        farm.submit_request(Box::new(move |_, _| {
            let _ = entered.send(());
            let _ = wait.recv();
            Box::new(|| {})
        }))
        .await;
        tokio::task::spawn_blocking(move || inside.recv())
            .await
            .expect("join")
            .expect("the writer runs the blocker");
        let mut tasks = vec![];
        for i in 0..GOOD {
            let (farm, id, number) = (farm.clone(), spool.id.clone(), spool.number);
            tasks.push(tokio::spawn(async move {
                let (_, row) = farm
                    .adjust_spool(&id, delta(1.0), "test")
                    .await
                    .expect("accepted");
                let stored = farm.store.ledger(number, row.n - 1, 1).expect("read");
                assert_eq!(
                    stored,
                    vec![row],
                    "adjustment {i} answered before its commit"
                );
            }));
        }
        for i in 0..BAD {
            let farm = farm.clone();
            tasks.push(tokio::spawn(async move {
                let refused = farm.adjust_spool("s-999", delta(1.0), "test").await;
                assert!(
                    matches!(refused, Err(WriteError::Refused(_))),
                    "{i}: {refused:?}"
                );
                let refused = farm.clear_bed("p-1").await;
                assert!(
                    matches!(refused, Err(FarmError::Conflict(_))),
                    "{i}: {refused:?}"
                );
            }));
        }
        while queued(&farm) < GOOD + BAD {
            tokio::task::yield_now().await;
        }
        go.send(()).expect("release the writer");
        for t in tasks {
            t.await.expect("caller");
        }

        let sums = farm.store.ledger_sums().expect("sums");
        assert_eq!(sums.get(&spool.number).copied(), Some(GOOD as f64));
        assert_eq!(
            farm.spool(&spool.id).expect("spool").remaining_g,
            1000.0 + GOOD as f64
        );
    }
}

//! The writer: one OS thread that makes agents' events durable, many per fsync (group commit).
//!
//! Ingest verifies an event and hands it here ([`Farm::submit_event`]) without waiting for the
//! disk. The thread takes everything waiting (up to [`MAX_BATCH`]) and, under the mirror lock,
//! for each event in arrival order: decides it ([`Farm::decide_event`]: the exactly-once,
//! in-order rule and its effects), writes its rows into the batch's one transaction
//! ([`Farm::write_event`], the `(printer, seq)` mark among them) and applies it to the mirror
//! ([`Farm::finish_event`]). Then it drops the lock and commits ([`crate::store::Store::commit_batch`],
//! the batch's only fsync); only after that returns does anything leave the controller:
//! stream changes, commands and webhook wake-ups held back meanwhile ([`Held`]), then one
//! ack per printer.
//!
//! The mirror is updated while staging, so a later event in the batch sees an earlier one's
//! effects (two events of one printer, two jobs of one order) without an overlay. What the
//! outside can observe waits for the fsync; a failed fsync stops the controller (it must not go
//! on with a mirror ahead of the disk: systemd restarts it and agents resend what was not
//! acked). See ARCHITECTURE.md, "the writer".

use super::{Applied, Change, Farm, Outbound};
use crate::printers::agents::Decided;
use farm_protocol::messages::Event;
use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, MutexGuard, Weak};

/// Most events in one durable commit.
pub const MAX_BATCH: usize = 1024;
/// Events waiting for the writer before ingest refuses more (not acked, so agents resend).
const QUEUE: usize = 64 * MAX_BATCH;

/// One verified event for the writer.
pub(crate) struct Submitted {
    printer: String,
    seq: u64,
    event: Event,
}

/// Ingest's handle on the writer thread.
pub(crate) struct Writer(SyncSender<Submitted>);

/// What the outside must not see before the staged batch is durable.
#[derive(Default)]
pub(crate) struct Held {
    changes: Vec<Change>,
    outbound: Vec<Outbound>,
    webhooks: bool,
}

impl Writer {
    /// Starts the writer thread for the farm being built (`farm` upgrades once it exists).
    pub(crate) fn start(farm: Weak<Farm>) -> Self {
        let (tx, rx) = sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("farm-writer".into())
            .spawn(move || run(farm, rx));
        if let Err(e) = spawned {
            fatal(&format!("could not start the writer thread: {e}"));
        }
        Writer(tx)
    }
}

fn run(farm: Weak<Farm>, rx: Receiver<Submitted>) {
    let _panic = StopOnPanic;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Ends when the farm (and with it the sender) is dropped.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let Some(farm) = farm.upgrade() else { return };
        farm.commit_batch(&mut batch);
    }
}

/// A panic in the writer would leave every later event unapplied and unacked while the
/// controller looks alive: stop instead, so systemd restarts it.
struct StopOnPanic;

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fatal("the writer thread panicked");
        }
    }
}

fn fatal(why: &str) -> ! {
    tracing::error!(
        "{why}; stopping the controller so it restarts from the store (agents resend unacknowledged events)"
    );
    std::process::exit(70)
}

fn lock(m: &Mutex<Option<Held>>) -> MutexGuard<'_, Option<Held>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Farm {
    /// Hands a verified event to the writer; it is applied, committed and then acked.
    /// False if the writer is too far behind: the event is not acked and the agent resends it.
    pub fn submit_event(&self, printer: &str, seq: u64, event: Event) -> bool {
        let s = Submitted {
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
            Err(TrySendError::Disconnected(_)) => fatal("the writer thread is gone"),
        }
    }

    /// Stages every event of the batch in one transaction, commits once, then releases what
    /// they produced.
    fn commit_batch(&self, batch: &mut Vec<Submitted>) {
        let mut acks: BTreeMap<String, u64> = BTreeMap::new();
        let staged = {
            // Lock order as everywhere: the mirror, then the store's write transaction.
            let mut guard = self.lock();
            let m = &mut *guard;
            let mut tx = match self.store.begin() {
                Ok(tx) => tx,
                Err(e) => fatal(&format!("could not open a store transaction: {e}")),
            };
            *lock(&self.held) = Some(Held::default());
            for s in batch.drain(..) {
                let applied = match self.decide_event(m, &s.printer, s.seq, &s.event) {
                    Ok(Decided::Done(a)) => a,
                    Ok(Decided::Apply(mut step)) => {
                        if let Err(e) = tx.stage(|tx| self.write_event(m, tx, &mut step)) {
                            // Part of it may be in the transaction and earlier events are in
                            // the mirror: neither can be taken back, so stop.
                            fatal(&format!("could not stage an event of {}: {e}", s.printer));
                        }
                        self.finish_event(m, *step)
                    }
                    // Nothing written (e.g. the printer was removed): not acked.
                    Err(e) => {
                        tracing::error!(printer = %s.printer, seq = s.seq, "could not apply event: {e}");
                        continue;
                    }
                };
                let (Applied::Applied(a) | Applied::Replay(a) | Applied::Gap { have: a }) = applied;
                acks.insert(s.printer, a);
            }
            tx
        };
        // The fsync, with no lock held.
        if let Err(e) = self.store.commit_batch(staged) {
            fatal(&format!(
                "could not commit agents' events to the store: {e}"
            ));
        }
        self.release_held();
        for (printer, seq) in acks {
            self.ack(&printer, seq);
        }
    }

    /// Puts a change on the live stream, or holds it while a staged batch awaits its commit
    /// (from any thread, so the stream keeps the mirror's order).
    pub(crate) fn publish(&self, c: Change) {
        match lock(&self.held).as_mut() {
            Some(h) => h.changes.push(c),
            None => {
                let _ = self.changes.send(c);
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
                let _ = self.changes.send(c);
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
    use farm_protocol::messages::AckMessage;
    use farm_protocol::{Channel, open};
    use std::collections::HashMap;
    use std::sync::atomic::Ordering::Relaxed;

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
            let (rec, _) = farm.add_printer(id, None, false).expect("enrol");
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
}

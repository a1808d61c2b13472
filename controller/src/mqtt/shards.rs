//! Ingest spread over the runtime's workers, each printer's messages kept in arrival order.
//!
//! The link's task only routes ([`ingest::route`]: is the topic ours, from an agent, which
//! printer) and hands the message to one of N lanes, chosen by a hash of the printer id; each
//! lane is a task that verifies and applies its messages one after the other
//! ([`ingest::apply`]). One printer always lands on the same lane, and a lane is FIFO, so a
//! printer's events reach the writer in the order the broker delivered them (the order they
//! must be applied in); different printers run side by side.
//!
//! A full lane (its task behind by [`LANE_CAPACITY`] messages):
//! - a **status** (telemetry, QoS 0, superseded by the next one within a second) is dropped
//!   and counted: `farm_mqtt_dropped_total{reason="ingest_busy"}`;
//! - an **event** or a **presence** message is waited for: the link stops reading the socket
//!   until the lane has room (counted: `farm_mqtt_ingest_waits_total`). Dropping an event
//!   would cost its printer a 5 s pause until the agent resends it, and every later event it
//!   sent meanwhile would arrive as a gap and be sent again; a lane drains in milliseconds,
//!   so the wait is short, and TCP carries it back to the broker, which queues for us.
//!   Presence (retained, QoS 1) is not repeated by the agent, so it is never dropped either.

use super::ingest;
use crate::farm::Farm;
use bytes::Bytes;
use farm_protocol::{Channel, PrinterId};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::mpsc::{self, Receiver, Sender, error::TrySendError};

/// Messages a lane holds before statuses are dropped and the link waits for events: about
/// 30 ms of one lane's work (~14 µs a status, `status_bench` on a loaded machine), so a burst
/// (a reconnect storm) is absorbed and a full lane still means a short wait.
pub const LANE_CAPACITY: usize = 2048;

/// One routed message on its way to its printer's lane.
#[derive(Debug)]
pub struct Routed {
    pub printer: PrinterId,
    pub channel: Channel,
    pub payload: Bytes,
}

/// The lanes, held by the link.
pub struct Shards {
    farm: Arc<Farm>,
    lanes: Vec<Sender<Routed>>,
}

impl Shards {
    /// One lane per available core, each a task on the runtime.
    pub fn start(farm: Arc<Farm>) -> Self {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self::spawn(farm, n, LANE_CAPACITY)
    }

    /// `n` lanes of `capacity`, each a task on the runtime.
    pub fn spawn(farm: Arc<Farm>, n: usize, capacity: usize) -> Self {
        let (shards, receivers) = Self::new(farm.clone(), n, capacity);
        for rx in receivers {
            tokio::spawn(run_lane(farm.clone(), rx));
        }
        shards
    }

    /// `n` lanes of `capacity` and their receiving ends (for [`Shards::start`], and for
    /// tests that hold a lane still).
    pub fn new(farm: Arc<Farm>, n: usize, capacity: usize) -> (Self, Vec<Receiver<Routed>>) {
        let (lanes, receivers) = (0..n.max(1)).map(|_| mpsc::channel(capacity)).unzip();
        (Shards { farm, lanes }, receivers)
    }

    /// The lane of a printer: the same for all its messages.
    pub fn lane_of(&self, printer: &PrinterId) -> usize {
        let mut h = rustc_hash::FxHasher::default();
        printer.as_str().hash(&mut h);
        (h.finish() % self.lanes.len() as u64) as usize
    }

    /// Routes one publish from the broker to its printer's lane. Returns at once, except for
    /// an event or presence message meeting a full lane: then it waits for room.
    pub async fn dispatch(&self, topic: &str, payload: Bytes) {
        let Some((printer, channel)) = ingest::route(&self.farm, topic) else {
            return;
        };
        let lane = &self.lanes[self.lane_of(&printer)];
        let msg = Routed {
            printer,
            channel,
            payload,
        };
        match lane.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) if msg.channel == Channel::Status => {
                self.farm.metrics.mqtt_dropped.inc("ingest_busy");
            }
            Err(TrySendError::Full(msg)) => {
                self.farm.metrics.ingest_waits.fetch_add(1, Relaxed);
                // Closed only if the lane's task ended, i.e. the runtime is shutting down.
                let _ = lane.send(msg).await;
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

/// One lane: verifies and applies its printers' messages in arrival order.
async fn run_lane(farm: Arc<Farm>, mut rx: Receiver<Routed>) {
    while let Some(m) = rx.recv().await {
        ingest::apply(&farm, &m.printer, m.channel, &m.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::Outbound;
    use farm_protocol::messages::{AckMessage, Event};
    use farm_protocol::{Envelope, open, seal};
    use std::collections::HashMap;
    use std::future::Future;
    use std::task::{Context, Waker};

    struct Fixture {
        _dir: tempfile::TempDir,
        farm: Arc<Farm>,
        outbound: Receiver<Outbound>,
        printers: Vec<(PrinterId, String)>,
    }

    async fn farm_with(n: usize) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(&dir.path().join("farm.redb")).expect("store");
        let topics = farm_protocol::Topics::new("farm").expect("topics");
        let (farm, outbound) = Farm::load(store, topics, "http://x".into()).expect("load");
        let mut printers = vec![];
        for i in 0..n {
            let id = format!("p-{i:03}");
            let (rec, _) = farm.add_printer(&id, None, false).await.expect("enrol");
            printers.push((PrinterId::new(id).expect("id"), rec.secret));
        }
        Fixture {
            _dir: dir,
            farm,
            outbound,
            printers,
        }
    }

    fn event(p: &(PrinterId, String), seq: u64) -> Bytes {
        let body = Event::FirmwareMessage {
            message: format!("line {seq}"),
        };
        let env = Envelope::new(p.0.clone(), body).with_seq(seq);
        seal(&env, p.1.as_bytes()).expect("seal").into()
    }

    /// Many printers' events interleaved, through four lanes on four workers: every event
    /// is applied, none out of order. (A printer whose events were spread over lanes would
    /// have some arrive ahead of their predecessor: counted out of order, never applied.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn each_printers_events_are_applied_in_seq_order() {
        const EVENTS: u64 = 30;
        let mut f = farm_with(24).await;
        // Small lanes, so the link also waits for room now and then.
        let shards = Shards::spawn(f.farm.clone(), 4, 8);
        let topics = f.farm.topics().clone();
        for seq in 1..=EVENTS {
            for p in &f.printers {
                let topic = topics.printer(&p.0, Channel::Events);
                shards.dispatch(&topic, event(p, seq)).await;
            }
        }
        // Every printer acked up to its last event (acks leave after each commit).
        let mut acked: HashMap<String, u64> = HashMap::new();
        let all_acked = async {
            while acked.values().filter(|&&s| s == EVENTS).count() < f.printers.len() {
                let msg = f.outbound.recv().await.expect("outbound");
                let Some((pid, Channel::Acks)) = topics.parse(&msg.topic) else {
                    continue;
                };
                let key = f.farm.secret(pid.as_str()).expect("key");
                let AckMessage::Ack { applied_seq } =
                    open::<AckMessage>(&msg.payload, key.as_bytes(), &pid)
                        .expect("ack")
                        .body;
                acked.insert(pid.to_string(), applied_seq);
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), all_acked)
            .await
            .expect("every printer's last event acked");
        let m = &f.farm.metrics;
        assert_eq!(m.events_out_of_order.load(Relaxed), 0);
        assert_eq!(m.events_replayed.load(Relaxed), 0);
        assert_eq!(
            m.events_applied.load(Relaxed),
            EVENTS * f.printers.len() as u64
        );
        assert_eq!(
            m.mqtt_received.get("events"),
            EVENTS * f.printers.len() as u64
        );
    }

    /// A full lane: a status is dropped and counted; an event waits for room, then follows
    /// what was queued before it.
    #[tokio::test]
    async fn a_full_lane_drops_statuses_with_a_count_and_holds_events() {
        let f = farm_with(1).await;
        let p = &f.printers[0];
        let (shards, mut lanes) = Shards::new(f.farm.clone(), 1, 2);
        let topics = f.farm.topics().clone();
        let status = topics.printer(&p.0, Channel::Status);
        for _ in 0..3 {
            shards.dispatch(&status, Bytes::from_static(b"s")).await;
        }
        let m = &f.farm.metrics;
        assert_eq!(m.mqtt_dropped.get("ingest_busy"), 1, "the third status");
        let events = topics.printer(&p.0, Channel::Events);
        let mut send = Box::pin(shards.dispatch(&events, event(p, 1)));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            send.as_mut().poll(&mut cx).is_pending(),
            "an event waits for room"
        );
        assert_eq!(m.ingest_waits.load(Relaxed), 1);
        assert_eq!(
            m.mqtt_dropped.get("ingest_busy"),
            1,
            "the event is not dropped"
        );
        let lane = &mut lanes[0];
        assert_eq!(lane.recv().await.expect("status").channel, Channel::Status);
        send.await;
        assert_eq!(lane.recv().await.expect("status").channel, Channel::Status);
        assert_eq!(lane.recv().await.expect("event").channel, Channel::Events);
    }
}

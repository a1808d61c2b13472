//! What printers and the stream reader share: publish times, counters, and the storm's
//! freshness marks. All lock-free (atomics), so 10,000 printer tasks never wait on each other.

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU32};
use std::time::Instant;

/// Publish times kept per printer: a diff later than this many statuses is "unmatched".
const RING: usize = 8;
const MICROS_BITS: u32 = 40;
const MICROS_MASK: u64 = (1 << MICROS_BITS) - 1;

/// One printer's recent status publish times, indexed by status number.
#[derive(Default)]
pub struct Slot {
    /// `(status number & 0xFF_FFFF) << 40 | µs since the run's start`.
    ring: [AtomicU64; RING],
    /// After a storm: the first status number published on the new connection
    /// (`u32::MAX` until it is connected again).
    pub fresh_from: AtomicU32,
    /// The highest `applied_seq` the controller acked to this printer.
    pub acked_seq: AtomicU64,
    /// The seq of the last event this printer made (its outbox's high-water mark).
    pub made_seq: AtomicU64,
}

/// Counters of the whole run (printers write, the report reads).
#[derive(Default)]
pub struct Counters {
    pub statuses_sent: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Live printers' connections that the broker closed (not our storm).
    pub live_disconnects: AtomicU64,
    pub connected: AtomicU64,
    pub events_created: AtomicU64,
    /// Events handed to the broker, resends included.
    pub events_published: AtomicU64,
    pub events_resent: AtomicU64,
    /// Events the controller acked (each counted once).
    pub events_acked: AtomicU64,
    /// Events not yet acked (the simulated outboxes' total depth).
    pub events_pending: AtomicI64,
    /// Pending events given new seqs because the controller had applied beyond ours.
    pub events_renumbered: AtomicU64,
    /// Acks whose `applied_seq` was below one already acked to the same printer: the
    /// controller forgot an event it had acknowledged (after a crash, say).
    pub ack_regressions: AtomicU64,
    pub commands_answered: AtomicU64,
    pub pubacks: AtomicU64,
    pub flap_cycles: AtomicU64,
    pub flap_failures: AtomicU64,
    /// Bytes of the status payloads sent (for the mean size).
    pub status_bytes: AtomicU64,
}

pub struct Shared {
    pub start: Instant,
    /// Live printers first, then flapping ones (same index as the enrolment list).
    pub slots: Vec<Slot>,
    pub counters: Counters,
}

impl Shared {
    pub fn new(printers: usize) -> Self {
        Self {
            start: Instant::now(),
            slots: (0..printers).map(|_| Slot::default()).collect(),
            counters: Counters::default(),
        }
    }

    pub fn micros(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX) & MICROS_MASK
    }

    /// Notes that status `n` of printer `i` is being published now.
    pub fn published(&self, i: usize, n: u32) {
        if let Some(s) = self.slots.get(i) {
            let packed = (u64::from(n & 0xFF_FFFF) << MICROS_BITS) | self.micros();
            s.ring[n as usize % RING].store(packed, Relaxed);
        }
    }

    /// When status `n` of printer `i` was published (µs since start), if still known.
    pub fn publish_time(&self, i: usize, n: u64) -> Option<u64> {
        let v = self.slots.get(i)?.ring[n as usize % RING].load(Relaxed);
        (v >> MICROS_BITS == n & 0xFF_FFFF && v != 0).then_some(v & MICROS_MASK)
    }
}

/// p50, p99, p99.9 and max of a set of latencies (µs), in ms.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(mut us: Vec<u32>) -> Self {
        if us.is_empty() {
            return Self::default();
        }
        us.sort_unstable();
        let at = |q: f64| {
            let i = ((us.len() as f64 * q).ceil() as usize).clamp(1, us.len()) - 1;
            f64::from(us[i]) / 1000.0
        };
        Self {
            samples: us.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_time_is_found_by_its_number_until_overwritten() {
        let s = Shared::new(2);
        s.published(1, 5);
        assert!(s.publish_time(1, 5).is_some());
        assert!(s.publish_time(1, 6).is_none());
        assert!(s.publish_time(0, 5).is_none());
        s.published(1, 5 + RING as u32);
        assert!(s.publish_time(1, 5).is_none());
    }

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=1000).map(|ms| ms * 1000).collect());
        assert_eq!(l.p50_ms, 500.0);
        assert_eq!(l.p99_ms, 990.0);
        assert_eq!(l.p999_ms, 999.0);
        assert_eq!(l.max_ms, 1000.0);
        assert_eq!(Latency::of(vec![]).samples, 0);
    }
}

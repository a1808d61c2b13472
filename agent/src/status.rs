//! The status snapshot: composed from the printer's snapshot, the transfer in progress and
//! the agent's health, and paced (every `interval_ms`, and at once when the state changes).
//!
//! The result goes into a `watch` channel that the link publishes (QoS 0, retained); a
//! `watch` keeps only the newest, which is all a status is for.

use crate::outbox::OutboxState;
use crate::printer::Snapshot;
use farm_protocol::messages::{Activity, AgentHealth, JobProgress, Status};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// A job file being fetched: the agent shows `transferring` while the printer is idle.
#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    pub job_id: String,
    pub size: u64,
    pub started: Instant,
}

/// The state a status shows: `transferring` while a file is fetched for an idle printer.
pub fn activity(printer: &Snapshot, transfer: Option<&Transfer>) -> Activity {
    match transfer {
        Some(_) if printer.state == Activity::Idle => Activity::Transferring,
        _ => printer.state,
    }
}

/// Builds one status. Pure.
pub fn compose(
    printer: &Snapshot,
    transfer: Option<&Transfer>,
    agent: AgentHealth,
    interval_ms: u32,
) -> Status {
    let (state, job) = match transfer {
        Some(t) if printer.state == Activity::Idle => (
            Activity::Transferring,
            Some(JobProgress {
                job_id: t.job_id.clone(),
                progress: 0.0,
                file_pos: 0,
                file_size: t.size,
                layer: None,
                layer_count: None,
                elapsed_s: t.started.elapsed().as_secs_f64(),
                eta_s: None,
                extruded_mm: vec![],
            }),
        ),
        _ => (printer.state, printer.job.clone()),
    };
    Status {
        state,
        temps: printer.temps.clone(),
        job,
        message: printer.message.clone(),
        agent,
        interval_ms,
        trays: printer.trays.clone(),
    }
}

/// Everything the status is made of.
pub struct StatusFeed {
    pub printer: watch::Receiver<Snapshot>,
    pub transfer: watch::Receiver<Option<Transfer>>,
    pub outbox: watch::Receiver<OutboxState>,
    pub interval_ms: watch::Receiver<u32>,
    pub backend: &'static str,
    pub started: Instant,
}

impl StatusFeed {
    fn compose(&self) -> Status {
        let health = AgentHealth {
            version: env!("CARGO_PKG_VERSION").into(),
            backend: self.backend.into(),
            uptime_s: self.started.elapsed().as_secs(),
            outbox_pending: self.outbox.borrow().pending,
        };
        compose(
            &self.printer.borrow(),
            self.transfer.borrow().as_ref(),
            health,
            *self.interval_ms.borrow(),
        )
    }

    fn ticker(&self) -> tokio::time::Interval {
        let period = Duration::from_millis(u64::from(*self.interval_ms.borrow()).max(100));
        // The first tick one period from now: whoever rebuilt the ticker just emitted.
        let mut t = tokio::time::interval_at(Instant::now() + period, period);
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    }

    /// Publishes statuses into `out` until `stop` fires or the printer goes away.
    pub async fn run(
        mut self,
        out: watch::Sender<Option<Status>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut ticker = self.ticker();
        let first = self.compose();
        let mut last_state = Some(first.state);
        out.send_replace(Some(first));
        loop {
            let emit = tokio::select! {
                _ = ticker.tick() => true,
                r = self.printer.changed() => {
                    if r.is_err() {
                        return;
                    }
                    // Immediately on a state change; the ticker covers the rest.
                    let state = activity(
                        &self.printer.borrow_and_update(),
                        self.transfer.borrow().as_ref(),
                    );
                    last_state != Some(state)
                },
                r = self.transfer.changed() => r.is_ok(),
                r = self.interval_ms.changed() => {
                    if r.is_ok() {
                        ticker = self.ticker();
                    }
                    r.is_ok()
                },
                _ = crate::stopped(&mut stop) => return,
            };
            if emit {
                let status = self.compose();
                last_state = Some(status.state);
                out.send_replace(Some(status));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_protocol::messages::Heater;

    fn placeholder_health() -> AgentHealth {
        AgentHealth {
            version: String::new(),
            backend: String::new(),
            uptime_s: 0,
            outbox_pending: 0,
        }
    }

    fn idle() -> Snapshot {
        Snapshot {
            state: Activity::Idle,
            temps: vec![Heater {
                name: "tool0".into(),
                actual: 22.0,
                target: 0.0,
            }],
            job: None,
            message: None,
            trays: vec![],
        }
    }

    #[test]
    fn a_transfer_shows_as_transferring_while_the_printer_is_idle() {
        let t = Transfer {
            job_id: "j".into(),
            size: 10,
            started: Instant::now(),
        };
        let s = compose(&idle(), Some(&t), placeholder_health(), 1000);
        assert_eq!(s.state, Activity::Transferring);
        assert_eq!(s.job.as_ref().map(|j| j.job_id.as_str()), Some("j"));
        assert_eq!(s.temps.len(), 1);
        let mut busy = idle();
        busy.state = Activity::Error;
        let s = compose(&busy, Some(&t), placeholder_health(), 1000);
        assert_eq!(s.state, Activity::Error);
        assert_eq!(
            compose(&idle(), None, placeholder_health(), 5).interval_ms,
            5
        );
    }

    #[tokio::test]
    async fn paces_by_interval_and_reacts_to_state_changes_at_once() {
        let (snap_tx, snap_rx) = watch::channel(idle());
        let (_tr_tx, tr_rx) = watch::channel(None);
        let (_ob_tx, ob_rx) = watch::channel(OutboxState::default());
        let (iv_tx, iv_rx) = watch::channel(60_000u32);
        let (out_tx, mut out_rx) = watch::channel(None);
        let (_stop_tx, stop_rx) = watch::channel(false);
        let feed = StatusFeed {
            printer: snap_rx,
            transfer: tr_rx,
            outbox: ob_rx,
            interval_ms: iv_rx,
            backend: "sim",
            started: Instant::now(),
        };
        tokio::spawn(feed.run(out_tx, stop_rx));
        out_rx.changed().await.expect("first status at once");
        assert_eq!(
            out_rx.borrow_and_update().as_ref().map(|s| s.state),
            Some(Activity::Idle)
        );
        // A state change is published without waiting for the 60 s interval.
        let before = Instant::now();
        snap_tx.send_modify(|s| s.state = Activity::Printing);
        out_rx.changed().await.expect("state change");
        assert!(before.elapsed() < Duration::from_secs(1));
        let s = out_rx.borrow_and_update().clone().expect("status");
        assert_eq!(
            (s.state, s.agent.backend.as_str()),
            (Activity::Printing, "sim")
        );
        // A new interval applies at once and is carried in the status.
        iv_tx.send_replace(200);
        out_rx.changed().await.expect("interval");
        assert_eq!(
            out_rx.borrow_and_update().as_ref().map(|s| s.interval_ms),
            Some(200)
        );
        let before = Instant::now();
        out_rx.changed().await.expect("tick");
        out_rx.changed().await.expect("tick");
        let took = before.elapsed();
        assert!(
            took >= Duration::from_millis(390) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}

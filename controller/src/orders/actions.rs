//! The shop's and operators' actions on an order and the webhook task's results, decided
//! (pure): what a cancel, fulfil or release changes, and where a delivery stands after an
//! attempt. `orders/follow_up.rs` and `orders/outbox.rs` stage only what these return.

use crate::jobs::{self, AWAITING_RELEASE, Job, JobState};
use crate::orders::webhooks::{Delivery, Outcome, WebhookConfig, backoff};
use crate::orders::{Order, OrderEvent, Refused};
use time::OffsetDateTime;

/// What an order event changes: the order, its jobs, and which printing jobs to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderChange {
    pub order: Order,
    pub jobs: Vec<Job>,
    /// `(printer, job)` to send a cancel command to.
    pub stop: Vec<(String, String)>,
}

/// A cancel or fulfil of `order` whose jobs are `jobs`. A cancel cancels the queued copies
/// and, with `stop_printing`, stops the ones printing.
pub fn decide_order_event(
    order: &Order,
    mut jobs: Vec<Job>,
    event: OrderEvent,
    stop_printing: bool,
    t: OffsetDateTime,
) -> Result<OrderChange, Refused> {
    let mut order = order.clone();
    order.apply(event, t)?;
    let mut stop = vec![];
    if event == OrderEvent::Cancel {
        for j in jobs.iter_mut() {
            if j.state == JobState::Queued {
                let _ = jobs::cancel_queued(j, t);
                j.failure_reason = Some("order cancelled".into());
            } else if j.state.is_active() && stop_printing {
                stop.push((j.printer_id.clone().unwrap_or_default(), j.id.clone()));
            }
        }
    }
    Ok(OrderChange { order, jobs, stop })
}

/// Releasing an order into production (manual release mode): the order and the jobs that
/// were held for it, or why not.
pub fn decide_release(order: &Order, jobs: &[&Job]) -> Result<(Order, Vec<Job>), String> {
    if order.state.is_final() {
        return Err(format!(
            "order {} is {}; there is nothing to release",
            order.id,
            order.state.as_str()
        ));
    }
    let mut order = order.clone();
    order.released = true;
    let jobs = jobs
        .iter()
        .filter(|j| j.hold.as_deref() == Some(AWAITING_RELEASE))
        .map(|j| {
            let mut j = (*j).clone();
            j.hold = None;
            j
        })
        .collect();
    Ok((order, jobs))
}

/// A delivery after one attempt: delivered, or its next attempt after a backoff
/// (`jitter` in −1…1), dead after `max_attempts`.
pub fn decide_delivery_result(
    d: &Delivery,
    r: &Outcome,
    cfg: &WebhookConfig,
    jitter: f64,
    t: OffsetDateTime,
) -> Delivery {
    let mut d = d.clone();
    d.attempts += 1;
    if r.ok {
        d.delivered_at = Some(t);
        d.last_error = None;
    } else {
        d.last_error = r.error.clone();
        let wait = backoff(d.attempts, cfg, jitter);
        d.next_attempt_at = t + time::Duration::try_from(wait).unwrap_or(time::Duration::HOUR);
        d.dead = d.attempts >= cfg.max_attempts;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::sample;
    use crate::orders::OrderState;

    fn t() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    fn order(state: OrderState) -> Order {
        Order {
            id: "ord-1".into(),
            number: 1,
            shop: "shop".into(),
            customer_ref: "c".into(),
            state,
            items: vec![],
            priority: 0,
            due: None,
            price: None,
            max_attempts: 3,
            released: false,
            created_at: t(),
            updated_at: t(),
            history: vec![],
        }
    }

    #[test]
    fn cancel_cancels_queued_copies_and_stops_printing_ones_only_when_asked() {
        let queued = sample(1);
        let mut printing = sample(2);
        printing.state = JobState::Printing;
        printing.printer_id = Some("p-1".into());
        let jobs = vec![queued, printing];
        let c = decide_order_event(
            &order(OrderState::InProduction),
            jobs.clone(),
            OrderEvent::Cancel,
            true,
            t(),
        )
        .expect("cancel");
        assert_eq!(c.order.state, OrderState::Cancelled);
        assert_eq!(c.jobs[0].state, JobState::Cancelled);
        assert_eq!(c.jobs[0].failure_reason.as_deref(), Some("order cancelled"));
        assert_eq!(c.stop, vec![("p-1".to_string(), "job-2".to_string())]);
        let kept = decide_order_event(
            &order(OrderState::InProduction),
            jobs,
            OrderEvent::Cancel,
            false,
            t(),
        )
        .expect("cancel");
        assert!(kept.stop.is_empty());
        assert!(
            decide_order_event(
                &order(OrderState::Cancelled),
                vec![],
                OrderEvent::Cancel,
                true,
                t()
            )
            .is_err(),
            "a closed order refuses"
        );
    }

    #[test]
    fn release_frees_only_jobs_awaiting_it() {
        let mut held = sample(1);
        held.hold = Some(AWAITING_RELEASE.into());
        let mut by_operator = sample(2);
        by_operator.hold = Some(crate::jobs::HELD_BY_OPERATOR.into());
        let (o, jobs) =
            decide_release(&order(OrderState::Received), &[&held, &by_operator]).expect("release");
        assert!(o.released);
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].hold, None);
        assert!(decide_release(&order(OrderState::Fulfilled), &[]).is_err());
    }

    #[test]
    fn a_delivery_is_done_retried_later_or_dead() {
        let d = Delivery {
            number: 1,
            id: "whd-1".into(),
            shop: "shop".into(),
            order_id: "ord-1".into(),
            event: "order.received".into(),
            body: "{}".into(),
            created_at: t(),
            attempts: 0,
            next_attempt_at: t(),
            delivered_at: None,
            last_error: None,
            dead: false,
        };
        let cfg = WebhookConfig {
            max_attempts: 2,
            ..Default::default()
        };
        let ok = Outcome {
            number: 1,
            ok: true,
            error: None,
        };
        let done = decide_delivery_result(&d, &ok, &cfg, 0.0, t());
        assert!(!done.pending());
        let bad = Outcome {
            number: 1,
            ok: false,
            error: Some("503".into()),
        };
        let again = decide_delivery_result(&d, &bad, &cfg, 0.0, t());
        assert!(again.pending() && again.next_attempt_at > t());
        let dead = decide_delivery_result(&again, &bad, &cfg, 0.0, t());
        assert!(dead.dead && !dead.pending());
    }
}

//! Group commit for order intake: concurrent orders share one durable transaction.
//!
//! Each redb commit waits for the disk (fsync). One commit per order caps intake at the disk's
//! sync rate; instead the API hands orders to one task, which takes everything waiting (up to
//! [`MAX_BATCH`]) and places it with [`Farm::place_orders`] in one transaction. Every order is
//! still durable before its 2xx, and a lone order is not delayed: the task never waits for a
//! batch to fill. The commit itself runs without the farm lock (unless the batch writes
//! webhook deliveries), so requests and the scheduler go on while the disk syncs.

use super::Farm;
use super::orders::{Intake, OrderError, Placed};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most orders in one transaction.
pub const MAX_BATCH: usize = 256;

type Request = (Intake, oneshot::Sender<Result<Placed, OrderError>>);

/// The API's handle on the intake task.
#[derive(Clone)]
pub struct IntakeQueue(mpsc::Sender<Request>);

impl IntakeQueue {
    /// Starts the intake task for `farm`.
    pub fn start(farm: Arc<Farm>) -> Self {
        let (tx, mut rx) = mpsc::channel::<Request>(4 * MAX_BATCH);
        tokio::spawn(async move {
            let mut batch: Vec<Request> = Vec::with_capacity(MAX_BATCH);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                let (intakes, replies): (Vec<Intake>, Vec<_>) = batch.drain(..).unzip();
                let f = farm.clone();
                let answers = tokio::task::spawn_blocking(move || f.place_orders(intakes)).await;
                match answers {
                    Ok(answers) => {
                        for (reply, a) in replies.into_iter().zip(answers) {
                            let _ = reply.send(a);
                        }
                    }
                    Err(e) => tracing::error!("order intake task failed: {e}"),
                }
            }
        });
        IntakeQueue(tx)
    }

    /// Places one order (durably) and returns once it is committed.
    pub async fn place(&self, intake: Intake) -> Result<Placed, OrderError> {
        let (tx, rx) = oneshot::channel();
        let gone = || {
            OrderError::Farm(super::FarmError::Conflict(
                "the controller is shutting down; retry with the same Idempotency-Key".into(),
            ))
        };
        self.0.send((intake, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::production::ProfilePatch;
    use crate::orders::{ItemRequest, OrderEvent, OrderRequest};

    fn open(dir: &std::path::Path) -> Arc<Farm> {
        let store = crate::store::Store::open(&dir.join("farm.redb")).expect("store");
        let topics = farm_protocol::Topics::new("farm").expect("topics");
        let (farm, rx) = Farm::load(store, topics, "http://x".into()).expect("load");
        std::mem::forget(rx); // keep the broker queue open; nothing reads it here
        farm
    }

    fn intake(key: &str, sha: &str, quantity: i64) -> Intake {
        Intake {
            shop: "acme".into(),
            idempotency_key: Some(key.into()),
            body_sha256: format!("body-{key}-{quantity}"),
            request: OrderRequest {
                customer_ref: key.into(),
                items: vec![ItemRequest {
                    sku: None,
                    sha256: Some(sha.into()),
                    name: None,
                    quantity,
                    material: Some("PLA".into()),
                    colour: Some("black".into()),
                    nozzle_mm: None,
                }],
                priority: 0,
                due: None,
                price: None,
            },
        }
    }

    /// The batch commits outside the farm lock; what must still hold: every placed order is in
    /// the store (a reopen finds it), is in the first plan whose version its answer names, and
    /// leaves the scheduler's queue when it stops being queued.
    #[test]
    fn a_batch_is_durable_in_the_next_plan_and_the_queue_follows_its_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let farm = open(dir.path());
        farm.add_printer("p-1", None, true).expect("printer");
        let tools = vec![crate::fleet::ToolSlot {
            nozzle_mm: Some(0.4),
            material: Some("PLA".into()),
            colour: Some("black".into()),
        }];
        let patch = ProfilePatch {
            tools: Some(tools),
            ..ProfilePatch::default()
        };
        farm.set_profile("p-1", patch).expect("profile");
        let sha = "ab".repeat(32);
        farm.record_file(crate::catalog::FileMeta {
            sha256: sha.clone(),
            size: 100,
            name: "clip.gcode".into(),
            filament_mm: vec![500.0],
            estimated_s: 600.0,
            size_mm: Some([20.0, 20.0, 5.0]),
        })
        .expect("file");

        let mut batch: Vec<Intake> = (0..40).map(|i| intake(&format!("k{i}"), &sha, 2)).collect();
        batch.push(intake("k3", &sha, 2)); // a retry inside the batch
        batch.push(intake("bad", &sha, 0)); // a mistake fails alone
        let answers = farm.place_orders(batch);
        let placed: Vec<&Placed> = answers[..40]
            .iter()
            .map(|a| a.as_ref().expect("placed"))
            .collect();
        let retry = answers[40].as_ref().expect("retry");
        assert!(retry.replay && retry.order_id == placed[3].order_id);
        assert!(matches!(answers[41], Err(OrderError::Invalid(_))));
        let version = placed.iter().map(|p| p.queue_version).max().expect("some");

        farm.schedule().expect("plan");
        let plan = farm.timeline();
        assert!(plan.version >= version);
        assert_eq!(
            plan.planned_jobs, 80,
            "every copy of every order is in the plan"
        );
        let first = farm.order_view(&placed[0].order_id, None).expect("order");
        let job = farm
            .job(&first.items[0].copies[0].jobs[0].id)
            .expect("job")
            .number;
        // The only PLA printer never came online: the copies wait, and say why.
        let reason = plan.waiting(job).expect("waiting");
        assert!(
            reason.contains("p-1") && reason.contains("offline"),
            "{reason}"
        );
        assert!(
            first.waiting.iter().any(|w| w.contains("offline")),
            "{first:?}"
        );

        farm.order_event(&placed[0].order_id, None, OrderEvent::Cancel, false)
            .expect("cancel");
        farm.schedule().expect("plan");
        let plan = farm.timeline();
        assert_eq!(
            plan.planned_jobs, 78,
            "a cancelled order's jobs leave the queue"
        );
        assert!(plan.waiting(job).is_none());

        drop(plan);
        drop(farm);
        let farm = open(dir.path());
        for p in &placed {
            assert!(
                farm.order_view(&p.order_id, None).is_some(),
                "{} after reopen",
                p.order_id
            );
        }
        farm.schedule().expect("plan");
        assert_eq!(
            farm.timeline().planned_jobs,
            78,
            "the queue rebuilt from the store"
        );
    }
}

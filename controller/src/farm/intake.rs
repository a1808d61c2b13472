//! Group commit for order intake: concurrent orders share one durable transaction.
//!
//! Each redb commit waits for the disk (fsync). One commit per order caps intake at the disk's
//! sync rate; instead the API hands orders to one task, which takes everything waiting (up to
//! [`MAX_BATCH`]) and places it with [`Farm::place_orders`] in one transaction. Every order is
//! still durable before its 2xx, and a lone order is not delayed: the task never waits for a
//! batch to fill.

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

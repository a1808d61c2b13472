//! Order intake: checking an order against the catalog, the files and the farm's printers,
//! writing it with its jobs, and the group commit that makes concurrent orders share one
//! durable transaction.
//!
//! Each redb commit waits for the disk (fsync). One commit per order caps intake at the disk's
//! sync rate; instead the API hands orders to one task, which takes everything waiting (up to
//! [`MAX_BATCH`]) and hands it to the writer as one request ([`Farm::stage_orders`]), so it
//! shares the writer's group commit with everything else. Every order is still durable
//! before its 2xx, and a lone order is not delayed: the task never waits for a batch to
//! fill, nor for the commit (its answers go out from the writer after the fsync).

use crate::catalog::FileMeta;
use crate::farm::writer::Staging;
use crate::farm::{Farm, Mirror, now};
use crate::jobs::{Job, OrderRef};
use crate::orders::follow_up::OrderError;
use crate::orders::{self, Order, OrderRequest, OrderState, Resolved};
use crate::store::{IdempotencyRecord, StoreError, Tx};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use time::OffsetDateTime;
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
                // One request to the writer for the whole batch (its checks share one view of
                // the printers); each order is answered after the commit that holds it. Not
                // awaited: the next batch may join the writer's next commit.
                let req: crate::farm::writer::Request = Box::new(move |farm, s| {
                    let answers = farm.stage_orders(s, intakes);
                    Box::new(move || {
                        for (reply, a) in replies.into_iter().zip(answers) {
                            let _ = reply.send(a);
                        }
                    })
                });
                farm.submit_request(req).await;
            }
        });
        IntakeQueue(tx)
    }

    /// Places one order (durably) and returns once it is committed.
    pub async fn place(&self, intake: Intake) -> Result<Placed, OrderError> {
        let (tx, rx) = oneshot::channel();
        let gone = || {
            OrderError::Farm(crate::farm::FarmError::Conflict(
                "the controller is shutting down; retry with the same Idempotency-Key".into(),
            ))
        };
        self.0.send((intake, tx)).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

/// One order to place, as the API received it.
#[derive(Debug, Clone)]
pub struct Intake {
    pub shop: String,
    pub idempotency_key: Option<String>,
    pub body_sha256: String,
    pub request: OrderRequest,
}

/// A placed order (or the one an earlier request with the same key placed).
#[derive(Debug, Clone)]
pub struct Placed {
    pub order_id: String,
    pub replay: bool,
    pub warnings: Vec<String>,
    /// Queue version after the commit: the plan that includes this order has at least it.
    pub queue_version: u64,
}

impl Farm {
    fn resolve(m: &Mirror, it: &orders::ItemRequest) -> Result<Resolved, String> {
        if let Some(sku) = &it.sku {
            let c = m.book.catalog.get(sku).ok_or_else(|| {
                format!("no catalog entry for SKU {sku:?}; ask the operator to add it (PUT /api/v1/catalog/{{sku}}) or send `sha256` of an uploaded file")
            })?;
            return Ok(Resolved {
                files: c.item_files(),
                material: c.material.clone(),
                colour: c.colour.clone(),
                nozzle_mm: c.nozzle_mm,
            });
        }
        let sha = it.sha256.as_deref().unwrap_or_default();
        let f = m.book.files.get(sha).ok_or_else(|| {
            format!("no uploaded file with sha256 {sha:?}; upload it first with POST /api/v1/files")
        })?;
        let (plate, _) = f.for_plate(it.plate)?;
        Ok(Resolved {
            files: vec![orders::ItemFile {
                sha256: f.sha256.clone(),
                name: it.name.clone().unwrap_or_else(|| f.name.clone()),
                plate,
            }],
            material: None,
            colour: None,
            nozzle_mm: None,
        })
    }

    /// Places a group of orders in the writer's next commit and answers once it is durable.
    /// Each answer is its own: one bad order does not fail the others.
    pub async fn place_orders(&self, batch: Vec<Intake>) -> Vec<Result<Placed, OrderError>> {
        let placed = self
            .write(move |farm, s| Ok::<_, std::convert::Infallible>(farm.stage_orders(s, batch)))
            .await;
        match placed {
            Ok(a) => a,
            Err(never) => match never {},
        }
    }

    /// Stages a group of orders: each is checked against the mirror first and written only
    /// when accepted, so a refused order writes nothing and the others stand.
    pub(crate) fn stage_orders(
        &self,
        s: &mut Staging<'_>,
        batch: Vec<Intake>,
    ) -> Vec<Result<Placed, OrderError>> {
        let t = now();
        let settings = self.production.settings();
        let m = &*s.m;
        let mut answers: Vec<Option<Result<Placed, OrderError>>> = Vec::with_capacity(batch.len());
        let mut fresh: Vec<(usize, Order, Vec<Job>, Vec<String>)> = vec![];
        let mut keys_in_batch: HashMap<String, (String, usize)> = HashMap::new();
        let printers = self.scheduler_printers(m);
        let mut seen = HashMap::new(); // checks shared by the batch (`fit.rs`)
        for (i, intake) in batch.iter().enumerate() {
            let key = intake
                .idempotency_key
                .as_ref()
                .map(|k| format!("{}\n{k}", intake.shop));
            if let Some(k) = &key {
                let earlier = m
                    .book
                    .idempotency
                    .get(k)
                    .map(|r| (r.request_sha256.clone(), None, r.order_id.clone()))
                    .or_else(|| {
                        keys_in_batch
                            .get(k)
                            .map(|(h, at)| (h.clone(), Some(*at), String::new()))
                    });
                if let Some((hash, at, order_id)) = earlier {
                    answers.push(Some(if hash != intake.body_sha256 {
                        Err(OrderError::KeyReused(
                            intake.idempotency_key.clone().unwrap_or_default(),
                        ))
                    } else {
                        // The same request again: the first answer (filled in below for a
                        // repeat within this batch).
                        Ok(Placed {
                            order_id: at.map(|a| format!("@{a}")).unwrap_or(order_id),
                            replay: true,
                            warnings: vec![],
                            queue_version: 0,
                        })
                    }));
                    continue;
                }
            }
            let items = match orders::validate(&intake.request, t, |it| Self::resolve(m, it)) {
                Ok(items) => items,
                Err(errs) => {
                    answers.push(Some(Err(OrderError::Invalid(errs))));
                    continue;
                }
            };
            let (errs, warnings) =
                self.check_printable(m, &items, &printers, &settings.rules, &mut seen);
            if !errs.is_empty() {
                answers.push(Some(Err(OrderError::Invalid(errs))));
                continue;
            }
            if let Some(k) = key {
                keys_in_batch.insert(k, (intake.body_sha256.clone(), i));
            }
            let order = Order {
                id: String::new(),
                number: 0,
                shop: intake.shop.clone(),
                customer_ref: intake.request.customer_ref.trim().to_string(),
                state: OrderState::Received,
                items,
                priority: intake.request.priority,
                due: intake.request.due,
                price: intake.request.price.clone(),
                max_attempts: settings.max_attempts,
                released: !settings.manual_release,
                created_at: t,
                updated_at: t,
                history: vec![(OrderState::Received, orders::rfc3339(t))],
            };
            fresh.push((i, order, vec![], warnings));
            answers.push(None);
        }
        if !fresh.is_empty() {
            let webhook_shops = &settings.webhook_shops;
            let metas: HashMap<String, FileMeta> = fresh
                .iter()
                .flat_map(|(_, o, ..)| o.items.iter().flat_map(|it| it.files.iter()))
                .filter_map(|f| m.book.files.get(&f.sha256))
                .map(|meta| (meta.sha256.clone(), meta.clone()))
                .collect();
            let deliveries = s.put(|_, tx| {
                let mut deliveries = vec![];
                for (i, order, jobs, _) in fresh.iter_mut() {
                    order.number = tx.next_number("next_order")?;
                    order.id = format!("ord-{}", order.number);
                    for (ii, item) in order.items.iter().enumerate() {
                        for copy in 1..=item.quantity {
                            for (part, f) in item.files.iter().enumerate() {
                                let j =
                                    self.order_job(&metas, tx, order, ii, item, copy, part, f, t)?;
                                tx.put_job(&j)?;
                                jobs.push(j);
                            }
                        }
                    }
                    tx.put_order(order)?;
                    let intake = &batch[*i];
                    if let Some(k) = &intake.idempotency_key {
                        tx.put_idempotency(
                            &format!("{}\n{k}", intake.shop),
                            &IdempotencyRecord {
                                request_sha256: intake.body_sha256.clone(),
                                order_id: order.id.clone(),
                            },
                        )?;
                    }
                    if webhook_shops.contains(&order.shop) {
                        let refs: Vec<&Job> = jobs.iter().collect();
                        deliveries.push(self.delivery(
                            tx,
                            order,
                            &refs,
                            "order.received",
                            None,
                            t,
                        )?);
                    }
                }
                Ok::<_, StoreError>(deliveries)
            });
            let m = &mut *s.m;
            let version = self.production.queue_version.fetch_add(1, SeqCst) + 1;
            for (i, order, jobs, warnings) in fresh {
                for j in jobs {
                    self.mirror_new_job(m, j);
                }
                if let Some(k) = &batch[i].idempotency_key {
                    m.book.idempotency.insert(
                        format!("{}\n{k}", order.shop),
                        IdempotencyRecord {
                            request_sha256: batch[i].body_sha256.clone(),
                            order_id: order.id.clone(),
                        },
                    );
                }
                answers[i] = Some(Ok(Placed {
                    order_id: order.id.clone(),
                    replay: false,
                    warnings,
                    queue_version: version,
                }));
                m.book.numbers.insert(order.id.clone(), order.number);
                m.book.orders.insert(order.number, order);
            }
            let any = !deliveries.is_empty();
            m.book
                .outbox
                .extend(deliveries.into_iter().map(|d| (d.number, d)));
            if any {
                self.wake_webhooks();
            }
            self.kick.notify_one();
        }
        // Repeats of a key within this batch answer with the order its first use made.
        let firsts: Vec<Option<String>> = answers
            .iter()
            .map(|a| match a {
                Some(Ok(p)) if !p.replay => Some(p.order_id.clone()),
                _ => None,
            })
            .collect();
        let version = self.production.queue_version.load(SeqCst);
        answers
            .into_iter()
            .map(|a| {
                let mut a = a.unwrap_or_else(|| Err(OrderError::NotFound("?".into())));
                if let Ok(p) = &mut a {
                    if let Some(at) = p
                        .order_id
                        .strip_prefix('@')
                        .and_then(|s| s.parse::<usize>().ok())
                    {
                        p.order_id = firsts.get(at).cloned().flatten().unwrap_or_default();
                    }
                    if p.replay {
                        p.queue_version = version;
                    }
                }
                a
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn order_job(
        &self,
        metas: &HashMap<String, FileMeta>,
        tx: &mut Tx<'_>,
        order: &Order,
        item_index: usize,
        item: &orders::Item,
        copy: u32,
        part: usize,
        f: &orders::ItemFile,
        t: OffsetDateTime,
    ) -> Result<Job, StoreError> {
        let number = tx.next_job_number()?;
        // The plate was checked at intake (`resolve`, `put_catalog`): its own figures.
        let plate_meta = metas
            .get(&f.sha256)
            .and_then(|m| m.for_plate(f.plate).ok())
            .map(|(_, m)| m);
        let meta = plate_meta.as_ref();
        let mut j = Job::new(
            number,
            f.name.clone(),
            f.sha256.clone(),
            meta.map_or(0, |m| m.size),
            t,
        );
        j.priority = order.priority;
        j.due = order.due;
        j.filament_mm = meta.map(|m| m.filament_mm.clone()).unwrap_or_default();
        j.estimated_s = meta.map_or(0.0, |m| m.estimated_s);
        j.size_mm = meta.and_then(|m| m.size_mm);
        j.material = item.material.clone();
        j.colour = item.colour.clone();
        j.nozzle_mm = item.nozzle_mm;
        j.plate = f.plate;
        j.order = Some(OrderRef {
            order_id: order.id.clone(),
            item: item_index as u32,
            copy,
            part: part as u32,
        });
        if !order.released {
            j.hold = Some(crate::jobs::AWAITING_RELEASE.into());
        }
        Ok(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::{ItemRequest, OrderEvent, OrderRequest};
    use crate::printers::registry::ProfilePatch;

    use crate::farm::open_for_tests as open;

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
                    plate: None,
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
    #[tokio::test(flavor = "multi_thread")]
    async fn a_batch_is_durable_in_the_next_plan_and_the_queue_follows_its_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let farm = open(dir.path());
        farm.add_printer("p-1", None, true).await.expect("printer");
        let tools = vec![crate::printers::fleet::ToolSlot {
            nozzle_mm: Some(0.4),
            material: Some("PLA".into()),
            colour: Some("black".into()),
        }];
        let patch = ProfilePatch {
            tools: Some(tools),
            ..ProfilePatch::default()
        };
        farm.set_profile("p-1", patch).await.expect("profile");
        let sha = "ab".repeat(32);
        farm.record_file(crate::catalog::FileMeta {
            sha256: sha.clone(),
            size: 100,
            name: "clip.gcode".into(),
            filament_mm: vec![500.0],
            estimated_s: 600.0,
            size_mm: Some([20.0, 20.0, 5.0]),
            plates: vec![],
        })
        .await
        .expect("file");

        let mut batch: Vec<Intake> = (0..40).map(|i| intake(&format!("k{i}"), &sha, 2)).collect();
        batch.push(intake("k3", &sha, 2)); // a retry inside the batch
        batch.push(intake("bad", &sha, 0)); // a mistake fails alone
        let answers = farm.place_orders(batch).await;
        let placed: Vec<&Placed> = answers[..40]
            .iter()
            .map(|a| a.as_ref().expect("placed"))
            .collect();
        let retry = answers[40].as_ref().expect("retry");
        assert!(retry.replay && retry.order_id == placed[3].order_id);
        assert!(matches!(answers[41], Err(OrderError::Invalid(_))));
        let version = placed.iter().map(|p| p.queue_version).max().expect("some");

        farm.schedule().await.expect("plan");
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
            .await
            .expect("cancel");
        farm.schedule().await.expect("plan");
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
        farm.schedule().await.expect("plan");
        assert_eq!(
            farm.timeline().planned_jobs,
            78,
            "the queue rebuilt from the store"
        );
    }
}

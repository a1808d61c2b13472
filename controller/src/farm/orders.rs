//! Writes about orders: intake (batched into one transaction per group of concurrent orders),
//! cancel, release, fulfil, and what a job's change means for its order (retry a failed print,
//! move the order along, queue webhooks) — always in the same transaction as the job's change.

use super::{Farm, FarmError, Mirror, now};
use crate::catalog::{CatalogEntry, FileMeta};
use crate::jobs::{self, Job, JobState, OrderRef};
use crate::orders::{self, FieldError, Order, OrderEvent, OrderRequest, OrderState, Resolved};
use crate::store::{IdempotencyRecord, StoreError, Tx};
use crate::webhooks::Delivery;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::SeqCst;
use time::OffsetDateTime;

/// Orders and what they need, in memory (loaded from the store at start).
#[derive(Default)]
pub(crate) struct OrderBook {
    pub orders: BTreeMap<u64, Order>,
    pub numbers: HashMap<String, u64>,
    /// Order id → its jobs' numbers (every attempt of every copy).
    pub jobs_of: HashMap<String, Vec<u64>>,
    /// "<shop>\n<Idempotency-Key>" → the request and its order.
    pub idempotency: HashMap<String, IdempotencyRecord>,
    pub catalog: BTreeMap<String, CatalogEntry>,
    pub files: HashMap<String, FileMeta>,
    /// Webhook deliveries not yet delivered (nor given up).
    pub outbox: BTreeMap<u64, Delivery>,
}

impl OrderBook {
    pub fn load(
        store: &crate::store::Store,
        jobs: &BTreeMap<u64, Job>,
    ) -> Result<Self, StoreError> {
        let mut b = OrderBook::default();
        for o in store.orders()? {
            b.numbers.insert(o.id.clone(), o.number);
            b.orders.insert(o.number, o);
        }
        for j in jobs.values() {
            if let Some(r) = &j.order {
                b.jobs_of
                    .entry(r.order_id.clone())
                    .or_default()
                    .push(j.number);
            }
        }
        b.idempotency = store.idempotency_keys()?.into_iter().collect();
        b.catalog = store
            .catalog()?
            .into_iter()
            .map(|c| (c.sku.clone(), c))
            .collect();
        b.files = store
            .file_metas()?
            .into_iter()
            .map(|f| (f.sha256.clone(), f))
            .collect();
        let mut after = 0;
        loop {
            let page = store.deliveries(after, 10_000)?;
            let Some(last) = page.last() else { break };
            after = last.number;
            b.outbox.extend(
                page.into_iter()
                    .filter(|d| d.pending())
                    .map(|d| (d.number, d)),
            );
        }
        Ok(b)
    }

    fn order(&self, id: &str) -> Option<&Order> {
        self.numbers.get(id).and_then(|n| self.orders.get(n))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("the order has mistakes")]
    Invalid(Vec<FieldError>),
    #[error(
        "Idempotency-Key {0:?} was already used with a different request body; send the original body to get the original order, or use a new key for a new order"
    )]
    KeyReused(String),
    #[error("no order {0:?} (or it belongs to another shop)")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] orders::Refused),
    #[error(transparent)]
    Farm(#[from] FarmError),
}

impl From<StoreError> for OrderError {
    fn from(e: StoreError) -> Self {
        OrderError::Farm(FarmError::Store(e))
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

/// What a job's change did to its order, committed with it and applied to the mirror after.
#[derive(Default)]
pub(crate) struct FollowUp {
    /// A print that just completed, to learn its real duration from.
    learn: Option<Job>,
    retry: Option<Job>,
    order: Option<Order>,
    deliveries: Vec<Delivery>,
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
        Ok(Resolved {
            files: vec![orders::ItemFile {
                sha256: f.sha256.clone(),
                name: it.name.clone().unwrap_or_else(|| f.name.clone()),
            }],
            material: None,
            colour: None,
            nozzle_mm: None,
        })
    }

    /// Places a group of orders in one durable transaction (group commit). Each answer is
    /// its own: one bad order does not fail the others.
    pub fn place_orders(&self, batch: Vec<Intake>) -> Vec<Result<Placed, OrderError>> {
        let t = now();
        let settings = self.production.settings();
        let mut m = self.lock();
        let mut answers: Vec<Option<Result<Placed, OrderError>>> = Vec::with_capacity(batch.len());
        let mut fresh: Vec<(usize, Order, Vec<Job>, Vec<String>)> = vec![];
        let mut keys_in_batch: HashMap<String, (String, usize)> = HashMap::new();
        let printers = self.scheduler_printers(&m);
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
            let items = match orders::validate(&intake.request, t, |it| Self::resolve(&m, it)) {
                Ok(items) => items,
                Err(errs) => {
                    answers.push(Some(Err(OrderError::Invalid(errs))));
                    continue;
                }
            };
            let (errs, warnings) = self.check_printable(&m, &items, &printers, &settings.rules);
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
            // Commit without the farm lock: the fsync takes milliseconds, and every reader
            // (API tokens, order views, the scheduler's input) waits for this lock. Nothing
            // else can touch these orders meanwhile: they reach the mirror only after the
            // commit, below, and intake is one task, so no other batch takes their keys.
            // A batch that writes webhook deliveries keeps the lock: a later-numbered delivery
            // to the same shop must not reach the outbox (and the shop) before this one.
            let webhook_shops = &settings.webhook_shops;
            let hold = fresh
                .iter()
                .any(|(_, o, ..)| webhook_shops.contains(&o.shop));
            let metas: HashMap<String, FileMeta> = fresh
                .iter()
                .flat_map(|(_, o, ..)| o.items.iter().flat_map(|it| it.files.iter()))
                .filter_map(|f| m.book.files.get(&f.sha256))
                .map(|meta| (meta.sha256.clone(), meta.clone()))
                .collect();
            let held = if hold {
                Some(m)
            } else {
                drop(m);
                None
            };
            let written = self.store.write(|tx| {
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
            m = held.unwrap_or_else(|| self.lock());
            match written {
                Ok(deliveries) => {
                    let version = self.production.queue_version.fetch_add(1, SeqCst) + 1;
                    for (i, order, jobs, warnings) in fresh {
                        for j in jobs {
                            m.book
                                .jobs_of
                                .entry(order.id.clone())
                                .or_default()
                                .push(j.number);
                            m.job_numbers.insert(j.id.clone(), j.number);
                            self.announce_job(&j);
                            m.jobs.insert(j.number, j);
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
                        self.webhook_kick.notify_one();
                    }
                    self.kick.notify_one();
                }
                Err(e) => {
                    tracing::error!("order intake: {e}");
                    for (i, ..) in fresh {
                        answers[i] = Some(Err(OrderError::Farm(FarmError::Store(
                            StoreError::Locked(format!(
                                "the store could not commit the order ({e}); retry with the same Idempotency-Key"
                            )),
                        ))));
                    }
                }
            }
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
        let meta = metas.get(&f.sha256);
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

    /// Refuses items no enrolled printer could ever print (422) and warns about items whose
    /// material, colour or nozzle nobody has loaded right now (accepted: an operator can load it).
    fn check_printable(
        &self,
        m: &Mirror,
        items: &[orders::Item],
        printers: &[crate::scheduler::PrinterInput],
        rules: &crate::scheduler::Rules,
    ) -> (Vec<FieldError>, Vec<String>) {
        use crate::scheduler::{Misfit, fits};
        let (mut errs, mut warnings) = (vec![], vec![]);
        for (i, item) in items.iter().enumerate() {
            for f in &item.files {
                let Some(meta) = m.book.files.get(&f.sha256) else {
                    continue;
                };
                let j = self.job_input_for(meta, item);
                let results: Vec<Result<(), Misfit>> =
                    printers.iter().map(|p| fits(p, &j, rules)).collect();
                let declared = printers
                    .iter()
                    .filter(|p| p.build_volume_mm.is_some())
                    .count();
                let too_big = results
                    .iter()
                    .filter(|r| matches!(r, Err(Misfit::TooBig { .. })))
                    .count();
                if declared > 0 && too_big == declared {
                    errs.push(FieldError {
                        field: format!("items[{i}]"),
                        problem: format!(
                            "{} measures {:?} mm, larger than the build volume of every printer in the farm; send a smaller part or split it",
                            f.name,
                            meta.size_mm.unwrap_or_default()
                        ),
                    });
                } else if !results.iter().any(|r| {
                    r.is_ok() || matches!(r, Err(Misfit::NotEnough { .. } | Misfit::Blocked))
                }) {
                    warnings.push(format!(
                        "items[{i}]: no printer has {} {}{} loaded now; the copies wait until an operator loads it",
                        item.material.as_deref().unwrap_or("any material"),
                        item.colour.as_deref().unwrap_or("any colour"),
                        item.nozzle_mm.map(|n| format!(" with a {n} mm nozzle")).unwrap_or_default(),
                    ));
                }
            }
        }
        (errs, warnings)
    }

    /// A webhook delivery for `order` after a change, written in `tx`.
    pub(crate) fn delivery(
        &self,
        tx: &mut Tx<'_>,
        order: &Order,
        jobs: &[&Job],
        event: &str,
        extra: Option<serde_json::Value>,
        t: OffsetDateTime,
    ) -> Result<Delivery, StoreError> {
        let number = tx.next_number("next_delivery")?;
        let id = format!("whd-{number}-{}", crate::auth::random_hex(6));
        let view = self.view_of(order, jobs);
        let mut body = serde_json::json!({
            "id": id,
            "event": event,
            "created_at": orders::rfc3339(t),
            "order": view,
        });
        if let Some(x) = extra {
            body["detail"] = x;
        }
        let d = Delivery {
            number,
            id,
            shop: order.shop.clone(),
            order_id: order.id.clone(),
            event: event.into(),
            body: body.to_string(),
            created_at: t,
            attempts: 0,
            next_attempt_at: t,
            delivered_at: None,
            last_error: None,
            dead: false,
        };
        tx.put_delivery(&d)?;
        Ok(d)
    }

    /// What a job's change means for its order; call inside the job's write transaction,
    /// before the job is put (it may record wasted material on it). `m` still holds the job as
    /// it was before this change.
    pub(super) fn follow_job(
        &self,
        m: &Mirror,
        tx: &mut Tx<'_>,
        job: &mut Job,
        t: OffsetDateTime,
    ) -> Result<FollowUp, StoreError> {
        let mut f = FollowUp::default();
        let before = m
            .job_numbers
            .get(&job.id)
            .and_then(|n| m.jobs.get(n))
            .map(|j| j.state);
        if before == Some(job.state) {
            return Ok(f);
        }
        if job.state == JobState::Completed {
            f.learn = Some(job.clone());
        }
        if matches!(job.state, JobState::Failed | JobState::Cancelled) && job.wasted_g.is_none() {
            let mm: f64 = job.extruded_mm.iter().sum();
            job.wasted_g = Some(super::loadout::grams(
                mm,
                job.material.as_deref().unwrap_or("PLA"),
            ));
        }
        let Some(r) = job.order.clone() else {
            return Ok(f);
        };
        let Some(mut order) = m.book.order(&r.order_id).cloned() else {
            return Ok(f);
        };
        let shops = &self.production.settings().webhook_shops;
        let notify = shops.contains(&order.shop);
        let mut jobs: Vec<Job> = m
            .book
            .jobs_of
            .get(&order.id)
            .into_iter()
            .flatten()
            .filter(|n| **n != job.number)
            .filter_map(|n| m.jobs.get(n).cloned())
            .collect();
        if job.state == JobState::Failed && job.retried_by.is_none() && !order.state.is_final() {
            let will_retry = job.attempt < order.max_attempts;
            if will_retry {
                let n = tx.next_job_number()?;
                let retry = jobs::retry(job, n, t);
                tx.put_job(&retry)?;
                jobs.push(retry.clone());
                f.retry = Some(retry);
            }
            if notify {
                jobs.push(job.clone());
                let refs: Vec<&Job> = jobs.iter().collect();
                let detail = serde_json::json!({
                    "job_id": job.id, "item": r.item, "copy": r.copy, "attempt": job.attempt,
                    "reason": job.failure_reason, "wasted_g": job.wasted_g, "will_retry": will_retry,
                });
                f.deliveries.push(self.delivery(
                    tx,
                    &order,
                    &refs,
                    "order.print_failed",
                    Some(detail),
                    t,
                )?);
                jobs.pop();
            }
        }
        jobs.push(job.clone());
        let refs: Vec<&Job> = jobs.iter().collect();
        if job.state == JobState::Completed && notify {
            let detail = serde_json::json!({"job_id": job.id, "item": r.item, "copy": r.copy, "printer_id": job.printer_id});
            f.deliveries.push(self.delivery(
                tx,
                &order,
                &refs,
                "order.print_completed",
                Some(detail),
                t,
            )?);
        }
        if let Some(ev) = orders::progress(&order, &refs)
            && order.apply(ev, t).is_ok()
        {
            tx.put_order(&order)?;
            if notify {
                let event = format!("order.{}", order.state.as_str());
                f.deliveries
                    .push(self.delivery(tx, &order, &refs, &event, None, t)?);
            }
            f.order = Some(order);
        }
        Ok(f)
    }

    /// Applies a committed [`FollowUp`] to the mirror.
    pub(super) fn after_follow_up(&self, m: &mut Mirror, f: FollowUp) {
        if let Some(j) = &f.learn {
            self.learn_from(j);
        }
        if let Some(r) = f.retry {
            if let Some(o) = &r.order {
                m.book
                    .jobs_of
                    .entry(o.order_id.clone())
                    .or_default()
                    .push(r.number);
            }
            m.job_numbers.insert(r.id.clone(), r.number);
            self.announce_job(&r);
            tracing::info!(job = %r.id, attempt = r.attempt, retry_of = ?r.retry_of, "failed print requeued");
            m.jobs.insert(r.number, r);
            self.kick.notify_one();
        }
        if let Some(o) = f.order {
            tracing::info!(order = %o.id, state = o.state.as_str(), "order changed");
            m.book.orders.insert(o.number, o);
        }
        if !f.deliveries.is_empty() {
            m.book
                .outbox
                .extend(f.deliveries.into_iter().map(|d| (d.number, d)));
            self.webhook_kick.notify_one();
        }
    }

    /// Applies an operator's or the shop's event (cancel, fulfil) to an order.
    pub fn order_event(
        &self,
        id: &str,
        shop: Option<&str>,
        event: OrderEvent,
        stop_printing: bool,
    ) -> Result<OrderView, OrderError> {
        let t = now();
        let mut m = self.lock();
        let mut order = m
            .book
            .order(id)
            .filter(|o| shop.is_none_or(|s| o.shop == s))
            .cloned()
            .ok_or_else(|| OrderError::NotFound(id.into()))?;
        order.apply(event, t)?;
        let mut jobs: Vec<Job> = m
            .book
            .jobs_of
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|n| m.jobs.get(n).cloned())
            .collect();
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
        let notify = self
            .production
            .settings()
            .webhook_shops
            .contains(&order.shop);
        let delivery = self.store.write(|tx| {
            tx.put_order(&order)?;
            for j in &jobs {
                tx.put_job(j)?;
            }
            let refs: Vec<&Job> = jobs.iter().collect();
            let event = format!("order.{}", order.state.as_str());
            notify
                .then(|| self.delivery(tx, &order, &refs, &event, None, t))
                .transpose()
        })?;
        for j in jobs {
            if m.jobs.get(&j.number) != Some(&j) {
                self.announce_job(&j);
                m.jobs.insert(j.number, j);
            }
        }
        if let Some(d) = delivery {
            m.book.outbox.insert(d.number, d);
            self.webhook_kick.notify_one();
        }
        m.book.orders.insert(order.number, order.clone());
        drop(m);
        for (printer, job) in stop {
            self.send_command(
                &printer,
                farm_protocol::messages::Command::Cancel { job_id: job },
            )?;
        }
        self.order_view(id, shop)
            .ok_or_else(|| OrderError::NotFound(id.into()))
    }

    /// Releases an order into production (manual release mode).
    pub fn release_order(&self, id: &str) -> Result<OrderView, OrderError> {
        let mut m = self.lock();
        let mut order = m
            .book
            .order(id)
            .cloned()
            .ok_or_else(|| OrderError::NotFound(id.into()))?;
        if order.state.is_final() {
            return Err(FarmError::Conflict(format!(
                "order {id} is {}; there is nothing to release",
                order.state.as_str()
            ))
            .into());
        }
        order.released = true;
        let jobs: Vec<Job> = m
            .book
            .jobs_of
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|n| m.jobs.get(n))
            .filter(|j| j.hold.as_deref() == Some(crate::jobs::AWAITING_RELEASE))
            .cloned()
            .map(|mut j| {
                j.hold = None;
                j
            })
            .collect();
        self.store.write(|tx| {
            tx.put_order(&order)?;
            jobs.iter().try_for_each(|j| tx.put_job(j))
        })?;
        for j in jobs {
            self.announce_job(&j);
            m.jobs.insert(j.number, j);
        }
        m.book.orders.insert(order.number, order);
        drop(m);
        self.kick.notify_one();
        self.order_view(id, None)
            .ok_or_else(|| OrderError::NotFound(id.into()))
    }
}

/// Extent of a print (max − min of the analyzer's bounds), mm.
pub fn extent(a: &farm_protocol::gcode::Analysis) -> Option<[f64; 3]> {
    a.bounds.as_ref().map(|b| {
        let mut e = [0.0; 3];
        for (i, x) in e.iter_mut().enumerate() {
            *x = (b.max[i] - b.min[i]).max(0.0);
        }
        e
    })
}

/// What is kept about an uploaded file.
pub fn file_meta(name: &str, s: &crate::files::Stored) -> FileMeta {
    FileMeta {
        sha256: s.sha256.clone(),
        size: s.size,
        name: name.to_string(),
        filament_mm: s.analysis.filament_mm.clone(),
        estimated_s: s.analysis.estimated_s,
        size_mm: extent(&s.analysis),
    }
}

#[path = "orders_view.rs"]
mod view;
pub use view::{CopyJob, CopyView, ItemView, OrderView};

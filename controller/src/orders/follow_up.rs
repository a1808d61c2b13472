//! Writes about orders after intake ([`crate::orders::intake`]): cancel, release, fulfil, and what a
//! job's change means for its order (retry a failed print, move the order along, queue
//! webhooks) — always in the same transaction as the job's change.

use crate::catalog::{CatalogEntry, FileMeta};
use crate::farm::writer::Staging;
use crate::farm::{Farm, FarmError, Mirror, now};
use crate::jobs::{self, Job, JobState};
use crate::orders::actions::{self, OrderChange};
use crate::orders::view::OrderView;
use crate::orders::webhooks::Delivery;
use crate::orders::{self, FieldError, Order, OrderEvent};
use crate::store::{IdempotencyRecord, StoreError, Tx};
use std::collections::{BTreeMap, HashMap};
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
    pub(crate) fn follow_job(
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
            job.wasted_g = Some(crate::inventory::loadout::grams(
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
    pub(crate) fn after_follow_up(&self, m: &mut Mirror, f: FollowUp) {
        if let Some(j) = &f.learn {
            self.learn_from(j);
        }
        if let Some(r) = f.retry {
            tracing::info!(job = %r.id, attempt = r.attempt, retry_of = ?r.retry_of, "failed print requeued");
            self.mirror_new_job(m, r);
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
            self.wake_webhooks();
        }
    }

    /// Applies an operator's or the shop's event (cancel, fulfil) to an order.
    pub async fn order_event(
        &self,
        id: &str,
        shop: Option<&str>,
        event: OrderEvent,
        stop_printing: bool,
    ) -> Result<OrderView, OrderError> {
        let (id, shop) = (id.to_string(), shop.map(str::to_string));
        self.write(move |farm, s| {
            farm.stage_order_event(s, &id, shop.as_deref(), event, stop_printing)
        })
        .await
    }

    fn stage_order_event(
        &self,
        s: &mut Staging<'_>,
        id: &str,
        shop: Option<&str>,
        event: OrderEvent,
        stop_printing: bool,
    ) -> Result<OrderView, OrderError> {
        let t = now();
        let m = &*s.m;
        let order = m
            .book
            .order(id)
            .filter(|o| shop.is_none_or(|s| o.shop == s))
            .ok_or_else(|| OrderError::NotFound(id.into()))?;
        let jobs: Vec<Job> = m
            .book
            .jobs_of
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|n| m.jobs.get(n).cloned())
            .collect();
        let OrderChange { order, jobs, stop } =
            actions::decide_order_event(order, jobs, event, stop_printing, t)?;
        // Every printer to stop must still take a command; checked before anything is written.
        if let Some((p, _)) = stop.iter().find(|(p, _)| !m.printers.contains_key(p)) {
            return Err(FarmError::NoPrinter(p.clone()).into());
        }
        let notify = self
            .production
            .settings()
            .webhook_shops
            .contains(&order.shop);
        let delivery = s.put(|_, tx| {
            tx.put_order(&order)?;
            for j in &jobs {
                tx.put_job(j)?;
            }
            let refs: Vec<&Job> = jobs.iter().collect();
            let event = format!("order.{}", order.state.as_str());
            notify
                .then(|| self.delivery(tx, &order, &refs, &event, None, t))
                .transpose()
        });
        for j in jobs {
            if s.m.jobs.get(&j.number) != Some(&j) {
                self.announce_job(&j);
                s.m.jobs.insert(j.number, j);
            }
        }
        if let Some(d) = delivery {
            s.m.book.outbox.insert(d.number, d);
            self.wake_webhooks();
        }
        s.m.book.orders.insert(order.number, order);
        for (printer, job) in stop {
            // The printer was checked above, so this cannot refuse after writing.
            self.stage_command(
                s,
                &printer,
                farm_protocol::messages::Command::Cancel { job_id: job },
            )?;
        }
        self.order_view_in(s.m, id, shop)
            .ok_or_else(|| OrderError::NotFound(id.into()))
    }

    /// Releases an order into production (manual release mode).
    pub async fn release_order(&self, id: &str) -> Result<OrderView, OrderError> {
        let id = id.to_string();
        self.write(move |farm, s| {
            let m = &*s.m;
            let order = m
                .book
                .order(&id)
                .ok_or_else(|| OrderError::NotFound(id.clone()))?;
            let held: Vec<&Job> = m
                .book
                .jobs_of
                .get(&id)
                .into_iter()
                .flatten()
                .filter_map(|n| m.jobs.get(n))
                .collect();
            let (order, jobs) =
                actions::decide_release(order, &held).map_err(FarmError::Conflict)?;
            s.put(|_, tx| {
                tx.put_order(&order)?;
                jobs.iter().try_for_each(|j| tx.put_job(j))
            });
            for j in jobs {
                farm.announce_job(&j);
                s.m.jobs.insert(j.number, j);
            }
            s.m.book.orders.insert(order.number, order);
            farm.kick.notify_one();
            farm.order_view_in(s.m, &id, None)
                .ok_or_else(|| OrderError::NotFound(id.clone()))
        })
        .await
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
pub fn file_meta(name: &str, s: &crate::catalog::files::Stored) -> FileMeta {
    FileMeta {
        sha256: s.sha256.clone(),
        size: s.size,
        name: name.to_string(),
        filament_mm: s.analysis.filament_mm.clone(),
        estimated_s: s.analysis.estimated_s,
        size_mm: extent(&s.analysis),
        plates: s.plates.iter().map(|p| p.meta.clone()).collect(),
    }
}

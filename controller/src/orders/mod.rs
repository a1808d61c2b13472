//! Orders from the shop (DESIGN §5), as pure functions over plain data.
//!
//! `received → in_production → ready → fulfilled`, or `cancelled`, or `failed` when an item ran
//! out of attempts. [`transition`] is the only place an order's state changes; [`progress`]
//! reads an order's jobs and says which event (if any) they amount to. Quantity N of an item
//! becomes N copies; each copy is one job per file of the item (a catalog SKU may map to
//! several files), and a failed print is retried as a new job for the same copy.
//!
//! [`validate`] checks an order request field by field and answers every mistake at once, each
//! with the field's path and what to send instead.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | order lifecycle, copies, request validation (pure; tests in `tests.rs`) |
//! | [`intake`] | farm writes: order intake with group commit, idempotency |
//! | [`fit`] | does an item fit the farm's printers (refused, warned, fine), once per batch and class |
//! | [`follow_up`] | farm writes: cancel, release, fulfil; a job's consequences for its order |
//! | [`view`] | what the API shows of an order, read from the farm |
//! | [`outbox`] | farm writes: the webhook outbox |
//! | [`webhooks`] | signing, backoff, and the task that delivers the outbox to shops |
//! | [`http`] | `/api/v1/orders`, file uploads to order from, webhook log |

pub mod actions;
pub mod fit;
pub mod follow_up;
pub mod http;
pub mod intake;
pub mod outbox;
pub mod view;
pub mod webhooks;

use crate::jobs::{Job, JobState};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Received,
    InProduction,
    Ready,
    Fulfilled,
    Cancelled,
    Failed,
}

impl OrderState {
    pub const ALL: [OrderState; 6] = [
        OrderState::Received,
        OrderState::InProduction,
        OrderState::Ready,
        OrderState::Fulfilled,
        OrderState::Cancelled,
        OrderState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Received => "received",
            OrderState::InProduction => "in_production",
            OrderState::Ready => "ready",
            OrderState::Fulfilled => "fulfilled",
            OrderState::Cancelled => "cancelled",
            OrderState::Failed => "failed",
        }
    }

    /// No event changes it any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OrderState::Fulfilled | OrderState::Cancelled | OrderState::Failed
        )
    }
}

/// What can happen to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderEvent {
    /// A copy went onto a printer.
    Started,
    /// Every copy of every item printed.
    AllPrinted,
    /// A copy failed and has no attempts left.
    Exhausted,
    /// The shop or an operator cancelled it.
    Cancel,
    /// An operator handed it over.
    Fulfil,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {} cannot be {}", .state.as_str(), verb(*.event))]
pub struct Refused {
    pub state: OrderState,
    pub event: OrderEvent,
}

fn verb(e: OrderEvent) -> &'static str {
    match e {
        OrderEvent::Started => "started",
        OrderEvent::AllPrinted => "marked ready",
        OrderEvent::Exhausted => "failed",
        OrderEvent::Cancel => "cancelled (cancel only orders not yet printed)",
        OrderEvent::Fulfil => "fulfilled (only ready orders can be)",
    }
}

/// The order lifecycle: the next state, or why not.
pub fn transition(state: OrderState, event: OrderEvent) -> Result<OrderState, Refused> {
    use OrderEvent as E;
    use OrderState as S;
    let next = match (state, event) {
        (S::Received, E::Started) => S::InProduction,
        (S::Received | S::InProduction, E::AllPrinted) => S::Ready,
        (S::Received | S::InProduction, E::Exhausted) => S::Failed,
        (S::Received | S::InProduction, E::Cancel) => S::Cancelled,
        (S::Ready, E::Fulfil) => S::Fulfilled,
        _ => return Err(Refused { state, event }),
    };
    Ok(next)
}

/// Money in minor units (cents) and an ISO 4217 code: what the shop charged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: String,
}

/// One file to print for each copy of an item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ItemFile {
    pub sha256: String,
    pub name: String,
    /// For a `.gcode.3mf`: the plate printed (chosen and checked at intake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<u32>,
}

/// One line of an order, resolved to files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Item {
    #[serde(default)]
    pub sku: Option<String>,
    pub files: Vec<ItemFile>,
    pub quantity: u32,
    pub material: Option<String>,
    pub colour: Option<String>,
    pub nozzle_mm: Option<f64>,
}

/// A stored order. Its copies are jobs (see [`crate::jobs::OrderRef`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    pub id: String,
    pub number: u64,
    /// Who placed it: the shop token's name. Only that shop sees it.
    pub shop: String,
    pub customer_ref: String,
    pub state: OrderState,
    pub items: Vec<Item>,
    pub priority: i32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub due: Option<OffsetDateTime>,
    pub price: Option<Money>,
    /// Prints per copy before the order fails.
    pub max_attempts: u32,
    /// False while waiting for an operator to release it (manual release mode).
    pub released: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Every state it went through, with when.
    pub history: Vec<(OrderState, String)>,
}

impl Order {
    /// Applies an event; records it in the history.
    pub fn apply(&mut self, event: OrderEvent, now: OffsetDateTime) -> Result<(), Refused> {
        self.state = transition(self.state, event)?;
        self.updated_at = now;
        self.history.push((self.state, rfc3339(now)));
        Ok(())
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Where one copy stands, from its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CopyState {
    Queued,
    Printing,
    Printed,
    /// Failed with no attempts left.
    Failed,
    Cancelled,
}

/// The state of each copy `(item, copy)` of `order`, from its jobs (any order of jobs).
pub fn copy_states(order: &Order, jobs: &[&Job]) -> Vec<Vec<CopyState>> {
    order
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            (1..=item.quantity)
                .map(|copy| {
                    let parts: Vec<CopyState> = (0..item.files.len())
                        .map(|part| part_state(jobs, i as u32, copy, part as u32))
                        .collect();
                    combine(&parts)
                })
                .collect()
        })
        .collect()
}

fn part_state(jobs: &[&Job], item: u32, copy: u32, part: u32) -> CopyState {
    let mut latest: Option<&Job> = None;
    for j in jobs {
        let Some(r) = &j.order else { continue };
        if (r.item, r.copy, r.part) != (item, copy, part) {
            continue;
        }
        if j.state == JobState::Completed {
            return CopyState::Printed;
        }
        if latest.is_none_or(|l| j.attempt > l.attempt) {
            latest = Some(j);
        }
    }
    match latest.map(|j| j.state) {
        None | Some(JobState::Queued) => CopyState::Queued,
        Some(JobState::Failed) => CopyState::Failed,
        Some(JobState::Cancelled) => CopyState::Cancelled,
        Some(_) => CopyState::Printing,
    }
}

fn combine(parts: &[CopyState]) -> CopyState {
    use CopyState as C;
    if parts.contains(&C::Failed) {
        C::Failed
    } else if parts.contains(&C::Cancelled) {
        C::Cancelled
    } else if !parts.is_empty() && parts.iter().all(|p| *p == C::Printed) {
        C::Printed
    } else if parts.iter().any(|p| matches!(p, C::Printing | C::Printed)) {
        C::Printing
    } else {
        C::Queued
    }
}

/// The event an order's jobs amount to, if it changes the order's state.
pub fn progress(order: &Order, jobs: &[&Job]) -> Option<OrderEvent> {
    if order.state.is_final() || order.state == OrderState::Ready {
        return None;
    }
    let copies: Vec<CopyState> = copy_states(order, jobs).into_iter().flatten().collect();
    let event = if copies.contains(&CopyState::Failed) {
        OrderEvent::Exhausted
    } else if !copies.is_empty() && copies.iter().all(|c| *c == CopyState::Printed) {
        OrderEvent::AllPrinted
    } else if copies
        .iter()
        .any(|c| matches!(c, CopyState::Printing | CopyState::Printed))
    {
        OrderEvent::Started
    } else {
        return None;
    };
    transition(order.state, event).ok().map(|_| event)
}

// ---- requests -------------------------------------------------------------------------------

/// `POST /api/v1/orders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The shop's own order reference (shown to operators, sent back in webhooks).
    pub customer_ref: String,
    pub items: Vec<ItemRequest>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub due: Option<OffsetDateTime>,
    #[serde(default)]
    pub price: Option<Money>,
}

/// One line: a catalog SKU, or a stored file by sha256 (upload it first: `POST /api/v1/files`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemRequest {
    #[serde(default)]
    pub sku: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Signed so that 0 and negatives get a clear answer instead of a parse error.
    pub quantity: i64,
    #[serde(default)]
    pub material: Option<String>,
    #[serde(default)]
    pub colour: Option<String>,
    #[serde(default)]
    pub nozzle_mm: Option<f64>,
    /// With `sha256` of a `.gcode.3mf`: its plate to print (may be left out if it has one).
    #[serde(default)]
    pub plate: Option<u32>,
}

/// One mistake in a request: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

pub const MAX_ITEMS: usize = 100;
pub const MAX_QUANTITY: i64 = 1000;
pub const MAX_COPIES: u64 = 10_000;

fn text_ok(s: &str, max: usize) -> bool {
    let t = s.trim();
    !t.is_empty() && t.len() <= max && !t.chars().any(char::is_control)
}

/// A catalog entry's contribution to an item.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub files: Vec<ItemFile>,
    pub material: Option<String>,
    pub colour: Option<String>,
    pub nozzle_mm: Option<f64>,
}

/// Checks a request and resolves its items (`resolve` looks up SKUs and files); every mistake
/// is reported, not only the first.
pub fn validate(
    req: &OrderRequest,
    now: OffsetDateTime,
    resolve: impl Fn(&ItemRequest) -> Result<Resolved, String>,
) -> Result<Vec<Item>, Vec<FieldError>> {
    let mut errs = vec![];
    let mut err = |field: String, problem: &str| {
        errs.push(FieldError {
            field,
            problem: problem.to_string(),
        })
    };
    if !text_ok(&req.customer_ref, 128) {
        err(
            "customer_ref".into(),
            "send your order reference: 1 to 128 printable characters",
        );
    }
    if let Some(due) = req.due
        && due <= now
    {
        err(
            "due".into(),
            &format!(
                "the due date {} is in the past (now is {}); send a future time or leave it out",
                rfc3339(due),
                rfc3339(now)
            ),
        );
    }
    if let Some(p) = &req.price {
        if p.amount_minor < 0 {
            err(
                "price.amount_minor".into(),
                "a price cannot be negative; send minor units (cents), e.g. 1250 for 12.50",
            );
        }
        if p.currency.len() != 3 || !p.currency.bytes().all(|b| b.is_ascii_uppercase()) {
            err(
                "price.currency".into(),
                "send an ISO 4217 code in capitals, e.g. \"EUR\"",
            );
        }
    }
    if req.items.is_empty() || req.items.len() > MAX_ITEMS {
        err("items".into(), &format!("send 1 to {MAX_ITEMS} items"));
    }
    let mut items = vec![];
    let mut copies = 0u64;
    for (i, it) in req.items.iter().enumerate() {
        let f = |name: &str| format!("items[{i}].{name}");
        if it.quantity < 1 || it.quantity > MAX_QUANTITY {
            err(
                f("quantity"),
                &format!(
                    "quantity is {}; send a whole number of copies from 1 to {MAX_QUANTITY}",
                    it.quantity
                ),
            );
        }
        copies += it.quantity.clamp(0, MAX_QUANTITY) as u64;
        if let Some(n) = it.nozzle_mm
            && !(n.is_finite() && (0.1..=2.0).contains(&n))
        {
            err(
                f("nozzle_mm"),
                "a nozzle diameter is 0.1 to 2.0 mm, e.g. 0.4",
            );
        }
        for (name, v) in [("material", &it.material), ("colour", &it.colour)] {
            if let Some(v) = v
                && !text_ok(v, 64)
            {
                err(
                    f(name),
                    "send 1 to 64 printable characters, or leave it out",
                );
            }
        }
        match (&it.sku, &it.sha256) {
            (Some(_), Some(_)) | (None, None) => err(
                f("sku"),
                "send exactly one of `sku` (a catalog entry) or `sha256` (a file uploaded with POST /api/v1/files)",
            ),
            _ => match resolve(it) {
                Ok(r) => items.push(Item {
                    sku: it.sku.clone(),
                    files: r.files,
                    quantity: it.quantity.clamp(1, MAX_QUANTITY) as u32,
                    material: it.material.clone().or(r.material),
                    colour: it.colour.clone().or(r.colour),
                    nozzle_mm: it.nozzle_mm.or(r.nozzle_mm),
                }),
                Err(why) => err(f(if it.sku.is_some() { "sku" } else { "sha256" }), &why),
            },
        }
    }
    if copies > MAX_COPIES {
        err(
            "items".into(),
            &format!("{copies} copies in one order; split it into orders of at most {MAX_COPIES}"),
        );
    }
    if errs.is_empty() {
        Ok(items)
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests;

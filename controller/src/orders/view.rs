//! Reading orders: the view the shop and operators get, with the ETA from the latest plan.

use crate::farm::Farm;
use crate::jobs::{Job, JobState};
use crate::orders::{self, CopyState, Order, OrderState};
use serde::Serialize;
use time::OffsetDateTime;

/// An order as the shop and the operators see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub id: String,
    pub customer_ref: String,
    pub status: OrderState,
    pub shop: String,
    pub priority: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub due: Option<OffsetDateTime>,
    pub price: Option<orders::Money>,
    pub released: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the last copy is expected to be printed (the scheduler's timeline); `None` when
    /// done, or when some copy cannot be placed yet (see `waiting`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub eta: Option<OffsetDateTime>,
    /// Filament used so far, failed attempts included, g.
    pub material_used_g: f64,
    pub material_wasted_g: f64,
    pub items: Vec<ItemView>,
    /// Why copies wait, from the latest plan.
    pub waiting: Vec<String>,
    pub history: Vec<(OrderState, String)>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ItemView {
    pub sku: Option<String>,
    pub files: Vec<orders::ItemFile>,
    pub quantity: u32,
    pub material: Option<String>,
    pub colour: Option<String>,
    pub nozzle_mm: Option<f64>,
    pub printed: u32,
    pub copies: Vec<CopyView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CopyView {
    pub copy: u32,
    pub state: orders::CopyState,
    /// Every job of this copy, oldest first (retries after failures follow).
    pub jobs: Vec<CopyJob>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CopyJob {
    pub id: String,
    pub part: u32,
    pub attempt: u32,
    pub state: JobState,
    pub printer_id: Option<String>,
    pub failure_reason: Option<String>,
}

impl Farm {
    /// The view of `order` given its jobs (every attempt).
    pub(crate) fn view_of(&self, order: &Order, jobs: &[&Job]) -> OrderView {
        let plan = self.production.plan();
        let states = orders::copy_states(order, jobs);
        let mut eta: Option<OffsetDateTime> = None;
        let mut unknown = false;
        let mut waiting = vec![];
        let (mut used, mut wasted) = (0.0, 0.0);
        let now = crate::farm::now();
        for j in jobs {
            let material = j.material.as_deref().unwrap_or("PLA");
            let g = crate::inventory::loadout::grams(j.extruded_mm.iter().sum(), material);
            used += g;
            wasted += j.wasted_g.unwrap_or(0.0);
            let end = match j.state {
                JobState::Queued => match plan.slot(j.number) {
                    Some(s) => Some(s.end),
                    None => {
                        unknown = true;
                        if let Some(w) = plan.waiting(j.number) {
                            waiting.push(format!("{}: {w}", j.id));
                        }
                        None
                    }
                },
                s if s.is_active() => {
                    let left = j.estimated_s * (1.0 - j.progress.clamp(0.0, 1.0));
                    Some(now + time::Duration::seconds_f64(left.max(0.0)))
                }
                _ => None,
            };
            if let Some(e) = end {
                eta = Some(eta.map_or(e, |x: OffsetDateTime| x.max(e)));
            }
        }
        let done = matches!(
            order.state,
            OrderState::Ready | OrderState::Fulfilled | OrderState::Cancelled | OrderState::Failed
        );
        let items = order
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let copies: Vec<CopyView> = (1..=item.quantity)
                    .map(|copy| {
                        let mut js: Vec<CopyJob> = jobs
                            .iter()
                            .filter(|j| {
                                j.order
                                    .as_ref()
                                    .is_some_and(|r| r.item as usize == i && r.copy == copy)
                            })
                            .map(|j| CopyJob {
                                id: j.id.clone(),
                                part: j.order.as_ref().map_or(0, |r| r.part),
                                attempt: j.attempt,
                                state: j.state,
                                printer_id: j.printer_id.clone(),
                                failure_reason: j.failure_reason.clone(),
                            })
                            .collect();
                        js.sort_by_key(|j| (j.part, j.attempt));
                        CopyView {
                            copy,
                            state: states
                                .get(i)
                                .and_then(|c| c.get(copy as usize - 1))
                                .copied()
                                .unwrap_or(CopyState::Queued),
                            jobs: js,
                        }
                    })
                    .collect();
                ItemView {
                    sku: item.sku.clone(),
                    files: item.files.clone(),
                    quantity: item.quantity,
                    material: item.material.clone(),
                    colour: item.colour.clone(),
                    nozzle_mm: item.nozzle_mm,
                    printed: copies
                        .iter()
                        .filter(|c| c.state == CopyState::Printed)
                        .count() as u32,
                    copies,
                }
            })
            .collect();
        OrderView {
            id: order.id.clone(),
            customer_ref: order.customer_ref.clone(),
            status: order.state,
            shop: order.shop.clone(),
            priority: order.priority,
            due: order.due,
            price: order.price.clone(),
            released: order.released,
            created_at: order.created_at,
            updated_at: order.updated_at,
            eta: if done || unknown { None } else { eta },
            material_used_g: (used * 100.0).round() / 100.0,
            material_wasted_g: (wasted * 100.0).round() / 100.0,
            items,
            waiting,
            history: order.history.clone(),
        }
    }

    /// One order; `shop`: only if it belongs to that shop.
    pub fn order_view(&self, id: &str, shop: Option<&str>) -> Option<OrderView> {
        self.order_view_in(&self.lock(), id, shop)
    }

    /// [`Farm::order_view`] from a mirror the caller holds (the writer).
    pub(crate) fn order_view_in(
        &self,
        m: &crate::farm::Mirror,
        id: &str,
        shop: Option<&str>,
    ) -> Option<OrderView> {
        let order = m
            .book
            .numbers
            .get(id)
            .and_then(|n| m.book.orders.get(n))
            .filter(|o| shop.is_none_or(|s| o.shop == s))?;
        let jobs: Vec<&Job> = m
            .book
            .jobs_of
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|n| m.jobs.get(n))
            .collect();
        Some(self.view_of(order, &jobs))
    }

    /// Orders after number `after` (cursor), of one shop or all, optionally of one state.
    pub fn order_list(
        &self,
        shop: Option<&str>,
        state: Option<OrderState>,
        after: u64,
        limit: usize,
    ) -> (Vec<OrderView>, Option<u64>) {
        let m = self.lock();
        let mut out = vec![];
        for (n, o) in m.book.orders.range(after.saturating_add(1)..) {
            if shop.is_some_and(|s| o.shop != s) || state.is_some_and(|s| o.state != s) {
                continue;
            }
            let jobs: Vec<&Job> = m
                .book
                .jobs_of
                .get(&o.id)
                .into_iter()
                .flatten()
                .filter_map(|n| m.jobs.get(n))
                .collect();
            out.push(self.view_of(o, &jobs));
            if out.len() == limit {
                return (out, Some(*n));
            }
        }
        (out, None)
    }
}

//! The webhook outbox in the farm: which deliveries are due, recording attempts, the log.

use crate::farm::{Farm, FarmError, now};
use crate::orders::actions::decide_delivery_result;
use crate::orders::webhooks::Delivery;
use std::collections::BTreeMap;
use time::OffsetDateTime;

impl Farm {
    /// Due deliveries, grouped by shop in order (at most `per_shop` each), and when the next
    /// not-yet-due one is.
    pub fn due_deliveries(
        &self,
        t: OffsetDateTime,
        per_shop: usize,
    ) -> (BTreeMap<String, Vec<Delivery>>, Option<OffsetDateTime>) {
        let m = self.lock();
        let mut due: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
        let mut blocked: std::collections::HashSet<&str> = Default::default();
        let mut next: Option<OffsetDateTime> = None;
        for d in m.book.outbox.values() {
            if blocked.contains(d.shop.as_str()) {
                continue;
            }
            if d.next_attempt_at > t {
                // Later ones for this shop wait behind it, keeping the shop's order.
                blocked.insert(&d.shop);
                next = Some(next.map_or(d.next_attempt_at, |n| n.min(d.next_attempt_at)));
                continue;
            }
            let list = due.entry(d.shop.clone()).or_default();
            if list.len() < per_shop {
                list.push(d.clone());
            }
        }
        (due, next)
    }

    /// Records attempts durably (one request to the writer for the round).
    pub async fn record_deliveries(
        &self,
        results: Vec<crate::orders::webhooks::Outcome>,
        cfg: crate::orders::webhooks::WebhookConfig,
    ) -> Result<(), FarmError> {
        let t = now();
        self.write(move |_, s| {
            let changed: Vec<_> = results
                .iter()
                .filter_map(|r| {
                    let d = s.m.book.outbox.get(&r.number)?;
                    let jitter = rand::random::<f64>() * 2.0 - 1.0;
                    let d = decide_delivery_result(d, r, &cfg, jitter, t);
                    if !r.ok {
                        tracing::warn!(delivery = %d.id, shop = %d.shop, attempts = d.attempts, error = ?d.last_error, "webhook not delivered");
                    }
                    Some(d)
                })
                .collect();
            s.put(|_, tx| changed.iter().try_for_each(|d| tx.put_delivery(d)));
            for d in changed {
                if d.pending() {
                    s.m.book.outbox.insert(d.number, d);
                } else {
                    s.m.book.outbox.remove(&d.number);
                }
            }
            Ok(())
        })
        .await
    }

    /// The delivery log (admin), after delivery number `after`.
    pub fn delivery_log(
        &self,
        after: u64,
        limit: usize,
        order: Option<&str>,
    ) -> Result<Vec<Delivery>, FarmError> {
        let mut out = vec![];
        let mut cursor = after;
        while out.len() < limit {
            let page = self.store.deliveries(cursor, 1000)?;
            let Some(last) = page.last() else { break };
            cursor = last.number;
            out.extend(
                page.into_iter()
                    .filter(|d| order.is_none_or(|o| d.order_id == o)),
            );
        }
        out.truncate(limit);
        Ok(out)
    }
}

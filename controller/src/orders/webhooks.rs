//! Webhooks to the shop: signed, from a durable outbox, retried with backoff (DESIGN §5).
//!
//! Every order change writes a [`Delivery`] into the `webhook_outbox` table **in the same
//! transaction** as the change (`orders/follow_up.rs`), so a change is never lost and never
//! announced without having happened. [`run`] posts pending deliveries to the shop's endpoint,
//! one shop's in order (a failing delivery holds back later ones for that shop, so the shop
//! sees changes in the order they happened), and records each result durably.
//!
//! Delivery is **at least once**: a crash between the shop's 2xx and our commit resends the
//! same delivery (same `Farm-Webhook-Id`). The receiver deduplicates by that id.
//!
//! Each request carries `Farm-Webhook-Id`, `Farm-Webhook-Timestamp` (unix seconds, fresh per
//! attempt) and `Farm-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>`.
//! The receiver recomputes it over the raw body and rejects old timestamps (replays).

use crate::farm::Farm;
use farm_protocol::Backoff;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::watch;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// One webhook, pending or done (the delivery log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub number: u64,
    /// Unique and stable across retries: the receiver's deduplication key.
    pub id: String,
    pub shop: String,
    pub order_id: String,
    pub event: String,
    /// The exact JSON body that is signed and sent.
    pub body: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    pub next_attempt_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Gave up after `max_attempts`; shown in the log, not retried.
    #[serde(default)]
    pub dead: bool,
}

impl Delivery {
    pub fn pending(&self) -> bool {
        self.delivered_at.is_none() && !self.dead
    }
}

/// One shop's endpoint (`[[webhooks.endpoints]]` in the config).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// The shop token's name: orders placed with it are reported here.
    pub shop: String,
    pub url: String,
    /// The HMAC key. Share it with the shop out of band.
    pub secret: String,
}

/// `[webhooks]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    pub endpoints: Vec<Endpoint>,
    /// First retry after this many seconds, doubling up to `max_backoff_s`.
    pub initial_backoff_s: f64,
    pub max_backoff_s: f64,
    /// Give up after this many attempts (about two days at the defaults).
    pub max_attempts: u32,
    pub timeout_s: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            endpoints: vec![],
            initial_backoff_s: 1.0,
            max_backoff_s: 3600.0,
            max_attempts: 60,
            timeout_s: 10,
        }
    }
}

/// The signature header's value for one attempt.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is unreachable.
        Err(_) => return String::new(),
    };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookConfig {
    /// The retry schedule: `initial_backoff_s` doubling to `max_backoff_s` (1 s to an hour by
    /// default, so about two days of retries over `max_attempts`), ±20 % so deliveries that
    /// failed together (a shop's outage) do not all retry in the same second.
    pub fn schedule(&self) -> Backoff {
        let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(3600));
        Backoff::new(secs(self.initial_backoff_s), secs(self.max_backoff_s)).with_jitter(0.2)
    }
}

/// Delay before attempt `attempts + 1`, a pure function of the attempt count (the next due
/// time is stored with the delivery); `jitter` in [-1, 1] is where in the ±20 % band it falls.
pub fn backoff(attempts: u32, cfg: &WebhookConfig, jitter: f64) -> Duration {
    cfg.schedule().delay_after(attempts, jitter)
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub number: u64,
    pub ok: bool,
    pub error: Option<String>,
}

/// Posts one delivery.
async fn post(client: &reqwest::Client, ep: &Endpoint, d: &Delivery) -> Outcome {
    let ts = OffsetDateTime::now_utc().unix_timestamp();
    let res = client
        .post(&ep.url)
        .header("content-type", "application/json")
        .header("farm-webhook-id", &d.id)
        .header("farm-webhook-timestamp", ts.to_string())
        .header(
            "farm-webhook-signature",
            sign(&ep.secret, &d.id, ts, &d.body),
        )
        .body(d.body.clone())
        .send()
        .await;
    let error = match res {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("the endpoint answered {}", r.status())),
        Err(e) => Some(format!("could not reach the endpoint: {e}")),
    };
    Outcome {
        number: d.number,
        ok: error.is_none(),
        error,
    }
}

/// Sends one shop's due deliveries in order, stopping at the first failure.
async fn send_shop(client: &reqwest::Client, ep: &Endpoint, due: Vec<Delivery>) -> Vec<Outcome> {
    let mut out = vec![];
    for d in due {
        let o = post(client, ep, &d).await;
        let failed = !o.ok;
        out.push(o);
        if failed {
            break;
        }
    }
    out
}

/// Most deliveries sent per shop per round (their results are committed together).
const BATCH: usize = 64;

/// The delivery task: runs until `shutdown`.
pub async fn run(farm: Arc<Farm>, cfg: WebhookConfig, mut shutdown: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.timeout_s.max(1)))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("webhooks disabled: cannot build an HTTP client: {e}");
            return;
        }
    };
    let endpoints: BTreeMap<String, Endpoint> = cfg
        .endpoints
        .iter()
        .map(|e| (e.shop.clone(), e.clone()))
        .collect();
    loop {
        let now = OffsetDateTime::now_utc();
        let (due, next) = farm.due_deliveries(now, BATCH);
        let mut results = vec![];
        if !due.is_empty() {
            let rounds = due
                .into_iter()
                .filter_map(|(shop, ds)| endpoints.get(&shop).map(|ep| send_shop(&client, ep, ds)));
            for r in futures_util::future::join_all(rounds).await {
                results.extend(r);
            }
            if let Err(e) = farm.record_deliveries(results.clone(), cfg.clone()).await {
                tracing::error!("webhook outbox: {e}");
            }
        }
        // Sent something: look again at once. Else sleep until the next retry or a new change.
        if results.is_empty() {
            let wait = next
                .map(|t| {
                    (t - OffsetDateTime::now_utc())
                        .clamp(time::Duration::ZERO, time::Duration::seconds(60))
                })
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(Duration::from_secs(60));
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = farm.webhook_kick.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        } else if *shutdown.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_id_timestamp_and_body() {
        let s = sign("k", "whd-1", 1700000000, "{}");
        assert!(s.starts_with("v1=") && s.len() == 3 + 64);
        assert_ne!(s, sign("k", "whd-2", 1700000000, "{}"));
        assert_ne!(s, sign("k", "whd-1", 1700000001, "{}"));
        assert_ne!(s, sign("k", "whd-1", 1700000000, "{ }"));
        assert_ne!(s, sign("j", "whd-1", 1700000000, "{}"));
        // Known answer: HMAC-SHA256("k", "whd-1.1700000000.{}").
        let mut mac = HmacSha256::new_from_slice(b"k").expect("key");
        mac.update(b"whd-1.1700000000.{}");
        assert_eq!(
            s,
            format!("v1={}", hex::encode(mac.finalize().into_bytes()))
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitters() {
        let c = WebhookConfig::default();
        let s = |a, j| backoff(a, &c, j).as_secs_f64();
        assert_eq!(
            (s(1, 0.0), s(2, 0.0), s(3, 0.0), s(5, 0.0)),
            (1.0, 2.0, 4.0, 16.0)
        );
        assert_eq!(s(40, 0.0), 3600.0);
        assert!((s(3, 1.0) - 4.8).abs() < 1e-9 && (s(3, -1.0) - 3.2).abs() < 1e-9);
        assert_eq!(s(3, 7.0), s(3, 1.0));
    }
}

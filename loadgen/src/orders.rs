//! Order intake beside the printers (`--orders-per-s`): shop orders posted at a fixed rate to
//! `POST /api/v1/orders`, each with its own `Idempotency-Key`, as `scripts/bench-orders.lua`
//! does with wrk. Open loop: an order is due at its time whatever the earlier ones do, and its
//! latency counts from that time (so a stalled controller shows in the tail instead of
//! slowing the offered rate down). At most `--order-concurrency` requests are in flight.

use crate::stats::Latency;
use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The order file: a small print, uploaded once with the shop token.
const ORDER_FILE: &str = "; farm-loadgen order file\nG28\nG90\nM83\nG1 Z0.2 F600\nG1 X60 Y60 E1.5 F1800\nG1 X80 Y60 E0.8\nG1 X80 Y80 E0.8\nG1 X60 Y80 E0.8\nG1 X60 Y60 E0.8\nM84\n";

#[derive(Clone, Debug, Default, Serialize)]
pub struct OrderFigures {
    pub offered_per_s: f64,
    pub sent: u64,
    /// Answered `201 Created`: durable, with the first plan that includes it.
    pub created: u64,
    pub failed: u64,
    /// Created per second over the window (first due order to the last answer).
    pub achieved_per_s: f64,
    /// From each order's due time to its answer.
    pub latency: Latency,
    /// Orders still unanswered when the window ended (counted as not created).
    pub unanswered: u64,
}

/// Uploads the order file with the shop token; its sha256.
pub async fn upload_file(http: &reqwest::Client, controller: &str, shop: &str) -> Result<String> {
    let r = http
        .post(format!(
            "{controller}/api/v1/files?name=loadgen-order.gcode"
        ))
        .bearer_auth(shop)
        .header("content-type", "application/octet-stream")
        .body(ORDER_FILE)
        .send()
        .await
        .context("uploading the order file")?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!(
            "uploading the order file with the shop token: the controller answered {status}: {body}"
        );
    }
    body["sha256"]
        .as_str()
        .map(str::to_string)
        .context("the file upload's answer has no sha256")
}

/// Posts orders at `rate` per second for `window`; waits up to `grace` for the last answers.
pub async fn drive(
    controller: String,
    shop: String,
    sha: String,
    rate: f64,
    concurrency: usize,
    window: Duration,
    grace: Duration,
) -> Result<OrderFigures> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let url = format!("{controller}/api/v1/orders");
    let slots = Arc::new(Semaphore::new(concurrency.max(1)));
    let lat = Arc::new(Mutex::new(Vec::<u32>::new()));
    let (created, failed, last_us) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    // A key prefix of this run, so a second run on the same controller does not replay.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut sent: u64 = 0;
    let mut tasks = tokio::task::JoinSet::new();
    while start.elapsed() < window {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < due {
            let at = start + Duration::from_secs_f64(sent as f64 / rate);
            let key = format!("lg-{run}-{sent}");
            sent += 1;
            let (http, url, shop, sha) = (http.clone(), url.clone(), shop.clone(), sha.clone());
            let (slots, lat, created, failed, last_us) = (
                slots.clone(),
                lat.clone(),
                created.clone(),
                failed.clone(),
                last_us.clone(),
            );
            tasks.spawn(async move {
                let Ok(_permit) = slots.acquire_owned().await else {
                    return;
                };
                let body = serde_json::json!({
                    "customer_ref": key,
                    "items": [{"sha256": sha, "quantity": 1, "material": "PLA", "colour": "black"}],
                });
                let r = http
                    .post(&url)
                    .bearer_auth(&shop)
                    .header("Idempotency-Key", &key)
                    .json(&body)
                    .send()
                    .await;
                let took = at.elapsed();
                match r {
                    Ok(r) if r.status().as_u16() == 201 => {
                        created.fetch_add(1, Relaxed);
                        if let Ok(mut l) = lat.lock() {
                            l.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                        }
                        last_us.fetch_max(start.elapsed().as_micros() as u64, Relaxed);
                    }
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        if failed.fetch_add(1, Relaxed) < 5 {
                            eprintln!("order {key}: {status}: {body}");
                        }
                    }
                    Err(e) => {
                        if failed.fetch_add(1, Relaxed) < 5 {
                            eprintln!("order {key}: {e}");
                        }
                    }
                }
            });
        }
        // Reap finished ones so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    let unanswered = tasks.len() as u64;
    tasks.abort_all();
    let created = created.load(Relaxed);
    let span = (last_us.load(Relaxed) as f64 / 1e6).max(window.as_secs_f64().min(1.0));
    let samples = lat.lock().map(|l| l.clone()).unwrap_or_default();
    Ok(OrderFigures {
        offered_per_s: rate,
        sent,
        created,
        failed: failed.load(Relaxed),
        achieved_per_s: created as f64 / span,
        latency: Latency::of(samples),
        unanswered,
    })
}

//! Dashboards on the live stream (`--dashboards N`): N more clients of `/api/v1/stream`, each
//! taking the snapshot and then every diff as the dashboard does, for the measured window.
//! Each counts its bytes and times every printer diff against the publish of its status,
//! with a byte scan rather than a JSON parse, so that 50 of them stay cheap beside the
//! controller they measure.

use crate::stats::{Latency, Shared};
use futures_util::StreamExt;
use memchr::memmem;
use rustc_hash::FxHashMap;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Debug, Default, Serialize)]
pub struct DashboardFigures {
    pub streams: usize,
    /// Streams that could not open or broke during the window.
    pub failed: usize,
    /// Mean bytes per second of one stream over the window (snapshot included), and the
    /// lowest and highest of them.
    pub bytes_per_s_mean: f64,
    pub bytes_per_s_min: f64,
    pub bytes_per_s_max: f64,
    /// The snapshot each stream started with, bytes.
    pub snapshot_bytes: u64,
    /// Fresh snapshots after the first, over all streams (a stream fell behind).
    pub lagged_snapshots: u64,
    /// Latency on the stream whose p99 was highest.
    pub slowest: Latency,
    /// The median of the streams' p99s.
    pub median_p99_ms: f64,
}

struct One {
    bytes: u64,
    secs: f64,
    snapshot_bytes: u64,
    snapshots: u64,
    lat: Vec<u32>,
    ok: bool,
}

/// Runs `n` dashboards for `window`; their figures.
pub async fn run(
    n: usize,
    controller: &str,
    token: &str,
    shared: Arc<Shared>,
    ids: &[String],
    live: usize,
    window: Duration,
) -> DashboardFigures {
    let index: Arc<FxHashMap<Vec<u8>, usize>> = Arc::new(
        ids.iter()
            .take(live)
            .enumerate()
            .map(|(i, id)| (id.as_bytes().to_vec(), i))
            .collect(),
    );
    let http = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
    {
        Ok(h) => h,
        Err(_) => return DashboardFigures::default(),
    };
    let end = Instant::now() + window;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, url, token, shared, index) = (
                http.clone(),
                format!("{controller}/api/v1/stream"),
                token.to_string(),
                shared.clone(),
                index.clone(),
            );
            tokio::spawn(watch(http, url, token, shared, index, end))
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        if let Ok(one) = t.await {
            all.push(one);
        }
    }
    let ok: Vec<&One> = all.iter().filter(|o| o.ok).collect();
    let rates: Vec<f64> = ok
        .iter()
        .map(|o| o.bytes as f64 / o.secs.max(1e-3))
        .collect();
    let lats: Vec<Latency> = ok.iter().map(|o| Latency::of(o.lat.clone())).collect();
    let mut p99s: Vec<f64> = lats.iter().map(|l| l.p99_ms).collect();
    p99s.sort_by(f64::total_cmp);
    DashboardFigures {
        streams: n,
        failed: n - ok.len(),
        bytes_per_s_mean: rates.iter().sum::<f64>() / rates.len().max(1) as f64,
        bytes_per_s_min: rates.iter().copied().fold(f64::INFINITY, f64::min),
        bytes_per_s_max: rates.iter().copied().fold(0.0, f64::max),
        snapshot_bytes: ok.first().map_or(0, |o| o.snapshot_bytes),
        lagged_snapshots: ok.iter().map(|o| o.snapshots.saturating_sub(1)).sum(),
        slowest: lats
            .into_iter()
            .max_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms))
            .unwrap_or_default(),
        median_p99_ms: p99s.get(p99s.len() / 2).copied().unwrap_or(0.0),
    }
}

async fn watch(
    http: reqwest::Client,
    url: String,
    token: String,
    shared: Arc<Shared>,
    index: Arc<FxHashMap<Vec<u8>, usize>>,
    end: Instant,
) -> One {
    let t0 = Instant::now();
    let mut one = One {
        bytes: 0,
        secs: 0.0,
        snapshot_bytes: 0,
        snapshots: 0,
        lat: Vec::new(),
        ok: false,
    };
    let r = match http.get(&url).bearer_auth(&token).send().await {
        Ok(r) if r.status().is_success() => r,
        _ => return one,
    };
    let mut body = r.bytes_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let blank = memmem::Finder::new(b"\n\n");
    one.ok = true;
    loop {
        let chunk = tokio::select! {
            _ = tokio::time::sleep_until(end) => break,
            c = body.next() => c,
        };
        let Some(Ok(bytes)) = chunk else {
            one.ok = false;
            break;
        };
        one.bytes += bytes.len() as u64;
        buf.extend_from_slice(&bytes);
        let mut start = 0;
        while let Some(len) = blank.find(&buf[start..]) {
            let block = &buf[start..start + len];
            if block.starts_with(b"event: snapshot") || block.starts_with(b"event:snapshot") {
                one.snapshots += 1;
                if one.snapshots == 1 {
                    one.snapshot_bytes = len as u64;
                }
            } else if block.starts_with(b"event: printer")
                && let Some((id, n)) = id_and_number(block)
                && let Some(&i) = index.get(id)
                && let Some(t) = shared.publish_time(i, n)
            {
                let lat = shared.micros().saturating_sub(t);
                one.lat.push(u32::try_from(lat).unwrap_or(u32::MAX));
            }
            start += len + 2;
        }
        buf.drain(..start);
    }
    one.secs = t0.elapsed().as_secs_f64();
    one
}

/// The printer id and status number (`agent.uptime_s`) of a printer diff, by scanning.
fn id_and_number(block: &[u8]) -> Option<(&[u8], u64)> {
    let at = memmem::find(block, b"\"id\":\"")? + 6;
    let id_len = memchr::memchr(b'"', &block[at..])?;
    let id = &block[at..at + id_len];
    let n_at = memmem::find(block, b"\"uptime_s\":")? + 11;
    let digits = block[n_at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    Some((id, digits))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_gives_its_printer_and_status_number() {
        let b = br#"event: printer
data: {"agent":{"backend":"loadgen","uptime_s":42},"current_job_id":null,"id":"lg-00007"}"#;
        assert_eq!(id_and_number(b), Some((&b"lg-00007"[..], 42)));
        assert_eq!(id_and_number(b"event: printer\ndata: {\"id\":\"x\"}"), None);
    }
}

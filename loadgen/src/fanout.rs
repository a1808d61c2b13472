//! Dispatch fan-out (`--fanout-mb`): one job file queued once per printer, and every printer
//! (`--accept-jobs`) fetching it as the agent does (`agent/src/fetch.rs`): `GET
//! /api/v1/files/<sha256>` with its own token, a `Range` resume after a broken transfer,
//! size and sha256 checked. The bytes are hashed as they arrive and not written to disk (100
//! copies of 20 MB would not fit this machine's disk; the agent also fsyncs, which is not
//! measured here).

use anyhow::{Context, Result, bail};
use farm_protocol::messages::JobAssignment;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

/// How many times a broken transfer is resumed before the job fails (the agent retries with
/// its backoff; a bench that needs more than this has found a problem).
const ATTEMPTS: u32 = 5;

/// Fetches job files for every printer of the run and keeps the figures.
pub struct Fetcher {
    http: reqwest::Client,
    start: Instant,
    /// µs since `start` of the first request, and of the last verified file.
    first_start_us: AtomicU64,
    last_done_us: AtomicU64,
    pub bytes: AtomicU64,
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub resumed: AtomicU64,
    /// Seconds each verified fetch took.
    took: Mutex<Vec<f64>>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct FanoutFigures {
    pub jobs: u64,
    pub file_mb: f64,
    /// The upload (analysis included) and queueing of every copy.
    pub upload_s: f64,
    pub fetched: u64,
    pub failed: u64,
    pub resumed: u64,
    /// From the jobs being queued until the last printer had its file verified.
    pub all_fetched_s: Option<f64>,
    /// From the jobs being queued until the stream showed every one printing.
    pub all_printing_s: Option<f64>,
    /// Bytes received ÷ (last file verified − first request), MB/s.
    pub aggregate_mb_s: f64,
    pub fetch_p50_s: f64,
    pub fetch_max_s: f64,
}

impl Fetcher {
    pub fn new() -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(30))
                .build()?,
            start: Instant::now(),
            first_start_us: AtomicU64::new(u64::MAX),
            last_done_us: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            took: Mutex::new(Vec::new()),
        })
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Fetches and verifies `a` with the printer's `token`; the reason when it cannot.
    pub async fn fetch(&self, a: &JobAssignment, token: &str) -> Result<(), String> {
        let t0 = Instant::now();
        self.first_start_us.fetch_min(self.now_us(), Relaxed);
        let r = self.fetch_inner(a, token).await;
        match &r {
            Ok(()) => {
                self.done.fetch_add(1, Relaxed);
                self.last_done_us.fetch_max(self.now_us(), Relaxed);
                if let Ok(mut t) = self.took.lock() {
                    t.push(t0.elapsed().as_secs_f64());
                }
            }
            Err(e) => {
                if self.failed.fetch_add(1, Relaxed) < 5 {
                    eprintln!("fetching {}: {e}", a.url);
                }
            }
        }
        r.map_err(|e| format!("{e:#}"))
    }

    async fn fetch_inner(&self, a: &JobAssignment, token: &str) -> Result<()> {
        let mut hash = Sha256::new();
        let mut got: u64 = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.transfer(a, token, &mut hash, &mut got).await {
                Ok(()) => break,
                Err(e) if attempt >= ATTEMPTS => return Err(e),
                Err(_) => {
                    self.resumed.fetch_add(1, Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        if got != a.size {
            bail!("got {got} bytes, the job says {}", a.size);
        }
        let actual = hex(&hash.finalize());
        if actual != a.sha256 {
            bail!("sha256 {actual}, the job says {}", a.sha256);
        }
        Ok(())
    }

    /// One request from byte `got` on, hashing what arrives.
    async fn transfer(
        &self,
        a: &JobAssignment,
        token: &str,
        hash: &mut Sha256,
        got: &mut u64,
    ) -> Result<()> {
        let mut req = self.http.get(&a.url).bearer_auth(token);
        if *got > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={got}-"));
        }
        let mut resp = req.send().await.context("request")?;
        let status = resp.status().as_u16();
        match status {
            206 if *got > 0 => {}
            200 if *got == 0 => {}
            s => bail!("the controller answered {s}"),
        }
        while let Some(chunk) = resp.chunk().await.context("body")? {
            hash.update(&chunk);
            *got += chunk.len() as u64;
            self.bytes.fetch_add(chunk.len() as u64, Relaxed);
        }
        Ok(())
    }

    /// The figures, times measured from `queued` (when every copy was in the queue).
    pub fn figures(&self, queued: Instant, upload_s: f64, jobs: u64, size: u64) -> FanoutFigures {
        let mut took = self.took.lock().map(|t| t.clone()).unwrap_or_default();
        took.sort_by(f64::total_cmp);
        let (first, last) = (
            self.first_start_us.load(Relaxed),
            self.last_done_us.load(Relaxed),
        );
        let done = self.done.load(Relaxed);
        let queued_us = queued
            .checked_duration_since(self.start)
            .map_or(0, |d| d.as_micros() as u64);
        let span_s = last.saturating_sub(first) as f64 / 1e6;
        FanoutFigures {
            jobs,
            file_mb: size as f64 / 1e6,
            upload_s,
            fetched: done,
            failed: self.failed.load(Relaxed),
            resumed: self.resumed.load(Relaxed),
            all_fetched_s: (done >= jobs && jobs > 0)
                .then(|| last.saturating_sub(queued_us) as f64 / 1e6),
            all_printing_s: None,
            aggregate_mb_s: if span_s > 0.0 {
                self.bytes.load(Relaxed) as f64 / 1e6 / span_s
            } else {
                0.0
            },
            fetch_p50_s: took.get(took.len() / 2).copied().unwrap_or(0.0),
            fetch_max_s: took.last().copied().unwrap_or(0.0),
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A printable G-code file of about `mb` MB (moves with extrusion on 200 layers).
pub fn job_file(mb: f64) -> Vec<u8> {
    use std::fmt::Write;
    let want = (mb * 1e6) as usize;
    let mut g = String::with_capacity(want + 4096);
    g.push_str(
        "; farm-loadgen fan-out job\nM140 S60\nM104 S215\nG28\nG90\nM83\nM190 S60\nM109 S215\n",
    );
    let (mut i, mut layer) = (0u64, 0u32);
    while g.len() < want {
        if i % 20_000 == 0 {
            layer += 1;
            let _ = writeln!(g, ";LAYER_CHANGE\nG1 Z{:.2} F600", 0.2 * f64::from(layer));
        }
        let x = 50.0 + (i % 1000) as f64 * 0.1;
        let y = 50.0 + ((i / 1000) % 100) as f64;
        let _ = writeln!(g, "G1 X{x:.3} Y{y:.3} E0.03326 F1800");
        i += 1;
    }
    g.push_str("M104 S0\nM140 S0\nM84\n");
    g.into_bytes()
}

/// Uploads `file` as `copies` jobs (admin token); returns the jobs' sha256 and size.
pub async fn queue_jobs(
    http: &reqwest::Client,
    controller: &str,
    admin: &str,
    file: Vec<u8>,
    copies: usize,
) -> Result<(String, u64)> {
    let size = file.len() as u64;
    let r = http
        .post(format!(
            "{controller}/api/v1/jobs?name=fanout.gcode&copies={copies}"
        ))
        .bearer_auth(admin)
        .header("content-type", "application/octet-stream")
        .body(file)
        .send()
        .await
        .context("uploading the fan-out job file")?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    if status.as_u16() != 201 {
        bail!("uploading the fan-out job file: the controller answered {status}: {body}");
    }
    let sha = body["jobs"][0]["sha256"]
        .as_str()
        .context("the upload's answer has no jobs[0].sha256")?
        .to_string();
    Ok((sha, size))
}

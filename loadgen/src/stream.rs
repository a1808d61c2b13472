//! The live stream reader: `/api/v1/stream` (Server-Sent Events), each printer diff matched to
//! the publish time of the status that caused it, and each printer's presence and freshness
//! as the controller shows them.
//!
//! A status's `agent.uptime_s` is its number (see `Spec::status`), and the diff the controller
//! sends for it carries the changed `agent` object, so the number identifies the publish.

use crate::stats::{Latency, Shared};
use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

#[derive(Deserialize)]
struct Agent {
    uptime_s: u64,
}

#[derive(Deserialize)]
struct PrinterDiff {
    id: String,
    #[serde(default)]
    online: Option<bool>,
    #[serde(default)]
    agent: Option<Agent>,
}

#[derive(Deserialize)]
struct JobChange {
    id: String,
    state: String,
}

#[derive(Deserialize)]
struct Snapshot {
    printers: Vec<PrinterDiff>,
}

type Body = BoxStream<'static, reqwest::Result<bytes::Bytes>>;

/// Opens the live stream.
async fn open(http: &reqwest::Client, url: &str, token: &str) -> Result<Body> {
    let r = http
        .get(format!("{url}/api/v1/stream"))
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("opening the live stream at {url}"))?;
    if !r.status().is_success() {
        bail!("the live stream answered {}", r.status());
    }
    Ok(r.bytes_stream().boxed())
}

/// What the run tells the reader.
pub enum Note {
    /// The measured window starts: latency before it (while connecting) is reported apart.
    WindowStarted,
    /// Diffs from now on are counted apart, until every live printer is online and fresh.
    StormStarted,
    /// Answer how many live printers the stream shows online and fresh right now.
    Census(oneshot::Sender<usize>),
    /// This many jobs were just queued: time until the stream shows them all printing.
    JobsQueued(usize),
}

/// What the reader saw.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Seen {
    /// Live printers' statuses matched on the stream.
    pub statuses_seen: u64,
    /// Printer diffs with a status number that matched no recent publish.
    pub unmatched: u64,
    /// Diffs of flapping printers.
    pub flapping_diffs: u64,
    /// Fresh snapshots after the first (the controller found the reader lagging).
    pub lagged_snapshots: u64,
    /// Latency while the printers were connecting (before the window).
    pub connecting: Latency,
    /// Latency in the window, outside a storm.
    pub steady: Latency,
    /// Latency while a storm is being recovered.
    pub storm: Latency,
    /// Seconds from the storm until every live printer was online and fresh on the stream.
    pub storm_recovered_s: Option<f64>,
    /// Times the stream broke (the controller went away) and was opened again.
    pub reopened: u64,
    /// Seconds from `Note::JobsQueued` until that many jobs were printing.
    pub all_printing_s: Option<f64>,
}

/// Reads the stream until `done` fires; `notes` steer it.
pub struct Reader {
    shared: Arc<Shared>,
    index: FxHashMap<String, usize>,
    live: usize,
    online: Vec<bool>,
    last_n: Vec<u64>,
    seen: Seen,
    in_window: bool,
    connecting: Vec<u32>,
    steady: Vec<u32>,
    storm: Vec<u32>,
    storm_started: Option<Instant>,
    storm_waiting: Vec<bool>,
    storm_left: usize,
    snapshots: u64,
    printing: FxHashSet<String>,
    jobs_wanted: Option<(usize, Instant)>,
}

impl Reader {
    pub fn new(shared: Arc<Shared>, ids: &[String], live: usize) -> Self {
        Self {
            index: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), i))
                .collect(),
            online: vec![false; ids.len()],
            last_n: vec![0; ids.len()],
            shared,
            live,
            seen: Seen::default(),
            in_window: false,
            connecting: Vec::new(),
            steady: Vec::new(),
            storm: Vec::new(),
            storm_started: None,
            storm_waiting: vec![],
            storm_left: 0,
            snapshots: 0,
            printing: FxHashSet::default(),
            jobs_wanted: None,
        }
    }

    /// Connects, then reads until `done`; returns what it saw.
    pub async fn run(
        mut self,
        http: reqwest::Client,
        url: String,
        token: String,
        mut notes: mpsc::UnboundedReceiver<Note>,
        ready: oneshot::Sender<()>,
        mut done: oneshot::Receiver<()>,
    ) -> Result<Seen> {
        let mut body = Some(open(&http, &url, &token).await?);
        let _ = ready.send(());
        let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
        // While the controller is away (a restart), try again this often.
        let retry = std::time::Duration::from_millis(200);
        let mut retry_at = Instant::now();
        loop {
            let away = body.is_none();
            let next = async {
                match body.as_mut() {
                    Some(b) => b.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = &mut done => break,
                n = notes.recv() => match n {
                    Some(Note::WindowStarted) => self.in_window = true,
                    Some(Note::StormStarted) => self.storm_start(),
                    Some(Note::Census(tx)) => { let _ = tx.send(self.census()); }
                    Some(Note::JobsQueued(n)) => self.jobs_queued(n),
                    None => break,
                },
                chunk = next => match chunk {
                    Some(Ok(bytes)) => {
                        buf.extend_from_slice(&bytes);
                        let mut start = 0;
                        while let Some(end) = find_blank_line(&buf[start..]) {
                            self.on_event(&buf[start..start + end]);
                            start += end + 2;
                        }
                        buf.drain(..start);
                    }
                    // The controller went away: open the stream again when it is back; the
                    // fresh snapshot then says who is online.
                    Some(Err(_)) | None => {
                        body = None;
                        buf.clear();
                        retry_at = Instant::now() + retry;
                    }
                },
                _ = tokio::time::sleep_until(retry_at), if away => {
                    match open(&http, &url, &token).await {
                        Ok(b) => {
                            body = Some(b);
                            self.seen.reopened += 1;
                        }
                        Err(_) => retry_at = Instant::now() + retry,
                    }
                }
            }
        }
        self.seen.connecting = Latency::of(std::mem::take(&mut self.connecting));
        self.seen.steady = Latency::of(std::mem::take(&mut self.steady));
        self.seen.storm = Latency::of(std::mem::take(&mut self.storm));
        self.seen.lagged_snapshots = self.snapshots.saturating_sub(1 + self.seen.reopened);
        Ok(self.seen)
    }

    fn storm_start(&mut self) {
        self.storm_started = Some(Instant::now());
        self.storm_waiting = vec![true; self.live];
        self.storm_left = self.live;
    }

    fn jobs_queued(&mut self, n: usize) {
        self.printing.clear();
        self.jobs_wanted = Some((n, Instant::now()));
    }

    fn census(&self) -> usize {
        (0..self.live)
            .filter(|&i| self.online[i] && self.fresh(i))
            .count()
    }

    /// Seen a status published on the printer's current connection.
    fn fresh(&self, i: usize) -> bool {
        let from = self.shared.slots[i].fresh_from.load(Relaxed);
        from != u32::MAX && self.last_n[i] >= u64::from(from)
    }

    fn on_event(&mut self, block: &[u8]) {
        let mut kind: &[u8] = b"";
        let mut data: &[u8] = b"";
        for line in block.split(|&b| b == b'\n') {
            if let Some(k) = line.strip_prefix(b"event:") {
                kind = k.trim_ascii();
            } else if let Some(d) = line.strip_prefix(b"data:") {
                // Our events are one line of JSON each.
                data = d.strip_prefix(b" ").unwrap_or(d);
            }
        }
        match kind {
            b"printer" => {
                if let Ok(d) = serde_json::from_slice::<PrinterDiff>(data) {
                    self.on_printer(d);
                }
            }
            b"job" => {
                if let Some((want, t0)) = self.jobs_wanted
                    && let Ok(j) = serde_json::from_slice::<JobChange>(data)
                    && j.state == "printing"
                    && self.printing.insert(j.id)
                    && self.printing.len() >= want
                {
                    self.seen.all_printing_s = Some(t0.elapsed().as_secs_f64());
                    self.jobs_wanted = None;
                }
            }
            b"snapshot" => {
                self.snapshots += 1;
                if let Ok(s) = serde_json::from_slice::<Snapshot>(data) {
                    for p in s.printers {
                        if let Some(&i) = self.index.get(&p.id) {
                            self.online[i] = p.online.unwrap_or(false);
                            if let Some(a) = p.agent {
                                self.last_n[i] = a.uptime_s;
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }

    fn on_printer(&mut self, d: PrinterDiff) {
        let Some(&i) = self.index.get(&d.id) else {
            return;
        };
        if let Some(o) = d.online {
            self.online[i] = o;
        }
        if i >= self.live {
            self.seen.flapping_diffs += 1;
            return;
        }
        if let Some(a) = d.agent {
            self.last_n[i] = a.uptime_s;
            match self.shared.publish_time(i, a.uptime_s) {
                Some(t) => {
                    let lat = self.shared.micros().saturating_sub(t);
                    let lat = u32::try_from(lat).unwrap_or(u32::MAX);
                    if !self.in_window {
                        self.connecting.push(lat);
                    } else if self.storm_started.is_some() {
                        self.storm.push(lat);
                    } else {
                        self.steady.push(lat);
                    }
                    self.seen.statuses_seen += 1;
                }
                None => self.seen.unmatched += 1,
            }
        }
        if let Some(t0) = self.storm_started
            && self.storm_waiting[i]
            && self.online[i]
            && self.fresh(i)
        {
            self.storm_waiting[i] = false;
            self.storm_left -= 1;
            if self.storm_left == 0 {
                self.seen.storm_recovered_s = Some(t0.elapsed().as_secs_f64());
                self.storm_started = None;
            }
        }
    }
}

/// The end of the first SSE event block in `b` (the index of its `\n\n`).
fn find_blank_line(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_is_matched_to_its_publish_and_marks_the_storm_recovered() {
        let shared = Arc::new(Shared::new(2));
        let ids = vec!["lg-1".to_string(), "lg-f1".to_string()];
        let mut r = Reader::new(shared.clone(), &ids, 1);
        r.in_window = true;
        r.on_event(
            br#"event: snapshot
data: {"printers":[{"id":"lg-1","online":false}],"jobs":[]}"#,
        );
        shared.published(0, 3);
        shared.slots[0].fresh_from.store(3, Relaxed);
        r.storm_start();
        r.on_event(
            br#"event: printer
data: {"agent":{"uptime_s":3},"online":true,"id":"lg-1"}"#,
        );
        r.on_event(
            br#"event: printer
data: {"online":false,"id":"lg-f1"}"#,
        );
        assert_eq!(r.seen.statuses_seen, 1);
        assert_eq!(r.seen.flapping_diffs, 1);
        assert!(r.seen.storm_recovered_s.is_some());
        assert_eq!(r.storm.len(), 1);
        assert_eq!(r.census(), 1);
    }

    #[test]
    fn blank_lines_split_events() {
        assert_eq!(find_blank_line(b"event: a\ndata: x\n\nevent"), Some(16));
        assert_eq!(find_blank_line(b"event: a\n"), None);
    }
}

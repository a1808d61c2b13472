//! The replay peer: plays a captured real Moonraker + Klipper session to the agent.
//!
//! A transcript is a list of records: what the capture client **sent** (a websocket open, a
//! JSON-RPC request, an HTTP request) and what Moonraker **sent back** (responses,
//! notifications, HTTP answers), each with its time. The player walks it in order:
//!
//! - a *sent* record is a **cue**: the player waits until the agent makes the same request
//!   (same JSON-RPC method, or same HTTP method and path), then carries on; the recorded answer
//!   goes back with the agent's own request id;
//! - the *received* records after a cue are played at their recorded offsets from that cue
//!   (divided by `speed`), so Klipper's pacing (heat-up, 250 ms status polls, the 1.9 s a pause
//!   takes) is what the agent sees;
//! - a request the transcript has further on waits for its cue, so answers come in the
//!   recorded order; query cues the agent does not make (`server.info`, `printer.info`,
//!   `printer.objects.query`, `server.files.metadata`, `server.history.*`, …) are skipped when
//!   the agent asks for a later one (their notifications are fast-forwarded, their answers
//!   dropped), and so are cues whose recorded answer is an error (a refused call changed
//!   nothing). Such a cue waits at most [`GRACE`] for the agent, then the session goes on
//!   without it. Cues that act on the printer (identify, subscribe, upload, print start,
//!   pause, resume, cancel, e-stop, restart, G-code) wait for the agent as long as it takes;
//! - a request the transcript does not have at all (e.g. `server.info` in a capture that did
//!   not call it) is answered from the **answer book**: the recorded answer to the same call in
//!   another capture of the same stack (the caller picks which, e.g. `a3`, the idle session
//!   after the prints). An upload is answered from the book only for the same file name.
//!   A call nobody captured gets JSON-RPC `-32601` and is listed in [`Replay::unanswered`], so a
//!   test can insist there were none.
//!
//! Uploads are checked: the multipart file must have the captured name and exactly the bytes
//! of the captured `.gcode` file; otherwise the answer is a 400 and [`Replay::failures`] says why.

use super::data_dir;
use super::server::{HttpAnswer, Request, serve};
pub use super::server::{Key, Position, multipart_file};
use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

/// Methods that only read: their cues may be skipped when the agent does not make them.
const SKIPPABLE: &[&str] = &[
    "server.info",
    "printer.info",
    "printer.objects.list",
    "printer.objects.query",
    "server.files.metadata",
    "server.files.list",
    "server.history.list",
    "server.history.get_job",
    "server.history.totals",
];

/// How long an optional cue waits for the agent before the session goes on without it.
pub const GRACE: Duration = Duration::from_millis(500);

/// One line of a captured session.
#[derive(Clone, Debug)]
struct Record {
    t: f64,
    sent: bool,
    /// The whole JSON line (`kind`, `msg`, `method`, `path`, `form`, `status`, `body`, …).
    raw: Value,
}

impl Record {
    fn kind(&self) -> &str {
        self.raw["kind"].as_str().unwrap_or("")
    }

    /// The request key of a sent record.
    fn key(&self) -> Option<Key> {
        match self.kind() {
            "ws-open" => Some(Key::WsOpen),
            "ws" => Some(Key::Ws(self.raw["msg"]["method"].as_str()?.to_string())),
            "http" => {
                let path = self.raw["path"].as_str()?.split('?').next()?.to_string();
                Some(Key::Http(format!(
                    "{} {path}",
                    self.raw["method"].as_str()?
                )))
            }
            _ => None,
        }
    }

    fn read_only(&self) -> bool {
        matches!(self.key(), Some(Key::Ws(m)) if SKIPPABLE.contains(&m.as_str()))
    }

    fn rpc_id(&self) -> Option<u64> {
        self.raw["msg"]["id"].as_u64()
    }
}

/// A captured session, loaded from `tests/data/moonraker/<name>.jsonl`.
#[derive(Clone, Debug)]
pub struct Transcript {
    pub name: String,
    records: Vec<Record>,
}

impl Transcript {
    pub fn load(name: &str) -> Result<Transcript> {
        let path = data_dir().join(format!("{name}.jsonl"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the capture {}", path.display()))?;
        let mut records = vec![];
        for (n, line) in text.lines().enumerate() {
            let raw: Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}", path.display(), n + 1))?;
            records.push(Record {
                t: raw["t"].as_f64().unwrap_or(0.0),
                sent: raw["dir"] == "send",
                raw,
            });
        }
        Ok(Transcript {
            name: name.to_string(),
            records,
        })
    }

    /// The recorded answer to the first request with this key (and, for an upload, this file).
    fn answer_to(&self, key: &Key, upload_name: Option<&str>) -> Option<&Record> {
        let cue = self.records.iter().position(|r| {
            r.sent
                && r.key().as_ref() == Some(key)
                && upload_name.is_none_or(|n| r.raw["form"]["file"]["filename"] == n)
        })?;
        let id = self.records[cue].rpc_id();
        self.records[cue + 1..].iter().find(|r| {
            !r.sent
                && match key {
                    Key::Http(_) => r.kind() == "http",
                    _ => r.kind() == "ws" && r.raw["msg"]["id"].as_u64() == id,
                }
        })
    }
}

/// A running replay server; see the module docs.
pub struct Replay {
    /// Moonraker's base URL for the agent's config (`http://127.0.0.1:PORT`).
    pub url: String,
    log: Arc<Mutex<Log>>,
    position: watch::Receiver<Position>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Replay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

#[derive(Default)]
struct Log {
    calls: Vec<String>,
    unanswered: Vec<String>,
    failures: Vec<String>,
}

impl Replay {
    /// Serves `primary` on a free loopback port; `book` answers calls `primary` lacks.
    /// `speed` divides the recorded delays (2.0 plays twice as fast).
    pub async fn start(primary: Transcript, book: Vec<Transcript>, speed: f64) -> Result<Replay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Log::default()));
        let (pos_tx, pos_rx) = watch::channel(Position::default());
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = req_tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(tcp, tx).await {
                        eprintln!("replay connection: {e:#}");
                    }
                });
            }
        });
        let player = Player {
            records: primary.records,
            i: 0,
            speed: speed.max(0.01),
            book,
            ws: None,
            pending: VecDeque::new(),
            seg: (Instant::now(), 0.0),
            fast_forward: false,
            ids: HashMap::new(),
            dropped: HashSet::new(),
            log: log.clone(),
            position: pos_tx,
        };
        let play = tokio::spawn(player.run(req_rx));
        Ok(Replay {
            url,
            log,
            position: pos_rx,
            tasks: vec![accept, play],
        })
    }

    /// Every request the agent made, with how it was answered, in order.
    pub fn calls(&self) -> Vec<String> {
        self.log.lock().map(|l| l.calls.clone()).unwrap_or_default()
    }

    /// Requests that no capture answered.
    pub fn unanswered(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.unanswered.clone())
            .unwrap_or_default()
    }

    /// Requests that did not match what the capture recorded (e.g. a different upload).
    pub fn failures(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|l| l.failures.clone())
            .unwrap_or_default()
    }

    /// Waits until the player stands at a cue for this JSON-RPC method: everything recorded
    /// before that request has been played.
    pub async fn wait_for_cue(&self, method: &str, limit: Duration) -> Result<()> {
        let mut rx = self.position.clone();
        let want = Key::Ws(method.to_string());
        tokio::time::timeout(limit, rx.wait_for(|p| p.waiting_at.as_ref() == Some(&want)))
            .await
            .map_err(|_| {
                anyhow!(
                    "the replay did not reach its {method} cue within {limit:?}; calls so far: {:?}",
                    self.calls()
                )
            })?
            .map_err(|_| anyhow!("the replay stopped"))?;
        Ok(())
    }

    /// Waits until the transcript has been played to its end.
    pub async fn wait_done(&self, limit: Duration) -> Result<()> {
        let mut rx = self.position.clone();
        tokio::time::timeout(limit, rx.wait_for(|p| p.done))
            .await
            .map_err(|_| anyhow!("the replay did not finish within {limit:?}"))?
            .map_err(|_| anyhow!("the replay stopped"))?;
        Ok(())
    }
}

struct Player {
    records: Vec<Record>,
    i: usize,
    speed: f64,
    book: Vec<Transcript>,
    ws: Option<mpsc::UnboundedSender<Message>>,
    /// Requests waiting for their cue further on.
    pending: VecDeque<Request>,
    /// Wall time and transcript time of the last matched cue.
    seg: (Instant, f64),
    /// Playing recorded frames at once (after skipping a cue) until the next matched cue.
    fast_forward: bool,
    /// Recorded request id → the agent's id.
    ids: HashMap<u64, u64>,
    /// Recorded ids of skipped cues: their answers are not played.
    dropped: HashSet<u64>,
    log: Arc<Mutex<Log>>,
    position: watch::Sender<Position>,
}

impl Player {
    /// A cue the session may go on without: a read, or a call the peer refused.
    fn optional(&self, at: usize) -> bool {
        let r = &self.records[at];
        if r.read_only() {
            return true;
        }
        let Some(id) = r.rpc_id() else { return false };
        self.records[at + 1..]
            .iter()
            .find(|a| {
                !a.sent
                    && a.kind() == "ws"
                    && a.raw["msg"]["id"].as_u64() == Some(id)
                    && a.raw["msg"].get("method").is_none()
            })
            .is_some_and(|a| a.raw["msg"].get("error").is_some())
    }

    fn note(&self, f: impl FnOnce(&mut Log)) {
        if let Ok(mut l) = self.log.lock() {
            f(&mut l);
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        loop {
            if self.i >= self.records.len() {
                self.position.send_replace(Position {
                    waiting_at: None,
                    done: true,
                });
                match rx.recv().await {
                    Some(req) => self.answer_from_book(req),
                    None => return,
                }
                continue;
            }
            let r = self.records[self.i].clone();
            if !r.sent {
                if r.kind() != "ws" {
                    self.i += 1; // HTTP answers go out at their cue; open/close acks are implicit
                    continue;
                }
                let due = if self.fast_forward {
                    Instant::now()
                } else {
                    self.seg.0 + Duration::from_secs_f64(((r.t - self.seg.1) / self.speed).max(0.0))
                };
                self.position.send_replace(Position::default());
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {
                        self.emit(&r);
                        self.i += 1;
                    }
                    req = rx.recv() => match req {
                        Some(req) => self.admit(req),
                        None => return,
                    },
                }
                continue;
            }
            let Some(key) = r.key() else {
                self.i += 1;
                continue;
            };
            if r.kind() == "ws-close" || (key == Key::WsOpen && self.ws.is_some() && self.i > 0) {
                // The capture hung up (or opened a second socket): the session ends here.
                self.i = self.records.len();
                continue;
            }
            if let Some(at) = self.pending.iter().position(|p| p.key == key) {
                if let Some(req) = self.pending.remove(at) {
                    self.matched(req, &r);
                }
                continue;
            }
            let optional = self.optional(self.i);
            if !self.pending.is_empty() && optional {
                // The agent asked for a later cue: skip this one.
                self.skip(&r);
                self.fast_forward = true;
                continue;
            }
            self.position.send_replace(Position {
                waiting_at: Some(key),
                done: false,
            });
            let wait = if optional {
                GRACE
            } else {
                Duration::from_secs(3600)
            };
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(req)) => self.admit(req),
                Ok(None) => return,
                Err(_) => {
                    // The agent does not make this optional call: go on without it.
                    self.skip(&r);
                    self.seg = (Instant::now(), r.t);
                }
            }
        }
    }

    fn skip(&mut self, cue: &Record) {
        if let Some(id) = cue.rpc_id() {
            self.dropped.insert(id);
        }
        self.i += 1;
    }

    /// A request arrived: wait for its cue if the transcript has it ahead, else the book.
    fn admit(&mut self, req: Request) {
        if req.key == Key::WsOpen {
            self.ws = req.ws.clone();
        }
        let mut ahead = false;
        for at in (self.i..self.records.len()).filter(|&j| self.records[j].sent) {
            if self.records[at].key().as_ref() == Some(&req.key) {
                ahead = true;
                break;
            }
            if !self.optional(at) {
                break;
            }
        }
        let claimed = self.pending.iter().any(|p| p.key == req.key);
        if ahead && !claimed {
            self.pending.push_back(req);
        } else if req.key == Key::WsOpen {
            self.note(|l| l.calls.push("ws-open (reconnect)".into()));
        } else {
            self.answer_from_book(req);
        }
    }

    fn matched(&mut self, req: Request, cue: &Record) {
        self.seg = (Instant::now(), cue.t);
        self.fast_forward = false;
        self.i += 1;
        let what = match &req.key {
            Key::WsOpen => "ws-open".to_string(),
            Key::Ws(m) => m.clone(),
            Key::Http(h) => h.clone(),
        };
        self.note(|l| l.calls.push(format!("{what} (replayed)")));
        if let (Some(rec), Some(agent)) = (cue.rpc_id(), req.id) {
            self.ids.insert(rec, agent);
        }
        if let Key::Http(_) = req.key {
            let answer = self.records[self.i..]
                .iter()
                .find(|r| !r.sent && r.kind() == "http")
                .cloned();
            self.answer_http(req, cue, answer.as_ref());
        }
    }

    fn answer_http(&mut self, req: Request, cue: &Record, answer: Option<&Record>) {
        let Some(tx) = req.http else { return };
        let mut reply = match answer {
            Some(a) => HttpAnswer {
                status: a.raw["status"].as_u64().unwrap_or(500) as u16,
                headers: a.raw["headers"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| k.as_str() != "Content-Length")
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect(),
                body: a.raw["body"].to_string().into_bytes(),
            },
            None => HttpAnswer {
                status: 501,
                headers: vec![],
                body: br#"{"error":{"code":501,"message":"replay: no captured answer"}}"#.to_vec(),
            },
        };
        if let Some(expected) = cue.raw["form"]["file"]["filename"].as_str()
            && let Err(why) = check_upload(&req.body, expected)
        {
            self.note(|l| l.failures.push(why.clone()));
            reply = HttpAnswer {
                status: 400,
                headers: vec![],
                body: json!({"error": {"code": 400, "message": why}})
                    .to_string()
                    .into_bytes(),
            };
        }
        let _ = tx.send(reply);
    }

    /// Answers from another capture of the same stack, or says nobody captured it.
    fn answer_from_book(&mut self, req: Request) {
        let upload = match &req.key {
            Key::Http(h) if h == "POST /server/files/upload" => {
                multipart_file(&req.body).map(|(n, _)| n)
            }
            _ => None,
        };
        let found = self.book.iter().find_map(|t| {
            let a = t.answer_to(&req.key, upload.as_deref())?;
            let cue = t.records.iter().find(|r| {
                r.sent
                    && r.key().as_ref() == Some(&req.key)
                    && upload
                        .as_deref()
                        .is_none_or(|n| r.raw["form"]["file"]["filename"] == n)
            })?;
            Some((t.name.clone(), cue.clone(), a.clone()))
        });
        let what = format!("{:?}", req.key);
        match (found, &req.key) {
            (Some((from, cue, a)), Key::Http(_)) => {
                self.note(|l| l.calls.push(format!("{what} (answered from {from})")));
                self.answer_http(req, &cue, Some(&a));
            }
            (Some((from, _, a)), Key::Ws(_)) => {
                self.note(|l| l.calls.push(format!("{what} (answered from {from})")));
                let mut msg = a.raw["msg"].clone();
                if let Some(id) = req.id {
                    msg["id"] = json!(id);
                }
                self.send(msg);
            }
            (_, Key::WsOpen) => {}
            (None, _) => {
                self.note(|l| l.unanswered.push(what.clone()));
                if let Some(tx) = req.http {
                    let _ = tx.send(HttpAnswer {
                        status: 404,
                        headers: vec![],
                        body: br#"{"error":{"code":404,"message":"Not Found"}}"#.to_vec(),
                    });
                } else if let Some(id) = req.id {
                    self.send(json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": id}));
                }
            }
        }
    }

    /// Plays one recorded frame from Moonraker.
    fn emit(&mut self, r: &Record) {
        let mut msg = r.raw["msg"].clone();
        if msg.get("method").is_none() {
            // A response: only to a request the agent made, under the agent's id.
            let Some(rec) = msg["id"].as_u64() else {
                return;
            };
            if self.dropped.contains(&rec) {
                return;
            }
            let Some(agent) = self.ids.get(&rec) else {
                return;
            };
            msg["id"] = json!(agent);
        }
        self.send(msg);
    }

    fn send(&self, msg: Value) {
        if let Some(ws) = &self.ws {
            let _ = ws.send(Message::text(msg.to_string()));
        }
    }
}

/// The uploaded multipart body must carry the captured file, byte for byte.
fn check_upload(body: &[u8], expected: &str) -> Result<(), String> {
    let (name, bytes) = multipart_file(body)
        .ok_or_else(|| "the upload is not a multipart body with a file part".to_string())?;
    if name != expected {
        return Err(format!(
            "uploaded file {name:?}, the capture uploaded {expected:?}"
        ));
    }
    let want = std::fs::read(data_dir().join(expected)).map_err(|e| format!("{expected}: {e}"))?;
    if bytes != want {
        return Err(format!(
            "uploaded {} bytes of {name} that differ from the captured file ({} bytes)",
            bytes.len(),
            want.len()
        ));
    }
    Ok(())
}

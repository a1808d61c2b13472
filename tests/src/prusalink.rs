//! Test peer: a **simulated** PrusaLink printer, built from PrusaLink's published OpenAPI
//! document (`tests/data/prusalink/openapi.yaml`, the HTTP API v1 that the MK4, Core One, XL
//! and MINI serve from their firmware). It is a simulation of a device the tests cannot run
//! here: no real printer and no real PrusaLink answer these tests. What it is faithful to:
//! - the v1 endpoints the agent uses, with the document's exact response shapes (checked
//!   against its component schemas by [`spec`] in `tests/tests/prusalink.rs`);
//! - HTTP Digest as PrusaLink does it (its web server, PoorWSGI: realm `Administrator`,
//!   `algorithm=MD5-sess`, `qop=auth`, an `opaque`, the `uri` checked against the request, a
//!   time-limited nonce and `stale=true` once it expires), verified in `login` with its own
//!   MD5 arithmetic from RFC 2617, not the agent's crate; and `X-Api-Key` (a wrong key is 403
//!   `Bad X-Api-Key.`, a missing one falls back to Digest's 401);
//! - a print's life: an uploaded file → `PRINTING` with progress advancing in time →
//!   `FINISHED` (the finished job stays shown, as on the printers, until the next one);
//!   pause, resume, stop; `409 Conflict` in the wrong state; `ATTENTION` on demand.
//!
//! What it is not: the printers' timing, their real error texts, the legacy OctoPrint-style
//! API, or file metadata (`meta` is empty).

mod login;
pub mod spec;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const REALM: &str = "Administrator";

/// How the simulated printer is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    /// Accepted `X-Api-Key`, if any.
    pub api_key: Option<String>,
    /// Digest user and password, if any.
    pub digest: Option<(String, String)>,
    /// How long a Digest nonce is good for.
    pub nonce_ttl: Duration,
    /// How long any print takes (progress is elapsed printing time over this).
    pub print_time: Duration,
    /// How long after an accepted start the printer still shows what it showed before (the
    /// last print's `FINISHED`, say) before the new print appears.
    pub start_delay: Duration,
    /// The storage's path as `/api/v1/storage` lists it (`/usb` on the printers' firmware).
    pub storage: String,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            api_key: None,
            digest: Some(("maker".into(), "farm-test-pass".into())),
            nonce_ttl: Duration::from_secs(300),
            print_time: Duration::from_secs(8),
            start_delay: Duration::from_millis(1500),
            storage: "/usb".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Idle,
    Printing,
    Paused,
    Attention(String),
    Finished,
    Stopped,
}

#[derive(Clone, Debug)]
struct Job {
    id: u64,
    /// Storage name and path inside it.
    storage: String,
    path: String,
    size: u64,
    /// Printing time before `since`.
    printed: Duration,
    /// Printing since (None while paused, held or ended).
    since: Option<Instant>,
    /// The last percent reached (kept after the end).
    progress: f64,
}

/// What the printer holds; behind one lock, held only briefly and never across an await.
struct Printer {
    setup: Setup,
    phase: Phase,
    job: Option<Job>,
    next_job_id: u64,
    /// Storage name → path → file bytes.
    files: HashMap<String, HashMap<String, Vec<u8>>>,
    nonces: HashMap<String, Instant>,
    nonce_seq: u64,
    started: u64,
    /// An accepted start, shown from that moment on.
    pending: Option<(Job, Instant)>,
    /// Answers with `stale=true` so far (tests check the agent renews its nonce).
    stale_answers: u64,
    /// Requests answered 401 or 403.
    refused: u64,
}

/// A running simulated printer. The server stops when this is dropped.
pub struct PrusaLinkSim {
    pub url: String,
    state: Arc<Mutex<Printer>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PrusaLinkSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PrusaLinkSim {
    /// Starts the printer on a loopback port.
    pub async fn start(setup: Setup) -> anyhow::Result<PrusaLinkSim> {
        let storage = setup.storage.trim_matches('/').to_string();
        let state = Arc::new(Mutex::new(Printer {
            setup,
            phase: Phase::Idle,
            job: None,
            next_job_id: 41,
            files: HashMap::from([(storage, HashMap::new())]),
            nonces: HashMap::new(),
            nonce_seq: 0,
            started: 0,
            pending: None,
            stale_answers: 0,
            refused: 0,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = state.clone();
        let app = axum::Router::new()
            .fallback(move |method, uri, headers, body| {
                let state = shared.clone();
                async move { handle(&state, method, uri, headers, body) }
            })
            .layer(axum::extract::DefaultBodyLimit::disable());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(PrusaLinkSim { url, state, task })
    }

    fn lock(&self) -> MutexGuard<'_, Printer> {
        lock(&self.state)
    }

    /// The printer stops for a person (filament runout, a crash): `ATTENTION` with `message`.
    pub fn attention(&self, message: &str) {
        let mut p = self.lock();
        p.advance(Instant::now());
        let printing = p.phase == Phase::Printing;
        if let Some(j) = p.job.as_mut().filter(|_| printing) {
            j.printed += j.since.take().map(|s| s.elapsed()).unwrap_or_default();
        }
        p.phase = Phase::Attention(message.to_string());
    }

    /// Someone at the printer dealt with it: back to printing (or idle without a print).
    pub fn attended(&self) {
        let mut p = self.lock();
        if !matches!(p.phase, Phase::Attention(_)) {
            return;
        }
        match p.job.as_mut() {
            Some(j) if j.progress < 100.0 => {
                j.since = Some(Instant::now());
                p.phase = Phase::Printing;
            }
            _ => p.phase = Phase::Idle,
        }
    }

    /// The printer's own words on its state, e.g. `PRINTING`.
    pub fn state(&self) -> String {
        let mut p = self.lock();
        p.advance(Instant::now());
        p.state_name().to_string()
    }

    /// The current job's last progress, percent.
    pub fn progress(&self) -> Option<f64> {
        let mut p = self.lock();
        p.advance(Instant::now());
        p.job.as_ref().map(|j| j.progress)
    }

    /// Prints started so far.
    pub fn prints_started(&self) -> u64 {
        self.lock().started
    }

    /// Files on the storage: path → bytes.
    pub fn files(&self) -> HashMap<String, Vec<u8>> {
        self.lock()
            .files
            .values()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    pub fn stale_answers(&self) -> u64 {
        self.lock().stale_answers
    }

    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    /// Changes the accepted credentials (the operator fixed them on the printer).
    pub fn set_login(&self, api_key: Option<String>, digest: Option<(String, String)>) {
        let mut p = self.lock();
        p.setup.api_key = api_key;
        p.setup.digest = digest;
    }
}

fn lock(m: &Mutex<Printer>) -> MutexGuard<'_, Printer> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Printer {
    /// Moves the print on to `now`: progress from printing time; the end at 100 %.
    fn advance(&mut self, now: Instant) {
        if let Some((mut job, at)) = self.pending.take_if(|(_, at)| *at <= now) {
            job.since = Some(at);
            self.job = Some(job);
            self.phase = Phase::Printing;
        }
        let total = self.setup.print_time.as_secs_f64().max(0.001);
        let Some(j) = self.job.as_mut() else { return };
        if self.phase != Phase::Printing {
            return;
        }
        let printed = j.printed
            + j.since
                .map(|s| now.saturating_duration_since(s))
                .unwrap_or_default();
        j.progress = (printed.as_secs_f64() / total * 100.0).min(100.0);
        if j.progress >= 100.0 {
            j.printed = printed;
            j.since = None;
            self.phase = Phase::Finished;
        }
    }

    fn state_name(&self) -> &'static str {
        match self.phase {
            Phase::Idle => "IDLE",
            Phase::Printing => "PRINTING",
            Phase::Paused => "PAUSED",
            Phase::Attention(_) => "ATTENTION",
            Phase::Finished => "FINISHED",
            Phase::Stopped => "STOPPED",
        }
    }

    fn times(&self, j: &Job) -> (u64, u64) {
        let printed = j.printed + j.since.map(|s| s.elapsed()).unwrap_or_default();
        let left = self.setup.print_time.saturating_sub(printed);
        (printed.as_secs(), left.as_secs())
    }

    fn status(&self) -> Value {
        let printing = matches!(
            self.phase,
            Phase::Printing | Phase::Paused | Phase::Attention(_)
        );
        let (nozzle, bed) = if printing { (215.0, 60.0) } else { (0.0, 0.0) };
        let (ok, message) = match &self.phase {
            Phase::Attention(m) => (false, m.as_str()),
            _ => (true, "OK"),
        };
        let mut v = json!({
            "printer": {
                "state": self.state_name(),
                "temp_nozzle": if printing { 214.8 } else { 24.5 },
                "target_nozzle": nozzle,
                "temp_bed": if printing { 59.7 } else { 23.9 },
                "target_bed": bed,
                "axis_z": 1.2,
                "flow": 100,
                "speed": 100,
                "fan_hotend": if printing { 3500 } else { 0 },
                "fan_print": if printing { 2100 } else { 0 },
                "status_printer": {"ok": ok, "message": message},
                "status_connect": {"ok": true, "message": "OK"},
            },
            "storage": {"name": "USB", "path": format!("/{}/", self.storage_name()), "read_only": false, "free_space": 7_516_192_768_u64},
        });
        if let Some(j) = &self.job {
            let (printed, left) = self.times(j);
            v["job"] = json!({"id": j.id, "progress": j.progress, "time_remaining": left, "time_printing": printed});
        }
        v
    }

    fn storage_name(&self) -> String {
        self.setup.storage.trim_matches('/').to_string()
    }

    fn job_json(&self) -> Option<Value> {
        let j = self.job.as_ref()?;
        let state = match self.phase {
            Phase::Paused => "PAUSED",
            Phase::Finished => "FINISHED",
            Phase::Stopped => "STOPPED",
            // ATTENTION is the printer's state; its job still counts as printing.
            _ => "PRINTING",
        };
        let (printed, left) = self.times(j);
        let name = j.path.rsplit('/').next().unwrap_or(&j.path).to_string();
        let path = format!("/{}/{}", j.storage, j.path);
        Some(json!({
            "id": j.id, "state": state, "progress": j.progress, "time_remaining": left,
            "time_printing": printed, "inaccurate_estimates": false,
            "file": {"name": name, "display_name": name, "path": path,
                "display_path": path, "size": j.size, "m_timestamp": 1_765_000_000,
                "meta": {}, "refs": {"download": format!("/api/v1/files{path}")}},
        }))
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn handle(
    state: &Mutex<Printer>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut p = lock(state);
    if let Some(refused) = p.authorize(&method, &uri, &headers) {
        return refused;
    }
    p.advance(Instant::now());
    let path = uri.path().to_string();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let conflict = |why: &str| text(StatusCode::CONFLICT, why);
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["api", "version"]) => json_response(json!({
            "api": "2.0.0", "version": "2.1.2", "printer": "1.0.0",
            "text": "PrusaLink (simulated)", "firmware": "6.2.0+sim", "sdk": "0.7.0",
            "capabilities": {"upload-by-put": true},
        })),
        ("GET", ["api", "v1", "info"]) => json_response(json!({
            "mmu": false, "name": "sim", "location": "test", "farm_mode": false,
            "nozzle_diameter": 0.4, "min_extrusion_temp": 170, "serial": "CZPX4720X004XC34242",
            "sd_ready": false, "active_camera": false, "hostname": "prusa-sim.local",
            "port": "", "network_error_chime": false,
        })),
        ("GET", ["api", "v1", "status"]) => json_response(p.status()),
        ("GET", ["api", "v1", "job"]) => match p.job_json() {
            Some(v) => json_response(v),
            None => StatusCode::NO_CONTENT.into_response(),
        },
        ("GET", ["api", "v1", "storage"]) => {
            let name = p.storage_name();
            json_response(json!({"storage_list": [
                {"name": "USB", "type": "USB", "path": format!("/{name}"), "print_files": 0,
                 "system_files": 0, "free_space": 7_516_192_768_u64, "total_space": 8_000_000_000_u64,
                 "available": true, "read_only": false},
            ]}))
        }
        (m, ["api", "v1", "files", storage, rest @ ..]) if !rest.is_empty() => {
            let (storage, file) = (storage.to_string(), rest.join("/"));
            if !p.files.contains_key(&storage) {
                return text(StatusCode::NOT_FOUND, "Storage not found");
            }
            let printing_it = p
                .job
                .as_ref()
                .is_some_and(|j| j.path == file && j.storage == storage)
                && matches!(
                    p.phase,
                    Phase::Printing | Phase::Paused | Phase::Attention(_)
                );
            match m {
                "PUT" => {
                    let overwrite = headers.get("overwrite").is_some_and(|v| v == "?1");
                    let exists = p.files.get(&storage).is_some_and(|f| f.contains_key(&file));
                    if exists && !overwrite {
                        return conflict("File already exists.");
                    }
                    if printing_it {
                        return conflict("File is currently being printed.");
                    }
                    if let Some(len) = headers
                        .get(header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
                        && len != body.len()
                    {
                        return text(
                            StatusCode::BAD_REQUEST,
                            "Content-Length does not match the body",
                        );
                    }
                    if let Some(files) = p.files.get_mut(&storage) {
                        files.insert(file.clone(), body.to_vec());
                    }
                    if headers.get("print-after-upload").is_some_and(|v| v == "?1")
                        && let Err((status, why)) = p.print(&storage, &file)
                    {
                        return text(status, why);
                    }
                    StatusCode::CREATED.into_response()
                }
                "POST" => match p.print(&storage, &file) {
                    Ok(()) => StatusCode::NO_CONTENT.into_response(),
                    Err((status, why)) => text(status, why),
                },
                "HEAD" => match p.files.get(&storage).is_some_and(|f| f.contains_key(&file)) {
                    true => (
                        StatusCode::OK,
                        [
                            ("read-only", "false"),
                            (
                                "currently-printed",
                                if printing_it { "true" } else { "false" },
                            ),
                        ],
                    )
                        .into_response(),
                    false => StatusCode::NOT_FOUND.into_response(),
                },
                "DELETE" if printing_it => conflict("File is currently being printed."),
                "DELETE" => match p.files.get_mut(&storage).and_then(|f| f.remove(&file)) {
                    Some(_) => StatusCode::NO_CONTENT.into_response(),
                    None => text(StatusCode::NOT_FOUND, "File not found"),
                },
                _ => text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            }
        }
        (m, ["api", "v1", "job", id, action @ ..]) => {
            let ours = p.job.as_ref().map(|j| j.id.to_string()).as_deref() == Some(*id);
            if !ours {
                return text(StatusCode::NOT_FOUND, "Job not found");
            }
            let now = Instant::now();
            let phase = p.phase.clone();
            let Some(j) = p.job.as_mut() else {
                return text(StatusCode::NOT_FOUND, "Job not found");
            };
            match (m, action, phase) {
                ("PUT", ["pause"], Phase::Printing) => {
                    j.printed += j
                        .since
                        .take()
                        .map(|s| now.saturating_duration_since(s))
                        .unwrap_or_default();
                    p.phase = Phase::Paused;
                }
                ("PUT", ["resume"], Phase::Paused) => {
                    j.since = Some(now);
                    p.phase = Phase::Printing;
                }
                ("DELETE", [], Phase::Printing | Phase::Paused | Phase::Attention(_)) => {
                    j.printed += j
                        .since
                        .take()
                        .map(|s| now.saturating_duration_since(s))
                        .unwrap_or_default();
                    p.phase = Phase::Stopped;
                }
                ("PUT", ["pause" | "resume" | "continue"], _) | ("DELETE", [], _) => {
                    return conflict("Not allowed in the printer's current state.");
                }
                _ => return text(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            }
            StatusCode::NO_CONTENT.into_response()
        }
        _ => text(StatusCode::NOT_FOUND, "Not found"),
    }
}

impl Printer {
    /// Starts printing a stored file: 409 while a print is on, 404 for no such file.
    fn print(&mut self, storage: &str, file: &str) -> Result<(), (StatusCode, &'static str)> {
        if matches!(
            self.phase,
            Phase::Printing | Phase::Paused | Phase::Attention(_)
        ) || self.pending.is_some()
        {
            return Err((StatusCode::CONFLICT, "Printer is busy."));
        }
        let Some(size) = self
            .files
            .get(storage)
            .and_then(|f| f.get(file))
            .map(|b| b.len() as u64)
        else {
            return Err((StatusCode::NOT_FOUND, "File not found"));
        };
        let id = self.next_job_id;
        self.next_job_id += 1;
        self.started += 1;
        let job = Job {
            id,
            storage: storage.to_string(),
            path: file.to_string(),
            size,
            printed: Duration::ZERO,
            since: None,
            progress: 0.0,
        };
        self.pending = Some((job, Instant::now() + self.setup.start_delay));
        self.advance(Instant::now());
        Ok(())
    }
}

/// Switches an enrolled agent's config (`<farm_dir>/<id>.toml`) to the PrusaLink back end at
/// `url`; `login` is the section's login lines, e.g. `api_key = "…"`.
pub fn use_prusalink(
    farm_dir: &std::path::Path,
    id: &str,
    url: &str,
    login: &str,
) -> anyhow::Result<()> {
    crate::use_backend(
        farm_dir,
        id,
        "prusalink",
        &format!("url = {url:?}\n{login}"),
    )
}

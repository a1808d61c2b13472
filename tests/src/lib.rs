//! Harness for the end-to-end tests: real `farm-controller` and `farm-agent` processes, a real
//! broker over TCP (embedded, or Mosquitto), real files, and a client of the live stream.
//!
//! Binaries come from the workspace's target directory; build them first
//! (`cargo build --workspace --bins`, which the project's test script does).
//! Each process writes its log to a file in the test's directory; [`Farm::logs`] prints them
//! when a test fails, so a red CI says why.

pub mod bambu;
pub mod bgcode;
pub mod browser;
pub mod moonraker;
pub mod octoprint;
pub mod plates;
pub mod prusalink;
pub mod relay;
pub mod vprinter;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// A loopback port that is free now, for a server a test starts in a moment.
///
/// Taken from below Linux's ephemeral range (32768–60999): a port from `bind(0)` is released
/// before its server binds it, and meanwhile any `bind(0)` or outgoing connection may get the
/// same number (seen in a cold CI run: a test's webhook receiver got OctoPrint's port, and
/// OctoPrint failed with "Address already in use"). Ports here are never handed out that way.
/// Each test runs in its own process (nextest), so the pid spreads processes over the range.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_700;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = (std::process::id() % (SPAN / 20)) * 20;
    for _ in 0..SPAN {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Path of a workspace binary next to the running test executable.
pub fn bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/debug/deps/e2e-xxxx → target/debug/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("no target dir"))?;
    let p = dir.join(name);
    if !p.is_file() {
        bail!(
            "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
            p.display()
        );
    }
    Ok(p)
}

/// A fixture shipped with this crate (tests/data).
pub fn data(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("fixture {}: {e}", p.display()))
}

/// Sim settings that make `job` take about `seconds` of wall time, whatever the file.
pub fn speed_for(job: &Value, seconds: f64) -> String {
    let estimate = job["estimated_s"].as_f64().unwrap_or(seconds);
    format!("speed = {:.3}", (estimate / seconds).max(0.1))
}

/// An MQTT client of our own, for tests that must speak to the broker directly (forgery, bad
/// input). Returns once the broker accepted the login, or the error it gave.
pub async fn mqtt_client(
    port: u16,
    client_id: &str,
    user: &str,
    pass: &str,
) -> Result<rumqttc::AsyncClient> {
    use rumqttc::{Event, MqttOptions, Packet};
    let mut o = MqttOptions::new(client_id, "127.0.0.1", port);
    o.set_credentials(user, pass);
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    let (client, mut ev) = rumqttc::AsyncClient::new(o, 100);
    let first = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(anyhow!("{e}")),
            }
        }
    })
    .await
    .map_err(|_| anyhow!("no CONNACK in 10 s"))?;
    first?;
    tokio::spawn(async move { while ev.poll().await.is_ok() {} });
    Ok(client)
}

pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn spawn(program: &Path, args: &[&str], log: &Path) -> Result<Child> {
    spawn_env(program, args, log, &[]).await
}

async fn spawn_env(
    program: &Path,
    args: &[&str],
    log: &Path,
    env: &[(&str, String)],
) -> Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    Command::new(program)
        .args(args)
        .env("RUST_LOG", "info,rmqtt=warn,rmqtt_net=warn,rumqttc=warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))
}

/// Waits for `cond` to return `Some`, checking every 50 ms, up to `limit`.
pub async fn eventually<T>(
    what: &str,
    limit: Duration,
    mut cond: impl AsyncFnMut() -> Option<T>,
) -> Result<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if t0.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Settings of one test farm.
#[derive(Clone)]
pub struct FarmOptions {
    /// `None`: the controller's embedded broker. `Some(url)`: an external broker for the controller.
    pub broker_url: Option<String>,
    /// What agents are told to connect to when the broker is external.
    pub agent_broker_url: Option<String>,
    pub max_upload_bytes: u64,
    pub anonymous_role: Option<&'static str>,
    /// Appended to the controller's config file (e.g. `[orders]`, `[webhooks]` sections).
    pub extra_toml: String,
    /// Extra environment of the controller process (a test's fault, e.g.
    /// `FARM_TEST_STOP_BROKER_AFTER_S`).
    pub controller_env: Vec<(&'static str, String)>,
}

impl Default for FarmOptions {
    fn default() -> Self {
        Self {
            broker_url: None,
            agent_broker_url: None,
            max_upload_bytes: 64 * 1024 * 1024,
            anonymous_role: None,
            extra_toml: String::new(),
            controller_env: Vec::new(),
        }
    }
}

/// A controller process and its agents, in one temporary directory.
pub struct Farm {
    pub dir: tempfile::TempDir,
    pub http: String,
    pub mqtt_port: u16,
    pub admin: String,
    pub client: reqwest::Client,
    opts: FarmOptions,
    http_port: u16,
    controller: Option<Child>,
    agents: Vec<(String, Child)>,
}

impl Farm {
    pub async fn start(opts: FarmOptions) -> Result<Farm> {
        install_crypto();
        let dir = tempfile::tempdir()?;
        let http_port = free_port();
        let mqtt_port = free_port();
        let mut f = Farm {
            dir,
            http: format!("http://127.0.0.1:{http_port}"),
            mqtt_port,
            admin: String::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            opts,
            http_port,
            controller: None,
            agents: vec![],
        };
        f.start_controller().await?;
        // The controller writes the first admin token just after it starts serving (one line).
        let token_file = f.dir.path().join("controller/admin-token");
        f.admin = eventually(
            "the first admin token",
            Duration::from_secs(10),
            async || {
                // Complete once its newline is there.
                let t = std::fs::read_to_string(&token_file).ok()?;
                (t.ends_with('\n') && !t.trim().is_empty()).then(|| t.trim().to_string())
            },
        )
        .await?;
        Ok(f)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("controller.toml")
    }

    /// (Re)starts the controller on the same ports and state.
    pub async fn start_controller(&mut self) -> Result<()> {
        let mut toml = format!(
            "state_dir = {:?}\nhttp_listen = \"127.0.0.1:{}\"\nmqtt_listen = \"127.0.0.1:{}\"\nmax_upload_bytes = {}\nstatus_stale_s = 10\n",
            self.dir.path().join("controller").display().to_string(),
            self.http_port,
            self.mqtt_port,
            self.opts.max_upload_bytes
        );
        if let Some(u) = &self.opts.broker_url {
            toml += &format!("broker_url = {u:?}\n");
        }
        if let Some(u) = &self.opts.agent_broker_url {
            toml += &format!("agent_broker_url = {u:?}\n");
        }
        if let Some(r) = self.opts.anonymous_role {
            toml += &format!("anonymous_role = {r:?}\n");
        }
        toml += &self.opts.extra_toml;
        std::fs::write(self.config_path(), toml)?;
        let cfg = self.config_path().display().to_string();
        let log = self.dir.path().join("controller.log");
        self.controller = Some(
            spawn_env(
                &bin("farm-controller")?,
                &["serve", "--config", &cfg],
                &log,
                &self.opts.controller_env,
            )
            .await?,
        );
        let url = format!("{}/api/v1/health", self.http);
        let client = self.client.clone();
        // Ready means serving HTTP and subscribed at the broker: before that, agents' messages
        // would find no listener.
        eventually(
            "controller health with its broker link up",
            Duration::from_secs(20),
            async || {
                let v: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
                (v["broker_connected"] == true).then_some(())
            },
        )
        .await?;
        Ok(())
    }

    /// What the next [`Farm::start_controller`] appends to the controller's config file.
    pub fn set_extra_toml(&mut self, toml: &str) {
        self.opts.extra_toml = toml.to_string();
    }

    /// The controller's extra environment from its next start on.
    pub fn set_controller_env(&mut self, env: Vec<(&'static str, String)>) {
        self.opts.controller_env = env;
    }

    /// Waits for the controller process to end by itself; its exit status.
    pub async fn controller_exit(&mut self, limit: Duration) -> Result<std::process::ExitStatus> {
        let c = self
            .controller
            .as_mut()
            .ok_or_else(|| anyhow!("the controller is not running"))?;
        let status = tokio::time::timeout(limit, c.wait())
            .await
            .map_err(|_| anyhow!("the controller still runs after {limit:?}"))??;
        self.controller = None;
        Ok(status)
    }

    /// Is the controller process still running?
    pub fn controller_running(&mut self) -> bool {
        self.controller
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub async fn kill_controller(&mut self) -> Result<()> {
        if let Some(mut c) = self.controller.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }

    /// Enrols a printer through the API and starts its agent with the sim back end.
    pub async fn add_agent(&mut self, id: &str, auto_eject: bool, sim: &str) -> Result<()> {
        self.enrol(id, auto_eject, sim).await?;
        self.start_agent(id).await
    }

    /// Enrols a printer and writes its agent config (`<dir>/<id>.toml`) without starting it.
    pub async fn enrol(&mut self, id: &str, auto_eject: bool, sim: &str) -> Result<()> {
        let r = self
            .client
            .post(format!("{}/api/v1/printers", self.http))
            .bearer_auth(&self.admin)
            .json(&serde_json::json!({"id": id, "auto_eject": auto_eject}))
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if status.as_u16() != 201 {
            bail!("enrolment of {id} answered {status}: {body}");
        }
        let mut config = body["agent_config"]
            .as_str()
            .ok_or_else(|| anyhow!("no agent_config"))?
            .to_string();
        let state = self.dir.path().join("agents").join(id);
        config = config.replace(
            "state_dir = \"/var/lib/farm-agent\"",
            &format!("state_dir = {:?}", state.display().to_string()),
        );
        config = config.replace(
            "[printer.sim]\nspeed = 1.0\n",
            &format!("[printer.sim]\n{sim}\n"),
        );
        std::fs::write(self.dir.path().join(format!("{id}.toml")), &config)?;
        Ok(())
    }

    pub async fn start_agent(&mut self, id: &str) -> Result<()> {
        let cfg = self
            .dir
            .path()
            .join(format!("{id}.toml"))
            .display()
            .to_string();
        let log = self.dir.path().join(format!("agent-{id}.log"));
        let child = spawn(&bin("farm-agent")?, &["run", "--config", &cfg], &log).await?;
        self.agents.push((id.to_string(), child));
        Ok(())
    }

    /// The secret and token from an agent's config (for tests that speak MQTT themselves).
    pub fn agent_keys(&self, id: &str) -> Result<(String, String)> {
        let text = std::fs::read_to_string(self.dir.path().join(format!("{id}.toml")))?;
        let t: toml::Table = toml::from_str(&text)?;
        let key = |k: &str| {
            t.get(k)
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| anyhow!("{id}.toml has no {k}"))
        };
        Ok((key("secret")?, key("token")?))
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .client
            .get(format!("{}{path}", self.http))
            .bearer_auth(&self.admin)
            .send()
            .await?;
        let s = r.status();
        let v = r.json().await?;
        if !s.is_success() {
            bail!("GET {path} answered {s}: {v}");
        }
        Ok(v)
    }

    /// Any method with a JSON body, as admin; the status and the body (`null` if not JSON).
    pub async fn request(&self, method: &str, path: &str, body: Value) -> Result<(u16, Value)> {
        let r = self
            .client
            .request(method.parse()?, format!("{}{path}", self.http))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post_json(&self, path: &str, body: Value) -> Result<(u16, Value)> {
        let r = self
            .client
            .post(format!("{}{path}", self.http))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    /// A file as the raw body of a `POST`, as admin; the status and the body (`null` if not
    /// JSON).
    pub async fn post_file(&self, path: &str, bytes: Vec<u8>) -> Result<(u16, Value)> {
        let r = self
            .client
            .post(format!("{}{path}", self.http))
            .bearer_auth(&self.admin)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await?;
        Ok((r.status().as_u16(), r.json().await.unwrap_or(Value::Null)))
    }

    /// Uploads G-code; returns the created jobs.
    pub async fn upload(&self, name: &str, bytes: Vec<u8>, copies: u32) -> Result<Vec<Value>> {
        let (s, v) = self
            .post_file(&format!("/api/v1/jobs?name={name}&copies={copies}"), bytes)
            .await?;
        if s != 201 {
            bail!("upload answered {s}: {v}");
        }
        Ok(v["jobs"].as_array().cloned().unwrap_or_default())
    }

    pub async fn metrics(&self) -> Result<String> {
        Ok(self
            .client
            .get(format!("{}/metrics", self.http))
            .send()
            .await?
            .text()
            .await?)
    }

    /// The value of one metric line (exact name with labels), 0 when absent.
    pub async fn metric(&self, series: &str) -> Result<f64> {
        let text = self.metrics().await?;
        Ok(text
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|r| r.strip_prefix(' '))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0.0))
    }

    pub async fn stream(&self) -> Result<Stream> {
        Stream::open(&self.client, &self.http, &self.admin).await
    }

    /// Every process log, for a failing test's output.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
            let mut files: Vec<_> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
            files.sort();
            for p in files {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                out += &format!("\n===== {} (last {} lines)\n", p.display(), tail.len());
                for l in tail.into_iter().rev() {
                    out += l;
                    out.push('\n');
                }
            }
        }
        out
    }
}

/// Points an enrolled agent's config (`<farm dir>/<id>.toml`, as [`Farm::enrol`] wrote it)
/// at a real back end: `backend = "<backend>"` and a `[printer.<backend>]` table of `settings`
/// (TOML lines).
pub fn use_backend(farm_dir: &Path, id: &str, backend: &str, settings: &str) -> Result<()> {
    let path = farm_dir.join(format!("{id}.toml"));
    let text = std::fs::read_to_string(&path)?;
    if !text.contains("backend = \"sim\"") {
        bail!("{} does not look like an enrolment config", path.display());
    }
    let text = text.replace("backend = \"sim\"", &format!("backend = {backend:?}"))
        + &format!("\n[printer.{backend}]\n{settings}\n");
    std::fs::write(&path, text)?;
    Ok(())
}

/// Unwraps a test body's result; on failure, prints every process log first.
pub fn or_logs<T>(r: Result<T>, farm: &Farm) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("{e:#}\n{}", farm.logs()),
    }
}

/// A live-stream (SSE) client that records every event it receives.
pub struct Stream {
    events: Arc<Mutex<Vec<(String, Value)>>>,
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream {
    async fn open(client: &reqwest::Client, http: &str, token: &str) -> Result<Stream> {
        let resp = reqwest::Client::new()
            .get(format!("{http}/api/v1/stream"))
            .bearer_auth(token)
            .send()
            .await?;
        let _ = client;
        if !resp.status().is_success() {
            bail!("stream answered {}", resp.status());
        }
        let events = Arc::new(Mutex::new(vec![]));
        let notify = Arc::new(Notify::new());
        let (ev, n) = (events.clone(), notify.clone());
        let task = tokio::spawn(async move {
            use futures_util::StreamExt;
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let mut name = String::from("message");
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        }
                    }
                    if let Ok(v) = serde_json::from_str(&data) {
                        if let Ok(mut e) = ev.lock() {
                            e.push((name, v));
                        }
                        n.notify_waiters();
                    }
                }
            }
        });
        Ok(Stream {
            events,
            notify,
            task,
        })
    }

    pub fn events(&self) -> Vec<(String, Value)> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Waits until `pred` holds over everything received so far.
    pub async fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut pred: impl FnMut(&[(String, Value)]) -> Option<T>,
    ) -> Result<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.notify.notified();
            if let Some(v) = pred(&self.events()) {
                return Ok(v);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("timed out after {limit:?} waiting on the live stream for {what}");
            }
        }
    }

    /// The states a job went through on the stream, in stream order and without repeats,
    /// once the stream has shown it reach `last`. The REST API can answer with the new state
    /// a moment before the stream delivers the same commit, so a test that saw it over REST
    /// waits here rather than reading the stream at once.
    pub async fn job_states_through(
        &self,
        job: &str,
        last: &str,
        limit: Duration,
    ) -> Result<Vec<String>> {
        let what = format!("job {job} to reach {last}");
        match self
            .wait_for(&what, limit, |_| {
                let states = self.job_states(job);
                states.iter().any(|s| s == last).then_some(states)
            })
            .await
        {
            Ok(states) => Ok(states),
            Err(e) => Err(e.context(format!("the stream showed {:?}", self.job_states(job)))),
        }
    }

    /// The states a job went through so far, in stream order, without repeats.
    pub fn job_states(&self, job: &str) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for (name, v) in self.events() {
            let states: Vec<String> = match name.as_str() {
                "job" if v["id"] == job => vec![v["state"].as_str().unwrap_or("").to_string()],
                "snapshot" => v["jobs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|j| j["id"] == job)
                    .map(|j| j["state"].as_str().unwrap_or("").to_string())
                    .collect(),
                _ => vec![],
            };
            for s in states {
                if out.last() != Some(&s) {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Latest known state of every printer, merging the snapshot and the diffs.
    pub fn printer_states(&self) -> std::collections::BTreeMap<String, String> {
        let mut m = std::collections::BTreeMap::new();
        for (name, v) in self.events() {
            match name.as_str() {
                "snapshot" => {
                    m.clear();
                    for p in v["printers"].as_array().into_iter().flatten() {
                        m.insert(
                            p["id"].as_str().unwrap_or("").to_string(),
                            p["state"].as_str().unwrap_or("").to_string(),
                        );
                    }
                }
                "printer" => {
                    if let (Some(id), Some(s)) = (v["id"].as_str(), v["state"].as_str()) {
                        m.insert(id.to_string(), s.to_string());
                    }
                }
                _ => {}
            }
        }
        m
    }
}

/// A Mosquitto broker (Debian package) on a loopback port, with password auth.
pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Mosquitto {
    /// `users`: (name, password). Fails (never skips) when mosquitto is not installed.
    pub async fn start(dir: &Path, users: &[(&str, &str)]) -> Result<Mosquitto> {
        let dir = dir.join("mosquitto");
        std::fs::create_dir_all(&dir)?;
        let passwd = dir.join("passwd");
        std::fs::write(&passwd, "")?;
        let port = free_port();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        std::fs::write(
            dir.join("mosquitto.conf"),
            format!(
                "per_listener_settings false\nallow_anonymous false\npassword_file {}\nlistener {port} 127.0.0.1\npersistence false\nlog_dest stdout\nuser {user}\nmax_packet_size 1048576\n",
                passwd.display()
            ),
        )?;
        let mut m = Mosquitto {
            port,
            dir,
            child: None,
        };
        for (u, p) in users {
            m.add_user(u, p).context("mosquitto_passwd is missing: install Debian's `mosquitto` package (scripts/test.sh does)")?;
        }
        m.resume().await?;
        Ok(m)
    }

    /// Starts (again) on the same port.
    pub async fn resume(&mut self) -> Result<()> {
        let conf = self.dir.join("mosquitto.conf").display().to_string();
        let exe = which("mosquitto").ok_or_else(|| {
            anyhow!("mosquitto is not installed: apt-get install mosquitto (scripts/test.sh does)")
        })?;
        self.child = Some(spawn(&exe, &["-c", &conf], &self.dir.join("mosquitto.log")).await?);
        let port = self.port;
        eventually("mosquitto listening", Duration::from_secs(10), async || {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
        })
        .await?;
        Ok(())
    }

    /// Adds a login; takes effect at the next [`Mosquitto::resume`].
    pub fn add_user(&self, user: &str, pass: &str) -> Result<()> {
        let passwd = self.dir.join("passwd").display().to_string();
        let st = std::process::Command::new("mosquitto_passwd")
            .args(["-b", &passwd, user, pass])
            .status()?;
        if !st.success() {
            bail!("mosquitto_passwd failed for {user}");
        }
        Ok(())
    }

    pub async fn stop(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.start_kill()?;
            c.wait().await?;
        }
        Ok(())
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The Python interpreter of a peer's venv, as `scripts/install-peers.sh` makes it
/// (`$FARM_PEERS_DIR/<name>/venv`, default `.peers/` at the repository root). A missing peer is
/// an error that says how to install it, never a skipped test.
pub fn peer_python(name: &str) -> Result<PathBuf> {
    let root = match std::env::var_os("FARM_PEERS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(|p| p.join(".peers"))
            .ok_or_else(|| anyhow!("no repository root above {}", env!("CARGO_MANIFEST_DIR")))?,
    };
    let python = root.join(name).join("venv").join("bin").join("python");
    if !python.is_file() {
        bail!(
            "peer {name} is not installed ({} is missing): run scripts/install-peers.sh \
             (scripts/test.sh does)",
            python.display()
        );
    }
    Ok(python)
}

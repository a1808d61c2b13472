//! Test peer: a throwaway OctoPrint 1.11.8 with its bundled Virtual Printer, started headless
//! the way `../shared/reference/peers.md` §1 verified: a `config.yaml` that skips every wizard
//! and connects to the `VIRTUAL` port by itself, `octoprint user add`, a user key and an
//! application key seeded on disk, `octoprint serve --iknowwhatimdoing` (needed as root).
//!
//! One instance per test, in the test's temporary directory, on a free port. [`OctoPrint::stop`]
//! ends it with SIGTERM (SIGKILL after 15 s) and [`OctoPrint::resume`] starts it again on the
//! same port and basedir, for restart tests. The child is killed when dropped.
//!
//! [`Watcher`] is the test's own client of OctoPrint's push channel: it records OctoPrint's
//! events so a test can check what really happened on the peer (e.g. the file position of a
//! cancel), independently of the agent.

use crate::{eventually, free_port, peer_python};
use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// The application key the agent is configured with.
pub const APP_KEY: &str = "FARMAPPKEY0123456789ABCDEFGHIJKL";
/// The admin user's own key (for the test's direct calls).
pub const USER_KEY: &str = "FARMUSERKEY0123456789ABCDEFGHIJK";

/// A running (or stopped) OctoPrint.
pub struct OctoPrint {
    pub url: String,
    pub port: u16,
    pub basedir: PathBuf,
    log: PathBuf,
    exe: PathBuf,
    child: Option<Child>,
    http: reqwest::Client,
    /// Removed when the peer is dropped (after its process is killed).
    _dir: Option<tempfile::TempDir>,
}

fn config_yaml() -> String {
    // Wizards off, no network checks, the Virtual Printer without its built-in resend faults,
    // connected at start-up.
    "server:\n  firstRun: false\n  onlineCheck:\n    enabled: false\n  pluginBlacklist:\n    enabled: false\n  pythonEolCheck:\n    enabled: false\n\
plugins:\n  _disabled: [tracking, announcements, softwareupdate, errortracking, discovery]\n  tracking:\n    enabled: false\n  virtual_printer:\n    _config_version: 1\n    enabled: true\n    simulated_errors: []\n\
serial:\n  port: VIRTUAL\n  baudrate: 115200\n  autoconnect: true\n"
        .to_string()
}

impl OctoPrint {
    /// [`OctoPrint::start`] in a temporary directory of its own.
    pub async fn start_temp() -> Result<OctoPrint> {
        let dir = tempfile::tempdir()?;
        let mut op = OctoPrint::start(dir.path()).await?;
        op._dir = Some(dir);
        Ok(op)
    }

    /// Sets up a basedir under `dir` and starts OctoPrint; returns once the API answers and
    /// the Virtual Printer is operational.
    pub async fn start(dir: &Path) -> Result<OctoPrint> {
        let python = peer_python("octoprint")?;
        let exe = python
            .parent()
            .map(|d| d.join("octoprint"))
            .ok_or_else(|| anyhow!("no bin dir above {}", python.display()))?;
        let basedir = dir.join("octoprint");
        std::fs::create_dir_all(basedir.join("data/appkeys"))?;
        std::fs::write(basedir.join("config.yaml"), config_yaml())?;
        let out = Command::new(&exe)
            .args(["--basedir"])
            .arg(&basedir)
            .args([
                "user",
                "add",
                "admin",
                "--password",
                "farm-test-pass",
                "--admin",
            ])
            .stdin(Stdio::null())
            .output()
            .await
            .context("running `octoprint user add`")?;
        if !out.status.success() {
            bail!(
                "`octoprint user add` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let users = basedir.join("users.yaml");
        let text = std::fs::read_to_string(&users)?;
        std::fs::write(
            &users,
            text.replace("apikey: null", &format!("apikey: {USER_KEY}")),
        )?;
        let mut op = OctoPrint {
            url: String::new(),
            port: free_port(),
            log: dir.join("octoprint.log"),
            basedir,
            exe,
            child: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()?,
            _dir: None,
        };
        op.write_app_keys(&[APP_KEY])?;
        // `free_port` only finds a port that was free a moment ago; with tests starting in
        // parallel another process can take it before OctoPrint binds (seen in a cold CI run:
        // "Address already in use"). Then try another port; restarts keep theirs.
        for attempt in 1.. {
            op.url = format!("http://127.0.0.1:{}", op.port);
            match op.resume().await {
                Ok(()) => break,
                Err(e) if attempt < 3 && op.log_tail().contains("Address already in use") => {
                    eprintln!("OctoPrint's port was taken ({e:#}); trying another");
                    op.stop().await?;
                    op.port = free_port();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(op)
    }

    /// Application keys of user admin (read by OctoPrint at start-up).
    pub fn write_app_keys(&self, keys: &[&str]) -> Result<()> {
        let mut yaml = String::from("admin:\n");
        for (i, k) in keys.iter().enumerate() {
            yaml += &format!("- api_key: {k}\n  app_id: farm-agent-{i}\n");
        }
        std::fs::write(self.basedir.join("data/appkeys/keys.yaml"), yaml)?;
        Ok(())
    }

    /// Starts (again) on the same port and basedir; returns when it is ready to print.
    pub async fn resume(&mut self) -> Result<()> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let err = out.try_clone()?;
        let child = Command::new(&self.exe)
            .arg("--basedir")
            .arg(&self.basedir)
            .args(["serve", "--host", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--iknowwhatimdoing")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .context("starting octoprint serve")?;
        let mut child = child;
        // Ready when it answers; failed at once when the process is gone (no 90 s wait).
        let up = eventually(
            "OctoPrint answering /api/version",
            Duration::from_secs(90),
            async || {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(Err(anyhow::anyhow!("octoprint serve exited: {status}")));
                }
                self.get("/api/version").await.ok().map(|_| Ok(()))
            },
        )
        .await
        .and_then(|r| r);
        self.child = Some(child);
        up.with_context(|| format!("OctoPrint did not come up; log: {}", self.log_tail()))?;
        eventually(
            "the Virtual Printer operational",
            Duration::from_secs(60),
            async || {
                let c = self.get("/api/connection").await.ok()?;
                (c["current"]["state"] == "Operational").then_some(())
            },
        )
        .await
        .with_context(|| format!("log: {}", self.log_tail()))?;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it lingers; waits for the process to end.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_err()
        {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// `GET` with the user key; the JSON body of a 2xx.
    pub async fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .header("X-Api-Key", USER_KEY)
            .send()
            .await?;
        let s = r.status();
        if !s.is_success() {
            bail!("OctoPrint answered {s} to GET {path}");
        }
        Ok(r.json().await?)
    }

    /// The end of OctoPrint's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(40).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Opens the test's own push-channel client.
    pub async fn watch(&self) -> Result<Watcher> {
        Watcher::open(self).await
    }
}

/// Points an enrolled agent's config (`<farm dir>/<id>.toml`) at OctoPrint.
pub fn use_octoprint(farm_dir: &Path, id: &str, url: &str, key: &str) -> Result<()> {
    crate::use_backend(
        farm_dir,
        id,
        "octoprint",
        &format!("url = {url:?}\napi_key = {key:?}"),
    )
}

/// OctoPrint's events as its push channel delivers them to a client of the test's own.
pub struct Watcher {
    events: Arc<Mutex<Vec<Value>>>,
    notify: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    async fn open(op: &OctoPrint) -> Result<Watcher> {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let login: Value = op
            .http
            .post(format!("{}/api/login", op.url))
            .header("X-Api-Key", USER_KEY)
            .json(&json!({"passive": true}))
            .send()
            .await?
            .json()
            .await?;
        let auth = format!(
            "{}:{}",
            login["name"].as_str().unwrap_or_default(),
            login["session"].as_str().unwrap_or_default()
        );
        let url = format!("ws://127.0.0.1:{}/sockjs/websocket", op.port);
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
        ws.send(Message::text(json!({ "auth": auth }).to_string()))
            .await?;
        let events = Arc::new(Mutex::new(vec![]));
        let notify = Arc::new(Notify::new());
        let (ev, n) = (events.clone(), notify.clone());
        let task = tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                let Message::Text(t) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&t) else {
                    continue;
                };
                if let Some(e) = v.get("event") {
                    if let Ok(mut all) = ev.lock() {
                        all.push(e.clone());
                    }
                    n.notify_waiters();
                }
            }
        });
        Ok(Watcher {
            events,
            notify,
            task,
        })
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// Waits for an event of `kind` whose payload satisfies `pred`; returns its payload.
    pub async fn wait_for(
        &self,
        kind: &str,
        limit: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.notify.notified();
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e["type"] == kind && pred(&e["payload"]))
            {
                return Ok(e["payload"].clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen: Vec<String> = self
                    .events()
                    .iter()
                    .map(|e| e["type"].as_str().unwrap_or("?").to_string())
                    .collect();
                bail!("timed out after {limit:?} waiting for OctoPrint event {kind}; saw {seen:?}");
            }
        }
    }
}

//! A real Chromium (Debian's package), driven over the DevTools protocol: open a page,
//! evaluate JavaScript in it, wait for the DOM to show something, click, take a screenshot.
//!
//! `--dump-dom` cannot test a live page: with `--virtual-time-budget` it waits forever on the
//! open event stream, and with `--timeout` it dumps before the page's scripts have run.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub struct Browser {
    _child: Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Browser {
    /// Starts headless Chromium; fails (never skips) when it is not installed.
    pub async fn launch() -> Result<Browser> {
        let exe = crate::which("chromium").ok_or_else(|| {
            anyhow!("chromium is not installed: apt-get install chromium (scripts/test.sh does)")
        })?;
        let profile = tempfile::tempdir()?;
        let port = crate::free_port();
        let child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1600,1000",
                &format!("--remote-debugging-port={port}"),
                &format!("--user-data-dir={}", profile.path().display()),
                "about:blank",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromium")?;
        let url = format!("http://127.0.0.1:{port}/json/version");
        crate::eventually(
            "chromium's DevTools endpoint",
            Duration::from_secs(30),
            async || {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
            },
        )
        .await?;
        Ok(Browser {
            _child: child,
            _profile: profile,
            port,
        })
    }

    /// Opens `url` in a new tab.
    pub async fn open(&self, url: &str) -> Result<Page> {
        let target: Value = reqwest::Client::new()
            .put(format!("http://127.0.0.1:{}/json/new?{url}", self.port))
            .send()
            .await?
            .json()
            .await?;
        let ws_url = target["webSocketDebuggerUrl"]
            .as_str()
            .ok_or_else(|| anyhow!("no debugger URL in {target}"))?;
        let (ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
        Ok(Page { ws, next: 0 })
    }
}

pub struct Page {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Page {
    async fn call(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .await?;
        while let Some(msg) = self.ws.next().await {
            let Message::Text(t) = msg? else { continue };
            let v: Value = serde_json::from_str(&t)?;
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    bail!("{method}: {e}");
                }
                return Ok(v["result"].clone());
            }
        }
        bail!("the browser closed the DevTools connection")
    }

    /// Evaluates an expression in the page and returns its JSON value.
    pub async fn eval(&mut self, expr: &str) -> Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            bail!("{expr}: {ex}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Waits until `expr` evaluates to something truthy, and returns it.
    pub async fn wait_for(&mut self, what: &str, expr: &str, limit: Duration) -> Result<Value> {
        let t0 = std::time::Instant::now();
        loop {
            let v = self.eval(expr).await?;
            if !(v.is_null() || v == false || v == 0 || v == "") {
                return Ok(v);
            }
            if t0.elapsed() > limit {
                let body = self
                    .eval("document.body.innerText.slice(0, 2000)")
                    .await
                    .unwrap_or_default();
                bail!(
                    "timed out after {limit:?} waiting in the browser for {what}; the page shows:\n{body}"
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Chooses `files` in the `<input type=file>` that `selector` finds, as a person does in
    /// the file picker: the browser reads them from disk when the page uses them.
    pub async fn set_files(&mut self, selector: &str, files: &[&std::path::Path]) -> Result<()> {
        let doc = self.call("DOM.getDocument", json!({"depth": 0})).await?;
        let root = doc["root"]["nodeId"].clone();
        let found = self
            .call(
                "DOM.querySelector",
                json!({"nodeId": root, "selector": selector}),
            )
            .await?;
        let node = found["nodeId"].as_i64().unwrap_or(0);
        if node == 0 {
            bail!("no element {selector} in the page");
        }
        // Chromium cannot read a path with `..` in it (the upload then fails to fetch).
        let paths = files
            .iter()
            .map(|p| Ok(std::fs::canonicalize(p)?.display().to_string()))
            .collect::<Result<Vec<String>>>()?;
        self.call(
            "DOM.setFileInputFiles",
            json!({"nodeId": node, "files": paths}),
        )
        .await?;
        Ok(())
    }

    /// Saves a PNG of the page (for a person to look at).
    pub async fn screenshot(&mut self, path: &std::path::Path) -> Result<()> {
        use base64::Engine;
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = r["data"]
            .as_str()
            .ok_or_else(|| anyhow!("no screenshot data"))?;
        std::fs::write(
            path,
            base64::engine::general_purpose::STANDARD.decode(data)?,
        )?;
        Ok(())
    }
}

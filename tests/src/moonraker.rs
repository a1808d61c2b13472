//! Test peers for the Moonraker back end.
//!
//! - [`RealMoonraker`]: a throwaway **real Moonraker 0.11.0** (the PyPI package in the peers
//!   venv, see `scripts/install-peers.sh`) on a free port with its own data dir. Klippy cannot
//!   run here, so Moonraker reports `klippy_state: disconnected`; its server, file, metadata,
//!   history and authorization paths are all real.
//! - [`Replay`]: a websocket + HTTP server that **plays a captured real Moonraker + Klipper
//!   session** (`tests/data/moonraker/*.jsonl`, see the README there) to the agent. Everything
//!   it sends is a frame the real Moonraker sent; see [`Replay`] for how the transcript is
//!   paced by what the agent does.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod replay;
mod server;
pub use replay::{Key, Position, Replay, Transcript, multipart_file};

/// The captured sessions and their G-code files.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/moonraker")
}

/// A real Moonraker 0.11.0 without Klippy, in a temporary data dir. Killed on drop.
pub struct RealMoonraker {
    pub url: String,
    pub port: u16,
    /// The API key Moonraker generated, read over its Unix socket (which needs no auth).
    pub api_key: String,
    pub dir: tempfile::TempDir,
    child: tokio::process::Child,
}

impl RealMoonraker {
    /// Starts Moonraker. `trust_loopback`: list 127.0.0.1 in `trusted_clients` (as the
    /// captures did); otherwise only 10.254.254.254 is trusted, so this machine is an
    /// untrusted client that needs the API key.
    pub async fn start(trust_loopback: bool) -> Result<RealMoonraker> {
        crate::install_crypto();
        let python = crate::peer_python("moonraker")?;
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("printer_data");
        for d in ["config", "gcodes", "logs", "database", "comms"] {
            std::fs::create_dir_all(data.join(d))?;
        }
        let port = crate::free_port();
        let trusted = if trust_loopback {
            "127.0.0.1"
        } else {
            "10.254.254.254"
        };
        let conf = data.join("config/moonraker.conf");
        std::fs::write(
            &conf,
            format!(
                "[server]\nhost: 127.0.0.1\nport: {port}\nklippy_uds_address: {}\n\n\
                 [authorization]\nforce_logins: False\ncors_domains:\n    http://127.0.0.1\n\
                 trusted_clients:\n    {trusted}\n\n\
                 [machine]\nprovider: none\nvalidate_service: False\n\n\
                 [file_manager]\nenable_object_processing: False\nqueue_gcode_uploads: False\n\n\
                 [announcements]\nenable_moonlight: False\n\n[history]\n\n[octoprint_compat]\n",
                data.join("comms/klippy.sock").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("moonraker.out"))?;
        let child = tokio::process::Command::new(&python)
            .args(["-m", "moonraker", "-d"])
            .arg(&data)
            .arg("-c")
            .arg(&conf)
            .arg("-l")
            .arg(data.join("logs/moonraker.log"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting Moonraker with {}", python.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let mut m = RealMoonraker {
            url,
            port,
            api_key: String::new(),
            dir,
            child,
        };
        // Ready = answering HTTP at all (an untrusted caller gets 401, which is an answer).
        let client = reqwest::Client::new();
        let info = format!("{}/server/info", m.url);
        let waited = crate::eventually(
            "Moonraker answering HTTP",
            Duration::from_secs(60),
            async || client.get(&info).send().await.ok().map(|_| ()),
        )
        .await;
        if let Err(e) = waited {
            bail!("{e}\n{}", m.log());
        }
        // The unix socket can accept a call before every component has registered its methods
        // (seen once in a full run: an error answer instead of the key), so ask until it answers.
        let mut last = Value::Null;
        let key = crate::eventually(
            "Moonraker's API key over its unix socket",
            Duration::from_secs(20),
            async || match m.unix_call("access.get_api_key").await {
                Ok(v) => match v["result"].as_str() {
                    Some(k) => Some(k.to_string()),
                    None => {
                        last = v;
                        None
                    }
                },
                Err(e) => {
                    last = Value::String(format!("{e:#}"));
                    None
                }
            },
        )
        .await;
        m.api_key = match key {
            Ok(k) => k,
            Err(e) => bail!("{e}; last answer: {last}\n{}", m.log()),
        };
        Ok(m)
    }

    /// A JSON-RPC call over Moonraker's Unix socket (`comms/moonraker.sock`, ETX-framed).
    pub async fn unix_call(&self, method: &str) -> Result<Value> {
        let sock = self.dir.path().join("printer_data/comms/moonraker.sock");
        let mut s = crate::eventually(
            "Moonraker's unix socket",
            Duration::from_secs(20),
            async || tokio::net::UnixStream::connect(&sock).await.ok(),
        )
        .await?;
        let mut req = json!({"jsonrpc": "2.0", "method": method, "id": 1})
            .to_string()
            .into_bytes();
        req.push(0x03);
        s.write_all(&req).await?;
        let mut buf = vec![];
        let mut chunk = [0u8; 4096];
        while !buf.contains(&0x03) {
            let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk)).await??;
            if n == 0 {
                bail!("Moonraker closed its unix socket");
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let end = buf.iter().position(|b| *b == 0x03).unwrap_or(buf.len());
        Ok(serde_json::from_slice(&buf[..end])?)
    }

    /// Moonraker's own log, for a failing test's output.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for p in [
            self.dir.path().join("moonraker.out"),
            self.dir.path().join("printer_data/logs/moonraker.log"),
        ] {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            out += &format!("\n===== {}\n", p.display());
            for l in tail.into_iter().rev() {
                out += l;
                out.push('\n');
            }
        }
        out
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

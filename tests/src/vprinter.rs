//! Test peer: OctoPrint's Virtual Printer (a Marlin emulation) on a pseudo-terminal, through
//! `tests/peers/vprinter.py` run by the OctoPrint venv's python ([`crate::peer_python`]).
//!
//! Each [`VPrinter`] has its own pty behind a symlink (`link`), which is what the agent's
//! `[printer.serial] port` names. The bridge logs every command the printer accepted to
//! `accepted` ([`VPrinter::accepted`]), so a test can prove that a file arrived whole: no line
//! lost, none doubled, in order. Its faults: `--corrupt-every K` (line noise on the way in:
//! a real checksum error and resend inside the printer), `!!DEBUG:` lines in the G-code (the
//! printer's own fault injection), [`VPrinter::unplug`] (the pty is closed and replaced).

use anyhow::{Context, Result, anyhow, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Commands the agent itself sends around a job (handshake, temperatures, the final wait).
pub const HOST_COMMANDS: &[&str] = &["M115", "M155 S2", "M400", "M105"];

/// Points an enrolled agent's config (`<farm dir>/<id>.toml`) at the serial printer on `port`.
pub fn use_serial(farm_dir: &Path, id: &str, port: &Path) -> Result<()> {
    crate::use_backend(
        farm_dir,
        id,
        "serial",
        &format!("port = {:?}", port.display().to_string()),
    )
}

pub struct VPrinter {
    /// The pty link to give the agent.
    pub link: PathBuf,
    /// One `N<TAB>command` per accepted command.
    pub accepted_log: PathBuf,
    /// The bridge's stderr (corruptions, Python errors).
    pub log: PathBuf,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
}

impl VPrinter {
    /// Starts a clean printer (no built-in simulated errors, no idle `wait` lines) with extra
    /// bridge arguments, e.g. `["--corrupt-every", "50", "--set", "sendBusy=true"]`.
    pub async fn start(dir: &Path, name: &str, extra: &[&str]) -> Result<VPrinter> {
        let python = crate::peer_python("octoprint")?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/vprinter.py");
        let link = dir.join(format!("{name}.tty"));
        let accepted_log = dir.join(format!("{name}.accepted"));
        let log = dir.join(format!("vprinter-{name}.log"));
        let data = dir.join(format!("{name}.data"));
        std::fs::create_dir_all(&data)?;
        let mut args: Vec<String> = vec![
            script.display().to_string(),
            "--link".into(),
            link.display().to_string(),
            "--accepted-log".into(),
            accepted_log.display().to_string(),
            "--data-dir".into(),
            data.display().to_string(),
            "--set".into(),
            "simulated_errors=[]".into(),
            "--set".into(),
            "sendWait=false".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let err = std::fs::File::create(&log)?;
        let mut child = Command::new(&python)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", script.display()))?;
        let out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout from the bridge"))?;
        let stdout = Arc::new(Mutex::new(vec![]));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let lines = stdout.clone();
        tokio::spawn(async move {
            let mut r = BufReader::new(out).lines();
            let mut tx = Some(tx);
            while let Ok(Some(l)) = r.next_line().await {
                if l == "READY"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
                if let Ok(mut v) = lines.lock() {
                    v.push(l);
                }
            }
        });
        // Importing OctoPrint takes a few seconds on a loaded machine.
        if tokio::time::timeout(Duration::from_secs(60), rx)
            .await
            .is_err()
        {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("the Virtual Printer bridge did not get ready in 60 s:\n{text}");
        }
        Ok(VPrinter {
            link,
            accepted_log,
            log,
            child,
            stdout,
        })
    }

    /// The accepted commands so far, split into power-on sessions (the printer's line counter
    /// starts over at each open of the port).
    pub fn sessions(&self) -> Result<Vec<Vec<(i64, String)>>> {
        let text = std::fs::read_to_string(&self.accepted_log).unwrap_or_default();
        let mut out: Vec<Vec<(i64, String)>> = vec![];
        for l in text.lines() {
            let (n, cmd) = l
                .split_once('\t')
                .ok_or_else(|| anyhow!("bad accepted-log line {l:?}"))?;
            let n: i64 = n.parse()?;
            if n <= 1 || out.is_empty() {
                out.push(vec![]);
            }
            if let Some(s) = out.last_mut() {
                s.push((n, cmd.to_string()));
            }
        }
        Ok(out)
    }

    /// How many lines the bridge corrupted on their way in.
    pub fn corrupted(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("corrupted"))
            .count()
    }

    /// Unplug and replug: the pty closes under the agent (it reads EIO) and a new one appears
    /// behind the same link, with a fresh printer.
    pub async fn unplug(&self) -> Result<()> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| anyhow!("the bridge has exited"))?;
        let before = self.stdout.lock().map(|v| v.len()).unwrap_or(0);
        let st = Command::new("kill")
            .args(["-USR1", &pid.to_string()])
            .status()
            .await?;
        if !st.success() {
            bail!("kill -USR1 {pid} failed");
        }
        crate::eventually(
            "the bridge to replug",
            Duration::from_secs(20),
            async || {
                let v = self.stdout.lock().ok()?;
                v[before.min(v.len())..]
                    .iter()
                    .any(|l| l.starts_with("REPLUGGED"))
                    .then_some(())
            },
        )
        .await
    }
}

/// The commands of a G-code text as a host sends them: comments and blanks dropped, the
/// Virtual Printer's own `!!DEBUG:` commands too (they are never "accepted" as commands).
pub fn file_commands(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty() && !c.starts_with("!!DEBUG"))
        .map(str::to_string)
        .collect()
}

/// The job's commands in an accepted-log session: without the agent's own host commands.
pub fn job_part(session: &[(i64, String)]) -> Vec<String> {
    session
        .iter()
        .map(|(_, c)| c.clone())
        .filter(|c| !HOST_COMMANDS.contains(&c.as_str()))
        .collect()
}

/// Checks that the printer accepted `want` exactly, in order, with consecutive line numbers.
pub fn assert_whole(session: &[(i64, String)], want: &[String]) -> Result<()> {
    let got = job_part(session);
    if got != want {
        let first = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        bail!(
            "the printer accepted {} job commands, the file has {}; first difference at command \
             {first}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            got.get(first),
            want.get(first)
        );
    }
    for w in session.windows(2) {
        if w[1].0 != w[0].0 + 1 {
            bail!(
                "line numbers jump from {} to {} ({:?})",
                w[0].0,
                w[1].0,
                w[1].1
            );
        }
    }
    Ok(())
}

/// Short-segment G-code: `moves` extruding moves of ~0.3 mm at F6000 around a circle, as a
/// slicer writes a curved wall; `motion_free` adds `M220 S10000`/`M221 S10000` so the Virtual
/// Printer does not sleep for the moves (see benches/serial/make-gcode.py, its twin).
pub fn short_segments(moves: usize, motion_free: bool, extra_head: &[&str]) -> String {
    let mut out = vec![
        "; serial test: short segments".to_string(),
        "G90".into(),
        "M83".into(),
        "G92 E0".into(),
    ];
    if motion_free {
        out.push("M220 S10000".into());
        out.push("M221 S10000".into());
    }
    out.extend(extra_head.iter().map(|s| s.to_string()));
    out.push("G28".into());
    out.push("G1 Z0.2 F3000".into());
    let mut z = 0.2;
    for i in 0..moves {
        if i > 0 && i % 400 == 0 {
            z += 0.2;
            out.push(";LAYER_CHANGE".into());
            out.push(format!("G1 Z{z:.2} F3000"));
        }
        let a = (i % 400) as f64 * std::f64::consts::TAU / 400.0;
        out.push(format!(
            "G1 X{:.3} Y{:.3} E0.01047 F6000",
            100.0 + 20.0 * a.cos(),
            100.0 + 20.0 * a.sin()
        ));
    }
    out.push("G1 E-1 F2400".into());
    out.push("M84".into());
    out.push("; end".into());
    out.join("\n") + "\n"
}

/// Runs `farm-agent stream` (the serial back end without a controller) and returns its JSON
/// summary.
pub async fn stream(port: &Path, file: &Path, extra: &[&str]) -> Result<serde_json::Value> {
    let mut args = vec![
        "stream".to_string(),
        "--port".into(),
        port.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(file.display().to_string());
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(crate::bin("farm-agent")?)
            .args(&args)
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| anyhow!("farm-agent stream did not finish in 120 s"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).with_context(|| {
        format!(
            "farm-agent stream printed no summary (exit {}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

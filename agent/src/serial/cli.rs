//! `farm-agent stream --port P FILE` (hidden): streams one file through the serial back end
//! exactly as a job would go (the same [`Serial`] task, the same `Start` command), without a
//! controller. For the benchmark and for tests that need no farm. Prints one JSON object:
//! outcome, reason, commands, seconds, lines per second, filament per tool, stream counters.

use super::backend::{Serial, SerialConfig};
use super::framing::clean_line;
use crate::printer::{Printer, PrinterCommand};
use farm_protocol::messages::{Activity, Event, Outcome};
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the printer may take to connect.
const CONNECT_WAIT: Duration = Duration::from_secs(60);

/// The result printed by the command.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub outcome: String,
    pub reason: Option<String>,
    /// Commands in the file (lines that are sent).
    pub commands: u64,
    pub seconds: f64,
    pub lines_per_s: f64,
    pub extruded_mm: Vec<f64>,
    pub firmware_messages: Vec<String>,
}

/// Streams `file` to the printer on `cfg.port` and waits for the job's end.
pub async fn stream(cfg: SerialConfig, file: &Path) -> anyhow::Result<Summary> {
    let commands = count_commands(file)?;
    let mut printer = Printer::spawn(Serial::new(cfg.clone()));
    let mut snap = printer.snapshot.clone();
    let connected =
        tokio::time::timeout(CONNECT_WAIT, snap.wait_for(|s| s.state == Activity::Idle))
            .await
            .map(|r| r.is_ok());
    if connected != Ok(true) {
        let why = snap.borrow().message.clone().unwrap_or_default();
        printer.stop().await;
        anyhow::bail!(
            "the printer on {} did not connect within {} s: {why}",
            cfg.port.display(),
            CONNECT_WAIT.as_secs()
        );
    }
    let t0 = Instant::now();
    let name = file.display().to_string();
    printer
        .send(PrinterCommand::Start {
            job_id: "stream".into(),
            name,
            path: file.to_path_buf(),
            filament: Default::default(),
            plate: None,
        })
        .await
        .map_err(|e| anyhow::anyhow!("the printer refused the file: {e}"))?;
    let mut messages = vec![];
    let summary = loop {
        let Some(ev) = printer.events.recv().await else {
            anyhow::bail!("the serial back end stopped");
        };
        match ev {
            Event::JobFinished {
                outcome,
                reason,
                extruded_mm,
                ..
            } => {
                let seconds = t0.elapsed().as_secs_f64();
                break Summary {
                    outcome: match outcome {
                        Outcome::Completed => "completed",
                        Outcome::Failed => "failed",
                        Outcome::Cancelled => "cancelled",
                    }
                    .into(),
                    reason,
                    commands,
                    seconds,
                    lines_per_s: commands as f64 / seconds.max(1e-9),
                    extruded_mm,
                    firmware_messages: messages,
                };
            }
            Event::FirmwareMessage { message } | Event::PrinterError { message } => {
                messages.push(message);
            }
            _ => {}
        }
    };
    printer.stop().await;
    Ok(summary)
}

/// Lines of the file that will be sent (the rest are comments and blanks).
fn count_commands(file: &Path) -> anyhow::Result<u64> {
    let f = std::fs::File::open(file)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
    let mut n = 0;
    for line in std::io::BufReader::new(f).split(b'\n') {
        let line = line?;
        if !clean_line(&String::from_utf8_lossy(&line)).is_empty() {
            n += 1;
        }
    }
    Ok(n)
}

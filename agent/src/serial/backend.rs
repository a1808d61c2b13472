//! The serial back end (`backend = "serial"`): keeps a connection to the printer's port and
//! runs one session (`session.rs`) per connection.
//!
//! The connection loop: open and handshake (`handshake.rs`); on success run the session
//! until the port goes away, the printer stops answering, or `M999` asks for a fresh start; then reconnect every [`RETRY`]. A job never survives a lost connection: the session
//! reports it failed (the printer may have reset and lost its heat, position and queue), and
//! a reconnected printer is `idle`, never printing blindly on.

use super::handshake;
use super::session::{End, Session};
use crate::config::ConfigError;
use crate::printer::{Backend, Port, PrinterCommand, Snapshot};
use farm_protocol::Backoff;
use farm_protocol::messages::{Activity, Event};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Between connection attempts: a fixed 2 s, no growth and no jitter. The port is a local
/// device (opening it costs nothing and disturbs nobody), and a printer switched on or
/// plugged back in should be found within seconds however long it was away.
pub const RETRY: Backoff = Backoff::fixed(Duration::from_secs(2));

/// `[printer.serial]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConfig {
    /// The serial device, e.g. `/dev/ttyACM0` or a `/dev/serial/by-id/…` link.
    pub port: PathBuf,
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// A firmware profile name (`marlin2`, `prusa`, `reprapfirmware3`, `klipper`) or a path
    /// to a profile TOML; detected from `M115` when absent.
    #[serde(default)]
    pub profile: Option<String>,
    /// Lines sent ahead of the firmware's acknowledgements, at most the profile's
    /// `buffers.max_in_flight` (default: that maximum; 1 = strict ping-pong).
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// Seconds of silence before the printer is poked (default: the profile's
    /// `timeouts.communication_s`). Blocking commands (`M109`, `G28` …) get the profile's
    /// longer allowance, and keep-alive lines always count as life.
    #[serde(default)]
    pub timeout_s: Option<f64>,
}

fn default_baud() -> u32 {
    115_200
}

impl SerialConfig {
    /// A config for `port` with every default.
    #[must_use]
    pub fn new(port: PathBuf) -> SerialConfig {
        SerialConfig {
            port,
            baud: default_baud(),
            profile: None,
            max_in_flight: None,
            timeout_s: None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, problem: String| Err(ConfigError::Invalid { key, problem });
        if self.port.as_os_str().is_empty() {
            return bad(
                "printer.serial.port",
                "is empty: name the device, e.g. /dev/ttyACM0".into(),
            );
        }
        if self.baud == 0 {
            return bad(
                "printer.serial.baud",
                "must be > 0 (usually 115200 or 250000)".into(),
            );
        }
        if self.max_in_flight == Some(0) {
            return bad(
                "printer.serial.max_in_flight",
                "must be at least 1 (1 = ping-pong)".into(),
            );
        }
        if let Some(t) = self.timeout_s
            && !(t.is_finite() && t > 0.0)
        {
            return bad(
                "printer.serial.timeout_s",
                format!("must be > 0 seconds, not {t}"),
            );
        }
        if let Some(p) = &self.profile
            && let Err(e) = handshake::configured_profile(p)
        {
            return bad("printer.serial.profile", e);
        }
        Ok(())
    }

    /// One line for `check-config`.
    pub(crate) fn summary(&self) -> String {
        format!(
            "port {} baud {} profile {} in flight {}",
            self.port.display(),
            self.baud,
            self.profile.as_deref().unwrap_or("(detect from M115)"),
            self.max_in_flight
                .map_or("(profile maximum)".to_string(), |n| n.to_string()),
        )
    }
}

/// The serial back end.
pub struct Serial {
    config: SerialConfig,
}

impl Serial {
    pub fn new(config: SerialConfig) -> Self {
        Self { config }
    }
}

impl Backend for Serial {
    fn name(&self) -> &'static str {
        "serial"
    }

    async fn run(self, port: Port) {
        let Port {
            mut commands,
            snapshot,
            events,
        } = port;
        let mut cfg = self.config;
        let mut lost: Option<String> = None;
        loop {
            let why = match lost.as_deref() {
                Some(w) => format!("reconnecting to {} ({w})", cfg.port.display()),
                None => format!("connecting to {}", cfg.port.display()),
            };
            disconnected(&snapshot, why);
            let attempt_cfg = cfg.clone();
            let connecting = handshake::connect(&attempt_cfg);
            tokio::pin!(connecting);
            let attempt = loop {
                tokio::select! {
                    r = &mut connecting => break r,
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some((c, reply)) => {
                            if let PrinterCommand::Reconfigure(p) = &c
                                && let Some(s) = &p.serial
                            {
                                cfg = s.clone();
                            }
                            let _ = reply.send(Err(
                                "the printer is still connecting; try again in a few seconds".into(),
                            ));
                        }
                    },
                }
            };
            let end = match attempt {
                Ok(link) => {
                    tracing::info!(port = %cfg.port.display(), firmware = %link.info.name, note = %link.profile_note, "printer connected");
                    let _ = events.send(Event::PrinterReady {});
                    Session::new(link, &cfg, snapshot.clone(), events.clone())
                        .run(&mut commands)
                        .await
                }
                Err(e) => End::Closed(e),
            };
            match end {
                End::Stop => return,
                End::Reconnect(new_cfg) => {
                    if let Some(c) = new_cfg {
                        cfg = c;
                    }
                    lost = None;
                    continue;
                }
                End::Closed(reason) => {
                    if lost.as_deref() != Some(&reason) {
                        tracing::warn!(port = %cfg.port.display(), %reason, "printer link down");
                        let _ = events.send(Event::PrinterError {
                            message: format!("serial link: {reason}"),
                        });
                    }
                    disconnected(&snapshot, reason.clone());
                    lost = Some(reason);
                }
            }
            // Wait before the next attempt, answering commands meanwhile.
            let wait = RETRY.delay_after(1, 0.0);
            let retry_at = tokio::time::Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep_until(retry_at) => break,
                    cmd = commands.recv() => match cmd {
                        None => return,
                        Some((c, reply)) => {
                            if let PrinterCommand::Reconfigure(p) = &c
                                && let Some(s) = &p.serial
                            {
                                cfg = s.clone();
                                let _ = reply.send(Ok("serial settings apply at the next connection attempt".into()));
                                continue;
                            }
                            let _ = reply.send(Err(format!(
                                "the printer is not connected ({}); the agent retries every {} s",
                                lost.as_deref().unwrap_or("unknown"),
                                wait.as_secs()
                            )));
                        }
                    },
                }
            }
        }
    }
}

fn disconnected(snapshot: &tokio::sync::watch::Sender<Snapshot>, why: String) {
    snapshot.send_replace(Snapshot {
        state: Activity::Disconnected,
        temps: vec![],
        job: None,
        message: Some(why),
        trays: vec![],
    });
}

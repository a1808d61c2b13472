//! The Moonraker back end (`backend = "moonraker"`): drives a Klipper printer through
//! Moonraker's websocket JSON-RPC API (target: Moonraker 0.11, API 1.5).
//!
//! | file | what |
//! |---|---|
//! | `rpc.rs` | JSON-RPC over the websocket: calls by id, notifications in order |
//! | `http.rs` | HTTP: streamed multipart upload, server info, file metadata, job history; `X-Api-Key` |
//! | `state.rs` | pure: merged printer objects, Klippy's state, the farm-state rule, subscription |
//! | `job.rs` | pure: following our job through the diffs (start, pause, resume, end) |
//! | `backend.rs` | the task: session, reconnects, commands, snapshot and events |
//! | `billing.rs` | file position → millimetres through the job file's extrusion index |
//! | `commands.rs` | raw G-code that bypasses Klipper's queue; calls answered beside the loop |
//!
//! Material is billed from `virtual_sdcard.file_position` through the job file's
//! [`ExtrusionIndex`](farm_protocol::gcode::ExtrusionIndex), never from
//! `print_stats.filament_used`, which loses the extrusion parsed after Klippy's last 250 ms
//! poll before end of file (−4 % in fixture b2, −100 % for a file shorter than the look-ahead).
//!
//! Facts from the real Moonraker + Klipper that shape this code (captured sessions in
//! `tests/data/moonraker/`): JSON-RPC errors are remapped HTTP codes (`-32601` = 404, i.e.
//! Klippy not connected for `printer.*`; `-32602` = 401, credentials refused); a websocket from
//! an untrusted address is accepted and only its calls fail; subscriptions do not survive a
//! Klippy restart; a heater fault leaves `print_stats.state` `paused` while `webhooks.state`
//! says `shutdown`; `printer.print.pause` answers only once the file reader stopped.

mod backend;
mod billing;
mod commands;
pub mod http;
pub mod job;
pub mod rpc;
pub mod state;

use crate::config::ConfigError;
use crate::printer::{Backend, Port};
use serde::Deserialize;

/// `[printer.moonraker]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoonrakerConfig {
    /// Moonraker's base URL, e.g. `http://127.0.0.1:7125`.
    pub url: String,
    /// The API key (`X-Api-Key`); empty for a trusted client.
    #[serde(default)]
    pub api_key: String,
}

impl MoonrakerConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.url.starts_with("https://") {
            // The websocket client is built without TLS (Moonraker serves plain HTTP on the
            // printer's LAN); failing here beats a connect error on every retry.
            return Err(ConfigError::Invalid {
                key: "printer.moonraker.url",
                problem: format!(
                    "{:?}: https is not supported for Moonraker yet; use its plain http address on the printer's network, e.g. \"http://192.168.1.50:7125\"",
                    self.url
                ),
            });
        }
        match self.url.strip_prefix("http://") {
            Some(host) if !host.trim_end_matches('/').is_empty() => Ok(()),
            _ => Err(ConfigError::Invalid {
                key: "printer.moonraker.url",
                problem: format!(
                    "{:?} is not an http URL; use Moonraker's address, e.g. \"http://127.0.0.1:7125\"",
                    self.url
                ),
            }),
        }
    }

    /// One line for `check-config`; never contains the key.
    pub(crate) fn summary(&self) -> String {
        format!(
            "url {} api_key set ({} bytes)",
            self.url,
            self.api_key.len()
        )
    }
}

/// The Moonraker back end.
pub struct Moonraker {
    config: MoonrakerConfig,
}

impl Moonraker {
    pub fn new(config: MoonrakerConfig) -> Self {
        Self { config }
    }
}

impl Backend for Moonraker {
    fn name(&self) -> &'static str {
        "moonraker"
    }

    async fn run(self, port: Port) {
        backend::run(self.config, port).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_must_be_moonrakers_http_address() {
        let c = |url: &str| MoonrakerConfig {
            url: url.into(),
            api_key: "k".into(),
        };
        assert!(c("http://127.0.0.1:7125").validate().is_ok());
        assert!(c("http://printer.local/").validate().is_ok());
        for bad in [
            "https://printer.local",
            "ws://x:7125",
            "127.0.0.1:7125",
            "http://",
        ] {
            let e = c(bad).validate().map_err(|e| e.to_string());
            assert!(
                e.as_ref()
                    .is_err_and(|e| e.contains("printer.moonraker.url")),
                "{bad}: {e:?}"
            );
        }
        let secret = MoonrakerConfig {
            url: "http://x".into(),
            api_key: "0123456789abcdef".into(),
        };
        assert!(
            !secret.summary().contains("0123456789abcdef"),
            "the key never shows"
        );
    }
}

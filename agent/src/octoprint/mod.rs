//! The OctoPrint back end (`backend = "octoprint"`): drives a printer through OctoPrint's REST
//! API and its push channel at `/sockjs/websocket`; tested against OctoPrint 1.11.8.
//!
//! | file | what |
//! |---|---|
//! | [`wire`] | OctoPrint's JSON (push frames, REST answers) → [`wire::Observation`] / [`wire::OpEvent`] (pure) |
//! | [`state`] | the functional core: observations and events → farm activity, snapshot, job lifecycle events, and where a job's filament is counted to (pure) |
//! | [`job_file`] | the job file on the agent: sha256 + extrusion index in one pass; filament at a file position |
//! | [`client`] | the REST calls: version, passive login, upload-and-print, job/printer commands, status polls |
//! | [`push`] | the push channel: login, websocket, subscribe, auth, throttle |
//! | `task` | the shell: one task with the timers, reconnects with backoff, polling fallback, commands |
//!
//! How a job goes: the file is indexed and uploaded as `<job id>-<sha256[..12]>.gcode` with
//! `select` + `print`; `job_started` follows OctoPrint's 201. Status comes from `current`
//! frames (throttled to `poll_interval_ms`); `progress.filepos` becomes exact cumulative
//! filament through the index. The job ends on OctoPrint's `PrintDone` (the whole file's
//! filament), `PrintCancelled` (the partial at its `fileposition`) or `PrintFailed` (the
//! partial at the last position). Pause, resume and cancel are `POST /api/job`; emergency
//! stop is `M112`, after which OctoPrint closes the port and raw `M999` reconnects it.

pub mod client;
pub mod job_file;
pub mod push;
pub mod state;
pub(crate) mod task;
pub mod wire;

use crate::config::ConfigError;
use crate::printer::{Backend, Port};
use serde::Deserialize;

fn default_poll_interval_ms() -> u32 {
    1000
}

/// `[printer.octoprint]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OctoPrintConfig {
    /// OctoPrint's base URL, e.g. `http://127.0.0.1:5000`. With `https://` status is polled
    /// over REST (the push channel is used over plain `ws://` only).
    pub url: String,
    /// An application key or user API key (sent as `X-Api-Key`).
    pub api_key: String,
    /// How often status is read, ms (default 1000): the push channel is throttled to this
    /// (in OctoPrint's 500 ms steps), and REST is polled at this rate while the push channel
    /// is down.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u32,
}

impl OctoPrintConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        };
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= 8 {
            return invalid(
                "printer.octoprint.url",
                "must be OctoPrint's base URL, e.g. \"http://127.0.0.1:5000\"",
            );
        }
        if self.api_key.trim().is_empty() {
            return invalid(
                "printer.octoprint.api_key",
                "is empty: create an application key in OctoPrint (Settings → Application Keys)",
            );
        }
        if !(100..=60_000).contains(&self.poll_interval_ms) {
            return invalid(
                "printer.octoprint.poll_interval_ms",
                "must be between 100 and 60000",
            );
        }
        Ok(())
    }

    /// One line for `check-config`; never contains the key.
    pub(crate) fn summary(&self) -> String {
        format!(
            "url {} api_key set ({} bytes) poll_interval_ms {}",
            self.url,
            self.api_key.len(),
            self.poll_interval_ms
        )
    }
}

/// The OctoPrint back end.
pub struct OctoPrint {
    config: OctoPrintConfig,
}

impl OctoPrint {
    pub fn new(config: OctoPrintConfig) -> Self {
        Self { config }
    }
}

impl Backend for OctoPrint {
    fn name(&self) -> &'static str {
        "octoprint"
    }

    async fn run(self, port: Port) {
        task::Shell::run(self.config, port).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Result<OctoPrintConfig, String> {
        let c: OctoPrintConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn config_defaults_and_refusals_say_what_to_fix() {
        let c = config("url = \"http://127.0.0.1:5000\"\napi_key = \"k\"").expect("valid");
        assert_eq!(c.poll_interval_ms, 1000);
        assert!(!c.summary().contains("\"k\""));
        let e = config("url = \"127.0.0.1:5000\"\napi_key = \"k\"").expect_err("no scheme");
        assert!(e.contains("printer.octoprint.url"), "{e}");
        let e = config("url = \"http://h:5000\"\napi_key = \" \"").expect_err("empty key");
        assert!(e.contains("Application Keys"), "{e}");
        let e = config("url = \"http://h:5000\"\napi_key = \"k\"\npoll_interval_ms = 5")
            .expect_err("too fast");
        assert!(e.contains("poll_interval_ms"), "{e}");
    }
}

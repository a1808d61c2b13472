//! The Moonraker back end (`backend = "moonraker"`): drives a Klipper printer through
//! Moonraker's websocket JSON-RPC API.
//!
//! (Skeleton: the implementation lands with issue 3.)

use crate::config::ConfigError;
use crate::printer::{Backend, Port, Snapshot};
use farm_protocol::messages::Activity;
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
        Ok(())
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

    async fn run(self, mut port: Port) {
        let _ = &self.config;
        port.snapshot.send_replace(Snapshot {
            state: Activity::Error,
            message: Some("the moonraker back end is not implemented yet".into()),
            ..Snapshot::default()
        });
        while let Some((_, reply)) = port.commands.recv().await {
            let _ = reply.send(Err("the moonraker back end is not implemented yet".into()));
        }
    }
}

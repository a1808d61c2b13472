//! The OctoPrint back end (`backend = "octoprint"`): drives a printer through OctoPrint's REST
//! API and its push channel at `/sockjs/websocket`.
//!
//! (Skeleton: the implementation lands with issue 3.)

use crate::config::ConfigError;
use crate::printer::{Backend, Port, Snapshot};
use farm_protocol::messages::Activity;
use serde::Deserialize;

/// `[printer.octoprint]`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OctoPrintConfig {
    /// OctoPrint's base URL, e.g. `http://127.0.0.1:5000`.
    pub url: String,
    /// An application key or user API key (sent as `X-Api-Key`).
    pub api_key: String,
}

impl OctoPrintConfig {
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

    async fn run(self, mut port: Port) {
        let _ = &self.config;
        port.snapshot.send_replace(Snapshot {
            state: Activity::Error,
            message: Some("the octoprint back end is not implemented yet".into()),
            ..Snapshot::default()
        });
        while let Some((_, reply)) = port.commands.recv().await {
            let _ = reply.send(Err("the octoprint back end is not implemented yet".into()));
        }
    }
}

//! The serial back end (`backend = "serial"`): owns the port and streams G-code with the
//! pure pieces of this module.
//!
//! (Skeleton: the implementation lands with issue 3.)

use crate::config::ConfigError;
use crate::printer::{Backend, Port, Snapshot};
use farm_protocol::messages::Activity;
use serde::Deserialize;
use std::path::PathBuf;

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
}

fn default_baud() -> u32 {
    115_200
}

impl SerialConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    /// One line for `check-config`.
    pub(crate) fn summary(&self) -> String {
        format!(
            "port {} baud {} profile {}",
            self.port.display(),
            self.baud,
            self.profile.as_deref().unwrap_or("(detect from M115)")
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

    async fn run(self, mut port: Port) {
        let _ = &self.config;
        port.snapshot.send_replace(Snapshot {
            state: Activity::Error,
            message: Some("the serial back end is not implemented yet".into()),
            ..Snapshot::default()
        });
        while let Some((_, reply)) = port.commands.recv().await {
            let _ = reply.send(Err("the serial back end is not implemented yet".into()));
        }
    }
}

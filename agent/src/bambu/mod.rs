//! The Bambu Lab back end in LAN mode (`backend = "bambu"`): the printer's own MQTT broker
//! over TLS (port 8883, user `bblp`, password = the LAN access code) for reports and commands,
//! FTPS (implicit TLS, port 990) for job files.
//!
//! | file | what |
//! |---|---|
//! | `report.rs` | pure: incoming messages, reports merged into one state (P1/A1 send deltas), temperatures, progress, layer, HMS, AMS trays, Developer Mode detection |
//! | `hms.rs` | pure: HMS entries and `print_error` codes as texts, the Developer Mode hint |
//! | `ams.rs` | pure: the AMS mapping of a plate, from the slicer's per-filament metadata or the job, onto the trays the printer reports |
//! | `commands.rs` | pure: request payloads (`pushall`, `project_file`, `gcode_file`, pause/resume/stop, `gcode_line`) with sequence ids |
//! | `job.rs` | pure: following our job through the reports (fresh news only), billing by layer |
//! | `plan.rs` | the job file's plan (filament at each layer start, planned time), read once with the printer model's limits (`model`) |
//! | `tls.rs` | the certificate check: Bambu's CA chain + CN == serial, or a pin on first use |
//! | `ftps.rs` | job-file upload over implicit-TLS FTPS |
//! | `backend.rs` | the task: MQTT session, reconnects with backoff, commands, snapshot and events |
//!
//! Protocol facts come from OpenBambuAPI (`Doridian/OpenBambuAPI` @ cc383a2) and ha-bambulab's
//! pybambu (`greghesp/ha-bambulab` @ 809391e), and from real reports captured by ha-bambulab
//! (`tests/data/bambu/`: P1P, H2D, A1 firmware 01.05.00.00, P1P 01.08.02.00, an X1C with
//! several AMS on 01.09.00.01). No real Bambu printer ran in this project's tests.
//!
//! Since 2025, firmware with Bambu's Authorization Control accepts control commands over LAN
//! only in "LAN Only Mode" with "Developer Mode" on; status reads work regardless. The back end
//! reads the `fun` bit and refused replies and tells the operator exactly that
//! ([`hms::DEVELOPER_MODE_HINT`]).

pub mod ams;
mod backend;
pub mod commands;
pub mod ftps;
pub mod hms;
pub mod job;
pub mod plan;
pub mod report;
pub mod tls;

#[cfg(test)]
mod report_tests;

use crate::config::ConfigError;
use crate::printer::{Backend, Port};
use serde::Deserialize;
use std::path::PathBuf;

pub use commands::Storage;
pub use tls::TlsMode;

/// `[printer.bambu]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BambuConfig {
    /// The printer's address on the LAN (IP or host name).
    pub host: String,
    /// The serial number (Settings → Device on the printer's screen): the MQTT topics and the
    /// certificate's name.
    pub serial: String,
    /// The LAN access code shown on the printer's screen.
    pub access_code: String,
    /// `bambu-ca` (default), `pin` or `insecure`; see [`tls`].
    #[serde(default)]
    pub tls: TlsMode,
    /// Extra CA certificates (PEM) to trust besides Bambu's bundle: a model whose device CA we
    /// do not ship yet, or a test rig's own CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// With `tls = "pin"`: the file that holds the pinned certificate's SHA-256 (hex).
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// How print requests name the uploaded file: `sdcard` (X1, P1, A1) or `ftp` (H2 and later).
    #[serde(default = "default_storage")]
    pub storage: Storage,
    #[serde(default = "default_mqtt_port")]
    pub mqtt_port: u16,
    #[serde(default = "default_ftps_port")]
    pub ftps_port: u16,
    /// `.gcode.3mf` jobs: the plate to print (1-based).
    #[serde(default = "default_plate")]
    pub plate: u32,
    /// `.gcode.3mf` jobs whose file and job say nothing about their filament: the absolute
    /// AMS tray id per filament of the plate (`ams * 4 + slot`, 254 = external spool). Empty:
    /// the tray feeding now. Otherwise the mapping is chosen per job (`ams.rs`).
    #[serde(default)]
    pub ams_mapping: Vec<u32>,
    /// The printer's model: a profile of `firmware-profiles/printers/` (`bambu-x1`,
    /// `bambu-p1`, `bambu-a1`, `bambu-a1-mini`, `bambu-h2d`) or a model it lists (`C12`,
    /// `Bambu Lab P1S`). The job file's analysis (filament by layer, the planned time that
    /// stands in for the printer's own) starts from its limits and allowances; the file's
    /// own settings still win. Absent: the analyzer's defaults.
    #[serde(default)]
    pub model: Option<String>,
}

fn default_storage() -> Storage {
    Storage::Sdcard
}
fn default_mqtt_port() -> u16 {
    8883
}
fn default_ftps_port() -> u16 {
    990
}
fn default_plate() -> u32 {
    1
}

impl std::fmt::Debug for BambuConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl BambuConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, problem: String| Err(ConfigError::Invalid { key, problem });
        if self.host.trim().is_empty() {
            return bad(
                "printer.bambu.host",
                "empty; use the printer's IP address, e.g. \"192.168.1.60\"".into(),
            );
        }
        if self.serial.is_empty() || !self.serial.chars().all(|c| c.is_ascii_alphanumeric()) {
            return bad(
                "printer.bambu.serial",
                format!(
                    "{:?} is not a serial number; copy it from Settings → Device on the printer's screen",
                    self.serial
                ),
            );
        }
        if self.access_code.is_empty() {
            return bad(
                "printer.bambu.access_code",
                "empty; use the LAN access code shown on the printer's screen".into(),
            );
        }
        if self.tls == TlsMode::Pin && self.pin_file.is_none() {
            return bad("printer.bambu.pin_file", "tls = \"pin\" needs a file to keep the pinned certificate in, e.g. \"/var/lib/farm-agent/bambu.pin\"".into());
        }
        if self.plate == 0 {
            return bad("printer.bambu.plate", "plates count from 1".into());
        }
        if let Err(e) = crate::model_profile::base_limits(self.model.as_deref()) {
            return bad("printer.bambu.model", e);
        }
        Ok(())
    }

    /// One line for `check-config`; never contains the access code.
    pub(crate) fn summary(&self) -> String {
        format!(
            "host {} serial {} model {} tls {:?} ca_file {:?} storage {:?} mqtt_port {} ftps_port {} plate {} ams_mapping {:?} access_code set ({} chars)",
            self.host,
            self.serial,
            self.model.as_deref().unwrap_or("(analyzer defaults)"),
            self.tls,
            self.ca_file,
            self.storage,
            self.mqtt_port,
            self.ftps_port,
            self.plate,
            self.ams_mapping,
            self.access_code.len()
        )
    }
}

/// The Bambu Lab back end.
pub struct Bambu {
    config: BambuConfig,
}

impl Bambu {
    pub fn new(config: BambuConfig) -> Self {
        Self { config }
    }
}

impl Backend for Bambu {
    fn name(&self) -> &'static str {
        "bambu"
    }

    async fn run(self, port: Port) {
        backend::run(self.config, port).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_takes_defaults_and_says_what_is_wrong() {
        let c: BambuConfig = toml::from_str(
            "host = \"10.0.0.5\"\nserial = \"01P00A391800263\"\naccess_code = \"87654321\"",
        )
        .expect("parse");
        assert!(c.validate().is_ok());
        assert_eq!(
            (c.tls, c.storage, c.mqtt_port, c.ftps_port, c.plate),
            (TlsMode::BambuCa, Storage::Sdcard, 8883, 990, 1)
        );
        assert!(!c.summary().contains("87654321") && !format!("{c:?}").contains("87654321"));
        let pin = BambuConfig {
            tls: TlsMode::Pin,
            ..c.clone()
        };
        assert!(
            pin.validate()
                .is_err_and(|e| e.to_string().contains("pin_file"))
        );
        let serial = BambuConfig {
            serial: "01P 00".into(),
            ..c.clone()
        };
        assert!(
            serial
                .validate()
                .is_err_and(|e| e.to_string().contains("Settings → Device"))
        );
        assert!(
            toml::from_str::<BambuConfig>(
                "host = \"x\"\nserial = \"A\"\naccess_code = \"1\"\ntls = \"off\""
            )
            .is_err()
        );
        let p1s = BambuConfig {
            model: Some("C12".into()),
            ..c.clone()
        };
        assert!(p1s.validate().is_ok());
        let unknown = BambuConfig {
            model: Some("X9".into()),
            ..c
        };
        assert!(unknown.validate().is_err_and(|e| {
            let e = e.to_string();
            e.contains("printer.bambu.model") && e.contains("bambu-p1")
        }));
    }
}

//! The agent's TOML configuration: parsing, defaults, validation, environment overrides.
//!
//! The shape is the one `farm-controller printer add` prints; `agent/agent.example.toml`
//! documents every key. Unknown keys are errors so that a typo cannot silently fall back to a
//! default.

use farm_protocol::{BrokerUrl, PrinterId, Topics};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Status interval bounds in ms; the same clamp applies to `set_telemetry` commands.
pub const STATUS_INTERVAL_MS: std::ops::RangeInclusive<u32> = 100..=60_000;

/// Back ends this build can drive (the `printer.backend` key).
pub const BACKENDS: &[&str] = &[
    "sim",
    "serial",
    "octoprint",
    "moonraker",
    "prusalink",
    "bambu",
];

/// Everything one agent needs. `Debug` redacts `secret` and `token`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The printer's id on the wire (`[a-z0-9-]{1,64}`); also the MQTT client id and username.
    pub printer_id: PrinterId,
    /// HMAC-SHA256 key (its UTF-8 bytes) that signs every message both ways.
    pub secret: String,
    /// Broker password and HTTP bearer token for file downloads.
    pub token: String,
    /// The controller's HTTP base URL (file URLs arrive absolute in commands).
    pub controller_url: String,
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub broker_url: String,
    #[serde(default = "default_topic_root")]
    pub topic_root: String,
    /// Holds `outbox.redb` and the `files/` cache.
    pub state_dir: PathBuf,
    #[serde(default = "default_cache_max_bytes")]
    pub cache_max_bytes: u64,
    #[serde(default = "default_status_interval_ms")]
    pub status_interval_ms: u32,
    pub printer: PrinterConfig,
    /// Where the config was read from, so `reload_config` can re-read it. `None` when built
    /// from a string (tests, the controller's demo).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[printer]`: which back end drives the printer, and its settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterConfig {
    /// One of [`BACKENDS`].
    pub backend: String,
    #[serde(default)]
    pub sim: SimConfig,
    /// `[printer.serial]`, required with `backend = "serial"`.
    #[serde(default)]
    pub serial: Option<crate::serial::SerialConfig>,
    /// `[printer.octoprint]`, required with `backend = "octoprint"`.
    #[serde(default)]
    pub octoprint: Option<crate::octoprint::OctoPrintConfig>,
    /// `[printer.moonraker]`, required with `backend = "moonraker"`.
    #[serde(default)]
    pub moonraker: Option<crate::moonraker::MoonrakerConfig>,
    /// `[printer.bambu]`, required with `backend = "bambu"`.
    #[serde(default)]
    pub bambu: Option<Box<crate::bambu::BambuConfig>>,
    /// `[printer.prusalink]`, required with `backend = "prusalink"`. Boxed: it is the
    /// largest section, and `PrinterCommand::Reconfigure` carries the whole config.
    #[serde(default)]
    pub prusalink: Option<Box<crate::prusalink::PrusaLinkConfig>>,
}

/// `[printer.sim]`: the simulated printer.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Time multiplier: 10.0 prints ten times faster than real time.
    pub speed: f64,
    /// Hot-end heating rate at speed 1, °C/s; the bed heats at a quarter of it.
    pub heat_rate_c_per_s: f64,
    pub ambient_c: f64,
    /// Fail every job when its progress reaches this fraction (tests).
    pub fail_after_progress: Option<f64>,
    /// Chance that a job fails somewhere (demo); the printer recovers by itself.
    pub fail_probability: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            speed: 1.0,
            heat_rate_c_per_s: 4.0,
            ambient_c: 22.0,
            fail_after_progress: None,
            fail_probability: 0.0,
        }
    }
}

fn default_topic_root() -> String {
    "farm".into()
}
fn default_cache_max_bytes() -> u64 {
    1 << 30
}
fn default_status_interval_ms() -> u32 {
    1000
}

/// Why a configuration was refused. Each message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config file {path}: {source}; check the path (--config or FARM_AGENT_CONFIG)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "config is not valid TOML for the agent: {0}; compare it with agent/agent.example.toml"
    )]
    Parse(#[from] toml::de::Error),
    #[error("config key `{key}`: {problem}")]
    Invalid { key: &'static str, problem: String },
}

fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// `broker_url` read by the shared parser; the agent logs in as `printer_id` with `token`, so
/// a user or password in the URL is refused rather than silently ignored.
fn parse_broker(url: &str) -> Result<BrokerUrl, ConfigError> {
    let b = BrokerUrl::parse(url).map_err(|e| invalid("broker_url", e.to_string()))?;
    if b.user.is_some() {
        return Err(invalid(
            "broker_url",
            format!(
                "{b} names a user; the agent logs in as printer_id with token: write it as mqtt://host:1883 or mqtts://host:8883"
            ),
        ));
    }
    Ok(b)
}

impl Config {
    /// Reads a config file, applies `FARM_AGENT_*` environment overrides, and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text)?;
        config.apply_env(|k| std::env::var(k).ok())?;
        config.validate()?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// Parses and validates a config from a string. No environment overrides: many agents in
    /// one process (the controller's demo) must not all pick up the same variables.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(s)?;
        config.validate()?;
        Ok(config)
    }

    /// `FARM_AGENT_<KEY>` replaces `<key>` for the connection settings, so a systemd unit can
    /// keep the token or secret out of the file (e.g. via `LoadCredential`/`EnvironmentFile`).
    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let text_keys: [(&str, &mut String); 5] = [
            ("FARM_AGENT_SECRET", &mut self.secret),
            ("FARM_AGENT_TOKEN", &mut self.token),
            ("FARM_AGENT_BROKER_URL", &mut self.broker_url),
            ("FARM_AGENT_CONTROLLER_URL", &mut self.controller_url),
            ("FARM_AGENT_TOPIC_ROOT", &mut self.topic_root),
        ];
        for (var, slot) in text_keys {
            if let Some(v) = get(var) {
                *slot = v;
            }
        }
        if let Some(v) = get("FARM_AGENT_STATE_DIR") {
            self.state_dir = v.into();
        }
        if let Some(v) = get("FARM_AGENT_STATUS_INTERVAL_MS") {
            self.status_interval_ms = v.parse().map_err(|_| {
                invalid(
                    "status_interval_ms",
                    format!("FARM_AGENT_STATUS_INTERVAL_MS={v:?} is not a whole number of ms"),
                )
            })?;
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.secret.trim().is_empty() {
            return Err(invalid(
                "secret",
                "is empty; copy it from `farm-controller printer add`",
            ));
        }
        if self.token.trim().is_empty() {
            return Err(invalid(
                "token",
                "is empty; copy it from `farm-controller printer add`",
            ));
        }
        if !(self.controller_url.starts_with("http://")
            || self.controller_url.starts_with("https://"))
        {
            return Err(invalid(
                "controller_url",
                format!(
                    "{:?} must start with http:// or https://",
                    self.controller_url
                ),
            ));
        }
        parse_broker(&self.broker_url)?;
        Topics::new(&self.topic_root).map_err(|e| invalid("topic_root", e.to_string()))?;
        if self.state_dir.as_os_str().is_empty() {
            return Err(invalid(
                "state_dir",
                "is empty; name a writable directory such as /var/lib/farm-agent",
            ));
        }
        if self.cache_max_bytes == 0 {
            return Err(invalid(
                "cache_max_bytes",
                "must be above 0 (default 1073741824 = 1 GiB)",
            ));
        }
        if !STATUS_INTERVAL_MS.contains(&self.status_interval_ms) {
            return Err(invalid(
                "status_interval_ms",
                format!("{} must be between 100 and 60000", self.status_interval_ms),
            ));
        }
        if !BACKENDS.contains(&self.printer.backend.as_str()) {
            return Err(invalid(
                "printer.backend",
                format!(
                    "{:?} is not a back end this agent knows; choose one of: {}",
                    self.printer.backend,
                    BACKENDS.join(", ")
                ),
            ));
        }
        self.printer.validate()
    }

    /// The topic builder for `topic_root` (validated at load).
    pub fn topics(&self) -> Topics {
        Topics::new(&self.topic_root).unwrap_or_default()
    }

    /// The parsed `broker_url` (validated at load).
    pub fn broker(&self) -> Result<BrokerUrl, ConfigError> {
        parse_broker(&self.broker_url)
    }

    /// A multi-line summary for `check-config`; never contains the secret or token.
    pub fn summary(&self) -> String {
        let sim = &self.printer.sim;
        let mut s = format!(
            "printer_id         {}\n\
             broker_url         {}\n\
             controller_url     {}\n\
             topic_root         {}\n\
             state_dir          {}\n\
             cache_max_bytes    {}\n\
             status_interval_ms {}\n\
             secret             set ({} bytes)\n\
             token              set ({} bytes)\n\
             printer.backend    {}\n",
            self.printer_id,
            self.broker_url,
            self.controller_url,
            self.topic_root,
            self.state_dir.display(),
            self.cache_max_bytes,
            self.status_interval_ms,
            self.secret.len(),
            self.token.len(),
            self.printer.backend,
        );
        let p = &self.printer;
        let line = match p.backend.as_str() {
            "sim" => Some(format!(
                "speed {} heat_rate_c_per_s {} ambient_c {} fail_after_progress {:?} fail_probability {}",
                sim.speed,
                sim.heat_rate_c_per_s,
                sim.ambient_c,
                sim.fail_after_progress,
                sim.fail_probability
            )),
            "serial" => p.serial.as_ref().map(|c| c.summary()),
            "octoprint" => p.octoprint.as_ref().map(|c| c.summary()),
            "moonraker" => p.moonraker.as_ref().map(|c| c.summary()),
            "bambu" => p.bambu.as_ref().map(|c| c.summary()),
            "prusalink" => p.prusalink.as_ref().map(|c| c.summary()),
            _ => None,
        };
        if let Some(line) = line {
            s.push_str(&format!("printer.{:<10} {line}\n", p.backend));
        }
        s
    }
}

impl PrinterConfig {
    /// The section the chosen back end needs must be there, and valid.
    fn validate(&self) -> Result<(), ConfigError> {
        match self.backend.as_str() {
            "serial" => match &self.serial {
                Some(c) => c.validate(),
                None => Err(missing_section("printer.serial", "port = \"/dev/ttyACM0\"")),
            },
            "octoprint" => match &self.octoprint {
                Some(c) => c.validate(),
                None => Err(missing_section(
                    "printer.octoprint",
                    "url = \"http://127.0.0.1:5000\" and api_key = \"…\"",
                )),
            },
            "moonraker" => match &self.moonraker {
                Some(c) => c.validate(),
                None => Err(missing_section(
                    "printer.moonraker",
                    "url = \"http://127.0.0.1:7125\"",
                )),
            },
            "bambu" => match &self.bambu {
                Some(c) => c.validate(),
                None => Err(missing_section(
                    "printer.bambu",
                    "host = \"192.168.1.60\", serial = \"01P00A000000000\" and access_code = \"12345678\"",
                )),
            },
            "prusalink" => match &self.prusalink {
                Some(c) => c.validate(),
                None => Err(missing_section(
                    "printer.prusalink",
                    "url = \"http://192.168.1.50\" and api_key = \"…\" (or username + password)",
                )),
            },
            _ => self.sim.validate(),
        }
    }
}

fn missing_section(key: &'static str, example: &str) -> ConfigError {
    invalid(
        key,
        format!("this back end needs a [{key}] section, e.g. {example}"),
    )
}

impl SimConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.speed) {
            return Err(invalid(
                "printer.sim.speed",
                "must be a number above 0 (1.0 = real time)",
            ));
        }
        if !positive(self.heat_rate_c_per_s) {
            return Err(invalid(
                "printer.sim.heat_rate_c_per_s",
                "must be a number above 0",
            ));
        }
        if !self.ambient_c.is_finite() {
            return Err(invalid("printer.sim.ambient_c", "must be a number"));
        }
        if let Some(f) = self.fail_after_progress
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(invalid(
                "printer.sim.fail_after_progress",
                "must be above 0 and at most 1, or left out",
            ));
        }
        if !(0.0..=1.0).contains(&self.fail_probability) {
            return Err(invalid(
                "printer.sim.fail_probability",
                "must be between 0 and 1",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("printer_id", &self.printer_id)
            .field("secret", &"<redacted>")
            .field("token", &"<redacted>")
            .field("controller_url", &self.controller_url)
            .field("broker_url", &self.broker_url)
            .field("topic_root", &self.topic_root)
            .field("state_dir", &self.state_dir)
            .field("cache_max_bytes", &self.cache_max_bytes)
            .field("status_interval_ms", &self.status_interval_ms)
            .field("printer", &self.printer)
            .field("source", &self.source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../agent.example.toml");

    fn minimal() -> String {
        r#"
printer_id = "p-1"
secret = "s3cret-key"
token = "tok_abc"
controller_url = "http://127.0.0.1:8080"
broker_url = "mqtt://127.0.0.1:1883"
state_dir = "/tmp/x"
[printer]
backend = "sim"
"#
        .into()
    }

    #[test]
    fn the_example_file_parses() {
        let c = Config::from_toml_str(EXAMPLE).expect("example must parse");
        assert_eq!(c.printer.backend, "sim");
    }

    #[test]
    fn defaults_apply() {
        let c = Config::from_toml_str(&minimal()).expect("parse");
        assert_eq!(c.topic_root, "farm");
        assert_eq!(c.cache_max_bytes, 1 << 30);
        assert_eq!(c.status_interval_ms, 1000);
        assert_eq!(c.printer.sim, SimConfig::default());
    }

    #[test]
    fn debug_and_summary_never_show_secrets() {
        let c = Config::from_toml_str(&minimal()).expect("parse");
        for text in [format!("{c:?}"), c.summary()] {
            assert!(!text.contains("s3cret-key"), "{text}");
            assert!(!text.contains("tok_abc"), "{text}");
        }
    }

    #[test]
    fn typos_and_unknown_backends_are_errors_that_say_what_to_do() {
        let typo = minimal().replace("state_dir", "state_dri");
        assert!(Config::from_toml_str(&typo).is_err());
        let e = Config::from_toml_str(&minimal().replace("\"sim\"", "\"octo\""))
            .expect_err("unknown backend");
        assert!(e.to_string().contains("choose one of: sim"), "{e}");
        let e = Config::from_toml_str(&(minimal() + "[printer.sim]\nsped = 2.0\n"))
            .expect_err("typo in sim");
        assert!(e.to_string().contains("sped"), "{e}");
    }

    #[test]
    fn broker_urls() {
        let a = parse_broker("mqtt://h:1884").expect("ok");
        assert_eq!((a.host.as_str(), a.port, a.tls), ("h", 1884, false));
        assert_eq!(parse_broker("mqtts://[::1]").expect("ok").port, 8883);
        let e = parse_broker("mqtt://u:p@h").expect_err("user");
        assert!(
            e.to_string().contains("token") && !e.to_string().contains(":p@"),
            "{e}"
        );
        assert!(parse_broker("h:1883").is_err());
    }

    #[test]
    fn env_overrides() {
        let mut c = Config::from_toml_str(&minimal()).expect("parse");
        c.apply_env(|k| match k {
            "FARM_AGENT_BROKER_URL" => Some("mqtt://other:1".into()),
            "FARM_AGENT_STATUS_INTERVAL_MS" => Some("250".into()),
            _ => None,
        })
        .expect("env");
        assert_eq!(c.broker_url, "mqtt://other:1");
        assert_eq!(c.status_interval_ms, 250);
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (from, to) in [
            ("state_dir", "status_interval_ms = 5\nstate_dir"),
            ("state_dir", "cache_max_bytes = 0\nstate_dir"),
        ] {
            assert!(Config::from_toml_str(&minimal().replacen(from, to, 1)).is_err());
        }
        let bad_sim = minimal() + "[printer.sim]\nfail_after_progress = 1.5\n";
        assert!(Config::from_toml_str(&bad_sim).is_err());
    }
}

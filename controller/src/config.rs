//! Controller configuration: a TOML file (every key optional), then environment, then flags.

use crate::auth::Role;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Every key with its default; see `controller.example.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store (`farm.redb`) and uploaded files live.
    pub state_dir: PathBuf,
    /// HTTP listener: API, live stream, dashboard, metrics.
    pub http_listen: SocketAddr,
    /// The base URL agents use to fetch files. Default: derived from `http_listen` and the host name.
    pub public_url: Option<String>,
    /// Embedded broker listener (when `broker_url` is not set).
    pub mqtt_listen: SocketAddr,
    /// An external broker, `mqtt://user:password@host:1883`. Unset: run the embedded one.
    pub broker_url: Option<String>,
    /// The broker URL written into new agents' configs. Default: derived.
    pub agent_broker_url: Option<String>,
    pub topic_root: String,
    pub max_upload_bytes: u64,
    /// Role for requests without a token (e.g. "viewer" on a trusted shop-floor LAN). Default: none.
    pub anonymous_role: Option<Role>,
    /// A printer whose status stopped for this long is shown offline, s.
    pub status_stale_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("farm-state"),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            public_url: None,
            mqtt_listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            broker_url: None,
            agent_broker_url: None,
            topic_root: "farm".into(),
            max_upload_bytes: 512 * 1024 * 1024,
            anonymous_role: None,
            status_stale_s: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("config file {path} is invalid: {err}")]
    Parse { path: String, err: toml::de::Error },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.display().to_string(),
            err,
        })?;
        toml::from_str(&text).map_err(|err| ConfigError::Parse {
            path: path.display().to_string(),
            err,
        })
    }

    fn host(addr: SocketAddr) -> String {
        if addr.ip().is_unspecified() {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".into())
        } else {
            addr.ip().to_string()
        }
    }

    pub fn public_url(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| {
            format!(
                "http://{}:{}",
                Self::host(self.http_listen),
                self.http_listen.port()
            )
        })
    }

    pub fn agent_broker_url(&self) -> String {
        if let Some(u) = &self.agent_broker_url {
            return u.clone();
        }
        match self
            .broker_url
            .as_deref()
            .and_then(|u| crate::link::parse_url(u).ok())
        {
            Some(a) => format!("mqtt://{}:{}", a.host, a.port),
            None => format!(
                "mqtt://{}:{}",
                Self::host(self.mqtt_listen),
                self.mqtt_listen.port()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_optional_and_typos_are_errors() {
        let c: Config = toml::from_str("").expect("empty config");
        assert_eq!(c.topic_root, "farm");
        assert!(toml::from_str::<Config>("htp_listen = \"1.2.3.4:5\"").is_err());
        let c: Config =
            toml::from_str("http_listen = \"127.0.0.1:9000\"\nanonymous_role = \"viewer\"")
                .expect("config");
        assert_eq!(c.public_url(), "http://127.0.0.1:9000");
        assert_eq!(c.anonymous_role, Some(Role::Viewer));
    }

    #[test]
    fn agents_are_pointed_at_the_external_broker_without_its_password() {
        let c = Config {
            broker_url: Some("mqtt://admin:pw@mq.lan:1884".into()),
            ..Config::default()
        };
        assert_eq!(c.agent_broker_url(), "mqtt://mq.lan:1884");
    }
}

//! Controller configuration: a TOML file (every key optional), then environment, then flags.

use crate::auth::Role;
use crate::costing::Pricing;
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
    /// Filament stock: margins, low-stock default, defaults for new materials.
    pub inventory: InventoryConfig,
    /// What printing costs and what the farm charges (costs report, quotes).
    pub pricing: Pricing,
    pub maintenance: MaintenanceConfig,
    /// `[orders]`: order intake.
    pub orders: OrdersConfig,
    /// `[scheduler]`: placement rules.
    pub scheduler: SchedulerConfig,
    /// `[webhooks]`: shops' endpoints and retry policy.
    pub webhooks: crate::orders::webhooks::WebhookConfig,
    /// `[broker]`: limits of the embedded broker (unused with `broker_url`).
    pub broker: BrokerConfig,
}

/// `[broker]`: the embedded broker's limits and supervision (`mqtt/broker.rs` says why each
/// default is what it is).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Sessions at once: every printer (a printer's session outlives a dropped connection
    /// for its next one), the controller's link and probe. A new session beyond this is
    /// refused with "server unavailable"; a printer that already has one always gets back in.
    pub max_connections: usize,
    /// Logins being checked at once; the others wait their turn (first come, first served).
    pub handshake_concurrency: usize,
    /// A connection must have sent its CONNECT, and its login been checked, within this; an
    /// older one is dropped unanswered (its client has given up and will retry).
    pub handshake_timeout_s: u64,
    /// Messages the broker holds for the controller's link while it catches up (a reconnect
    /// storm of every printer at once); beyond it, new ones are dropped (agents resend events).
    pub controller_queue: usize,
    /// Messages the broker holds for one printer (its commands and acks).
    pub printer_queue: usize,
    /// The broker must pass the controller's probe (a message through it and back) and keep
    /// the controller's own link subscribed within this many seconds, or the controller exits
    /// (status 1) for its service manager to restart it.
    pub stall_timeout_s: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_connections: 50_000,
            handshake_concurrency: 1_000,
            handshake_timeout_s: 10,
            controller_queue: 200_000,
            printer_queue: 100,
            stall_timeout_s: 60,
        }
    }
}

impl BrokerConfig {
    /// The limits, checked.
    pub fn check(&self) -> Result<(), String> {
        if self.max_connections < 3 {
            return Err(
                "[broker] max_connections must be at least 3 (the controller holds two)".into(),
            );
        }
        if self.handshake_concurrency == 0 {
            return Err("[broker] handshake_concurrency must be at least 1".into());
        }
        if !(1..=300).contains(&self.handshake_timeout_s) {
            return Err("[broker] handshake_timeout_s must be between 1 and 300".into());
        }
        if self.controller_queue < 1_000 {
            return Err("[broker] controller_queue must be at least 1000".into());
        }
        if self.printer_queue == 0 {
            return Err("[broker] printer_queue must be at least 1".into());
        }
        if self.stall_timeout_s < 5 {
            return Err("[broker] stall_timeout_s must be at least 5".into());
        }
        Ok(())
    }
}

/// `[orders]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersConfig {
    /// Orders wait for an operator (`POST /api/v1/orders/{id}/release`) before printing.
    pub manual_release: bool,
    /// Prints per copy before its order fails (the first print included).
    pub max_attempts: u32,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        Self {
            manual_release: false,
            max_attempts: 3,
        }
    }
}

/// `[scheduler]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerConfig {
    /// At most this many printers heating at once (unset: no power budget).
    pub max_heating: Option<u32>,
    /// How long a heat-up lasts, s.
    pub heat_s: f64,
    /// When operators clear beds, UTC, e.g. "08:00-18:00" (unset: any time).
    pub working_hours: Option<String>,
    /// How long clearing a bed takes once someone is there, s.
    pub clear_s: f64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        let r = crate::jobs::scheduler::Rules::default();
        Self {
            max_heating: r.max_heating,
            heat_s: r.heat_s,
            working_hours: None,
            clear_s: r.clear_s,
        }
    }
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
            inventory: InventoryConfig::default(),
            pricing: Pricing::default(),
            maintenance: MaintenanceConfig::default(),
            orders: OrdersConfig::default(),
            scheduler: SchedulerConfig::default(),
            webhooks: crate::orders::webhooks::WebhookConfig::default(),
            broker: BrokerConfig::default(),
        }
    }
}

// ---- inventory, pricing, maintenance ---------------------------------------------------

/// The three production sections together, as the API handlers read them.
#[derive(Debug, Clone, Default)]
pub struct ProductionConfig {
    pub inventory: InventoryConfig,
    pub pricing: Pricing,
    pub maintenance: MaintenanceConfig,
}

impl Config {
    pub fn production(&self) -> ProductionConfig {
        ProductionConfig {
            inventory: self.inventory.clone(),
            pricing: self.pricing.clone(),
            maintenance: self.maintenance.clone(),
        }
    }
}

/// `[inventory]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InventoryConfig {
    /// A spool covers a job if it holds the job's grams plus this many grams…
    pub spool_margin_g: f64,
    /// …plus this fraction of the job (analyzer and spool weights are not exact).
    pub spool_margin_fraction: f64,
    /// Alert when a material + colour falls below this, g (a material may set its own).
    pub low_stock_g: f64,
    /// Diameter of new materials that do not state one, mm.
    pub default_diameter_mm: f64,
    /// Tools per printer a spool may be loaded on (tool numbers 0 .. max_tools-1).
    pub max_tools: u32,
    /// Material type assumed for queued jobs that do not name one (shortage forecast).
    pub forecast_material: String,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        Self {
            spool_margin_g: 10.0,
            spool_margin_fraction: 0.05,
            low_stock_g: 1000.0,
            default_diameter_mm: 1.75,
            max_tools: 8,
            forecast_material: "PLA".into(),
        }
    }
}

/// `[maintenance]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// A task is "due soon" past this fraction of its interval.
    pub due_soon_fraction: f64,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        Self {
            due_soon_fraction: 0.9,
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
        } else if addr.is_ipv6() {
            // In a URL an IPv6 address goes in brackets.
            format!("[{}]", addr.ip())
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

    /// The production core's settings, checked.
    pub fn production_settings(
        &self,
    ) -> Result<crate::jobs::production::Settings, crate::StartError> {
        let bad = |s: String| crate::StartError::Config(s);
        let s = &self.scheduler;
        let working_hours = s
            .working_hours
            .as_deref()
            .map(crate::jobs::scheduler::WorkingHours::parse)
            .transpose()
            .map_err(|e| bad(format!("[scheduler] {e}")))?;
        if !(s.heat_s >= 0.0 && s.clear_s >= 0.0) {
            return Err(bad(
                "[scheduler] heat_s and clear_s must be 0 or more".into()
            ));
        }
        let inv = &self.inventory;
        if !(inv.spool_margin_g >= 0.0 && inv.spool_margin_fraction >= 0.0) {
            return Err(bad(
                "[inventory] spool_margin_g and spool_margin_fraction must be 0 or more".into(),
            ));
        }
        if self.orders.max_attempts == 0 {
            return Err(bad("[orders] max_attempts must be at least 1".into()));
        }
        let w = &self.webhooks;
        if !(w.initial_backoff_s > 0.0
            && w.max_backoff_s >= w.initial_backoff_s
            && w.max_backoff_s.is_finite())
        {
            return Err(bad(
                "[webhooks] initial_backoff_s must be above 0 and max_backoff_s at least as large"
                    .into(),
            ));
        }
        for e in &self.webhooks.endpoints {
            if !(e.url.starts_with("http://") || e.url.starts_with("https://"))
                || e.secret.len() < 16
            {
                return Err(bad(format!(
                    "[[webhooks.endpoints]] for shop {:?}: url must be http(s):// and secret at least 16 characters",
                    e.shop
                )));
            }
        }
        Ok(crate::jobs::production::Settings {
            manual_release: self.orders.manual_release,
            max_attempts: self.orders.max_attempts,
            rules: crate::jobs::scheduler::Rules {
                // One margin for the whole farm: the inventory's.
                margin_g: inv.spool_margin_g,
                margin_fraction: inv.spool_margin_fraction,
                max_heating: s.max_heating,
                heat_s: s.heat_s,
                working_hours,
                clear_s: s.clear_s,
            },
            webhook_shops: self
                .webhooks
                .endpoints
                .iter()
                .map(|e| e.shop.clone())
                .collect(),
        })
    }

    pub fn agent_broker_url(&self) -> String {
        if let Some(u) = &self.agent_broker_url {
            return u.clone();
        }
        match self
            .broker_url
            .as_deref()
            .and_then(|u| crate::mqtt::link::parse_url(u).ok())
        {
            Some(a) => format!("mqtt://{}", a.authority()),
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
    fn production_sections_parse_and_are_checked() {
        let c: Config = toml::from_str(
            "[orders]\nmanual_release = true\n[scheduler]\nmax_heating = 4\nworking_hours = \"08:00-18:00\"\n[[webhooks.endpoints]]\nshop = \"acme\"\nurl = \"http://shop/hook\"\nsecret = \"0123456789abcdef\"\n",
        )
        .expect("config");
        let s = c.production_settings().expect("settings");
        assert!(s.manual_release && s.webhook_shops.contains("acme"));
        assert_eq!(s.rules.max_heating, Some(4));
        let c: Config = toml::from_str("[scheduler]\nworking_hours = \"late\"").expect("config");
        assert!(c.production_settings().is_err());
        let example = include_str!("../controller.example.toml");
        let c: Config = toml::from_str(example).expect("the example config parses");
        c.production_settings().expect("and is valid");
        c.broker.check().expect("and its broker limits too");
        assert_eq!(
            c.broker.max_connections,
            BrokerConfig::default().max_connections
        );
    }

    #[test]
    fn broker_limits_are_checked() {
        let c: Config = toml::from_str("[broker]\nmax_connections = 20000").expect("config");
        assert_eq!(c.broker.max_connections, 20_000);
        c.broker.check().expect("valid");
        let c: Config = toml::from_str("[broker]\nmax_connections = 1").expect("config");
        assert!(c.broker.check().is_err());
        let c: Config = toml::from_str("[broker]\nstall_timeout_s = 1").expect("config");
        assert!(c.broker.check().is_err());
        let c: Config = toml::from_str("[broker]\ncontroller_queue = 10").expect("config");
        assert!(c.broker.check().is_err());
        assert!(toml::from_str::<Config>("[broker]\nmax_conections = 5").is_err());
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

//! # farm-controller
//!
//! The controller owns everything that spans printers: the broker (embedded or external), the
//! store, ingest of agent messages, jobs and the scheduler, the REST API, the live stream,
//! the dashboard and metrics. [`start`] wires it together; the binary is a thin CLI over it (the
//! demo, a whole farm of simulated agents on one machine, is the `farm-demo` crate, so this
//! crate does not link the agent).
//!
//! Each farm concept has one folder holding its pure rules (no I/O, no lock, importing neither
//! the store nor the config), the `impl Farm` writes that apply them to the store, and its
//! HTTP handlers (`http.rs`), side by side; each folder's `mod.rs` doc lists its files.
//!
//! | module | concern |
//! |---|---|
//! | [`printers`] | printer records, live state and the printer-state rule; writes from agents; the registry; enrolment |
//! | [`jobs`] | job lifecycle, the scheduler and time learning (pure); the job table, queue writes, scheduling state |
//! | [`orders`] | order lifecycle and validation (pure); intake (group commit), follow-up, view, webhook outbox and delivery |
//! | [`inventory`] | materials, spools, the exactly-once ledger, low stock, shortage forecast (pure); stock writes; printers' loadout |
//! | [`maintenance`] | per-printer counters, tasks and when they fall due (pure); task writes |
//! | [`catalog`] | SKU → files and analysed-file facts (pure); the content-addressed G-code store; catalog writes |
//! | [`costing`] | cost of a job, an order, a period; quotes (pure) |
//! | [`mqtt`] | the embedded broker, the controller's MQTT link, ingest of agents' messages |
//! | [`farm`] | the core every write shares: store + in-memory mirror + change stream, loading, reads, tokens |
//! | [`api`] | the router (`/api/v1/*`, `/metrics`, dashboard fallback), problems, OpenAPI, the live stream, dashboard assets |
//! | [`store`] | redb tables of every concept (durable before ack) |
//! | [`config`] | TOML configuration and its defaults |
//! | [`logging`] | stderr logging for the binaries, without the broker's per-connection noise |
//! | [`auth`] | roles, tokens (stored as sha256), principals |
//! | [`metrics`] | counters rendered as Prometheus text |

pub mod api;
pub mod auth;
pub mod catalog;
pub mod config;
pub mod costing;
pub mod farm;
pub mod inventory;
pub mod jobs;
pub mod logging;
pub mod maintenance;
pub mod metrics;
pub mod mqtt;
pub mod orders;
pub mod printers;
pub mod store;

use catalog::files::FileStore;
use config::Config;
use farm::{Farm, FarmError};
use mqtt::{broker, link};
use orders::webhooks;
use printers::enrol;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the state directory {path}: {err}")]
    StateDir { path: String, err: std::io::Error },
    #[error(transparent)]
    Farm(#[from] FarmError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    #[error("bad broker_url: {0}")]
    BrokerUrl(String),
    #[error("bad topic_root: {0}")]
    TopicRoot(String),
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(
        "cannot listen for HTTP on {addr}: {err} (is something else on that port? choose another with --http)"
    )]
    Http {
        addr: SocketAddr,
        err: std::io::Error,
    },
}

/// A running controller.
pub struct Controller {
    pub farm: Arc<Farm>,
    pub files: Arc<FileStore>,
    pub http_addr: SocketAddr,
    pub enrol: enrol::Endpoints,
    fatal: watch::Receiver<Option<String>>,
}

impl Controller {
    /// Resolves with the reason once the controller cannot go on serving (the embedded
    /// broker died or stalled; see [`broker`]): the caller must stop, and `serve` exits with
    /// status 1 so its service manager restarts it. Never resolves with an external broker.
    pub async fn fatal(&self) -> String {
        let mut rx = self.fatal.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }
}

/// Raised by whatever finds the controller unable to serve; the first reason is kept.
#[derive(Clone)]
pub struct Fatal(Arc<watch::Sender<Option<String>>>);

impl Fatal {
    pub fn new() -> (Self, watch::Receiver<Option<String>>) {
        let (tx, rx) = watch::channel(None);
        (Self(Arc::new(tx)), rx)
    }

    pub fn raise(&self, why: String) {
        tracing::error!("{why}");
        self.0.send_if_modified(|v| {
            let first = v.is_none();
            if first {
                *v = Some(why);
            }
            first
        });
    }
}

/// Opens the store without starting anything (for the CLI's offline commands).
pub fn open_offline(config: &Config) -> Result<Arc<Farm>, StartError> {
    let (farm, _rx) = open_farm(config)?;
    Ok(farm)
}

fn open_farm(config: &Config) -> Result<(Arc<Farm>, mpsc::Receiver<farm::Outbound>), StartError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|err| StartError::StateDir {
        path: config.state_dir.display().to_string(),
        err,
    })?;
    let store = store::Store::open(&config.state_dir.join("farm.redb"))?;
    let topics = farm_protocol::Topics::new(&config.topic_root)
        .map_err(|e| StartError::TopicRoot(e.to_string()))?;
    Ok(Farm::load(store, topics, config.public_url())?)
}

/// Starts broker (or connects to one), ingest, scheduler and HTTP; returns once all listen.
/// Tasks stop when `shutdown` turns true.
pub async fn start(
    config: Config,
    shutdown: watch::Receiver<bool>,
) -> Result<Controller, StartError> {
    let (farm, outbound) = open_farm(&config)?;
    farm.production.set_settings(config.production_settings()?);
    let (fatal, fatal_rx) = Fatal::new();
    tokio::spawn(webhooks::run(
        farm.clone(),
        config.webhooks.clone(),
        shutdown.clone(),
    ));
    let intake = orders::intake::IntakeQueue::start(farm.clone());
    let files = Arc::new(
        FileStore::open(config.state_dir.join("files"), config.max_upload_bytes).map_err(
            |err| StartError::StateDir {
                path: config.state_dir.join("files").display().to_string(),
                err,
            },
        )?,
    );
    let (addr, broker_kind) = match &config.broker_url {
        Some(url) => (
            link::parse_url(url).map_err(StartError::BrokerUrl)?,
            "external",
        ),
        None => {
            config.broker.check().map_err(StartError::Config)?;
            let enrolled = farm.printers().len();
            if enrolled + 16 > config.broker.max_connections {
                tracing::warn!(
                    enrolled,
                    max_connections = config.broker.max_connections,
                    "[broker] max_connections leaves no room for every printer: raise it, or the broker will refuse new printers"
                );
            }
            let b = broker::start(
                config.mqtt_listen,
                farm.clone(),
                &config.broker,
                fatal.clone(),
                shutdown.clone(),
            )
            .await?;
            tokio::spawn(broker::watch_link(
                farm.clone(),
                Duration::from_secs(config.broker.stall_timeout_s),
                fatal.clone(),
                shutdown.clone(),
            ));
            (
                farm_protocol::BrokerUrl {
                    host: b.link.ip().to_string(),
                    port: b.link.port(),
                    tls: false,
                    user: Some(b.user),
                    password: Some(b.pass),
                },
                "embedded",
            )
        }
    };
    tokio::spawn(link::run(farm.clone(), addr, outbound, shutdown.clone()));
    tokio::spawn(schedule_loop(
        farm.clone(),
        Duration::from_secs(config.status_stale_s.max(3)),
        shutdown.clone(),
    ));

    let enrol = enrol::Endpoints {
        controller_url: config.public_url(),
        broker_url: config.agent_broker_url(),
        topic_root: config.topic_root.clone(),
    };
    let state = api::AppState {
        farm: farm.clone(),
        files: files.clone(),
        anonymous: config.anonymous_role,
        broker: broker_kind,
        enrol: Arc::new(enrol.clone()),
        production: Arc::new(config.production()),
        intake,
    };
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|err| StartError::Http {
            addr: config.http_listen,
            err,
        })?;
    let http_addr = listener.local_addr().map_err(|err| StartError::Http {
        addr: config.http_listen,
        err,
    })?;
    let app = api::router(state);
    let mut stop = shutdown.clone();
    tokio::spawn(async move {
        // No Nagle: a small answer or stream event must not wait for the client's delayed ACK.
        use axum::serve::ListenerExt;
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, app);
        tokio::select! {
            r = serve => if let Err(e) = r { tracing::error!("HTTP server stopped: {e}") },
            _ = stop.changed() => {}
        }
    });
    tracing::info!(%http_addr, broker = broker_kind, "controller ready");
    Ok(Controller {
        farm,
        files,
        http_addr,
        enrol,
        fatal: fatal_rx,
    })
}

/// Runs the scheduler when something may have changed, and the slow sweeps now and then.
async fn schedule_loop(farm: Arc<Farm>, stale: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut sweep = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = farm.kick.notified() => {}
            _ = sweep.tick() => {
                farm.sweep_stale(time::Duration::try_from(stale).unwrap_or(time::Duration::seconds(30)));
                farm.resend_assignments(time::Duration::seconds(10));
            }
        }
        // The plan runs off the async workers (a long queue takes milliseconds of CPU, and
        // HTTP must go on meanwhile), its starts go to the writer. Kicks that arrive while it
        // runs leave one permit, so they coalesce into one next plan that covers every order
        // committed until it starts.
        if let Err(e) = farm.schedule().await {
            tracing::error!("scheduler: {e}");
        }
    }
}

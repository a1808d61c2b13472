//! # farm-controller
//!
//! The controller owns everything that spans printers: the broker (embedded or external), the
//! store, ingest of agent messages, jobs and the scheduler, the REST API, the live stream,
//! the dashboard and metrics. [`start`] wires it together; the binary is a thin CLI over it (the
//! demo, a whole farm of simulated agents on one machine, is the `farm-demo` crate, so this
//! crate does not link the agent).
//!
//! | module | concern |
//! |---|---|
//! | [`config`] | TOML configuration and its defaults |
//! | [`store`] | redb store: printers, jobs, applied seqs, tokens, commands (durable before ack) |
//! | [`farm`] | the running farm: store + in-memory mirror + change stream; every write goes here |
//! | [`fleet`] | printer records, live state, the printer-state rule, diffs for the stream (pure) |
//! | [`jobs`] | job lifecycle (pure) |
//! | [`orders`] | order lifecycle, copies, request validation (pure) |
//! | [`catalog`] | SKU → files, and what is kept about each analysed file |
//! | [`scheduler`] | hard constraints, queue order, starts now and the timeline of every queued job (pure) |
//! | [`learning`] | per-printer/material correction of the analyzer's time estimate (pure) |
//! | [`webhooks`] | signing, backoff, and the task that delivers the outbox to shops |
//! | [`ingest`] | one MQTT message from an agent: verify, decode, apply, ack |
//! | [`broker`] | the embedded rumqttd broker and its login check |
//! | [`link`] | the controller's MQTT connection: feeds ingest, publishes commands and acks |
//! | [`logging`] | stderr logging for the binaries, without the broker's per-connection noise |
//! | [`files`] | content-addressed G-code store with upload checks |
//! | [`auth`] | roles, tokens (stored as sha256), principals |
//! | [`enrol`] | the agent config printed when a printer is enrolled |
//! | [`api`] | axum routes: `/api/v1/*`, `/metrics`, dashboard fallback |
//! | [`dashboard`] | embedded static assets |
//! | [`metrics`] | counters rendered as Prometheus text |
//! | [`inventory`] | materials, spools, the exactly-once ledger, low stock, shortage forecast (pure) |
//! | [`maintenance`] | per-printer counters, maintenance tasks and when they fall due (pure) |
//! | [`costing`] | cost of a job (material, machine, energy, waste), orders, period reports (pure) |
//! | [`quotes`] | price and earliest completion of a G-code file before it is ordered (pure) |

pub mod api;
pub mod auth;
pub mod broker;
pub mod catalog;
pub mod config;
pub mod costing;
pub mod dashboard;
pub mod enrol;
pub mod farm;
pub mod files;
pub mod fleet;
pub mod ingest;
pub mod inventory;
pub mod jobs;
pub mod learning;
pub mod link;
pub mod logging;
pub mod maintenance;
pub mod metrics;
pub mod orders;
pub mod quotes;
pub mod scheduler;
pub mod store;
pub mod webhooks;

use config::Config;
use farm::{Farm, FarmError};
use files::FileStore;
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
    tokio::spawn(webhooks::run(
        farm.clone(),
        config.webhooks.clone(),
        shutdown.clone(),
    ));
    let intake = farm::intake::IntakeQueue::start(farm.clone());
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
            let b = broker::start(config.mqtt_listen, farm.clone())?;
            let host = if b.addr.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                b.addr.ip().to_string()
            };
            (
                farm_protocol::BrokerUrl {
                    host,
                    port: b.addr.port(),
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
        enrol: enrol.clone(),
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
        // Off the async workers: a plan of a long queue takes milliseconds of CPU, and HTTP
        // must go on meanwhile. Kicks that arrive while it runs leave one permit, so they
        // coalesce into one next plan that covers every order committed until it starts.
        let f = farm.clone();
        match tokio::task::spawn_blocking(move || f.schedule()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("scheduler: {e}"),
            Err(e) => tracing::error!("scheduler task failed: {e}"),
        }
    }
}

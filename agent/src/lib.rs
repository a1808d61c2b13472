//! # farm-agent
//!
//! The small process beside each printer. It drives the printer through a back end and talks
//! to the farm controller over MQTT with the v1 contract of [`farm_protocol`]: it publishes
//! status snapshots and durable, ordered events, and executes signed commands.
//!
//! | module | what it holds |
//! |---|---|
//! | [`config`] | the TOML config: keys, defaults, validation, `FARM_AGENT_*` overrides |
//! | [`outbox`] | redb: events until the controller acks them, executed command ids, the current job |
//! | [`link`] | the MQTT connection: presence and last will, subscriptions, resends, backoff |
//! | [`runner`] | commands → fetch → verify → hand to printer; printer events → outbox |
//! | [`fetch`] | HTTP download with `Range` resume, sha256 check, bounded cache |
//! | [`printable`] | what a back end is given to print: the job file as is, or plain G-code written beside it (a `.gcode.3mf`'s plate, a `.bgcode`'s text) for back ends that do not print that kind |
//! | [`plate`] | a `.gcode.3mf` job's plate extracted (streamed) for back ends that print plain G-code |
//! | [`printer`] | the back-end interface every printer type implements |
//! | [`sim`] | the simulated printer back end |
//! | [`octoprint`] | the OctoPrint back end: REST + push websocket |
//! | [`prusalink`] | the PrusaLink back end (Prusa MK4, Core One, XL, MINI, MK3 with a Pi): HTTP API v1 polling |
//! | [`moonraker`] | the Moonraker (Klipper) back end: websocket JSON-RPC |
//! | [`serial`] | the serial (USB G-code) back end and its pure building blocks: line framing, firmware reply parsing, firmware profiles |
//! | [`model_profile`] | printer-model profiles (Bambu X1/P1/A1/A1 mini/H2D, Prusa MK4/CORE One): motion limits and slicer allowances from `firmware-profiles/printers/*.toml` |
//! | [`material`] | cumulative, never-decreasing material reports |
//! | [`status`] | composing and pacing the status snapshot |
//!
//! How the pieces connect (one agent = these tasks, no global state, so many agents can run
//! in one process, as the controller's demo does):
//!
//! ```text
//!  broker ◀──▶ link ──commands──▶ runner ──PrinterCommand──▶ back end (sim)
//!               ▲  ▲                │  ▲                          │
//!               │  └── status ◀─────┼──┼─── snapshot (watch) ◀────┤
//!               │                   ▼  └──── events ◀─────────────┘
//!               └──── (seq order) ── outbox (redb) ◀── acks (via link)
//! ```
//!
//! Entry point: [`run`]. The binary (`src/main.rs`) only parses the CLI, sets up logging and
//! a Ctrl-C/SIGTERM handler, and calls it.

pub mod bambu;
pub mod config;
pub mod fetch;
pub mod link;
pub mod material;
pub mod model_profile;
pub mod moonraker;
pub mod octoprint;
pub mod outbox;
pub mod plate;
pub mod printable;
pub mod printer;
pub mod prusalink;
pub mod runner;
pub mod serial;
pub mod sim;
pub mod status;

#[cfg(test)]
mod test_gcode;

pub use config::{Config, ConfigError};

use std::path::PathBuf;
use tokio::sync::{mpsc, watch};

/// Why an agent could not run. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "cannot create state_dir {path}: {source}; create it or make it writable for the agent"
    )]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    #[error("cannot set up the HTTP client for file downloads: {0}")]
    Fetch(#[from] fetch::FetchError),
    #[error(transparent)]
    Link(#[from] link::LinkError),
    #[error("an agent task stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Installs rustls's ring crypto provider unless one is installed already. reqwest is built
/// without a provider and panics without one; this makes [`run`] safe to call from any
/// binary. Idempotent.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another thread installing one is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Resolves when `stop` holds `true`, or when its sender is gone (nobody could stop us then).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// Runs one agent until `shutdown` becomes `true` (or its sender is dropped), then publishes
/// `online: false`, disconnects and returns `Ok`. Returns an error early only for fatal
/// problems: an invalid config, an unusable state dir, an outbox that cannot be written.
/// Broker and controller outages are not fatal: the agent keeps retrying.
pub async fn run(config: Config, shutdown: watch::Receiver<bool>) -> Result<(), AgentError> {
    ensure_crypto_provider();
    let settings = link::LinkSettings::from_config(&config)?;
    let link = link::Link::new(settings)?;
    tokio::fs::create_dir_all(&config.state_dir)
        .await
        .map_err(|source| AgentError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
    let db = config.state_dir.join("outbox.redb");
    let (id, secret) = (config.printer_id.clone(), config.secret.clone());
    let outbox =
        tokio::task::spawn_blocking(move || outbox::Outbox::open(&db, id, secret)).await??;
    let fetcher = fetch::Fetcher::new(
        config.state_dir.join("files"),
        config.token.clone(),
        config.cache_max_bytes,
    )?;
    let printer = printer::Printer::from_config(&config.printer);
    tracing::info!(printer = %config.printer_id, backend = printer.backend, state_dir = %config.state_dir.display(), "starting agent");

    // Link and status stop when the runner is done (after shutdown or a fatal error).
    let (stop_tx, stop_rx) = watch::channel(false);
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (interval_tx, interval_rx) = watch::channel(config.status_interval_ms);
    let (transfer_tx, transfer_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(None);

    let feed = status::StatusFeed {
        printer: printer.snapshot.clone(),
        transfer: transfer_rx,
        outbox: outbox.watch(),
        interval_ms: interval_rx,
        backend: printer.backend,
        started: tokio::time::Instant::now(),
    };
    let status_task = tokio::spawn(feed.run(status_tx, stop_rx.clone()));
    let link_task = tokio::spawn(link.run(outbox.clone(), status_rx, cmd_tx, stop_rx));

    let runner = runner::Runner::new(
        config,
        outbox,
        printer,
        fetcher,
        runner::RunnerIo {
            commands: cmd_rx,
            interval_ms: interval_tx,
            transfer: transfer_tx,
        },
    );
    let result = runner.run(shutdown).await;
    stop_tx.send_replace(true);
    link_task.await?;
    status_task.await?;
    tracing::info!("agent stopped");
    Ok(result?)
}

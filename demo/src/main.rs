//! `farm-demo`: the whole farm on one machine, for a first look. The controller (library) on
//! its embedded broker and store, and simulated printers driven by real agents (library)
//! in this process. Its own crate, so the server binary `farm-controller` does not link the
//! agent and its back ends.

mod farm;

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Runs a whole demo farm on this machine: controller + simulated printers + sample jobs.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "Open the dashboard address it prints. Logging: set RUST_LOG (default `info`)."
)]
struct Cli {
    /// Number of simulated printers
    #[arg(long, default_value_t = 12)]
    printers: usize,
    /// Simulation speed (10 = ten times faster than a real printer)
    #[arg(long, default_value_t = 10.0)]
    speed: f64,
    /// Dashboard and API address
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: SocketAddr,
    /// Keep the demo's state here (must be empty) instead of a temporary directory
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Chance that a simulated print fails (the printer recovers by itself)
    #[arg(long, default_value_t = 0.05)]
    fail_probability: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    farm_controller::logging::init();
    anyhow::ensure!(
        (1..=1000).contains(&cli.printers),
        "--printers must be between 1 and 1000"
    );
    anyhow::ensure!(
        cli.speed > 0.0 && cli.speed <= 1000.0,
        "--speed must be above 0 and at most 1000"
    );
    farm::run(farm::Options {
        printers: cli.printers,
        speed: cli.speed,
        http: cli.http,
        state_dir: cli.state_dir,
        fail_probability: cli.fail_probability,
    })
    .await
}

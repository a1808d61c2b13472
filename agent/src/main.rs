//! `farm-agent`: the command line around [`farm_agent::run`]. Everything else lives in the
//! library; this file parses arguments, sets up logging and signals, and reports errors.

mod analyze_cmd;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "farm-agent",
    version,
    about = "Drives one 3D printer and reports to the farm controller over MQTT",
    after_help = "Logging: set RUST_LOG (default `info`), e.g. RUST_LOG=farm_agent=debug.\n\
                  Start from agent/agent.example.toml, or the config `farm-controller printer add` prints."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the agent until Ctrl-C or SIGTERM: connect to the broker, drive the printer, execute
    /// the controller's commands.
    Run(ConfigArg),
    /// Parse and validate a config file and print a summary (the secret and token are not
    /// shown). Exits non-zero with the reason if the file is not valid.
    CheckConfig(ConfigArg),
    /// Analyse a G-code file (ASCII or Prusa binary .bgcode) or one plate of a .gcode.3mf:
    /// filament per tool (mm and grams), print time beside the slicer's own estimate, layers,
    /// bounds, thumbnails. Needs no config.
    Analyze {
        /// The G-code or .bgcode file, or a Bambu Studio / OrcaSlicer .gcode.3mf
        file: PathBuf,
        /// Which plate of a .gcode.3mf (needed when it has more than one)
        #[arg(long)]
        plate: Option<u32>,
        /// Start from this printer model's limits and allowances (bambu-x1, bambu-p1, bambu-a1,
        /// bambu-a1-mini, bambu-h2d, prusa-mk4, prusa-core-one, or a model code such as C12 or
        /// MK4S);
        /// the file's own settings still win
        #[arg(long)]
        printer_model: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Stream one G-code file to a serial printer through the serial back end, without a
    /// controller, and print a JSON summary (benchmarks and tests).
    #[command(hide = true)]
    Stream {
        /// The serial device (or pty link)
        #[arg(long)]
        port: PathBuf,
        /// Firmware profile name or path (default: detected from M115)
        #[arg(long)]
        profile: Option<String>,
        /// Lines sent ahead (1 = ping-pong; default: the profile's maximum)
        #[arg(long)]
        max_in_flight: Option<u32>,
        /// Seconds of silence before the printer is poked
        #[arg(long)]
        timeout_s: Option<f64>,
        file: PathBuf,
    },
}

#[derive(Args)]
struct ConfigArg {
    /// Path of the agent's TOML config file (every key is documented in agent.example.toml).
    /// FARM_AGENT_* variables override some keys, e.g. FARM_AGENT_BROKER_URL.
    #[arg(long, short, env = "FARM_AGENT_CONFIG", value_name = "PATH")]
    config: PathBuf,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause already quoted by its parent.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut prev = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !prev.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        prev = text;
    }
    out
}

fn real_main() -> anyhow::Result<()> {
    // reqwest is built without a crypto provider and panics without one: install it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // Logs go to stderr (stdout is for command output); colour only on a terminal, so
    // journald gets plain text.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match cli.command {
        Cmd::Analyze {
            file,
            plate,
            printer_model,
            json,
        } => analyze_cmd::run(&file, plate, printer_model.as_deref(), json),
        Cmd::Stream {
            port,
            profile,
            max_in_flight,
            timeout_s,
            file,
        } => {
            let mut cfg = farm_agent::serial::SerialConfig::new(port);
            cfg.profile = profile;
            cfg.max_in_flight = max_in_flight;
            cfg.timeout_s = timeout_s;
            let rt = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let summary = rt.block_on(farm_agent::serial::cli::stream(cfg, &file))?;
            println!("{}", serde_json::to_string(&summary)?);
            Ok(())
        }
        Cmd::CheckConfig(a) => {
            let config = farm_agent::Config::load(&a.config)
                .with_context(|| format!("config {} is not usable", a.config.display()))?;
            print!("{}", config.summary());
            println!("config OK: {}", a.config.display());
            Ok(())
        }
        Cmd::Run(a) => {
            let config = farm_agent::Config::load(&a.config)
                .with_context(|| format!("config {} is not usable", a.config.display()))?;
            let rt = tokio::runtime::Runtime::new().context(
                "cannot start the async runtime; is the system out of threads or memory?",
            )?;
            rt.block_on(run(config))
        }
    }
}

async fn run(config: farm_agent::Config) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("stopping (signal received)");
        stop_tx.send_replace(true);
        // Keep the sender alive: dropping it would also mean "stop", but say it once.
        std::future::pending::<()>().await;
    });
    farm_agent::run(config, stop_rx)
        .await
        .context("the agent stopped with an error")
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the agent");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

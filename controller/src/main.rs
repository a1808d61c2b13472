//! `farm-controller`: the CLI over the controller library.

use anyhow::Context;
use clap::{Parser, Subcommand};
use farm_controller::auth::Role;
use farm_controller::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The print-farm controller: MQTT broker, job queue and scheduler, REST API, live dashboard.
#[derive(Parser)]
#[command(
    version,
    about,
    long_about = None,
    after_help = "Logging: set RUST_LOG (default `info`), e.g. RUST_LOG=farm_controller=debug. \
        The embedded broker's per-connection lines are left out unless RUST_LOG is set \
        (RUST_LOG=info,rmqtt=debug shows them).\n\
        Try it: `cargo run --release -p farm-demo` (or `farm-demo`) runs a whole farm of simulated printers."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// Where the configuration comes from; flags beat the file, the file beats the defaults.
#[derive(clap::Args, Clone)]
struct Common {
    /// TOML config file (every key optional; see controller/controller.example.toml)
    #[arg(long, env = "FARM_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the store (farm.redb) and uploaded files [default: ./farm-state]
    #[arg(long, env = "FARM_STATE_DIR")]
    state_dir: Option<PathBuf>,
}

impl Common {
    fn load(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(d) = &self.state_dir {
            c.state_dir = d.clone();
        }
        Ok(c)
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the controller (embedded broker unless --broker is given)
    Serve {
        #[command(flatten)]
        common: Common,
        /// HTTP listen address (API, dashboard, /metrics) [default: 0.0.0.0:8080]
        #[arg(long, env = "FARM_HTTP")]
        http: Option<SocketAddr>,
        /// Embedded MQTT broker listen address [default: 0.0.0.0:1883]
        #[arg(long, env = "FARM_MQTT_LISTEN")]
        mqtt_listen: Option<SocketAddr>,
        /// Use an external broker instead of the embedded one: mqtt://user:password@host:1883
        #[arg(long, env = "FARM_BROKER_URL")]
        broker: Option<String>,
        /// Base URL agents fetch job files from [default: http://<host>:<http port>]
        #[arg(long, env = "FARM_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Run a whole demo farm on this machine: runs `farm-demo` (installed beside this binary) with these arguments
    #[command(disable_help_flag = true)]
    Demo {
        /// Passed to farm-demo as they are (`farm-controller demo --help` shows its options)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Enrol and list printers (works on the store directly: stop `serve` first, or use POST /api/v1/printers)
    Printer {
        #[command(subcommand)]
        command: PrinterCmd,
    },
    /// Manage API tokens (stop `serve` first)
    Token {
        #[command(subcommand)]
        command: TokenCmd,
    },
}

#[derive(Subcommand)]
enum PrinterCmd {
    /// Enrol a printer: mints its id, secret and token and prints a ready agent config
    Add {
        /// Printer id: 1-64 of a-z, 0-9, '-'
        id: String,
        /// Human name shown on the dashboard [default: the id]
        #[arg(long)]
        name: Option<String>,
        /// The printer clears its own bed (no operator confirmation between jobs)
        #[arg(long)]
        auto_eject: bool,
        #[command(flatten)]
        common: Common,
    },
    /// List enrolled printers
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an API token and print it (it is stored only as a hash)
    Add {
        /// admin, operator, viewer or shop
        #[arg(long)]
        role: Role,
        /// Who or what the token is for
        #[arg(long)]
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    farm_controller::logging::init();
    match cli.command {
        Cmd::Serve {
            common,
            http,
            mqtt_listen,
            broker,
            public_url,
        } => {
            let mut c = common.load()?;
            c.http_listen = http.unwrap_or(c.http_listen);
            c.mqtt_listen = mqtt_listen.unwrap_or(c.mqtt_listen);
            c.broker_url = broker.or(c.broker_url);
            c.public_url = public_url.or(c.public_url);
            let state_dir = c.state_dir.clone();
            let (stop_tx, stop) = tokio::sync::watch::channel(false);
            let ctl = farm_controller::start(c, stop).await?;
            if !ctl.farm.has_admin() {
                let token = ctl.farm.add_token("first admin", Role::Admin).await?;
                let path = state_dir.join("admin-token");
                write_secret(&path, &token)?;
                tracing::info!(
                    "created the first admin token; it is in {} (readable only by this user)",
                    path.display()
                );
            }
            tokio::select! {
                _ = wait_for_stop() => {}
                why = ctl.fatal() => {
                    let _ = stop_tx.send(true);
                    // Not a return through the runtime's shutdown: a task stuck on the dead
                    // broker must not hold the exit up. Everything acknowledged is committed.
                    tracing::error!(
                        "stopping: {why}; exiting with status 1 for the service manager to restart the controller (agents keep their events and send them again)"
                    );
                    std::process::exit(1);
                }
            }
            let _ = stop_tx.send(true);
        }
        Cmd::Demo { args } => return Err(run_demo(args)),
        Cmd::Printer {
            command:
                PrinterCmd::Add {
                    id,
                    name,
                    auto_eject,
                    common,
                },
        } => {
            let c = common.load()?;
            let farm = farm_controller::open_offline(&c)?;
            let (rec, token) = farm.add_printer(&id, name.as_deref(), auto_eject).await?;
            let endpoints = farm_controller::printers::enrol::Endpoints {
                controller_url: c.public_url(),
                broker_url: c.agent_broker_url(),
                topic_root: c.topic_root.clone(),
            };
            print!(
                "{}",
                farm_controller::printers::enrol::agent_config(&rec, &token, &endpoints)
            );
            eprintln!(
                "\nPrinter {} enrolled. Save the config above as /etc/farm-agent/agent.toml on its Pi.",
                rec.id
            );
            if c.broker_url.is_some() {
                eprintln!(
                    "External broker: add user {:?} with the token above as its password to the broker.",
                    rec.id
                );
            }
        }
        Cmd::Printer {
            command: PrinterCmd::List { common },
        } => {
            let farm = farm_controller::open_offline(&common.load()?)?;
            for p in farm.printers() {
                println!(
                    "{}\t{}\t{}",
                    p.id,
                    p.name,
                    if p.auto_eject {
                        "auto-eject"
                    } else {
                        "operator clears bed"
                    }
                );
            }
        }
        Cmd::Token {
            command: TokenCmd::Add { role, name, common },
        } => {
            anyhow::ensure!(
                role != Role::Agent,
                "agent tokens are minted by `printer add`"
            );
            let farm = farm_controller::open_offline(&common.load()?)?;
            println!("{}", farm.add_token(&name, role).await?);
        }
    }
    Ok(())
}

fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{secret}")?;
    Ok(())
}

/// `farm-controller demo`: becomes the `farm-demo` binary next to this one. The demo's
/// in-process agents (serial, OctoPrint, Moonraker back ends) live in that crate so the server
/// binary does not link them; this keeps the old command working wherever both are installed.
/// Returns only on failure.
fn run_demo(args: Vec<std::ffi::OsString>) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("farm-demo")))
        .filter(|p| p.is_file());
    let Some(demo) = beside else {
        return anyhow::anyhow!(
            "the demo is its own binary, farm-demo, and it is not installed beside farm-controller; \
             from the source tree run: cargo run --release -p farm-demo"
        );
    };
    let err = std::process::Command::new(&demo).args(args).exec();
    anyhow::anyhow!("could not run {}: {err}", demo.display())
}

async fn wait_for_stop() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

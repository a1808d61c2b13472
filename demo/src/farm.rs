//! The demo farm: the controller on its embedded broker and store, plus simulated printers
//! (real agents, over MQTT on loopback) working through sample jobs. What a newcomer runs
//! first.

use anyhow::{Context, bail};
use farm_controller::auth::Role;
use farm_controller::config::Config;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;

const SAMPLES: [(&str, &[u8]); 3] = [
    (
        "calibration-cube.gcode",
        include_bytes!("../samples/calibration-cube.gcode"),
    ),
    (
        "cable-clip.gcode",
        include_bytes!("../samples/cable-clip.gcode"),
    ),
    (
        "spool-spacer.gcode",
        include_bytes!("../samples/spool-spacer.gcode"),
    ),
];

pub struct Options {
    pub printers: usize,
    pub speed: f64,
    pub http: SocketAddr,
    pub state_dir: Option<PathBuf>,
    pub fail_probability: f64,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn run(o: Options) -> anyhow::Result<()> {
    let temp = o.state_dir.is_none();
    let dir = o
        .state_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("farm-demo-{}", std::process::id())));
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} is not empty; the demo starts from a fresh farm: pass an empty or new --state-dir",
            dir.display()
        );
    }
    let config = Config {
        state_dir: dir.join("controller"),
        http_listen: o.http,
        mqtt_listen: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
        // The demo listens on loopback only; let the local browser in without a token.
        anonymous_role: Some(Role::Operator),
        ..Config::default()
    };
    let (stop_tx, stop) = watch::channel(false);
    let t0 = std::time::Instant::now();
    let ctl = farm_controller::start(config, stop.clone()).await?;
    let admin = ctl.farm.add_token("demo admin", Role::Admin).await?;

    let mut agents = vec![];
    for i in 1..=o.printers {
        let id = format!("demo-{i:02}");
        // Two printers wait for an operator to clear the bed; the rest eject by themselves.
        let (rec, token) = ctl
            .farm
            .add_printer(&id, Some(&format!("Demo printer {i}")), i > 2)
            .await?;
        let mut table: toml::Table = toml::from_str(
            &farm_controller::printers::enrol::agent_config(&rec, &token, &ctl.enrol),
        )?;
        table.insert(
            "state_dir".into(),
            dir.join("agents").join(&id).display().to_string().into(),
        );
        if let Some(sim) = table
            .get_mut("printer")
            .and_then(|p| p.get_mut("sim"))
            .and_then(|s| s.as_table_mut())
        {
            sim.insert("speed".into(), o.speed.into());
            sim.insert("fail_probability".into(), o.fail_probability.into());
        }
        let agent_config = farm_agent::Config::from_toml_str(&toml::to_string(&table)?)
            .with_context(|| format!("agent config for {id}"))?;
        agents.push(tokio::spawn(farm_agent::run(agent_config, stop.clone())));
    }

    let mut next = 0usize;
    for _ in 0..o.printers * 2 {
        add_sample(&ctl, next).await?;
        next += 1;
    }

    println!(
        "\n  Print farm demo: {} simulated printers at {}x speed",
        o.printers, o.speed
    );
    println!("  Dashboard:  http://{}/", ctl.http_addr);
    println!(
        "  API:        http://{}/api/v1/printers   (admin token: {admin})",
        ctl.http_addr
    );
    println!("  Metrics:    http://{}/metrics", ctl.http_addr);
    println!(
        "  Printers demo-01 and demo-02 wait for \"clear bed\" after each print; the others eject by themselves."
    );
    println!("  Press Ctrl-C to stop.\n");

    let mut first_printing = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            why = ctl.fatal() => {
                let _ = stop_tx.send(true);
                bail!("the demo stopped: {why}");
            }
            _ = tick.tick() => {
                if !first_printing && ctl.farm.printers().iter().any(|p| p.activity == Some(farm_protocol::messages::Activity::Printing)) {
                    first_printing = true;
                    tracing::info!("first printer printing {:.2} s after start", t0.elapsed().as_secs_f64());
                }
                let queued = ctl.farm.jobs(Some(farm_controller::jobs::JobState::Queued), 0, o.printers).len();
                if queued < o.printers / 2 {
                    add_sample(&ctl, next).await?;
                    next += 1;
                }
            }
        }
    }
    let _ = stop_tx.send(true);
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(3), a).await;
    }
    if temp {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Uploads sample `n` (round robin) and queues one job for it.
async fn add_sample(ctl: &farm_controller::Controller, n: usize) -> anyhow::Result<()> {
    let (name, bytes) = SAMPLES[n % SAMPLES.len()];
    let body =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from_static(bytes))]);
    let stored = ctl.files.store(body).await?;
    ctl.farm.add_jobs(name, &stored, 1, 0).await?;
    Ok(())
}

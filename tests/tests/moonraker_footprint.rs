//! Footprint of the agent printing through the Moonraker back end, beside a real Moonraker.
//! Ignored in the normal suite (it takes the capture's real 30 s); run by
//! `scripts/measure-moonraker.sh`, which builds release binaries first.

use anyhow::{Result, anyhow, ensure};
use farm_e2e::moonraker::{RealMoonraker, Replay, Transcript, data_dir};
use farm_e2e::{Farm, FarmOptions, eventually, or_logs};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// The agent's memory and CPU while it prints through the Moonraker back end at 1 Hz status,
/// beside a real Moonraker's. Run by `scripts/measure-moonraker.sh` (release build); ignored
/// in the normal suite because it takes the capture's real 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run scripts/measure-moonraker.sh"]
async fn footprint_while_printing() {
    let replay = Replay::start(
        Transcript::load("b-print-complete").expect("capture"),
        vec![Transcript::load("a3-connect-idle-after-print-cooling").expect("capture")],
        1.0,
    )
    .await
    .expect("replay starts");
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = footprint(&mut farm, &replay).await;
    or_logs(r, &farm);
}

/// (RSS kB, CPU ticks) of a process from /proc.
fn proc_usage(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some((rss, ticks))
}

/// The pid of the farm-agent process whose command line names `config`.
fn agent_pid(config: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd);
        (cmd.contains("farm-agent") && cmd.contains(config)).then_some(pid)
    })
}

async fn footprint(farm: &mut Farm, replay: &Replay) -> Result<()> {
    farm.enrol("klipper-1", true, "speed = 1.0").await?;
    let cfg = farm.dir.path().join("klipper-1.toml");
    let text = std::fs::read_to_string(&cfg)?
        .replace("backend = \"sim\"", "backend = \"moonraker\"")
        + &format!("\n[printer.moonraker]\nurl = {:?}\n", replay.url);
    std::fs::write(&cfg, text)?;
    farm.start_agent("klipper-1").await?;
    let cfg = cfg.display().to_string();
    let pid = eventually("the agent process", LONG, async || agent_pid(&cfg)).await?;
    eventually("klipper-1 idle", LONG, async || {
        let p = farm.get("/api/v1/printers/klipper-1").await.ok()?;
        (p["state"] == "idle").then_some(())
    })
    .await?;
    let bytes = std::fs::read(data_dir().join("fixture-square.gcode"))?;
    farm.upload("fixture-square.gcode", bytes, 1).await?;
    // The capture prints for 29 s; measure 20 s of it once the print runs.
    eventually("printing", LONG, async || {
        let p = farm.get("/api/v1/printers/klipper-1").await.ok()?;
        (p["state"] == "busy").then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // past the start-up burst
    let (_, t0) = proc_usage(pid).ok_or_else(|| anyhow!("no /proc for {pid}"))?;
    let w0 = std::time::Instant::now();
    let mut peak = 0;
    // Sampling, not synchronisation: one RSS reading per second for the window.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, _) = proc_usage(pid).ok_or_else(|| anyhow!("agent gone"))?;
        peak = peak.max(rss);
    }
    let (rss, t1) = proc_usage(pid).ok_or_else(|| anyhow!("agent gone"))?;
    // Linux reports CPU time in USER_HZ = 100 ticks per second on every architecture.
    let cpu = (t1 - t0) as f64 / 100.0 / w0.elapsed().as_secs_f64() * 100.0;
    let m = RealMoonraker::start(true).await?;
    tokio::time::sleep(Duration::from_secs(3)).await; // let it finish loading components
    let (mr_rss, _) = m
        .pid()
        .and_then(proc_usage)
        .ok_or_else(|| anyhow!("no /proc for Moonraker"))?;
    println!(
        "FOOTPRINT agent_rss_kb={rss} agent_peak_rss_kb={peak} agent_cpu_pct={cpu:.2} window_s={:.1} moonraker_idle_rss_kb={mr_rss}",
        w0.elapsed().as_secs_f64()
    );
    ensure!(
        peak < 15 * 1024,
        "agent RSS {peak} kB over the 15 MB target"
    );
    ensure!(cpu < 2.0, "agent CPU {cpu:.2} % over the 2 % target");
    Ok(())
}

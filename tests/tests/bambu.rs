//! The Bambu Lab back end against the simulated printer (`farm_e2e::bambu`): a simulation of a
//! device we cannot run here, speaking MQTT over TLS with a certificate that names its serial,
//! FTPS with implicit TLS, and the report shapes of the real captures in `tests/data/bambu/`.
//! No real Bambu printer ran in these tests.
//!
//! Most tests run the back end in-process (as in the Moonraker tests) through the agent's
//! `Printer` interface: upload, start, progress and layers, pause, resume, cancel, an HMS
//! failure, billing by layer and exactly at completion, the certificate check, Developer Mode
//! off. One runs a job through the real controller and agent binaries.

use anyhow::{Result, anyhow, ensure};
use farm_agent::bambu::{Bambu, BambuConfig, Storage, TlsMode};
use farm_agent::printer::{Printer, PrinterCommand, Snapshot};
use farm_e2e::bambu::{SimOptions, SimPrinter, fixture_print};
use farm_e2e::{Farm, FarmOptions, eventually, or_logs, use_backend};
use farm_protocol::messages::{Activity, Event, Outcome};
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/bambu")
}

/// A four-layer job with known extrusion: 2 mm of purge, then 1, 2, 3 and 4 mm per layer.
fn job_file(dir: &Path) -> Result<PathBuf> {
    let mut g = String::from("M83\nG1 Z5 F600\nG1 E2\n");
    for (i, e) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
        let z = 0.2 * (i + 1) as f64;
        g.push_str(&format!(
            ";LAYER_CHANGE\nG1 Z{z:.1}\nG1 X{} Y10 E{e} F1200\n",
            10 * (i + 1)
        ));
    }
    let p = dir.join("cube.gcode");
    std::fs::write(&p, g)?;
    Ok(p)
}

async fn sim(opts: SimOptions) -> Result<(SimPrinter, tempfile::TempDir, BambuConfig)> {
    let printer = SimPrinter::start(opts, fixture_print(&data(), "P1P.json")?).await?;
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("sim-ca.pem");
    std::fs::write(&ca, &printer.ca_pem)?;
    let cfg = BambuConfig {
        host: "127.0.0.1".into(),
        serial: printer.opts.serial.clone(),
        access_code: printer.opts.access_code.clone(),
        tls: TlsMode::BambuCa,
        ca_file: Some(ca),
        pin_file: None,
        storage: Storage::Sdcard,
        mqtt_port: printer.mqtt_port,
        ftps_port: printer.ftps_port,
        plate: 1,
        ams_mapping: vec![],
    };
    Ok((printer, dir, cfg))
}

fn spawn(cfg: BambuConfig) -> Printer {
    farm_agent::ensure_crypto_provider();
    Printer::spawn(Bambu::new(cfg))
}

async fn until_event(
    p: &mut Printer,
    seen: &mut Vec<Event>,
    pred: impl Fn(&Event) -> bool,
) -> Result<Event> {
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let e = tokio::time::timeout_at(deadline, p.events.recv())
            .await
            .map_err(|_| anyhow!("no matching event within {LONG:?}; saw {seen:?}"))?
            .ok_or_else(|| anyhow!("the back end stopped"))?;
        seen.push(e.clone());
        if pred(&e) {
            return Ok(e);
        }
    }
}

async fn until_snapshot(
    p: &Printer,
    what: &str,
    pred: impl FnMut(&Snapshot) -> bool,
) -> Result<Snapshot> {
    let mut rx = p.snapshot.clone();
    match tokio::time::timeout(LONG, rx.wait_for(pred)).await {
        Ok(Ok(s)) => Ok(s.clone()),
        _ => Err(anyhow!(
            "{what} not seen within {LONG:?}: {:?}",
            *p.snapshot.borrow()
        )),
    }
}

async fn start(p: &Printer, file: &Path, job: &str) -> Result<()> {
    p.send(PrinterCommand::Start {
        job_id: job.into(),
        name: "cube.gcode".into(),
        path: file.to_path_buf(),
    })
    .await
    .map_err(|e| anyhow!("start: {e}"))?;
    Ok(())
}

#[tokio::test]
async fn a_print_uploads_runs_layer_by_layer_and_bills_exactly_at_completion() -> Result<()> {
    let (sim, dir, cfg) = sim(SimOptions::default()).await?;
    let mut p = spawn(cfg);
    let idle = until_snapshot(&p, "idle with temperatures", |s| s.state == Activity::Idle).await?;
    ensure!(idle.temps.iter().any(|h| h.name == "bed"), "{idle:?}");
    let file = job_file(dir.path())?;
    start(&p, &file, "j1").await?;
    let sent = std::fs::read(&file)?;
    ensure!(
        sim.file("/cache/farm-j1.gcode") == Some(sent),
        "the FTPS upload stored the file byte for byte"
    );
    let mut seen = vec![];
    until_event(&mut p, &mut seen, |e| matches!(e, Event::JobStarted { .. })).await?;
    ensure!(
        sim.commands().contains(&"gcode_file".to_string()),
        "{:?}",
        sim.commands()
    );
    let mid = until_snapshot(&p, "layer 3 of 4", |s| {
        s.job
            .as_ref()
            .is_some_and(|j| j.layer == Some(3) && j.layer_count == Some(4))
    })
    .await?;
    let j = mid.job.as_ref().ok_or_else(|| anyhow!("no job"))?;
    // At layer 3: purge 2 + layers 1 and 2 (1 + 2) = 5 mm, exact at the boundary.
    ensure!(j.extruded_mm == vec![5.0], "{:?}", j.extruded_mm);
    ensure!(j.eta_s.is_some_and(|s| s > 0.0), "{j:?}");
    let end = until_event(&mut p, &mut seen, |e| {
        matches!(e, Event::JobFinished { .. })
    })
    .await?;
    match end {
        Event::JobFinished {
            outcome: Outcome::Completed,
            extruded_mm,
            ..
        } => {
            ensure!(
                extruded_mm == vec![12.0],
                "the analyzer's total at completion: {extruded_mm:?}"
            )
        }
        other => return Err(anyhow!("{other:?}")),
    }
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn pause_resume_and_cancel_follow_the_printer_and_bill_to_the_last_layer() -> Result<()> {
    let (_sim, dir, cfg) = sim(SimOptions {
        layer_time: Duration::from_millis(400),
        ..SimOptions::default()
    })
    .await?;
    let mut p = spawn(cfg);
    until_snapshot(&p, "idle", |s| s.state == Activity::Idle).await?;
    let file = job_file(dir.path())?;
    start(&p, &file, "j2").await?;
    until_snapshot(&p, "layer 2", |s| {
        s.job.as_ref().is_some_and(|j| j.layer == Some(2))
    })
    .await?;
    p.send(PrinterCommand::Pause)
        .await
        .map_err(|e| anyhow!("pause: {e}"))?;
    let mut seen = vec![];
    until_event(&mut p, &mut seen, |e| matches!(e, Event::JobPaused { .. })).await?;
    until_snapshot(&p, "paused", |s| s.state == Activity::Paused).await?;
    p.send(PrinterCommand::Resume)
        .await
        .map_err(|e| anyhow!("resume: {e}"))?;
    until_event(&mut p, &mut seen, |e| matches!(e, Event::JobResumed { .. })).await?;
    p.send(PrinterCommand::Cancel)
        .await
        .map_err(|e| anyhow!("cancel: {e}"))?;
    match until_event(&mut p, &mut seen, |e| {
        matches!(e, Event::JobFinished { .. })
    })
    .await?
    {
        Event::JobFinished {
            outcome: Outcome::Cancelled,
            extruded_mm,
            ..
        } => {
            // Billed at the start of the highest layer reached (2, 3 or 4): 3, 5 or 8 mm.
            ensure!(
                [vec![3.0], vec![5.0], vec![8.0]].contains(&extruded_mm),
                "{extruded_mm:?}"
            )
        }
        other => return Err(anyhow!("{other:?}")),
    }
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_hms_error_fails_the_job_with_its_code_and_the_printer_shows_it() -> Result<()> {
    let (_sim, dir, cfg) = sim(SimOptions {
        fail_at_layer: Some(2),
        ..SimOptions::default()
    })
    .await?;
    let mut p = spawn(cfg);
    until_snapshot(&p, "idle", |s| s.state == Activity::Idle).await?;
    start(&p, &job_file(dir.path())?, "j3").await?;
    let mut seen = vec![];
    match until_event(&mut p, &mut seen, |e| {
        matches!(e, Event::JobFinished { .. })
    })
    .await?
    {
        Event::JobFinished {
            outcome: Outcome::Failed,
            reason: Some(why),
            extruded_mm,
            ..
        } => {
            ensure!(why.contains("0300_0100_0001_0007"), "{why}");
            ensure!(
                extruded_mm == vec![2.0],
                "billed to layer 1's start: {extruded_mm:?}"
            );
        }
        other => return Err(anyhow!("{other:?}")),
    }
    let s = until_snapshot(&p, "error state", |s| s.state == Activity::Error).await?;
    ensure!(
        s.message.as_deref().is_some_and(|m| m.contains("fatal")),
        "{s:?}"
    );
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn without_developer_mode_status_works_and_a_start_says_what_to_switch_on() -> Result<()> {
    let (_sim, dir, cfg) = sim(SimOptions {
        developer_mode: false,
        ..SimOptions::default()
    })
    .await?;
    let mut p = spawn(cfg);
    until_snapshot(&p, "idle", |s| s.state == Activity::Idle).await?;
    let mut seen = vec![];
    match until_event(&mut p, &mut seen, |e| {
        matches!(e, Event::FirmwareMessage { .. })
    })
    .await?
    {
        Event::FirmwareMessage { message } => {
            ensure!(
                message.contains("Developer Mode") && message.contains("LAN Only Mode"),
                "{message}"
            )
        }
        _ => unreachable!(),
    }
    start(&p, &job_file(dir.path())?, "j4").await?;
    match until_event(&mut p, &mut seen, |e| {
        matches!(e, Event::JobFinished { .. })
    })
    .await?
    {
        Event::JobFinished {
            outcome: Outcome::Failed,
            reason: Some(why),
            ..
        } => {
            ensure!(why.contains("Developer Mode"), "{why}")
        }
        other => return Err(anyhow!("{other:?}")),
    }
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_certificate_for_another_serial_is_refused_once_per_outage() -> Result<()> {
    let (_sim, _dir, mut cfg) = sim(SimOptions::default()).await?;
    cfg.serial = "01P00A000000001".into();
    let mut p = spawn(cfg);
    let mut seen = vec![];
    match until_event(&mut p, &mut seen, |e| {
        matches!(e, Event::PrinterError { .. })
    })
    .await?
    {
        Event::PrinterError { message } => ensure!(message.contains("serial"), "{message}"),
        _ => unreachable!(),
    }
    // Retries keep failing, but no second printer_error for the same outage.
    until_snapshot(&p, "still disconnected after a retry", |s| {
        s.state == Activity::Disconnected
            && s.message
                .as_deref()
                .is_some_and(|m| m.contains("retrying in 2 s"))
    })
    .await?;
    ensure!(
        !matches!(p.events.try_recv(), Ok(Event::PrinterError { .. })),
        "one printer_error per outage"
    );
    p.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_pinned_certificate_is_kept_and_a_different_one_refused() -> Result<()> {
    let (first, dir, mut cfg) = sim(SimOptions::default()).await?;
    let pin = dir.path().join("bambu.pin");
    cfg.tls = TlsMode::Pin;
    cfg.ca_file = None;
    cfg.pin_file = Some(pin.clone());
    let p = spawn(cfg.clone());
    until_snapshot(&p, "idle under a fresh pin", |s| s.state == Activity::Idle).await?;
    p.stop().await;
    let stored = std::fs::read_to_string(&pin)?;
    ensure!(
        stored.trim().len() == 64,
        "sha256 hex in the pin file: {stored:?}"
    );
    drop(first);
    // Another printer (another certificate) at the configured address.
    let (second, _dir2, _) = sim(SimOptions::default()).await?;
    cfg.mqtt_port = second.mqtt_port;
    cfg.ftps_port = second.ftps_port;
    let mut p = spawn(cfg);
    let mut seen = vec![];
    match until_event(&mut p, &mut seen, |e| {
        matches!(e, Event::PrinterError { .. })
    })
    .await?
    {
        Event::PrinterError { message } => {
            ensure!(
                message.contains("different certificate") && message.contains("bambu.pin"),
                "{message}"
            )
        }
        _ => unreachable!(),
    }
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_goes_through_the_farm_to_the_simulated_printer_and_is_billed_exactly() {
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = through_the_farm(&mut farm).await;
    or_logs(r, &farm);
}

async fn through_the_farm(farm: &mut Farm) -> Result<()> {
    let (sim, dir, cfg) = sim(SimOptions::default()).await?;
    let stream = farm.stream().await?;
    farm.enrol("bambu-1", true, "speed = 1.0").await?;
    let ca = cfg
        .ca_file
        .clone()
        .unwrap_or_else(|| dir.path().join("sim-ca.pem"));
    use_backend(
        farm.dir.path(),
        "bambu-1",
        "bambu",
        &sim.agent_settings(&ca)?,
    )?;
    farm.start_agent("bambu-1").await?;
    stream
        .wait_for("bambu-1 idle", LONG, |_| {
            (stream.printer_states().get("bambu-1").map(String::as_str) == Some("idle"))
                .then_some(())
        })
        .await?;
    let file = job_file(dir.path())?;
    let jobs = farm.upload("cube.gcode", std::fs::read(&file)?, 1).await?;
    let id = jobs
        .first()
        .and_then(|j| j["id"].as_str())
        .ok_or_else(|| anyhow!("no job created"))?
        .to_string();
    let job = eventually("the job completed", Duration::from_secs(120), async || {
        let j = farm.get(&format!("/api/v1/jobs/{id}")).await.ok()?;
        (j["state"] == "completed").then_some(j)
    })
    .await?;
    let got: Vec<f64> = serde_json::from_value(job["extruded_mm"].clone())?;
    ensure!(got == vec![12.0], "billed {got:?}: the file extrudes 12 mm");
    ensure!(
        sim.commands().contains(&"gcode_file".to_string()),
        "{:?}",
        sim.commands()
    );
    Ok(())
}

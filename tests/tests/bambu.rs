//! The Bambu Lab back end against the simulated printer (`farm_e2e::bambu`): a simulation of a
//! device we cannot run here, speaking MQTT over TLS with a certificate that names its serial,
//! FTPS with implicit TLS, and the report shapes of the real captures in `tests/data/bambu/`.
//! No real Bambu printer ran in these tests.
//!
//! Most tests run the back end in-process (as in the Moonraker tests) through the agent's
//! `Printer` interface: upload, start, progress and layers, pause, resume, cancel, an HMS
//! failure, billing by layer and exactly at completion, the certificate check, Developer Mode
//! off, AMS trays and the `ams_mapping` of a plate. Four run jobs through the real controller
//! and agent binaries: a G-code file billed exactly, plate 2 of a `.gcode.3mf` (sent as the
//! archive, started with `project_file` naming that plate), a real two-colour plate, and one
//! routed by the AMS trays.

use anyhow::{Result, anyhow, ensure};
use farm_agent::bambu::{Bambu, BambuConfig, Storage, TlsMode};
use farm_agent::printer::{Filament, Printer, PrinterCommand, Snapshot};
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
        model: None,
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
        filament: Default::default(),
        plate: None,
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

/// Turns an enrolled sim agent's config into one for the simulated Bambu printer.
fn bambu_config(farm: &Farm, id: &str, sim: &SimPrinter, dir: &Path) -> Result<()> {
    let ca = dir.join("sim-ca.pem");
    use_backend(farm.dir.path(), id, "bambu", &sim.agent_settings(&ca)?)
}

/// The Bambu printer's agent `bambu-1` on the simulated printer, idle in the farm.
async fn bambu_in_farm(farm: &mut Farm) -> Result<(SimPrinter, tempfile::TempDir)> {
    bambu_with(farm, SimOptions::default()).await
}

/// [`bambu_in_farm`] with the simulated printer's options (its AMS).
async fn bambu_with(
    farm: &mut Farm,
    options: SimOptions,
) -> Result<(SimPrinter, tempfile::TempDir)> {
    let (sim, dir, cfg) = sim(options).await?;
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
    Ok((sim, dir))
}

async fn completed(farm: &Farm, jobs: &[serde_json::Value]) -> Result<serde_json::Value> {
    let id = jobs
        .first()
        .and_then(|j| j["id"].as_str())
        .ok_or_else(|| anyhow!("no job created"))?
        .to_string();
    eventually("the job completed", Duration::from_secs(120), async || {
        let j = farm.get(&format!("/api/v1/jobs/{id}")).await.ok()?;
        (j["state"] == "completed").then_some(j)
    })
    .await
}

async fn through_the_farm(farm: &mut Farm) -> Result<()> {
    let (sim, dir) = bambu_in_farm(farm).await?;
    let file = job_file(dir.path())?;
    let jobs = farm.upload("cube.gcode", std::fs::read(&file)?, 1).await?;
    let job = completed(farm, &jobs).await?;
    let got: Vec<f64> = serde_json::from_value(job["extruded_mm"].clone())?;
    ensure!(got == vec![12.0], "billed {got:?}: the file extrudes 12 mm");
    ensure!(
        sim.commands().contains(&"gcode_file".to_string()),
        "{:?}",
        sim.commands()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcode_3mf_plate_goes_to_the_printer_as_a_project_and_bills_that_plate() {
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = plate_through_the_farm(&mut farm).await;
    or_logs(r, &farm);
}

async fn plate_through_the_farm(farm: &mut Farm) -> Result<()> {
    let (sim, dir) = bambu_in_farm(farm).await?;
    // Plate 1: a real OrcaSlicer file (never printed here); plate 2: the four-layer job.
    let orca = farm_e2e::plates::slicer_gcode("orcaslicer-2.3.1-gridfinity-m83")?;
    let cube = std::fs::read(job_file(dir.path())?)?;
    let archive =
        farm_e2e::plates::gcode_3mf(&[(1, orca.as_slice(), 3000.0, 20.0), (2, &cube, 60.0, 0.04)])?;
    // Two plates and none named: refused, and the answer lists them.
    let (status, refusal) = farm
        .post_file("/api/v1/jobs?name=two.gcode.3mf", archive.clone())
        .await?;
    ensure!(
        status == 422
            && refusal["detail"]
                .as_str()
                .is_some_and(|d| d.contains("(1, 2)")),
        "{status} {refusal}"
    );
    let (status, up) = farm
        .post_file("/api/v1/jobs?name=two.gcode.3mf&plate=2", archive)
        .await?;
    ensure!(status == 201, "{status} {up}");
    ensure!(
        up["plates"][1]["slicer_estimated_s"] == 60.0 && up["jobs"][0]["plate"] == 2,
        "{up}"
    );
    let jobs = up["jobs"].as_array().cloned().unwrap_or_default();
    let job = completed(farm, &jobs).await?;
    let got: Vec<f64> = serde_json::from_value(job["extruded_mm"].clone())?;
    ensure!(got == vec![12.0], "billed {got:?}: plate 2 extrudes 12 mm");
    let project = sim
        .requests()
        .into_iter()
        .find(|r| r["print"]["command"] == "project_file")
        .ok_or_else(|| anyhow!("no project_file among {:?}", sim.commands()))?;
    ensure!(
        project["print"]["param"] == "Metadata/plate_2.gcode"
            && project["print"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(".gcode.3mf")),
        "{project}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_two_colour_bambu_studio_plate_prints_and_bills_each_filament_exactly() {
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = real_plate(&mut farm).await;
    or_logs(r, &farm);
}

async fn real_plate(farm: &mut Farm) -> Result<()> {
    // The plate's filaments 1 (white PLA) and 4 (#161616 PLA) are loaded in trays 0 and 1;
    // tray 2 holds black PETG, which must not be chosen for the black PLA, tray 3 red PLA.
    let tray = |id: &str, kind: &str, colour: &str| serde_json::json!({"id": id, "tray_type": kind, "tray_color": colour, "remain": 90});
    let ams = serde_json::json!({
        "ams": [{"id": "0", "tray": [
            tray("0", "PLA", "FFFFFFFF"),
            tray("1", "PLA", "161616FF"),
            tray("2", "PETG", "161616FF"),
            tray("3", "PLA", "C12E1FFF"),
        ]}],
        "ams_exist_bits": "1", "tray_exist_bits": "f", "tray_now": "255",
    });
    let options = SimOptions {
        ams: Some(ams),
        ..SimOptions::default()
    };
    let (sim, _dir) = bambu_with(farm, options).await?;
    // The inventory: each tray's spool mounted under the tray's number. Filament 4 is the
    // plate's tool 3, so billing by tool number would charge the red spool in tray 3.
    let spools = [
        ("PLA", "white", 0),
        ("PLA", "black", 1),
        ("PETG", "black", 2),
        ("PLA", "red", 3),
    ];
    let mut spool_ids = vec![];
    for (material, colour, tool) in spools {
        spool_ids.push(spool_on(farm, material, colour, tool).await?);
    }
    // One plate: it need not be named.
    let archive = farm_e2e::plates::real_3mf("bambustudio-02.05.00.66-p1s-two-colour")?;
    let (status, up) = farm
        .post_file("/api/v1/jobs?name=two-colour.gcode.3mf", archive)
        .await?;
    ensure!(
        status == 201 && up["jobs"][0]["plate"] == 1,
        "{status} {up}"
    );
    let plate = &up["plates"][0];
    ensure!(
        plate["slicer_estimated_s"]
            .as_f64()
            .is_some_and(|s| s > 0.0)
            && plate["slots"].as_array().is_some_and(|s| s.len() == 2),
        "the slicer's figures: {plate}"
    );
    let want: Vec<f64> = serde_json::from_value(plate["filament_mm"].clone())?;
    // Two colours, on the slicer's filaments 1 and 4.
    ensure!(want.iter().filter(|mm| **mm > 0.0).count() == 2, "{want:?}");
    let jobs = up["jobs"].as_array().cloned().unwrap_or_default();
    let job = completed(farm, &jobs).await?;
    let got: Vec<f64> = serde_json::from_value(job["extruded_mm"].clone())?;
    ensure!(got == want, "billed {got:?}, the plate extrudes {want:?}");
    let project = sim
        .requests()
        .into_iter()
        .find(|r| r["print"]["command"] == "project_file")
        .ok_or_else(|| anyhow!("no project_file among {:?}", sim.commands()))?;
    ensure!(
        project["print"]["param"] == "Metadata/plate_1.gcode"
            && project["print"]["ams_mapping"] == serde_json::json!([0, -1, -1, 1])
            && project["print"]["use_ams"] == true,
        "{project}"
    );
    ensure!(
        job["tool_trays"] == serde_json::json!([0, null, null, 1]),
        "the job says which tray fed each tool: {job}"
    );
    // Each colour's spool lost its own filament's grams, booked once; the others nothing.
    let fed = [(0, want[0], 0), (1, want[3], 1)];
    for (i, id) in spool_ids.iter().enumerate() {
        let lost = 1000.0 - spool_left(farm, id).await?;
        let expect = fed
            .iter()
            .find(|(spool, ..)| *spool == i)
            .map_or(0.0, |(_, mm, _)| pla_grams(*mm));
        ensure!(
            (lost - expect).abs() < 1e-6,
            "spool {id} ({:?}) lost {lost} g, its filament weighs {expect} g",
            spools[i]
        );
    }
    for (spool, mm, tray) in fed {
        let ledger = farm
            .get(&format!("/api/v1/spools/{}/ledger", spool_ids[spool]))
            .await?;
        let rows: Vec<&serde_json::Value> = ledger["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["kind"] == "consumption")
            .collect();
        let booked: f64 = rows.iter().filter_map(|r| r["mm"].as_f64()).sum();
        ensure!(
            (booked - mm).abs() < 1e-6 && rows.iter().all(|r| r["tray"] == tray),
            "spool {} booked {booked} mm of {mm} from tray {tray}: {ledger}",
            spool_ids[spool]
        );
    }
    Ok(())
}

/// A 1 kg spool of `material` `colour` mounted on `bambu-1`'s `tool`; its id.
async fn spool_on(farm: &Farm, material: &str, colour: &str, tool: u32) -> Result<String> {
    let (s, m) = farm
        .post_json(
            "/api/v1/materials",
            serde_json::json!({"material": material, "colour": colour, "cost_per_kg": 20.0}),
        )
        .await?;
    ensure!(s == 201, "material: {s} {m}");
    let (s, made) = farm
        .post_json(
            "/api/v1/spools",
            serde_json::json!({"material": m["id"], "initial_g": 1000.0}),
        )
        .await?;
    ensure!(s == 201, "spool: {s} {made}");
    let id = made["items"][0]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("no spool id in {made}"))?
        .to_string();
    let (s, v) = farm
        .post_json(
            &format!("/api/v1/spools/{id}/load"),
            serde_json::json!({"printer": "bambu-1", "tool": tool}),
        )
        .await?;
    ensure!((200..300).contains(&s), "load: {s} {v}");
    Ok(id)
}

async fn spool_left(farm: &Farm, id: &str) -> Result<f64> {
    farm.get(&format!("/api/v1/spools/{id}")).await?["remaining_g"]
        .as_f64()
        .ok_or_else(|| anyhow!("spool {id} has no remaining_g"))
}

/// Grams of `mm` of PLA at 1.75 mm (PLA's 1.24 g/cm³ in the farm's table).
fn pla_grams(mm: f64) -> f64 {
    std::f64::consts::PI * (1.75f64 / 2.0).powi(2) / 1000.0 * 1.24 * mm
}

/// An AMS as a P1S reports it, four trays: white PLA (RFID, 80 %), black PETG (50 %), an
/// empty slot, red PLA without a tag (`remain` -1); tray 0 feeding.
fn ams() -> serde_json::Value {
    let tray = |id: &str, kind: &str, colour: &str, remain: i64| {
        serde_json::json!({"id": id, "tray_type": kind, "tray_color": colour, "remain": remain,
            "tray_info_idx": "GFL99", "nozzle_temp_min": "190", "nozzle_temp_max": "240"})
    };
    serde_json::json!({
        "ams": [{"id": "0", "humidity": "4", "temp": "24.0", "tray": [
            tray("0", "PLA", "FFFFFFFF", 80),
            tray("1", "PETG", "000000FF", 50),
            {"id": "2"},
            tray("3", "PLA", "C12E1FFF", -1),
        ]}],
        "ams_exist_bits": "1", "tray_exist_bits": "b", "tray_now": "0",
    })
}

/// A `.gcode.3mf` with one plate: the four-layer job as `Metadata/plate_1.gcode` and a
/// `slice_info.config` naming the plate's filaments (id, type, colour).
fn plate_file(dir: &Path, name: &str, filaments: &[(u32, &str, &str)]) -> Result<PathBuf> {
    use std::io::Write;
    let gcode = std::fs::read(job_file(dir)?)?;
    let slots: String = filaments
        .iter()
        .map(|(id, kind, colour)| {
            format!("    <filament id=\"{id}\" type=\"{kind}\" color=\"{colour}\" used_m=\"0.1\" used_g=\"0.3\"/>\n")
        })
        .collect();
    let info = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<config>\n  <plate>\n    <metadata key=\"index\" value=\"1\"/>\n{slots}  </plate>\n</config>\n"
    );
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (entry, data) in [
        ("Metadata/plate_1.gcode", &gcode[..]),
        ("Metadata/slice_info.config", info.as_bytes()),
    ] {
        w.start_file(entry, opts)?;
        w.write_all(data)?;
    }
    let p = dir.join(name);
    std::fs::write(&p, w.finish()?.into_inner())?;
    Ok(p)
}

#[tokio::test]
async fn ams_trays_are_reported_and_a_plate_is_mapped_onto_the_trays_holding_its_filaments()
-> Result<()> {
    let (sim, dir, cfg) = sim(SimOptions {
        ams: Some(ams()),
        ..SimOptions::default()
    })
    .await?;
    let mut p = spawn(cfg);
    let idle = until_snapshot(&p, "idle with trays", |s| {
        s.state == Activity::Idle && !s.trays.is_empty()
    })
    .await?;
    let got: Vec<_> = idle
        .trays
        .iter()
        .map(|t| {
            (
                t.slot,
                t.material.as_deref(),
                t.colour.as_deref(),
                t.remain_pct,
                t.active,
            )
        })
        .collect();
    ensure!(
        got == vec![
            (0, Some("PLA"), Some("#FFFFFF"), Some(80), true),
            (1, Some("PETG"), Some("#000000"), Some(50), false),
            (2, None, None, None, false),
            (3, Some("PLA"), Some("#C12E1F"), None, false),
            (254, Some("PLA"), Some("#161616"), Some(0), false),
        ],
        "{got:?}"
    );

    // Filament 1 black PETG, filament 2 red PLA: trays 1 and 3, whatever the job says.
    let plate = plate_file(
        dir.path(),
        "two.gcode.3mf",
        &[(1, "PETG", "#000000"), (2, "PLA", "#C12E1F")],
    )?;
    p.send(PrinterCommand::Start {
        job_id: "j-ams".into(),
        name: "two.gcode.3mf".into(),
        path: plate.clone(),
        filament: Filament {
            material: Some("PLA".into()),
            colour: Some("white".into()),
            trays: vec![0],
        },
        plate: None,
    })
    .await
    .map_err(|e| anyhow!("start: {e}"))?;
    let mut seen = vec![];
    let started = until_event(&mut p, &mut seen, |e| matches!(e, Event::JobStarted { .. })).await?;
    // The farm is told which tray feeds each tool, to bill each tray's spool.
    ensure!(
        started
            == Event::JobStarted {
                job_id: "j-ams".into(),
                tool_trays: vec![Some(1), Some(3)],
            },
        "{started:?}"
    );
    let start = sim
        .requests()
        .into_iter()
        .find(|r| r["print"]["command"] == "project_file")
        .ok_or_else(|| anyhow!("no project_file: {:?}", sim.commands()))?;
    ensure!(
        start["print"]["ams_mapping"] == serde_json::json!([1, 3])
            && start["print"]["use_ams"] == true
            && start["print"]["param"] == "Metadata/plate_1.gcode",
        "{start}"
    );
    // The AMS loaded tray 1 for filament 1, and its `remain` goes down as layers print.
    until_snapshot(&p, "tray 1 feeding, below 50 %", |s| {
        s.trays
            .iter()
            .any(|t| t.slot == 1 && t.active && t.remain_pct.is_some_and(|r| r < 50))
    })
    .await?;
    until_event(&mut p, &mut seen, |e| {
        matches!(e, Event::JobFinished { .. })
    })
    .await?;

    // A plate needing ABS: refused before anything is uploaded or sent.
    let files = sim.file_count();
    let abs = plate_file(dir.path(), "abs.gcode.3mf", &[(1, "ABS", "#000000")])?;
    let refused = p
        .send(PrinterCommand::Start {
            job_id: "j-abs".into(),
            name: "abs.gcode.3mf".into(),
            path: abs,
            filament: Filament::default(),
            plate: None,
        })
        .await
        .expect_err("no tray holds ABS");
    ensure!(
        refused.contains("no AMS tray holds filament 1 (ABS") && refused.contains("1 PETG #000000"),
        "{refused}"
    );
    ensure!(sim.file_count() == files, "nothing uploaded");
    ensure!(
        sim.commands()
            .iter()
            .filter(|c| *c == "project_file")
            .count()
            == 1,
        "{:?}",
        sim.commands()
    );
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_farm_routes_a_job_by_the_ams_trays_and_says_why_another_waits() {
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = routed_by_trays(&mut farm).await;
    or_logs(r, &farm);
}

async fn routed_by_trays(farm: &mut Farm) -> Result<()> {
    let (sim, dir, _cfg) = sim(SimOptions {
        ams: Some(ams()),
        ..SimOptions::default()
    })
    .await?;
    let stream = farm.stream().await?;
    // A simulated FDM printer with black PLA declared, and the Bambu.
    farm.enrol("mk4", true, "speed = 1.0").await?;
    farm.enrol("bambu-1", true, "speed = 1.0").await?;
    bambu_config(farm, "bambu-1", &sim, dir.path())?;
    let (s, v) = farm
        .request(
            "PATCH",
            "/api/v1/printers/mk4/profile",
            serde_json::json!({"tools": [{"nozzle_mm": 0.4, "material": "PLA", "colour": "black"}]}),
        )
        .await?;
    ensure!(s == 200, "profile: {s} {v}");
    farm.start_agent("mk4").await?;
    farm.start_agent("bambu-1").await?;
    for p in ["mk4", "bambu-1"] {
        stream
            .wait_for(&format!("{p} idle"), LONG, |_| {
                (stream.printer_states().get(p).map(String::as_str) == Some("idle")).then_some(())
            })
            .await?;
    }
    // The trays are on the printer in the API.
    let printer = eventually("bambu-1's trays", LONG, async || {
        let p = farm.get("/api/v1/printers/bambu-1").await.ok()?;
        (p["trays"].as_array()?.len() == 5).then_some(p)
    })
    .await?;
    ensure!(
        printer["trays"][1]
            == serde_json::json!({"slot": 1, "material": "PETG", "colour": "#000000",
                "remain_pct": 50, "preset": "GFL99"}),
        "{}",
        printer["trays"]
    );

    // Black PETG: only the Bambu's AMS holds it.
    let file = job_file(dir.path())?;
    let bytes = std::fs::read(&file)?;
    let r = farm
        .client
        .post(format!("{}/api/v1/files?name=cube.gcode", farm.http))
        .bearer_auth(&farm.admin)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await?;
    ensure!(r.status().as_u16() == 201, "file upload: {}", r.status());
    let sha = r.json::<serde_json::Value>().await?["sha256"]
        .as_str()
        .ok_or_else(|| anyhow!("no sha256"))?
        .to_string();
    // One order per job (an operator may place orders), each naming its material and colour.
    let order = async |colour: &str| -> Result<(String, String)> {
        let (s, v) = farm
            .request(
                "POST",
                "/api/v1/orders",
                serde_json::json!({"customer_ref": colour, "items": [
                    {"sha256": sha, "quantity": 1, "material": "PETG", "colour": colour}]}),
            )
            .await?;
        ensure!(s == 201, "order: {s} {v}");
        let id = v["order"]["id"].as_str().unwrap_or_default().to_string();
        let job = v["order"]["items"][0]["copies"][0]["jobs"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok((id, job))
    };
    let (_, petg) = order("black").await?;
    let (blue_order, _) = order("blue").await?;
    let job = eventually(
        "the PETG job completed",
        Duration::from_secs(120),
        async || {
            let j = farm.get(&format!("/api/v1/jobs/{petg}")).await.ok()?;
            (j["state"] == "completed").then_some(j)
        },
    )
    .await?;
    ensure!(job["printer_id"] == "bambu-1", "{job}");
    ensure!(
        sim.commands().contains(&"gcode_file".to_string()),
        "{:?}",
        sim.commands()
    );
    // Blue PETG: nobody holds it; the job waits and says why.
    let waiting = eventually("the blue job's reason", LONG, async || {
        let o = farm
            .get(&format!("/api/v1/orders/{blue_order}"))
            .await
            .ok()?;
        let why = o["waiting"].as_array()?.first()?.as_str()?.to_string();
        why.contains("bambu-1").then_some(why)
    })
    .await?;
    ensure!(
        waiting.contains("bambu-1: no AMS tray holds PETG blue (it holds PLA #FFFFFF, PETG #000000, PLA #C12E1F, PLA #161616)"),
        "{waiting}"
    );
    ensure!(waiting.contains("mk4: tool 0 has PLA black"), "{waiting}");
    Ok(())
}

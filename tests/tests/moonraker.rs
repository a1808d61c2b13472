//! The Moonraker (Klipper) back end against the real thing.
//!
//! - **Real Moonraker 0.11.0** (PyPI, in the peers venv) for the server, upload, metadata,
//!   history and authorization paths. Klippy cannot run on this machine, so the real Moonraker
//!   always reports `klippy_state: disconnected`.
//! - **Replays of captured real Moonraker + Klipper sessions** (`tests/data/moonraker/`, see
//!   its README) for everything that needs a printing Klipper: printing, material, pause,
//!   resume, cancel, a heater-fault shutdown, an emergency stop, firmware restarts. The replay
//!   server (`farm_e2e::moonraker::Replay`) plays exactly the frames Moonraker sent, paced by
//!   the agent's own requests, accepts the upload only if it carries the captured file byte for
//!   byte, and answers only the calls some capture answered.
//!
//! The end-to-end job through the controller prints against the replay of a real print
//! (`b-print-complete`), because Klippy cannot run here.

use anyhow::{Result, anyhow, ensure};
use farm_agent::moonraker::http::{Http, HttpError};
use farm_agent::moonraker::{Moonraker, MoonrakerConfig};
use farm_agent::printer::{Printer, PrinterCommand, Snapshot};
use farm_e2e::moonraker::{RealMoonraker, Replay, Transcript, data_dir};
use farm_e2e::{Farm, FarmOptions, eventually, or_logs, use_backend};
use farm_protocol::messages::{Activity, Event, Outcome};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn analysed_mm(file: &str) -> Vec<f64> {
    let bytes = std::fs::read(data_dir().join(file)).unwrap_or_default();
    farm_protocol::gcode::analyze(&bytes[..])
        .map(|a| a.filament_mm)
        .unwrap_or_default()
}

fn spawn_backend(url: &str, api_key: &str) -> Printer {
    farm_agent::ensure_crypto_provider();
    Printer::spawn(Moonraker::new(MoonrakerConfig {
        url: url.to_string(),
        api_key: api_key.to_string(),
    }))
}

/// The next event that `pred` accepts; the others are returned too, in order.
async fn until_event(
    printer: &mut Printer,
    seen: &mut Vec<Event>,
    limit: Duration,
    pred: impl Fn(&Event) -> bool,
) -> Result<Event> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let e = tokio::time::timeout_at(deadline, printer.events.recv())
            .await
            .map_err(|_| anyhow!("no matching event within {limit:?}; saw {seen:?}"))?
            .ok_or_else(|| anyhow!("the back end stopped"))?;
        seen.push(e.clone());
        if pred(&e) {
            return Ok(e);
        }
    }
}

async fn until_snapshot(
    printer: &Printer,
    what: &str,
    limit: Duration,
    pred: impl FnMut(&Snapshot) -> bool,
) -> Result<()> {
    let mut rx = printer.snapshot.clone();
    match tokio::time::timeout(limit, rx.wait_for(pred)).await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(anyhow!(
            "{what} not seen within {limit:?}: {:?}",
            *printer.snapshot.borrow()
        )),
    }
}

async fn until_state(printer: &mut Printer, want: Activity, limit: Duration) -> Result<()> {
    until_snapshot(printer, &format!("state {want:?}"), limit, |s| {
        s.state == want
    })
    .await
}

fn says(s: &Snapshot, text: &str) -> bool {
    s.message.as_deref().is_some_and(|m| m.contains(text))
}

async fn start(printer: &Printer, job: &str, file: &str) -> Result<String> {
    printer
        .send(PrinterCommand::Start {
            job_id: job.into(),
            name: file.into(),
            path: data_dir().join(file),
            filament: Default::default(),
            plate: None,
        })
        .await
        .map_err(|e| anyhow!("start refused: {e}"))
}

fn finished(e: &Event) -> Option<(Outcome, Option<String>, Vec<f64>)> {
    match e {
        Event::JobFinished {
            outcome,
            reason,
            extruded_mm,
            ..
        } => Some((*outcome, reason.clone(), extruded_mm.clone())),
        _ => None,
    }
}

fn clean(replay: &Replay) -> Result<()> {
    ensure!(
        replay.failures().is_empty(),
        "replay failures: {:?}",
        replay.failures()
    );
    ensure!(
        replay.unanswered().is_empty(),
        "calls no capture answered: {:?}",
        replay.unanswered()
    );
    Ok(())
}

// ---------------------------------------------------------------- end to end, replayed print

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_prints_end_to_end_through_the_controller_on_a_replayed_klipper() {
    let replay = Replay::start(
        Transcript::load("b-print-complete").expect("capture"),
        vec![Transcript::load("a3-connect-idle-after-print-cooling").expect("capture")],
        3.0,
    )
    .await
    .expect("replay starts");
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = end_to_end(&mut farm, &replay).await;
    or_logs(
        r.map_err(|e| anyhow!("{e:#}\nreplay calls: {:?}", replay.calls())),
        &farm,
    );
}

async fn end_to_end(farm: &mut Farm, replay: &Replay) -> Result<()> {
    let stream = farm.stream().await?;
    farm.enrol("klipper-1", true, "speed = 1.0").await?;
    use_backend(
        farm.dir.path(),
        "klipper-1",
        "moonraker",
        &format!("url = {:?}", replay.url),
    )?;
    farm.start_agent("klipper-1").await?;
    stream
        .wait_for("klipper-1 idle", LONG, |_| {
            (stream.printer_states().get("klipper-1").map(String::as_str) == Some("idle"))
                .then_some(())
        })
        .await?;

    let bytes = std::fs::read(data_dir().join("fixture-square.gcode"))?;
    let jobs = farm.upload("fixture-square.gcode", bytes, 1).await?;
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

    // Exactly the analyzer's figure for the file (the farm's rule: filament pushed through
    // the nozzle, a per-tool high-water mark, so the final 0.80 mm retract does not
    // subtract: 12.00 mm; Klipper's own counter is net, 11.2).
    let got: Vec<f64> = serde_json::from_value(job["extruded_mm"].clone())?;
    let want = analysed_mm("fixture-square.gcode");
    ensure!(
        got.len() == 1 && (got[0] - want[0]).abs() < 1e-9 && (got[0] - 12.0).abs() < 1e-9,
        "job extruded {got:?}, the file needs {want:?}"
    );
    ensure!(job["filament_mm"] == serde_json::json!(want), "{job}");
    let states = stream.job_states_through(&id, "completed", LONG).await?;
    ensure!(
        states
            == [
                "queued",
                "assigned",
                "transferring",
                "printing",
                "completed"
            ],
        "job went through {states:?}"
    );
    let calls = replay.calls();
    for c in [
        "POST /server/files/upload",
        "printer.print.start",
        "printer.objects.subscribe",
    ] {
        ensure!(
            calls
                .iter()
                .any(|x| x.starts_with(&format!("{c} (replayed)"))
                    || x.contains(&format!("\"{c}\")")) && x.contains("replayed")),
            "the agent made the captured {c} call: {calls:?}"
        );
    }
    clean(replay)
}

// ---------------------------------------------------------------- material

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn material_comes_from_the_file_position_not_klippers_undercount() -> Result<()> {
    // b2: Klipper's filament_used ends at 3.84 mm; the file extrudes 4.00 mm.
    let replay = Replay::start(
        Transcript::load("b2-print-filament-undercount")?,
        vec![Transcript::load("a3-connect-idle-after-print-cooling")?],
        2.0,
    )
    .await?;
    let mut p = spawn_backend(&replay.url, "");
    until_state(&mut p, Activity::Idle, LONG).await?;
    start(&p, "j-b2", "fixture-segments.gcode").await?;
    let mut seen = vec![];
    let e = until_event(&mut p, &mut seen, LONG, |e| finished(e).is_some()).await?;
    let (outcome, _, mm) = finished(&e).ok_or_else(|| anyhow!("not finished"))?;
    ensure!(outcome == Outcome::Completed, "outcome {outcome:?}");
    let want = analysed_mm("fixture-segments.gcode");
    ensure!(
        mm.len() == 1 && (mm[0] - want[0]).abs() < 1e-9 && (mm[0] - 4.0).abs() < 1e-9,
        "billed {mm:?}, the file extrudes {want:?} (Klipper said 3.84)"
    );
    ensure!(
        matches!(seen.first(), Some(Event::JobStarted { .. })),
        "{seen:?}"
    );
    clean(&replay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_shorter_than_the_lookahead_completes_with_its_material() -> Result<()> {
    // b3: Moonraker never shows `printing`; print_stats stays `complete` from the last job.
    let replay = Replay::start(
        Transcript::load("b3-print-shorter-than-lookahead")?,
        vec![Transcript::load("a3-connect-idle-after-print-cooling")?],
        2.0,
    )
    .await?;
    let mut p = spawn_backend(&replay.url, "");
    until_state(&mut p, Activity::Idle, LONG).await?;
    start(&p, "j-b3", "fixture-instant.gcode").await?;
    let mut seen = vec![];
    let e = until_event(&mut p, &mut seen, LONG, |e| finished(e).is_some()).await?;
    let (outcome, _, mm) = finished(&e).ok_or_else(|| anyhow!("not finished"))?;
    ensure!(outcome == Outcome::Completed, "outcome {outcome:?}");
    ensure!(
        (mm[0] - 1.6).abs() < 1e-9,
        "billed {mm:?}, the file extrudes 1.60 mm"
    );
    clean(&replay)
}

// ---------------------------------------------------------------- pause, resume, cancel

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_follow_the_replayed_session() -> Result<()> {
    let replay = Replay::start(
        Transcript::load("c-pause-resume-cancel")?,
        vec![Transcript::load("a3-connect-idle-after-print-cooling")?],
        4.0,
    )
    .await?;
    let mut p = spawn_backend(&replay.url, "");
    until_state(&mut p, Activity::Idle, LONG).await?;
    start(&p, "j-c", "fixture-long.gcode").await?;
    let mut seen = vec![];
    until_event(&mut p, &mut seen, LONG, |e| {
        matches!(e, Event::JobStarted { .. })
    })
    .await?;
    until_state(&mut p, Activity::Printing, LONG).await?;

    // Act where the capture acted: everything Klipper said before it is played first.
    replay.wait_for_cue("printer.print.pause", LONG).await?;
    p.send(PrinterCommand::Pause)
        .await
        .map_err(|e| anyhow!("pause: {e}"))?;
    until_event(&mut p, &mut seen, LONG, |e| {
        matches!(e, Event::JobPaused { .. })
    })
    .await?;
    until_state(&mut p, Activity::Paused, LONG).await?;
    let during = p
        .snapshot
        .borrow()
        .job
        .clone()
        .ok_or_else(|| anyhow!("no job while paused"))?;
    ensure!(
        during.extruded_mm[0] > 0.0,
        "material counted while printing: {during:?}"
    );

    replay.wait_for_cue("printer.print.resume", LONG).await?;
    p.send(PrinterCommand::Resume)
        .await
        .map_err(|e| anyhow!("resume: {e}"))?;
    until_event(&mut p, &mut seen, LONG, |e| {
        matches!(e, Event::JobResumed { .. })
    })
    .await?;

    replay.wait_for_cue("printer.print.cancel", LONG).await?;
    p.send(PrinterCommand::Cancel)
        .await
        .map_err(|e| anyhow!("cancel: {e}"))?;
    let e = until_event(&mut p, &mut seen, LONG, |e| finished(e).is_some()).await?;
    let (outcome, _, mm) = finished(&e).ok_or_else(|| anyhow!("not finished"))?;
    ensure!(outcome == Outcome::Cancelled, "outcome {outcome:?}");
    // The last position Klipper reported before the cancel reset it to 0 was byte 295:
    // 10 moves of +1 mm, as Klipper's own counter also says here.
    ensure!(
        (mm[0] - 10.0).abs() < 1e-9,
        "billed {mm:?} for the cancelled job"
    );
    until_state(&mut p, Activity::Idle, LONG).await?;
    clean(&replay)
}

// ---------------------------------------------------------------- shutdown and restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heater_fault_fails_the_job_and_firmware_restart_recovers() -> Result<()> {
    let replay = Replay::start(
        Transcript::load("d-heater-fault-shutdown-restart")?,
        vec![
            Transcript::load("a3-connect-idle-after-print-cooling")?,
            // d printed the file c had uploaded; c holds Moonraker's answer to that upload.
            Transcript::load("c-pause-resume-cancel")?,
        ],
        3.0,
    )
    .await?;
    let mut p = spawn_backend(&replay.url, "");
    until_state(&mut p, Activity::Idle, LONG).await?;
    start(&p, "j-d", "fixture-long.gcode").await?;
    let mut seen = vec![];
    let err = until_event(&mut p, &mut seen, LONG, |e| {
        matches!(e, Event::PrinterError { .. })
    })
    .await?;
    ensure!(
        format!("{err:?}").contains("Heater extruder not heating at expected rate"),
        "{err:?}"
    );
    let e = until_event(&mut p, &mut seen, LONG, |e| finished(e).is_some()).await?;
    let (outcome, reason, mm) = finished(&e).ok_or_else(|| anyhow!("not finished"))?;
    ensure!(outcome == Outcome::Failed, "outcome {outcome:?}");
    ensure!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("Heater extruder not heating")),
        "reason {reason:?}"
    );
    // Last position before the shutdown: byte 225, the 7th +1 mm move (Klipper said 7.0 too).
    ensure!((mm[0] - 7.0).abs() < 1e-9, "billed {mm:?}");
    until_state(&mut p, Activity::Error, LONG).await?;
    let refused = start(&p, "j-d2", "fixture-long.gcode").await;
    ensure!(refused.is_err(), "a job was accepted in shutdown");

    p.send(PrinterCommand::Gcode(vec!["FIRMWARE_RESTART".into()]))
        .await
        .map_err(|e| anyhow!("firmware restart: {e}"))?;
    until_event(&mut p, &mut seen, LONG, |e| {
        matches!(e, Event::PrinterReady {})
    })
    .await?;
    until_state(&mut p, Activity::Idle, LONG).await?;
    clean(&replay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_stop_halts_klipper_until_a_firmware_restart() -> Result<()> {
    let replay = Replay::start(
        Transcript::load("d2-emergency-stop-restart")?,
        vec![Transcript::load("a3-connect-idle-after-print-cooling")?],
        3.0,
    )
    .await?;
    let mut p = spawn_backend(&replay.url, "");
    until_state(&mut p, Activity::Idle, LONG).await?;
    p.send(PrinterCommand::Gcode(vec!["M104 S150".into()]))
        .await
        .map_err(|e| anyhow!("M104: {e}"))?;
    replay.wait_for_cue("printer.emergency_stop", LONG).await?;
    p.send(PrinterCommand::EmergencyStop)
        .await
        .map_err(|e| anyhow!("e-stop: {e}"))?;
    let mut seen = vec![];
    until_event(&mut p, &mut seen, LONG, |e| {
        matches!(e, Event::PrinterError { .. })
    })
    .await?;
    until_state(&mut p, Activity::Error, LONG).await?;
    let msg = p.snapshot.borrow().message.clone().unwrap_or_default();
    ensure!(
        msg.contains("Shutdown due to webhooks request") && msg.contains("FIRMWARE_RESTART"),
        "the operator is told what happened and what to do: {msg}"
    );
    let g28 = p.send(PrinterCommand::Gcode(vec!["G28".into()])).await;
    ensure!(
        g28.as_ref()
            .is_err_and(|e| e.contains("Shutdown due to webhooks request")),
        "G-code in shutdown answers Klipper's reason: {g28:?}"
    );
    p.send(PrinterCommand::Gcode(vec!["M999".into()]))
        .await
        .map_err(|e| anyhow!("M999: {e}"))?;
    until_event(&mut p, &mut seen, LONG, |e| {
        matches!(e, Event::PrinterReady {})
    })
    .await?;
    until_state(&mut p, Activity::Idle, LONG).await?;
    clean(&replay)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn klippy_not_yet_connected_is_disconnected_until_it_is_ready() -> Result<()> {
    let replay = Replay::start(
        Transcript::load("a2-connect-before-klippy-ready")?,
        vec![Transcript::load("a3-connect-idle-after-print-cooling")?],
        1.0,
    )
    .await?;
    let mut p = spawn_backend(&replay.url, "");
    until_snapshot(&p, "Klippy missing", LONG, |s| {
        s.state == Activity::Disconnected && says(s, "Klippy is not connected")
    })
    .await?;
    // notify_klippy_ready (0.8 s into the capture) → subscribe → idle.
    until_state(&mut p, Activity::Idle, LONG).await?;
    let temps = p.snapshot.borrow().temps.clone();
    ensure!(
        temps.iter().map(|h| h.name.as_str()).collect::<Vec<_>>() == ["tool0", "bed"],
        "{temps:?}"
    );
    clean(&replay)
}

// ---------------------------------------------------------------- real Moonraker 0.11

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_moonraker_takes_the_upload_and_serves_metadata_and_history() {
    let m = RealMoonraker::start(false).await.expect("Moonraker starts");
    let r = real_paths(&m).await;
    if let Err(e) = r {
        panic!("{e:#}\n{}", m.log());
    }
}

async fn real_paths(m: &RealMoonraker) -> Result<()> {
    farm_agent::ensure_crypto_provider();
    let http = Http::new(&m.url, &m.api_key)?;
    let info = http.server_info().await?;
    ensure!(info["moonraker_version"] == "0.11.0", "{info}");
    ensure!(info["klippy_state"] == "disconnected", "{info}");

    let file = data_dir().join("fixture-square.gcode");
    let stored = http.upload(&file, "fixture-square.gcode").await?;
    ensure!(
        stored.path == "fixture-square.gcode" && stored.size == 704,
        "{stored:?}"
    );
    let on_disk = std::fs::read(
        m.dir
            .path()
            .join("printer_data/gcodes/fixture-square.gcode"),
    )?;
    ensure!(
        on_disk == std::fs::read(&file)?,
        "Moonraker stored the same bytes"
    );
    // Moonraker's own parser read the file we streamed (first layer, temperatures).
    // Moonraker parses in the background: wait for the parsed fields, not just the entry.
    let meta = eventually("metadata", Duration::from_secs(20), async || {
        let m = http.metadata("fixture-square.gcode").await.ok()?;
        m.get("first_layer_extr_temp").is_some().then_some(m)
    })
    .await?;
    ensure!(
        meta["size"] == 704 && meta["first_layer_extr_temp"] == 200.0,
        "{meta}"
    );
    ensure!(
        meta["first_layer_bed_temp"] == 60.0 && meta["object_height"] == 5.0,
        "{meta}"
    );
    // Uploading again replaces the file (same answer).
    let again = http.upload(&file, "fixture-square.gcode").await?;
    ensure!(again == stored, "{again:?}");

    let history = http.history(10).await?;
    ensure!(
        history["count"] == 0,
        "no job ran on this Moonraker: {history}"
    );
    let missing = http.history_job("00FFFF").await;
    ensure!(
        matches!(&missing, Err(HttpError::Status { status: 404, message, .. }) if message.contains("00FFFF")),
        "{missing:?}"
    );
    // No print can start without Klippy: the back end says so instead of uploading blindly.
    let p = spawn_backend(&m.url, &m.api_key);
    until_snapshot(&p, "Klippy missing", LONG, |s| {
        s.state == Activity::Disconnected && says(s, "Klippy is not connected")
    })
    .await?;
    let refused = start(&p, "j-real", "fixture-instant.gcode").await;
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("Klippy is not connected")),
        "{refused:?}"
    );
    ensure!(
        !m.dir
            .path()
            .join("printer_data/gcodes/fixture-instant.gcode")
            .exists(),
        "nothing uploaded for a job that cannot start"
    );
    p.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_moonraker_refuses_wrong_or_missing_keys_and_the_agent_says_what_to_do() {
    let m = RealMoonraker::start(false).await.expect("Moonraker starts");
    let r = real_auth(&m).await;
    if let Err(e) = r {
        panic!("{e:#}\n{}", m.log());
    }
}

async fn real_auth(m: &RealMoonraker) -> Result<()> {
    farm_agent::ensure_crypto_provider();
    // HTTP: an untrusted caller without a key, and with a wrong key.
    for (key, says) in [
        ("", "trusted_clients"),
        ("0000000000000000000000000000beef", "the API key is wrong"),
    ] {
        let e = Http::new(&m.url, key)?.server_info().await;
        match &e {
            Err(e @ HttpError::Unauthorized { .. }) => {
                ensure!(e.to_string().contains(says), "{e}");
                ensure!(
                    !e.to_string().contains("Traceback"),
                    "no Python traceback: {e}"
                );
            }
            other => return Err(anyhow!("expected 401 for key {key:?}, got {other:?}")),
        }
    }
    let upload = Http::new(&m.url, "wrong")?
        .upload(&data_dir().join("fixture-square.gcode"), "x.gcode")
        .await;
    ensure!(
        matches!(upload, Err(HttpError::Unauthorized { .. })),
        "{upload:?}"
    );

    // Websocket: the back end with a wrong key reports it and retries politely, then recovers
    // when the right key arrives with a config reload.
    let mut p = spawn_backend(&m.url, "0000000000000000000000000000beef");
    let t0 = tokio::time::Instant::now();
    let mut seen = vec![];
    let e = until_event(&mut p, &mut seen, LONG, |e| {
        matches!(e, Event::PrinterError { .. })
    })
    .await?;
    let text = format!("{e:?}");
    ensure!(
        text.contains("Invalid API Key") && text.contains("api_key"),
        "{text}"
    );
    let msg = p.snapshot.borrow().message.clone().unwrap_or_default();
    ensure!(
        msg.contains("retrying in 30 s"),
        "polite retry announced: {msg}"
    );
    ensure!(p.snapshot.borrow().state == Activity::Disconnected);
    // Commands meanwhile get the reason, not a hang.
    let refused = p.send(PrinterCommand::Pause).await;
    ensure!(
        refused.is_err_and(|e| e.contains("Invalid API Key")),
        "pause while locked out"
    );
    let mut cfg = farm_agent::config::PrinterConfig {
        backend: "moonraker".into(),
        sim: Default::default(),
        serial: None,
        octoprint: None,
        moonraker: Some(MoonrakerConfig {
            url: m.url.clone(),
            api_key: m.api_key.clone(),
        }),
        bambu: None,
        prusalink: None,
    };
    p.send(PrinterCommand::Reconfigure(cfg.clone()))
        .await
        .map_err(|e| anyhow!("reconfigure: {e}"))?;
    until_snapshot(&p, "connected with the right key", LONG, |s| {
        says(s, "Klippy is not connected")
    })
    .await?;
    ensure!(
        t0.elapsed() < Duration::from_secs(25),
        "the reload did not wait out the retry"
    );
    p.stop().await;

    // No key from an untrusted address: the socket opens, calls are refused.
    cfg.moonraker = Some(MoonrakerConfig {
        url: m.url.clone(),
        api_key: String::new(),
    });
    let mut p = spawn_backend(&m.url, "");
    let e = until_event(&mut p, &mut seen, LONG, |e| {
        matches!(e, Event::PrinterError { .. })
    })
    .await?;
    ensure!(format!("{e:?}").contains("trusted_clients"), "{e:?}");
    p.stop().await;
    Ok(())
}

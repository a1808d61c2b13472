//! The OctoPrint back end against real OctoPrint 1.11.8 with its Virtual Printer, each test
//! with its own OctoPrint, controller and agent process: a whole print through the controller;
//! pause, resume and a cancel billed exactly to OctoPrint's file position; OctoPrint restarted
//! while idle; a wrong API key.

use anyhow::{Context, Result, ensure};
use farm_e2e::octoprint::{APP_KEY, OctoPrint, Watcher, use_octoprint};
use farm_e2e::relay::Relay;
use farm_e2e::{Farm, FarmOptions, data, eventually, or_logs};
use farm_protocol::gcode::ExtrusionIndex;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PRINTER: &str = "op-1";
/// OctoPrint start-up is 3–6 s alone; on a loaded 2-core CI it can take far longer.
const LONG: Duration = Duration::from_secs(120);

/// An OctoPrint, a controller, and one agent driving that OctoPrint with `key`.
async fn setup(key: &str) -> Result<(OctoPrint, Farm)> {
    let (op, farm) = tokio::join!(OctoPrint::start_temp(), Farm::start(FarmOptions::default()));
    let (op, mut farm) = (op?, farm?);
    // auto_eject: the printer is ready for the next job without an operator.
    farm.enrol(PRINTER, true, "speed = 1.0").await?;
    use_octoprint(farm.dir.path(), PRINTER, &op.url, key)?;
    farm.start_agent(PRINTER).await?;
    Ok((op, farm))
}

/// Runs a test body; on failure prints the farm's logs and OctoPrint's.
async fn run<F>(key: &str, body: F)
where
    F: AsyncFnOnce(&mut OctoPrint, &mut Farm) -> Result<()>,
{
    let (mut op, mut farm) = match setup(key).await {
        Ok(v) => v,
        Err(e) => panic!("setup: {e:#}"),
    };
    let r = body(&mut op, &mut farm).await;
    let r = r.map_err(|e| e.context(format!("OctoPrint log:\n{}", op.log_tail())));
    or_logs(r, &farm);
    let _ = op.stop().await;
}

async fn printer(farm: &Farm) -> Option<Value> {
    farm.get(&format!("/api/v1/printers/{PRINTER}")).await.ok()
}

async fn wait_printer_state(farm: &Farm, state: &str, limit: Duration) -> Result<Value> {
    eventually(&format!("printer {state}"), limit, async || {
        printer(farm).await.filter(|p| p["state"] == state)
    })
    .await
}

async fn job(farm: &Farm, id: &str) -> Option<Value> {
    farm.get(&format!("/api/v1/jobs/{id}")).await.ok()
}

async fn wait_job_state(farm: &Farm, id: &str, state: &str, limit: Duration) -> Result<Value> {
    eventually(&format!("job {id} {state}"), limit, async || {
        job(farm, id).await.filter(|j| j["state"] == state)
    })
    .await
}

fn mm(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

async fn upload(farm: &Farm, file: &str) -> Result<String> {
    let jobs = farm
        .upload(file, data(&format!("octoprint/{file}")), 1)
        .await?;
    jobs.first()
        .and_then(|j| j["id"].as_str())
        .map(str::to_string)
        .context("no job created")
}

/// Submits `short.gcode` and follows it to `completed`, checking status on the way.
async fn print_short(farm: &Farm, op: &OctoPrint) -> Result<Value> {
    let id = upload(farm, "short.gcode").await?;
    let mut seen_pos = 0u64;
    let mut seen_hot = false;
    let done = eventually("the print completed", LONG, async || {
        let p = printer(farm).await?;
        if p["job"]["job_id"] == id.as_str() {
            seen_pos = seen_pos.max(p["job"]["file_pos"].as_u64().unwrap_or(0));
        }
        let hot = p["temps"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| h["name"] == "tool0" && h["target"].as_f64().unwrap_or(0.0) >= 40.0);
        seen_hot |= hot;
        job(farm, &id).await.filter(|j| j["state"] == "completed")
    })
    .await?;
    ensure!(seen_pos > 0, "the controller saw the file position advance");
    ensure!(seen_hot, "the controller saw tool0 heating to 40 °C");
    let (got, want) = (mm(&done["extruded_mm"]), mm(&done["filament_mm"]));
    ensure!(
        !want.is_empty()
            && got.len() == want.len()
            && got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-9),
        "billed {got:?} but the file takes {want:?}"
    );
    // OctoPrint itself printed the file to the end.
    let files = op.get("/api/files/local?recursive=true").await?;
    let ours = files["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(id.as_str()))
        })
        .cloned()
        .context("the job's file is on OctoPrint")?;
    ensure!(
        ours["prints"]["success"] == 1,
        "OctoPrint counts one successful print: {}",
        ours["prints"]
    );
    Ok(done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_prints_through_the_controller_on_octoprint_and_bills_the_files_filament() {
    run(APP_KEY, async |op, farm| {
        let stream = farm.stream().await?;
        wait_printer_state(farm, "idle", LONG).await?;
        let done = print_short(farm, op).await?;
        let id = done["id"].as_str().unwrap_or_default();
        let states = stream.job_states_through(id, "completed", LONG).await?;
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
        let p = wait_printer_state(farm, "idle", LONG).await?;
        ensure!(
            p["agent"]["backend"] == "octoprint",
            "agent health: {}",
            p["agent"]
        );
        Ok(())
    })
    .await;
}

/// Waits until the printer's job has read past `bytes` of its file.
async fn wait_file_pos(farm: &Farm, bytes: u64) -> Result<u64> {
    eventually(&format!("file position past {bytes}"), LONG, async || {
        let p = printer(farm).await?;
        let pos = p["job"]["file_pos"].as_u64()?;
        (pos > bytes).then_some(pos)
    })
    .await
}

async fn command(farm: &Farm, kind: &str) -> Result<()> {
    let (s, body) = farm
        .post_json(
            &format!("/api/v1/printers/{PRINTER}/commands"),
            json!({ "kind": kind }),
        )
        .await?;
    ensure!(s == 202, "{kind} answered {s}: {body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_a_cancel_that_bills_exactly_to_octoprints_file_position() {
    run(APP_KEY, async |op, farm| {
        let watcher: Watcher = op.watch().await?;
        wait_printer_state(farm, "idle", LONG).await?;
        let id = upload(farm, "long.gcode").await?;
        // Past the heating lines (pausing during M109 would stay "Pausing" until heated).
        let header = 300;
        wait_file_pos(farm, header).await?;

        command(farm, "pause").await?;
        wait_job_state(farm, &id, "paused", LONG).await?;
        watcher.wait_for("PrintPaused", LONG, |_| true).await?;
        wait_printer_state(farm, "paused", LONG).await?;

        command(farm, "resume").await?;
        wait_job_state(farm, &id, "printing", LONG).await?;
        watcher.wait_for("PrintResumed", LONG, |_| true).await?;
        let at = printer(farm)
            .await
            .and_then(|p| p["job"]["file_pos"].as_u64());
        wait_file_pos(farm, at.unwrap_or(header) + 400).await?;

        let (s, body) = farm
            .post_json(&format!("/api/v1/jobs/{id}/cancel"), Value::Null)
            .await?;
        ensure!(s == 200 || s == 202, "cancel answered {s}: {body}");
        let cancelled = wait_job_state(farm, &id, "cancelled", LONG).await?;
        let ev = watcher.wait_for("PrintCancelled", LONG, |_| true).await?;
        let pos = ev["fileposition"]
            .as_u64()
            .context("PrintCancelled has a fileposition")?;

        // What the file holds up to that position, computed here from the file itself.
        let bytes = data("octoprint/long.gcode");
        let index = ExtrusionIndex::build(&bytes[..], 4096)?;
        let want = index.consumed_at(std::io::Cursor::new(&bytes), pos)?;
        let got = mm(&cancelled["extruded_mm"]);
        ensure!(
            got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-9),
            "cancelled at byte {pos}: billed {got:?}, the file holds {want:?} up to there"
        );
        ensure!(
            want[0] > 0.0 && want[0] < index.total_mm[0],
            "a partial: {want:?} of {:?}",
            index.total_mm
        );
        wait_printer_state(farm, "idle", LONG).await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn octoprint_restarted_while_idle_the_agent_reconnects_by_itself_and_prints_again() {
    run(APP_KEY, async |op, farm| {
        wait_printer_state(farm, "idle", LONG).await?;
        op.stop().await?;
        let p = wait_printer_state(farm, "offline", LONG).await?;
        let message = p["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("cannot reach OctoPrint"),
            "status message while OctoPrint is down: {message:?}"
        );
        ensure!(p["online"] == true, "the agent itself stays online: {p}");
        op.resume().await?;
        wait_printer_state(farm, "idle", LONG).await?;
        print_short(farm, op).await?;
        Ok(())
    })
    .await;
}

/// Lines in the agent's log that record a refused key.
fn refusals(farm: &Farm) -> usize {
    let log = std::fs::read_to_string(farm.dir.path().join(format!("agent-{PRINTER}.log")))
        .unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("refused the API key") && l.contains("retrying"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_api_key_is_a_clear_error_retried_with_backoff_until_it_works() {
    let wrong = "WRONGKEY0123456789ABCDEFGHIJKLMN";
    run(wrong, async |op, farm| {
        let p = wait_printer_state(farm, "error", LONG).await?;
        let t0 = Instant::now();
        let message = p["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("refused the API key")
                && message.contains("printer.octoprint.api_key"),
            "status message: {message:?}"
        );
        // Retries back off (5 s, then 10 s): the second one is logged with its longer delay,
        // and no more than a handful of attempts were made meanwhile.
        eventually("a second, slower retry", LONG, async || {
            let log = std::fs::read_to_string(farm.dir.path().join(format!("agent-{PRINTER}.log")))
                .ok()?;
            log.contains("retry_in_s=10").then_some(())
        })
        .await?;
        ensure!(
            t0.elapsed() >= Duration::from_secs(3),
            "the second retry came after {:?}: not backing off",
            t0.elapsed()
        );
        let n = refusals(farm);
        ensure!((2..=3).contains(&n), "{n} attempts logged, expected 2–3");

        // The operator registers the key in OctoPrint (read at start-up); the agent, still
        // retrying, gets in by itself.
        op.stop().await?;
        op.write_app_keys(&[APP_KEY, wrong])?;
        op.resume().await?;
        wait_printer_state(farm, "idle", LONG).await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_stop_halts_octoprint_fails_the_job_and_m999_brings_the_printer_back() {
    run(APP_KEY, async |op, farm| {
        let watcher = op.watch().await?;
        wait_printer_state(farm, "idle", LONG).await?;
        let id = upload(farm, "long.gcode").await?;
        wait_file_pos(farm, 300).await?;
        command(farm, "emergency_stop").await?;
        let failed = wait_job_state(farm, &id, "failed", LONG).await?;
        // On the peer: OctoPrint saw the e-stop and closed the port.
        watcher.wait_for("EStop", LONG, |_| true).await?;
        watcher.wait_for("Disconnected", LONG, |_| true).await?;
        let got = mm(&failed["extruded_mm"]);
        let whole = mm(&failed["filament_mm"]);
        ensure!(
            got.first().is_some_and(|g| *g > 0.0 && *g < whole[0]),
            "an e-stopped job bills its partial: {got:?} of {whole:?}"
        );
        let p = wait_printer_state(farm, "error", LONG).await?;
        let message = p["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("M999"),
            "status says how to recover: {message:?}"
        );
        // Recovery: M999 has the agent reconnect OctoPrint to the printer.
        let (s, body) = farm
            .post_json(
                &format!("/api/v1/printers/{PRINTER}/commands"),
                json!({"kind": "raw_gcode", "lines": ["M999"]}),
            )
            .await?;
        ensure!(s == 202, "M999 answered {s}: {body}");
        wait_printer_state(farm, "idle", LONG).await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_push_channel_falls_back_to_polling_and_the_print_completes() {
    let (op, farm) = tokio::join!(OctoPrint::start_temp(), Farm::start(FarmOptions::default()));
    let (mut op, mut farm) = (
        op.expect("OctoPrint starts"),
        farm.expect("controller starts"),
    );
    let r = push_dropped(&op, &mut farm).await;
    let r = r.map_err(|e| e.context(format!("OctoPrint log:\n{}", op.log_tail())));
    or_logs(r, &farm);
    let _ = op.stop().await;
}

/// The agent reaches OctoPrint through a relay; mid-print the relay closes the push channel
/// and refuses it from then on, while REST stays up.
async fn push_dropped(op: &OctoPrint, farm: &mut Farm) -> Result<()> {
    let relay = Relay::start(op.port, "/sockjs/", "/api/printer").await?;
    farm.enrol(PRINTER, true, "speed = 1.0").await?;
    use_octoprint(farm.dir.path(), PRINTER, &relay.url, APP_KEY)?;
    farm.start_agent(PRINTER).await?;
    wait_printer_state(farm, "idle", LONG).await?;
    // The first ~25 s of long.gcode: time for several polls after the cut.
    let text = String::from_utf8_lossy(&data("octoprint/long.gcode"))
        .lines()
        .take(130)
        .collect::<Vec<_>>()
        .join("\n");
    let jobs = farm.upload("medium.gcode", text.into_bytes(), 1).await?;
    let id = jobs
        .first()
        .and_then(|j| j["id"].as_str())
        .map(str::to_string)
        .context("no job created")?;
    let before = wait_file_pos(farm, 300).await?;
    let polls = relay.counted();
    relay.cut();

    // Status keeps flowing, now from REST polls, and the job still ends on OctoPrint's word.
    let mut seen = before;
    let done = eventually("the print completed", LONG, async || {
        let p = printer(farm).await?;
        if p["job"]["job_id"] == id.as_str() {
            seen = seen.max(p["job"]["file_pos"].as_u64().unwrap_or(0));
        }
        job(farm, &id).await.filter(|j| j["state"] == "completed")
    })
    .await?;
    ensure!(
        seen > before,
        "the file position advanced without the push channel: {before} → {seen}"
    );
    ensure!(
        relay.counted() >= polls + 2,
        "the agent polled /api/printer: {} requests after the cut",
        relay.counted() - polls
    );
    ensure!(
        relay.refused() >= 1,
        "the agent tried to reopen the push channel"
    );
    let (got, want) = (mm(&done["extruded_mm"]), mm(&done["filament_mm"]));
    ensure!(
        !want.is_empty() && got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-9),
        "billed {got:?} but the file takes {want:?}"
    );
    Ok(())
}

//! The serial back end against OctoPrint's real Virtual Printer on a pseudo-terminal
//! (tests/peers/vprinter.py): whole prints through the controller, line noise with resends,
//! a firmware kill, busy keep-alives versus a silent printer, and an unplug mid-print.
//!
//! Every print is checked against the printer's own log of accepted commands: the file's
//! commands, each exactly once, in order, with consecutive line numbers.

use anyhow::{Result, ensure};
use farm_e2e::vprinter::{
    VPrinter, assert_whole, file_commands, short_segments, stream, use_serial,
};
use farm_e2e::{Farm, FarmOptions, eventually, or_logs};
use serde_json::Value;
use std::time::Duration;

/// Enrols `id` and starts its agent on the serial back end at `port`.
async fn add_serial_agent(farm: &mut Farm, id: &str, port: &std::path::Path) -> Result<()> {
    farm.enrol(id, true, "speed = 1.0").await?;
    use_serial(farm.dir.path(), id, port)?;
    farm.start_agent(id).await
}

async fn wait_job(farm: &Farm, id: &str, state: &str, limit: Duration) -> Result<Value> {
    eventually(&format!("job {id} {state}"), limit, async || {
        let j = farm.get(&format!("/api/v1/jobs/{id}")).await.ok()?;
        (j["state"] == state).then_some(j)
    })
    .await
}

/// Runs a test body against a fresh controller; on failure prints every process log.
async fn in_farm<F>(body: F)
where
    F: AsyncFnOnce(&mut Farm) -> Result<()>,
{
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = body(&mut farm).await;
    or_logs(r, &farm);
}

/// A fresh Virtual Printer (bridge options `args`) and the agent `p-serial` driving it.
async fn serial_printer(farm: &mut Farm, args: &[&str]) -> Result<VPrinter> {
    let vp = VPrinter::start(farm.dir.path(), "vp", args).await?;
    add_serial_agent(farm, "p-serial", &vp.link).await?;
    Ok(vp)
}

/// The job billed exactly the short-segment moves the printer accepted; returns their count.
fn billed_exactly(job: &Value, accepted: &[String]) -> Result<usize> {
    let moves = accepted
        .iter()
        .filter(|c| c.ends_with("E0.01047 F6000"))
        .count();
    let billed = job["extruded_mm"][0].as_f64().unwrap_or(0.0);
    ensure!(
        (billed - moves as f64 * 0.01047).abs() < 1e-6 * moves as f64 + 1e-9,
        "billed {billed} mm for {moves} accepted extruding moves"
    );
    Ok(moves)
}

async fn wait_idle(farm: &Farm) -> Result<()> {
    eventually("p-serial idle", Duration::from_secs(60), async || {
        let p = farm.get("/api/v1/printers/p-serial").await.ok()?;
        (p["state"] == "idle").then_some(())
    })
    .await
}

fn job_id(jobs: &[Value]) -> String {
    jobs.first()
        .and_then(|j| j["id"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_prints_through_the_controller_with_line_noise_and_no_line_is_lost_or_doubled() {
    in_farm(async |farm| noisy_print(farm).await).await;
}

async fn noisy_print(farm: &mut Farm) -> Result<()> {
    // One line in 40 arrives corrupted: the printer's own checksum check refuses it and asks
    // for a resend, while the agent has more lines in flight behind it.
    let vp = serial_printer(farm, &["--corrupt-every", "40"]).await?;
    wait_idle(farm).await?;

    let text = short_segments(3000, false, &["M104 S60", "M109 S60"]);
    let jobs = farm
        .upload("noisy.gcode", text.clone().into_bytes(), 1)
        .await?;
    let id = job_id(&jobs);
    let job = wait_job(farm, &id, "completed", Duration::from_secs(120)).await?;

    // Material: exactly the analyzer's figure, counted from acknowledged lines.
    let (got, want) = (&job["extruded_mm"], &job["filament_mm"]);
    let exact = got.as_array().zip(want.as_array()).is_some_and(|(g, w)| {
        g.len() == w.len()
            && g.iter().zip(w).all(|(a, b)| {
                (a.as_f64().unwrap_or(-1.0) - b.as_f64().unwrap_or(-2.0)).abs() < 1e-6
            })
    });
    ensure!(exact, "job extruded {got} but the file needs {want}");

    // The printer accepted the file whole, although lines were corrupted on the way.
    let sessions = vp.sessions()?;
    ensure!(
        sessions.len() == 1,
        "one power-on session: {}",
        sessions.len()
    );
    assert_whole(&sessions[0], &file_commands(&text))?;
    ensure!(
        vp.corrupted() >= 50,
        "line noise hit {} lines",
        vp.corrupted()
    );

    // The status carried the printer's temperatures (M155 auto-report, M109 wait lines).
    let p = farm.get("/api/v1/printers/p-serial").await?;
    let temps = p.to_string();
    ensure!(
        temps.contains("tool0") && temps.contains("bed"),
        "temps in status: {p}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unplug_mid_print_fails_the_job_and_the_reconnected_printer_never_resumes_it() {
    in_farm(async |farm| unplug_mid_print(farm).await).await;
}

async fn unplug_mid_print(farm: &mut Farm) -> Result<()> {
    let vp = serial_printer(farm, &[]).await?;
    // With motion the Virtual Printer takes ~0.3 ms per short move: long enough to unplug.
    let text = short_segments(40_000, false, &[]);
    let jobs = farm
        .upload("long.gcode", text.clone().into_bytes(), 1)
        .await?;
    let id = job_id(&jobs);
    eventually(
        "the print well under way",
        Duration::from_secs(90),
        async || {
            let j = farm.get(&format!("/api/v1/jobs/{id}")).await.ok()?;
            let done = j["progress"].as_f64().unwrap_or(0.0);
            (j["state"] == "printing" && done > 0.05).then_some(())
        },
    )
    .await?;

    vp.unplug().await?;
    let job = wait_job(farm, &id, "failed", Duration::from_secs(60)).await?;
    let reason = job["failure_reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("serial port") && reason.contains("cannot resume"),
        "failure says why: {reason:?}"
    );
    let used = job["extruded_mm"][0].as_f64().unwrap_or(0.0);
    let need = job["filament_mm"][0].as_f64().unwrap_or(0.0);
    ensure!(
        used > 0.0 && used < need,
        "a partial print bills what was acknowledged: {used} of {need} mm"
    );

    // The agent reconnects to the new printer behind the same link and waits, idle.
    eventually("p-serial idle again", Duration::from_secs(60), async || {
        let p = farm.get("/api/v1/printers/p-serial").await.ok()?;
        (p["state"] == "idle" && p["online"] == true).then_some(())
    })
    .await?;
    let sessions = vp.sessions()?;
    ensure!(
        sessions.len() == 2,
        "two power-on sessions: {}",
        sessions.len()
    );
    let after: Vec<&String> = sessions[1].iter().map(|(_, c)| c).collect();
    ensure!(
        after
            .iter()
            .all(|c| farm_e2e::vprinter::HOST_COMMANDS.contains(&c.as_str())),
        "nothing of the job was sent after the reconnect: {after:?}"
    );
    // What the first printer accepted is an unbroken prefix of the file.
    let want = file_commands(&text);
    let first = farm_e2e::vprinter::job_part(&sessions[0]);
    ensure!(
        !first.is_empty() && want.starts_with(&first),
        "the first printer accepted {} commands, a prefix of the file",
        first.len()
    );

    // And the reconnected printer takes the next job.
    let small = short_segments(200, true, &[]);
    let next = job_id(
        &farm
            .upload("next.gcode", small.clone().into_bytes(), 1)
            .await?,
    );
    wait_job(farm, &next, "completed", Duration::from_secs(60)).await?;
    let sessions = vp.sessions()?;
    assert_whole(&sessions[1], &file_commands(&small))?;
    Ok(())
}

/// A file in a temp dir.
fn write(dir: &std::path::Path, name: &str, text: &str) -> Result<std::path::PathBuf> {
    let p = dir.join(name);
    std::fs::write(&p, text)?;
    Ok(p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firmware_kill_fails_the_job_with_the_firmwares_words() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vp = VPrinter::start(dir.path(), "vp", &[]).await?;
    let mut text = short_segments(600, true, &[]);
    text = text.replacen(
        "G1 Z0.2 F3000\n",
        "G1 Z0.2 F3000\n!!DEBUG:trigger_fatal_error_marlin\n",
        1,
    );
    let file = write(dir.path(), "kill.gcode", &text)?;
    let s = stream(&vp.link, &file, &[]).await?;
    ensure!(s["outcome"] == "failed", "summary: {s}");
    let reason = s["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("Thermal Runaway"),
        "the firmware's words are in the reason: {reason:?}"
    );
    // Streaming stopped at the kill: at most the window's worth of lines went after it.
    let accepted = farm_e2e::vprinter::job_part(&vp.sessions()?[0]);
    ensure!(
        accepted.len() < 16,
        "{} commands accepted around the kill",
        accepted.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_heating_is_not_a_stall_but_a_silent_printer_is() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let vp = VPrinter::start(
        dir.path(),
        "vp",
        &["--set", "sendBusy=true", "--set", "busyInterval=0.5"],
    )
    .await?;
    // M109 blocks for ~4 s with temperature and busy lines only: with a 1.5 s timeout the
    // agent must keep waiting, and ping-pong (1 in flight) must stream correctly too.
    let text = short_segments(300, true, &["M104 S60", "M109 S60"]);
    let file = write(dir.path(), "heat.gcode", &text)?;
    let t0 = std::time::Instant::now();
    let s = stream(
        &vp.link,
        &file,
        &["--timeout-s", "1.5", "--max-in-flight", "1"],
    )
    .await?;
    ensure!(s["outcome"] == "completed", "summary: {s}");
    ensure!(t0.elapsed() > Duration::from_secs(3), "M109 really waited");
    assert_whole(&vp.sessions()?[0], &file_commands(&text))?;

    // The same printer going silent mid-file is a stall: pokes, then the job fails.
    let awol = short_segments(300, true, &[]).replacen(
        "G1 Z0.2 F3000\n",
        "G1 Z0.2 F3000\n!!DEBUG:go_awol\n",
        1,
    );
    let file = write(dir.path(), "awol.gcode", &awol)?;
    let t0 = std::time::Instant::now();
    let s = stream(&vp.link, &file, &["--timeout-s", "1"]).await?;
    ensure!(s["outcome"] == "failed", "summary: {s}");
    let reason = s["reason"].as_str().unwrap_or_default();
    ensure!(reason.contains("stopped answering"), "reason: {reason:?}");
    ensure!(
        t0.elapsed() < Duration::from_secs(40),
        "a stall is noticed in seconds, took {:?}",
        t0.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_cancel_through_the_controller_park_and_bill_exactly() {
    in_farm(async |farm| pause_resume_cancel(farm).await).await;
}

/// The accepted commands of the (single) power-on session.
fn accepted(vp: &VPrinter) -> Vec<String> {
    vp.sessions()
        .ok()
        .and_then(|s| s.into_iter().next())
        .unwrap_or_default()
        .into_iter()
        .map(|(_, c)| c)
        .collect()
}

async fn pause_resume_cancel(farm: &mut Farm) -> Result<()> {
    let vp = serial_printer(farm, &[]).await?;
    let text = short_segments(40_000, false, &[]);
    let id = job_id(
        &farm
            .upload("long.gcode", text.clone().into_bytes(), 1)
            .await?,
    );
    eventually("the print under way", Duration::from_secs(90), async || {
        let j = farm.get(&format!("/api/v1/jobs/{id}")).await.ok()?;
        (j["state"] == "printing" && j["progress"].as_f64()? > 0.02).then_some(())
    })
    .await?;
    let cmd = async |kind: &str| -> Result<()> {
        let (s, v) = farm
            .post_json(
                "/api/v1/printers/p-serial/commands",
                serde_json::json!({ "kind": kind }),
            )
            .await?;
        ensure!(s == 202, "{kind} answered {s}: {v}");
        Ok(())
    };

    // Pause: the lines in flight finish, then marlin2's pause script parks the head.
    let pause = [
        "M83",
        "G1 E-2 F2700",
        "G91",
        "G1 Z10 F600",
        "G90",
        "G1 X0 Y0 F6000",
        "M83",
    ];
    cmd("pause").await?;
    wait_job(farm, &id, "paused", Duration::from_secs(30)).await?;
    eventually("the pause script", Duration::from_secs(30), async || {
        accepted(&vp)
            .ends_with(&pause.map(String::from))
            .then_some(())
    })
    .await?;

    // Resume: back to where it was, then the file goes on.
    cmd("resume").await?;
    wait_job(farm, &id, "printing", Duration::from_secs(30)).await?;
    let resumed = eventually(
        "the resume script and more lines",
        Duration::from_secs(30),
        async || {
            let a = accepted(&vp);
            let at = a.windows(pause.len()).position(|w| w == pause)? + pause.len();
            (a.len() > at + 20).then(|| a[at..at + 7].to_vec())
        },
    )
    .await?;
    ensure!(
        resumed[0] == "G90" && resumed[1].starts_with("G1 X") && resumed[2].starts_with("G1 Z"),
        "resume script returns to the paused position: {resumed:?}"
    );

    // Cancel: the cancel script, and material billed for exactly what the printer accepted.
    let (s, v) = farm
        .post_json(&format!("/api/v1/jobs/{id}/cancel"), Value::Null)
        .await?;
    ensure!(s == 200 || s == 202, "cancel answered {s}: {v}");
    let job = wait_job(farm, &id, "cancelled", Duration::from_secs(30)).await?;
    let cancel = [
        "M104 S0",
        "M140 S0",
        "M106 S0",
        "G91",
        "G1 Z10 F600",
        "G90",
        "M84",
    ];
    let a = eventually("the cancel script", Duration::from_secs(30), async || {
        let a = accepted(&vp);
        a.ends_with(&cancel.map(String::from)).then_some(a)
    })
    .await?;
    let moves = billed_exactly(&job, &a)?;
    ensure!(
        moves > 0 && moves < 40_000,
        "{moves} moves before the cancel"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_actions_from_the_firmware_pause_prompt_notify_and_cancel_the_job() {
    in_farm(async |farm| host_actions(farm).await).await;
}

/// The Virtual Printer sends host actions the way a real Marlin does from a file: `M118 A1
/// action:…` prints `//action:…`; its `M600` says `//action:paused`, shows a prompt and stays
/// busy until `M876` (with `sendBusy`, as Marlin keeps the host alive; without it the Virtual
/// Printer never answers the `M600` at all).
async fn host_actions(farm: &mut Farm) -> Result<()> {
    let vp = serial_printer(
        farm,
        &["--set", "sendBusy=true", "--set", "busyInterval=0.5"],
    )
    .await?;
    let inserts = [
        (100, "M118 A1 action:notification Filament low"),
        (1000, "M600"),
        (3000, "M118 A1 action:pause"),
        (5000, "M118 A1 action:cancel"),
    ];
    let (mut text, mut moves, mut next) = (String::new(), 0, inserts.iter().peekable());
    for l in short_segments(8000, false, &[]).lines() {
        text += l;
        text.push('\n');
        moves += usize::from(l.contains(" E0.01047 "));
        if let Some((_, extra)) = next.next_if(|(at, _)| *at == moves) {
            text += extra;
            text.push('\n');
        }
    }
    let id = job_id(&farm.upload("actions.gcode", text.into_bytes(), 1).await?);
    let cmd = async |body: Value| -> Result<()> {
        let (s, v) = farm
            .post_json("/api/v1/printers/p-serial/commands", body.clone())
            .await?;
        ensure!(s == 202, "{body} answered {s}: {v}");
        Ok(())
    };

    // What the firmware says reaches the operator: the printer's view (and so the dashboard
    // card, through the live stream) carries its latest messages.
    let firmware_says = async |needles: &[&str]| -> Option<()> {
        let p = farm.get("/api/v1/printers/p-serial").await.ok()?;
        let texts: Vec<&str> = p["firmware_messages"]
            .as_array()?
            .iter()
            .filter_map(|n| n["text"].as_str())
            .collect();
        needles
            .iter()
            .all(|w| texts.iter().any(|t| t.contains(w)))
            .then_some(())
    };

    // //action:notification → a firmware message.
    eventually("the notification", Duration::from_secs(60), async || {
        firmware_says(&["Filament low"]).await
    })
    .await?;

    // M600: the printer paused itself and asks; the operator answers with M876, then resumes.
    wait_job(farm, &id, "paused", Duration::from_secs(60)).await?;
    eventually("the prompt", Duration::from_secs(30), async || {
        firmware_says(&["Filament low", "Heater Timeout", "M876 S"]).await
    })
    .await?;
    let a = accepted(&vp);
    let at = a.iter().position(|c| c == "M600");
    let at = at.ok_or_else(|| anyhow::anyhow!("M600 not accepted: {:?}", a.last()))?;
    ensure!(
        a.len() - at <= 4,
        "sending stopped at M600: {} commands after it",
        a.len() - at - 1
    );
    cmd(serde_json::json!({"kind": "raw_gcode", "lines": ["M876 S0"]})).await?;
    eventually("M876 accepted", Duration::from_secs(30), async || {
        accepted(&vp).iter().any(|c| c == "M876 S0").then_some(())
    })
    .await?;
    cmd(serde_json::json!({"kind": "resume"})).await?;
    wait_job(farm, &id, "printing", Duration::from_secs(30)).await?;

    // //action:pause → the host-side pause: lines in flight finish, then the pause script.
    wait_job(farm, &id, "paused", Duration::from_secs(60)).await?;
    let a = eventually("the pause script", Duration::from_secs(30), async || {
        let a = accepted(&vp);
        a.ends_with(&["G1 X0 Y0 F6000".to_string(), "M83".to_string()])
            .then_some(a)
    })
    .await?;
    let at = a
        .iter()
        .position(|c| c == "M118 A1 action:pause")
        .unwrap_or(0);
    let moves_after = a[at..].iter().filter(|c| c.contains(" E0.01047 ")).count();
    ensure!(
        moves_after <= 3,
        "at most the window's lines after //action:pause: {moves_after}"
    );
    cmd(serde_json::json!({"kind": "resume"})).await?;
    wait_job(farm, &id, "printing", Duration::from_secs(30)).await?;

    // //action:cancel → the job is cancelled and billed for exactly what the printer accepted.
    let job = wait_job(farm, &id, "cancelled", Duration::from_secs(60)).await?;
    let a = eventually("the cancel script", Duration::from_secs(30), async || {
        let a = accepted(&vp);
        a.ends_with(&["M84".to_string()]).then_some(a)
    })
    .await?;
    let moves = billed_exactly(&job, &a)?;
    ensure!(
        (5000..5004).contains(&moves),
        "{moves} moves accepted: the cancel came at move 5000"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_temperature_auto_reports_the_agent_polls_m105() {
    in_farm(async |farm| polled_temperatures(farm).await).await;
}

/// A Marlin built without `AUTOREPORT_TEMP` (`Cap:AUTOREPORT_TEMP:0`) gets `M105` polls
/// instead of `M155`, and its temperatures still reach the controller.
async fn polled_temperatures(farm: &mut Farm) -> Result<()> {
    let vp = serial_printer(
        farm,
        &["--set", r#"capabilities={"AUTOREPORT_TEMP": false}"#],
    )
    .await?;
    wait_idle(farm).await?;
    let (s, v) = farm
        .post_json(
            "/api/v1/printers/p-serial/commands",
            serde_json::json!({"kind": "raw_gcode", "lines": ["M104 S60"]}),
        )
        .await?;
    ensure!(s == 202, "raw G-code answered {s}: {v}");
    eventually(
        "tool0's target from a polled M105",
        Duration::from_secs(60),
        async || {
            let p = farm.get("/api/v1/printers/p-serial").await.ok()?;
            let temps = p["temps"].as_array()?;
            let t0 = temps.iter().find(|h| h["name"] == "tool0")?;
            let bed = temps.iter().any(|h| h["name"] == "bed");
            (t0["target"].as_f64()? == 60.0 && bed).then_some(())
        },
    )
    .await?;
    let a = accepted(&vp);
    let polls = a.iter().filter(|c| *c == "M105").count();
    ensure!(
        polls >= 2 && !a.iter().any(|c| c.starts_with("M155")),
        "M105 polls and no M155: {a:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gcode_3mf_plate_prints_as_its_own_gcode_and_bills_that_plates_grams() {
    in_farm(async |farm| plate_print(farm).await).await;
}

async fn plate_print(farm: &mut Farm) -> Result<()> {
    let vp = serial_printer(farm, &[]).await?;
    wait_idle(farm).await?;
    // Plate 1: a real OrcaSlicer file (analysed, not printed); plate 2: what this printer prints.
    let orca = farm_e2e::plates::slicer_gcode("orcaslicer-2.3.1-gridfinity-m83")?;
    let plate2 = short_segments(400, false, &[]);
    let archive = farm_e2e::plates::gcode_3mf(&[
        (1, orca.as_slice(), 3000.0, 20.0),
        (2, plate2.as_bytes(), 120.0, 0.01),
    ])?;
    let (status, file) = farm
        .post_file("/api/v1/files?name=two.gcode.3mf", archive.clone())
        .await?;
    ensure!(status == 201, "{status} {file}");
    let plates = file["plates"].as_array().cloned().unwrap_or_default();
    ensure!(
        plates.len() == 2 && plates[0]["slicer_estimated_s"] == 3000.0,
        "{file}"
    );
    let plate_mm = plates[1]["filament_mm"][0].as_f64().unwrap_or(0.0);
    let other_mm = plates[0]["filament_mm"][0].as_f64().unwrap_or(0.0);
    ensure!(
        (plate_mm - 400.0 * 0.01047).abs() < 1e-6 && other_mm > 100.0,
        "plate figures {plate_mm} / {other_mm}"
    );
    // A quote of the uploaded file needs its plate; with it, the plate's own figures.
    let sha = file["sha256"].as_str().unwrap_or_default().to_string();
    let (status, q) = farm
        .post_file(&format!("/api/v1/quotes?sha256={sha}"), vec![])
        .await?;
    ensure!(
        status == 422,
        "a quote of two plates without one: {status} {q}"
    );
    let (status, q) = farm
        .post_file(&format!("/api/v1/quotes?sha256={sha}&plate=2"), vec![])
        .await?;
    ensure!(status == 200 && q["plate"] == 2, "{status} {q}");
    ensure!(
        q["grams"].as_f64().is_some_and(|g| g > 0.0 && g < 1.0),
        "{q}"
    );

    let (status, up) = farm
        .post_file("/api/v1/jobs?name=two.gcode.3mf&plate=2", archive)
        .await?;
    ensure!(
        status == 201 && up["jobs"][0]["plate"] == 2,
        "{status} {up}"
    );
    let id = job_id(up["jobs"].as_array().map(Vec::as_slice).unwrap_or_default());
    // The printer took plate 2's G-code, whole and once, and the job billed exactly it: the
    // quote priced plate 2's grams at the same default material.
    printed_whole_and_billed(farm, &vp, &id, &file_commands(&plate2), &q).await
}

/// Job `id` completes; the printer took `commands` (400 short extruding moves) whole, in one
/// session, and the job is billed exactly them: its cost is the quote `q`'s grams.
async fn printed_whole_and_billed(
    farm: &Farm,
    vp: &VPrinter,
    id: &str,
    commands: &[String],
    q: &Value,
) -> Result<()> {
    let job = wait_job(farm, id, "completed", Duration::from_secs(120)).await?;
    let sessions = vp.sessions()?;
    ensure!(sessions.len() == 1, "one session: {}", sessions.len());
    assert_whole(&sessions[0], commands)?;
    let moves = billed_exactly(&job, &accepted(vp))?;
    ensure!(moves == 400, "{moves} extruding moves billed");
    let cost = farm.get(&format!("/api/v1/jobs/{id}/cost")).await?;
    let (grams, want) = (cost["grams"].as_f64(), q["grams"].as_f64());
    ensure!(
        grams
            .zip(want)
            .is_some_and(|(g, w)| w > 0.0 && (g - w).abs() < 1e-6),
        "billed {grams:?} g, the quote is {want:?} g: {cost}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bgcode_job_prints_as_its_decoded_text_and_bills_its_grams_once() {
    in_farm(async |farm| bgcode_print(farm).await).await;
}

async fn bgcode_print(farm: &mut Farm) -> Result<()> {
    let vp = serial_printer(farm, &[]).await?;
    wait_idle(farm).await?;
    let ascii = farm_e2e::bgcode::as_prusaslicer(&short_segments(400, false, &[]));
    let binary = farm_e2e::bgcode::from_ascii(&ascii)?;
    let (status, q) = farm.post_file("/api/v1/quotes", binary.clone()).await?;
    ensure!(status == 200, "a quote of the .bgcode: {status} {q}");
    let jobs = farm.upload("cube.bgcode", binary, 1).await?;
    let id = job_id(&jobs);
    // The printer took the file's text (libbgcode's commands are the ASCII file's), whole and
    // once; the binary would have been refused or garbled line by line.
    printed_whole_and_billed(farm, &vp, &id, &file_commands(&ascii), &q).await
}

//! The farm end to end: a controller, three agents as separate processes over MQTT on
//! loopback, jobs uploaded through the API, watched on the live stream and in a real browser.

use anyhow::{Result, ensure};
use farm_e2e::browser::Browser;
use farm_e2e::{Farm, FarmOptions, data, eventually, or_logs, speed_for};
use serde_json::Value;
use std::time::Duration;

const FAST: &str = "speed = 100.0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_jobs_on_three_printers_all_complete_and_every_change_is_streamed() {
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = six_jobs(&mut farm).await;
    or_logs(r, &farm);
}

async fn six_jobs(farm: &mut Farm) -> Result<()> {
    let stream = farm.stream().await?;
    // p-1 waits for an operator to clear its bed after each job; p-2 and p-3 eject by themselves.
    farm.add_agent("p-1", false, FAST).await?;
    farm.add_agent("p-2", true, FAST).await?;
    farm.add_agent("p-3", true, FAST).await?;
    stream
        .wait_for("three idle printers", Duration::from_secs(30), |_| {
            let s = stream.printer_states();
            (s.len() == 3 && s.values().all(|v| v == "idle")).then_some(())
        })
        .await?;

    let mut ids = vec![];
    for i in 0..6 {
        let (name, file) = if i % 2 == 0 {
            ("short-print.gcode", "short-print.gcode")
        } else {
            ("long-print.gcode", "long-print.gcode")
        };
        for j in farm.upload(name, data(file), 1).await? {
            ids.push(j["id"].as_str().unwrap_or_default().to_string());
        }
    }
    ensure!(ids.len() == 6, "six jobs created: {ids:?}");

    // Act as the operator: clear p-1's bed whenever it waits, until every job completed.
    let mut cleared = 0;
    let jobs = eventually(
        "all six jobs completed",
        Duration::from_secs(180),
        async || {
            let p1 = farm.get("/api/v1/printers/p-1").await.ok()?;
            if p1["state"] == "awaiting_clear" {
                let (s, _) = farm
                    .post_json("/api/v1/printers/p-1/clear", Value::Null)
                    .await
                    .ok()?;
                if s == 200 {
                    cleared += 1;
                }
            }
            let jobs = farm.get("/api/v1/jobs").await.ok()?["items"]
                .as_array()?
                .clone();
            jobs.iter()
                .all(|j| j["state"] == "completed")
                .then_some(jobs)
        },
    )
    .await?;

    // REST: every job completed on some printer with exactly the analyzer's filament.
    let mut printers_used = std::collections::BTreeSet::new();
    for j in &jobs {
        let (got, want) = (&j["extruded_mm"], &j["filament_mm"]);
        let close = got.as_array().zip(want.as_array()).is_some_and(|(g, w)| {
            g.len() == w.len()
                && g.iter().zip(w).all(|(a, b)| {
                    (a.as_f64().unwrap_or(-1.0) - b.as_f64().unwrap_or(-2.0)).abs() < 1e-6
                })
        });
        ensure!(
            close,
            "job {} extruded {got} but the file needs {want}",
            j["id"]
        );
        ensure!(
            j["attempts"] == 1,
            "job {} took {} attempts",
            j["id"],
            j["attempts"]
        );
        printers_used.insert(j["printer_id"].as_str().unwrap_or_default().to_string());
    }
    ensure!(
        printers_used.len() >= 2,
        "work spread over the farm: {printers_used:?}"
    );
    ensure!(cleared >= 1, "p-1 waited for its bed to be cleared");

    // The stream saw every state of every job, in order.
    for id in &ids {
        let states = stream.job_states(id);
        ensure!(
            states
                == [
                    "queued",
                    "assigned",
                    "transferring",
                    "printing",
                    "completed"
                ],
            "job {id} went through {states:?} on the live stream"
        );
    }
    let p1_states: Vec<String> = stream
        .events()
        .iter()
        .filter(|(n, v)| n == "printer" && v["id"] == "p-1")
        .filter_map(|(_, v)| v["state"].as_str().map(str::to_string))
        .collect();
    for s in ["idle", "busy", "awaiting_clear"] {
        ensure!(
            p1_states.iter().any(|x| x == s),
            "p-1 was {s} on the stream: {p1_states:?}"
        );
    }

    // REST agrees at the end, and nothing was dropped.
    let printers = farm.get("/api/v1/printers").await?;
    for p in printers["items"].as_array().into_iter().flatten() {
        ensure!(
            p["online"] == true && p["current_job_id"].is_null(),
            "printer at rest: {p}"
        );
    }
    ensure!(farm.metric("farm_events_applied_total").await? > 0.0);
    ensure!(
        farm.metric("farm_mqtt_dropped_total{reason=\"bad_signature\"}")
            .await?
            == 0.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_live_farm_and_clears_a_bed_in_a_real_browser() {
    // On a trusted LAN the floor may act without a token; that is what this farm allows.
    let mut farm = Farm::start(FarmOptions {
        anonymous_role: Some("operator"),
        ..FarmOptions::default()
    })
    .await
    .expect("controller");
    let r = dashboard(&mut farm).await;
    or_logs(r, &farm);
}

async fn dashboard(farm: &mut Farm) -> Result<()> {
    let browser = Browser::launch().await?;
    let mut page = browser.open(&format!("{}/", farm.http)).await?;
    let jobs = farm
        .upload("short-print.gcode", data("short-print.gcode"), 1)
        .await?;
    let id = jobs[0]["id"].as_str().unwrap_or_default().to_string();
    // About 8 s of printing: long enough to see, short enough for CI.
    let sim = speed_for(&jobs[0], 8.0);
    farm.add_agent("p-1", false, &sim).await?;
    farm.add_agent("p-2", true, &sim).await?;
    let card = |p: &str, state: &str| {
        format!(
            "document.querySelector('article.printer[data-printer-id=\"{p}\"][data-state=\"{state}\"]') !== null"
        )
    };

    page.wait_for(
        "the live indicator",
        "document.querySelector('#live')?.textContent.trim() === 'live'",
        Duration::from_secs(20),
    )
    .await?;
    page.wait_for(
        "the job printing on p-1",
        &card("p-1", "busy"),
        Duration::from_secs(30),
    )
    .await?;
    page.wait_for(
        "p-2's card",
        "document.querySelectorAll('article.printer').length === 2",
        Duration::from_secs(10),
    )
    .await?;
    page.wait_for(
        "the job in the queue, printing",
        &format!(
            "document.querySelector('tr[data-job-id=\"{id}\"][data-state=\"printing\"]') !== null"
        ),
        Duration::from_secs(10),
    )
    .await?;
    page.wait_for(
        "progress on the card",
        "/[0-9]+ ?%/.test(document.querySelector('article.printer[data-printer-id=\"p-1\"] .progress-text')?.textContent ?? '')",
        Duration::from_secs(10),
    )
    .await?;
    if let Some(dir) = std::env::var_os("FARM_SCREENSHOT_DIR") {
        page.screenshot(&std::path::Path::new(&dir).join("dashboard-printing.png"))
            .await?;
    }

    // The print ends; p-1 waits for its bed. The operator clicks "Bed cleared" on the card.
    page.wait_for(
        "p-1 awaiting a clear bed",
        &card("p-1", "awaiting_clear"),
        Duration::from_secs(60),
    )
    .await?;
    page.eval("document.querySelector('article.printer[data-printer-id=\"p-1\"] button[data-action=\"clear\"]').click()").await?;
    page.wait_for(
        "p-1 idle again on the page",
        &card("p-1", "idle"),
        Duration::from_secs(10),
    )
    .await?;
    let p1 = farm.get("/api/v1/printers/p-1").await?;
    ensure!(
        p1["state"] == "idle",
        "the click reached the controller: {p1}"
    );
    let job = farm.get(&format!("/api/v1/jobs/{id}")).await?;
    ensure!(job["state"] == "completed", "{job}");
    Ok(())
}

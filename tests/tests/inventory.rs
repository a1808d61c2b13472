//! Filament inventory end to end: spools loaded on simulated printers lose exactly what the
//! jobs extruded (a completed job: the analyzer's figure; a cancelled one: its last reported
//! partial), across `kill -9` of the controller mid-print and a restart after, with no double
//! booking. A due blocking maintenance task keeps a printer idle until it is completed; the
//! cost report matches the formulas; bad input gets problem+json that says what to fix.

use anyhow::{Context, Result, ensure};
use farm_e2e::{Farm, FarmOptions, data, eventually, or_logs, speed_for};
use serde_json::{Value, json};
use std::time::Duration;

/// `[pricing]` defaults (controller/src/config.rs): the cost report is checked against them.
const MACHINE_PER_HOUR: f64 = 1.0;
const ENERGY_PER_KWH: f64 = 0.30;
const POWER_W: f64 = 150.0;
const PLA_PER_KG: f64 = 22.0;

/// Grams per mm of 1.75 mm PLA at 1.24 g/cm³.
fn gpm() -> f64 {
    std::f64::consts::PI * (1.75f64 / 2.0).powi(2) / 1000.0 * 1.24
}

fn mm(v: &Value) -> f64 {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).sum())
        .unwrap_or(0.0)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

async fn post(farm: &Farm, path: &str, body: Value) -> Result<Value> {
    let (s, v) = farm.post_json(path, body).await?;
    ensure!((200..300).contains(&s), "POST {path} answered {s}: {v}");
    Ok(v)
}

async fn job(farm: &Farm, id: &str) -> Option<Value> {
    farm.get(&format!("/api/v1/jobs/{id}")).await.ok()
}

async fn remaining(farm: &Farm, spool: &str) -> Result<f64> {
    Ok(f(
        &farm.get(&format!("/api/v1/spools/{spool}")).await?["remaining_g"],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spools_lose_exactly_what_jobs_extruded_across_kill_9_and_maintenance_blocks_a_printer() {
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = ledger_and_maintenance(&mut farm).await;
    or_logs(r, &farm);
}

async fn ledger_and_maintenance(farm: &mut Farm) -> Result<()> {
    // Three copies queued before any printer exists, so each printer's speed can be set from
    // the analyzer's estimate: about 20 s per print.
    let jobs = farm
        .upload("long-print.gcode", data("long-print.gcode"), 3)
        .await?;
    let sim = speed_for(&jobs[0], 20.0);
    let file_mm = mm(&jobs[0]["filament_mm"]);
    ensure!(file_mm > 100.0, "the fixture extrudes: {}", jobs[0]);

    post(
        farm,
        "/api/v1/materials",
        json!({"material": "PLA", "colour": "black", "cost_per_kg": PLA_PER_KG}),
    )
    .await?;
    let spools = post(
        farm,
        "/api/v1/spools",
        json!({"material": "pla-black", "initial_g": 1000.0, "tare_g": 250.0, "count": 2}),
    )
    .await?;
    let ids: Vec<String> = spools["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    ensure!(ids.len() == 2, "two spools: {spools}");

    // p-1 and p-2 wait for a bed clear after each job (nobody clears them here); p-3 has a
    // blocking maintenance task that is overdue from the start.
    for p in ["p-1", "p-2", "p-3"] {
        farm.enrol(p, false, &sim).await?;
    }
    post(
        farm,
        &format!("/api/v1/spools/{}/load", ids[0]),
        json!({"printer": "p-1", "tool": 0}),
    )
    .await?;
    post(
        farm,
        &format!("/api/v1/spools/{}/load", ids[1]),
        json!({"printer": "p-2", "tool": 0}),
    )
    .await?;
    let task = post(
        farm,
        "/api/v1/maintenance/tasks",
        json!({"printer": "p-3", "name": "grease the rods", "interval": {"days": 30},
               "blocking": true, "last_done_at": "2020-01-01T00:00:00Z"}),
    )
    .await?;
    ensure!(
        task["due"] == "overdue" && task["blocks_printer"] == true,
        "{task}"
    );
    let task_id = task["id"].as_str().unwrap_or_default().to_string();
    for p in ["p-1", "p-2", "p-3"] {
        farm.start_agent(p).await?;
    }

    // Two jobs print on p-1 and p-2; the third waits although p-3 is idle.
    let printing = eventually("two jobs printing", Duration::from_secs(60), async || {
        let all = farm.get("/api/v1/jobs").await.ok()?["items"]
            .as_array()?
            .clone();
        let busy: Vec<Value> = all
            .into_iter()
            .filter(|j| j["state"] == "printing" && f(&j["progress"]) > 0.15)
            .collect();
        (busy.len() == 2).then_some(busy)
    })
    .await?;
    let on = |j: &Value| j["printer_id"].as_str().unwrap_or_default().to_string();
    ensure!(
        printing.iter().all(|j| on(j) != "p-3"),
        "p-3 is blocked by maintenance: {printing:?}"
    );
    let (to_complete, to_cancel) = (&printing[0], &printing[1]);
    let complete_id = to_complete["id"].as_str().unwrap_or_default().to_string();
    let cancel_id = to_cancel["id"].as_str().unwrap_or_default().to_string();
    let spool_of = |printer: &str| {
        if printer == "p-1" {
            ids[0].clone()
        } else {
            ids[1].clone()
        }
    };
    let (complete_spool, cancel_spool) = (spool_of(&on(to_complete)), spool_of(&on(to_cancel)));

    // kill -9 mid-print: the agents keep printing and resend what was not acknowledged.
    farm.kill_controller().await?;
    tokio::time::sleep(Duration::from_secs(2)).await; // the outage under test
    farm.start_controller().await?;

    eventually(
        "the job to cancel well under way",
        Duration::from_secs(60),
        async || {
            job(farm, &cancel_id)
                .await
                .filter(|j| f(&j["progress"]) > 0.4)
        },
    )
    .await?;
    post(
        farm,
        &format!("/api/v1/jobs/{cancel_id}/cancel"),
        Value::Null,
    )
    .await?;
    let cancelled = eventually("the job cancelled", Duration::from_secs(60), async || {
        job(farm, &cancel_id)
            .await
            .filter(|j| j["state"] == "cancelled")
    })
    .await?;
    let completed = eventually(
        "the other job completed",
        Duration::from_secs(90),
        async || {
            job(farm, &complete_id)
                .await
                .filter(|j| j["state"] == "completed")
        },
    )
    .await?;
    let partial_mm = mm(&cancelled["extruded_mm"]);
    ensure!(
        partial_mm > 0.0 && partial_mm < file_mm * 0.99,
        "cancelled part-way: {partial_mm} of {file_mm} mm"
    );
    ensure!(
        (mm(&completed["extruded_mm"]) - file_mm).abs() < 1e-6,
        "{completed}"
    );

    // Every event is in: each agent's outbox is empty, so nothing is still to be booked.
    for p in ["p-1", "p-2"] {
        eventually(
            "the agent's outbox to drain",
            Duration::from_secs(30),
            async || {
                let v = farm.get(&format!("/api/v1/printers/{p}")).await.ok()?;
                (v["agent"]["outbox_pending"] == 0).then_some(())
            },
        )
        .await?;
    }
    let check = async |farm: &Farm, when: &str| -> Result<()> {
        let want_complete = 1000.0 - file_mm * gpm();
        let want_cancel = 1000.0 - partial_mm * gpm();
        let got_complete = remaining(farm, &complete_spool).await?;
        let got_cancel = remaining(farm, &cancel_spool).await?;
        ensure!(
            (got_complete - want_complete).abs() < 0.01,
            "{when}: completed job's spool has {got_complete} g, expected {want_complete} g"
        );
        ensure!(
            (got_cancel - want_cancel).abs() < 0.01,
            "{when}: cancelled job's spool has {got_cancel} g, expected {want_cancel} g"
        );
        // The ledger explains it: remaining = initial + Σ rows, each event booked once.
        for (spool, left) in [(&complete_spool, got_complete), (&cancel_spool, got_cancel)] {
            let l = farm.get(&format!("/api/v1/spools/{spool}/ledger")).await?;
            let rows = l["items"].as_array().context("ledger rows")?;
            let sum: f64 = rows.iter().map(|r| f(&r["grams"])).sum();
            ensure!(
                (1000.0 + sum - left).abs() < 1e-6,
                "{when}: ledger of {spool}: {l}"
            );
            let mut sources: Vec<String> = rows
                .iter()
                .filter(|r| r["kind"] == "consumption")
                .map(|r| r["source"].to_string())
                .collect();
            let n = sources.len();
            sources.dedup();
            ensure!(
                n > 0 && sources.len() == n,
                "{when}: one row per event: {l}"
            );
        }
        Ok(())
    };
    check(farm, "after the first kill -9").await?;

    // The third job is still queued and p-3 idle: the blocking task keeps it out.
    let third = jobs
        .iter()
        .filter_map(|j| j["id"].as_str())
        .find(|id| *id != complete_id && *id != cancel_id)
        .unwrap_or_default()
        .to_string();
    let j3 = job(farm, &third).await.context("third job")?;
    let p3 = farm.get("/api/v1/printers/p-3").await?;
    ensure!(
        j3["state"] == "queued" && p3["state"] == "idle",
        "job {third} waits while p-3 is idle and blocked: {j3} / {p3}"
    );
    let due = farm.get("/api/v1/maintenance/due").await?;
    ensure!(due["items"][0]["id"] == task_id.as_str(), "{due}");
    // The shortage forecast sees the waiting job's filament against the PLA in stock.
    let fc = farm.get("/api/v1/inventory/forecast").await?;
    let stock_g = remaining(farm, &complete_spool).await? + remaining(farm, &cancel_spool).await?;
    let pla = &fc["items"][0];
    ensure!(
        pla["material"] == "PLA"
            && pla["jobs"] == 1
            && (f(&pla["demand_g"]) - file_mm * gpm()).abs() < 1e-6
            && (f(&pla["stock_g"]) - stock_g).abs() < 1e-6,
        "{fc}"
    );
    let counters = farm.get("/api/v1/printers/p-3/counters").await?;
    ensure!(counters["blocked_by_maintenance"] == true, "{counters}");

    // The cost report matches the formulas for the completed job.
    let report = farm.get("/api/v1/reports/costs").await?;
    let row = report["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j["job_id"] == complete_id.as_str())
        .context("completed job in the report")?
        .clone();
    let grams = file_mm * gpm();
    let hours = f(&row["hours"]);
    let at = |k: &str| {
        time::OffsetDateTime::parse(
            completed[k].as_str().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
    };
    let printed_h = (at("finished_at")? - at("started_at")?).as_seconds_f64() / 3600.0;
    ensure!(
        hours > 0.0 && (hours - printed_h).abs() < 1e-9,
        "{hours} h vs {printed_h} h: {row}"
    );
    let c = &row["cost"];
    for (what, got, want) in [
        ("material", f(&c["material"]), grams * PLA_PER_KG / 1000.0),
        ("machine", f(&c["machine"]), hours * MACHINE_PER_HOUR),
        (
            "energy",
            f(&c["energy"]),
            POWER_W / 1000.0 * hours * ENERGY_PER_KWH,
        ),
        ("grams", f(&row["grams"]), grams),
    ] {
        ensure!(
            (got - want).abs() < 1e-6,
            "{what}: {got} vs {want} in {row}"
        );
    }
    let cancelled_row = report["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|j| j["job_id"] == cancel_id.as_str())
        .context("cancelled job in the report")?;
    ensure!(
        f(&cancelled_row["waste"]) == f(&cancelled_row["cost"]["total"])
            && f(&cancelled_row["price"]) == 0.0,
        "a cancelled job is all waste: {cancelled_row}"
    );
    ensure!(report["totals"]["jobs"] == 2, "{}", report["totals"]);
    let csv = farm
        .client
        .get(format!("{}/api/v1/reports/costs?format=csv", farm.http))
        .bearer_auth(&farm.admin)
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        csv.lines().count() == 3 && csv.contains(&complete_id),
        "{csv}"
    );

    // A second kill -9 and restart: the ledger is read back, nothing is booked twice.
    farm.kill_controller().await?;
    farm.start_controller().await?;
    check(farm, "after the second restart").await?;

    // Completing the task frees p-3: it takes the waiting job.
    let done = post(
        farm,
        &format!("/api/v1/maintenance/tasks/{task_id}/complete"),
        json!({"notes": "greased"}),
    )
    .await?;
    ensure!(
        done["due"] == "ok" && done["last_done"]["notes"] == "greased",
        "{done}"
    );
    eventually(
        "p-3 takes the waiting job",
        Duration::from_secs(30),
        async || {
            job(farm, &third)
                .await
                .filter(|j| j["printer_id"] == "p-3" && j["state"] != "queued")
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inventory_input_is_refused_with_problems_that_say_what_to_fix_and_quotes_price_a_file()
{
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller starts");
    let r = bad_input_and_quotes(&mut farm).await;
    or_logs(r, &farm);
}

async fn bad_input_and_quotes(farm: &mut Farm) -> Result<()> {
    farm.enrol("p-1", true, "speed = 1.0").await?;
    post(
        farm,
        "/api/v1/materials",
        json!({"id": "petg-red", "material": "PETG", "colour": "red", "cost_per_kg": 30.0}),
    )
    .await?;
    let s = post(
        farm,
        "/api/v1/spools",
        json!({"material": "petg-red", "initial_g": 100.0}),
    )
    .await?;
    let spool = s["items"][0]["id"].as_str().unwrap_or_default().to_string();

    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "a material nobody has",
            "/api/v1/spools".into(),
            json!({"material": "pla-pink", "initial_g": 1000.0}),
            422,
            "POST /api/v1/materials",
        ),
        (
            "negative weight",
            "/api/v1/spools".into(),
            json!({"material": "petg-red", "initial_g": -5.0}),
            422,
            "initial_g",
        ),
        (
            "negative price",
            "/api/v1/materials".into(),
            json!({"material": "PLA", "colour": "x", "cost_per_kg": -1.0}),
            422,
            "cost_per_kg",
        ),
        (
            "unknown printer",
            format!("/api/v1/spools/{spool}/load"),
            json!({"printer": "p-9", "tool": 0}),
            404,
            "GET /api/v1/printers",
        ),
        (
            "unknown tool",
            format!("/api/v1/spools/{spool}/load"),
            json!({"printer": "p-1", "tool": 99}),
            422,
            "max_tools",
        ),
        (
            "unknown spool",
            "/api/v1/spools/s-999/load".into(),
            json!({"printer": "p-1", "tool": 0}),
            404,
            "GET /api/v1/spools",
        ),
        (
            "below zero",
            format!("/api/v1/spools/{spool}/adjust"),
            json!({"reason": "correction", "delta_g": -150.0}),
            422,
            "below 0 g",
        ),
        (
            "gross under tare",
            format!("/api/v1/spools/{spool}/adjust"),
            json!({"reason": "weighed", "gross_g": -1.0}),
            422,
            "gross_g",
        ),
        (
            "not loaded",
            format!("/api/v1/spools/{spool}/unload"),
            Value::Null,
            409,
            "not loaded",
        ),
        (
            "a task on no printer",
            "/api/v1/maintenance/tasks".into(),
            json!({"printer": "p-9", "name": "x", "interval": {"jobs": 5}}),
            404,
            "p-9",
        ),
        (
            "a task with no interval",
            "/api/v1/maintenance/tasks".into(),
            json!({"printer": "p-1", "name": "x", "interval": {}}),
            422,
            "interval",
        ),
    ];
    for (what, path, body, status, hint) in cases {
        let r = farm
            .client
            .post(format!("{}{path}", farm.http))
            .bearer_auth(&farm.admin)
            .json(&body)
            .send()
            .await?;
        let got = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        ensure!(
            got == status && ctype == "application/problem+json",
            "{what}: {got} {ctype} {v}"
        );
        let detail = v["detail"].as_str().unwrap_or_default();
        ensure!(
            detail.contains(hint),
            "{what}: the detail should mention {hint:?}: {v}"
        );
    }
    ensure!(
        remaining(farm, &spool).await? == 100.0,
        "refused writes change nothing"
    );
    let l = farm.get(&format!("/api/v1/spools/{spool}/ledger")).await?;
    ensure!(l["items"].as_array().is_some_and(Vec::is_empty), "{l}");

    // A weighing is one ledger row; remaining follows it.
    let a = post(
        farm,
        &format!("/api/v1/spools/{spool}/adjust"),
        json!({"reason": "weighed", "net_g": 80.5, "note": "on the scale"}),
    )
    .await?;
    ensure!(
        f(&a["spool"]["remaining_g"]) == 80.5 && f(&a["row"]["grams"]) == -19.5,
        "{a}"
    );

    // Low stock: 80.5 g of red PETG is under the 1000 g default.
    let low = farm.get("/api/v1/inventory/low-stock").await?;
    ensure!(
        low["items"][0]["material"] == "PETG" && low["items"][0]["colour"] == "red",
        "{low}"
    );
    ensure!(
        farm.metric("farm_filament_low{material=\"PETG\",colour=\"red\"}")
            .await?
            == 1.0,
        "low-stock gauge"
    );

    // A quote: grams from the material, a price, and a completion time (p-1 is offline, so
    // there is none to promise yet).
    let gcode = data("short-print.gcode");
    let (s, q) = farm
        .post_file("/api/v1/quotes?materials=petg-red&copies=2", gcode)
        .await?;
    ensure!(s == 200, "quote answered {s}: {q}");
    let one = &q["per_copy"];
    let petg_gpm = std::f64::consts::PI * (1.75f64 / 2.0).powi(2) / 1000.0 * 1.27;
    let tool0 = &one["tools"][0];
    ensure!(
        (f(&tool0["grams"]) - f(&tool0["mm"]) * petg_gpm).abs() < 1e-9,
        "{q}"
    );
    ensure!(
        (f(&q["cost"]["total"]) - 2.0 * f(&one["cost"]["total"])).abs() < 1e-9,
        "{q}"
    );
    ensure!(
        f(&q["price"]) >= 5.0 && f(&q["price"]) >= f(&q["cost"]["total"]),
        "{q}"
    );
    ensure!(q["earliest_completion"].is_null(), "no printer online: {q}");
    // The same file by its hash gives the same figures.
    let by_hash = post(
        farm,
        &format!(
            "/api/v1/quotes?materials=petg-red&sha256={}",
            q["sha256"].as_str().unwrap_or("")
        ),
        Value::Null,
    )
    .await?;
    ensure!(by_hash["per_copy"] == q["per_copy"], "{by_hash} vs {q}");
    let (s, v) = farm
        .post_json("/api/v1/quotes?materials=unobtainium", Value::Null)
        .await?;
    ensure!(
        s == 422 && v["detail"].as_str().unwrap_or("").contains("petg-red"),
        "{s} {v}"
    );
    Ok(())
}

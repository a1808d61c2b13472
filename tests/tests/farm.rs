//! The farm end to end: a controller, three agents as separate processes over MQTT on
//! loopback, jobs uploaded through the API, watched on the live stream and in a real browser.

use anyhow::{Result, ensure};
use farm_e2e::browser::Browser;
use farm_e2e::{Farm, FarmOptions, data, eventually, or_logs, speed_for};
use serde_json::{Value, json};
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
        let states = stream
            .job_states_through(id, "completed", Duration::from_secs(30))
            .await?;
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
    let mut farm = farm_letting_in(Some("operator")).await;
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
    // p-2 joins only now: started together, whichever agent connects first takes the job.
    farm.add_agent("p-2", true, &sim).await?;
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
    // What the firmware says shows on its card: an `M118` from the operator's console goes
    // controller → agent → printer, and the printer's words come back the other way.
    let (s, v) = farm
        .post_json(
            "/api/v1/printers/p-1/commands",
            json!({"kind": "raw_gcode", "lines": ["M118 A1 Filament runout soon"]}),
        )
        .await?;
    ensure!(s == 202, "raw G-code answered {s}: {v}");
    page.wait_for(
        "the firmware's message on p-1's card",
        "(document.querySelector('article.printer[data-printer-id=\"p-1\"] .fw-note:not([hidden])')?.textContent ?? '').includes('Filament runout soon')",
        Duration::from_secs(10),
    )
    .await?;
    shot(&mut page, "dashboard-printing.png").await?;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboards_timeline_orders_and_stock_views_show_the_farm_and_act_on_it() {
    let mut farm = farm_letting_in(Some("operator")).await;
    let r = production_views(&mut farm).await;
    or_logs(r, &farm);
}

/// Clicks `button` in the page, then the confirmation dialog's "Confirm".
async fn click_and_confirm(page: &mut farm_e2e::browser::Page, button: &str) -> Result<()> {
    page.eval(&format!("document.querySelector('{button}').click()"))
        .await?;
    page.wait_for(
        "the confirmation dialog",
        "document.querySelector('#confirm').open",
        Duration::from_secs(5),
    )
    .await?;
    page.eval("document.querySelector('#confirm .confirm-ok').click()")
        .await?;
    Ok(())
}

async fn production_views(farm: &mut Farm) -> Result<()> {
    let browser = Browser::launch().await?;
    let mut page = browser.open(&format!("{}/", farm.http)).await?;
    page.wait_for(
        "the dashboard's scripts",
        "document.readyState === 'complete' && !!window.farm && !!window.farm.route",
        Duration::from_secs(20),
    )
    .await?;
    page.eval("location.hash = '#/timeline'").await?;

    // Stock: PLA red is below its threshold on the shelf.
    let (s, _) = farm
        .post_json(
            "/api/v1/materials",
            json!({"material": "PLA", "colour": "red", "cost_per_kg": 20.0, "low_stock_g": 500.0}),
        )
        .await?;
    ensure!(s == 201, "material: {s}");
    let (s, _) = farm
        .post_json(
            "/api/v1/spools",
            json!({"material": "pla-red", "initial_g": 120.0}),
        )
        .await?;
    ensure!(s == 201, "spool: {s}");

    // An order for one copy, and a plain job: one printer prints one and has the other planned.
    let r = farm
        .client
        .post(format!("{}/api/v1/files?name=short-print.gcode", farm.http))
        .bearer_auth(&farm.admin)
        .header("content-type", "application/octet-stream")
        .body(data("short-print.gcode"))
        .send()
        .await?;
    ensure!(r.status() == 201, "file upload: {}", r.status());
    let file: Value = r.json().await?;
    let (s, placed) = farm
        .post_json(
            "/api/v1/orders",
            json!({"customer_ref": "DASH-7", "items": [{"sha256": file["sha256"], "quantity": 1}]}),
        )
        .await?;
    ensure!(s == 201, "order: {s} {placed}");
    let order = placed["order"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let plain = farm
        .upload("short-print.gcode", data("short-print.gcode"), 1)
        .await?;
    let sim = speed_for(&plain[0], 10.0);
    farm.add_agent("p-1", true, &sim).await?;
    let task = overdue_task(farm, "p-1").await?;

    // Timeline: p-1's row has its running job's bar and the other job's planned bar.
    page.wait_for(
        "a running and a planned bar on p-1's timeline row",
        "(() => { const row = document.querySelector('.tl-row[data-printer-id=\"p-1\"]');
                  return !!row && !!row.querySelector('.tl-bar[data-kind=\"running\"]')
                      && !!row.querySelector('.tl-bar[data-kind=\"planned\"]')
                      && !!document.querySelector('#tl-now'); })()",
        Duration::from_secs(40),
    )
    .await?;
    let bars = page
        .eval("Array.from(document.querySelectorAll('.tl-row[data-printer-id=\"p-1\"] .tl-bar')).map(b => [b.dataset.jobId, b.textContent, b.title])")
        .await?;
    let plain_id = plain[0]["id"].as_str().unwrap_or_default();
    let labels = bars.to_string();
    ensure!(
        labels.contains(plain_id) && labels.contains(&order),
        "the bars are the plain job and the order's job, labelled with the order: {bars}"
    );
    shot(&mut page, "dashboard-timeline.png").await?;

    // Orders: the order is listed with its state; once printed, the operator fulfils it here.
    page.eval("location.hash = '#/orders'").await?;
    page.wait_for(
        "the order in the orders view",
        &format!(
            "(() => {{ const tr = document.querySelector('tr[data-order-id=\"{order}\"]');
                      return !!tr && tr.textContent.includes('DASH-7') && !!tr.dataset.state; }})()"
        ),
        Duration::from_secs(10),
    )
    .await?;
    page.wait_for(
        "the order ready, with its Fulfil button",
        &format!(
            "(() => {{ const tr = document.querySelector('tr[data-order-id=\"{order}\"][data-state=\"ready\"]');
                      return !!tr && !tr.querySelector('[data-action=\"fulfil\"]').hidden
                          && tr.textContent.includes('1/1 copies'); }})()"
        ),
        Duration::from_secs(60),
    )
    .await?;
    shot(&mut page, "dashboard-orders.png").await?;
    click_and_confirm(
        &mut page,
        &format!("tr[data-order-id=\"{order}\"] [data-action=\"fulfil\"]"),
    )
    .await?;
    eventually(
        "the click fulfilled the order",
        Duration::from_secs(10),
        async || {
            let o = farm.get(&format!("/api/v1/orders/{order}")).await.ok()?;
            (o["status"] == "fulfilled").then_some(())
        },
    )
    .await?;
    // A stale page (another operator was quicker): the refusal shows the API's own detail.
    page.eval("(() => { const s = document.querySelector('#orders-state'); s.value = 'all'; s.dispatchEvent(new Event('change')); })()").await?;
    page.wait_for(
        "the fulfilled order under 'All'",
        &format!("document.querySelector('tr[data-order-id=\"{order}\"][data-state=\"fulfilled\"]') !== null"),
        Duration::from_secs(10),
    )
    .await?;
    click_and_confirm(
        &mut page,
        &format!("tr[data-order-id=\"{order}\"] [data-action=\"cancel\"]"),
    )
    .await?;
    page.wait_for(
        "the API's refusal in a toast",
        "Array.from(document.querySelectorAll('.toast.error')).some(t => t.textContent.includes('cancel only orders not yet printed'))",
        Duration::from_secs(10),
    )
    .await?;

    // Stock and maintenance: PLA red highlighted as low; the overdue task is done from here.
    page.eval("location.hash = '#/stock'").await?;
    page.wait_for(
        "PLA red highlighted as low stock",
        "document.querySelector('tr[data-stock=\"PLA/red\"][data-level=\"low\"] .mflag')?.textContent === 'Low stock'",
        Duration::from_secs(10),
    )
    .await?;
    page.wait_for(
        "the low-stock alert",
        "document.querySelector('#alerts .alert-low')?.textContent.includes('PLA red') === true",
        Duration::from_secs(15),
    )
    .await?;
    page.wait_for(
        "the overdue task",
        &format!(
            "document.querySelector('tr[data-task-id=\"{task}\"][data-due=\"overdue\"]') !== null"
        ),
        Duration::from_secs(10),
    )
    .await?;
    shot(&mut page, "dashboard-stock.png").await?;
    click_and_confirm(
        &mut page,
        &format!("tr[data-task-id=\"{task}\"] [data-action=\"complete\"]"),
    )
    .await?;
    eventually(
        "the click completed the task",
        Duration::from_secs(10),
        async || {
            let t = farm
                .get(&format!("/api/v1/maintenance/tasks/{task}"))
                .await
                .ok()?;
            (t["due"] == "ok" && t["last_done"]["by"] == "anonymous").then_some(())
        },
    )
    .await?;
    page.wait_for(
        "the task gone from the due list",
        &format!("document.querySelector('tr[data-task-id=\"{task}\"]') === null"),
        Duration::from_secs(10),
    )
    .await?;
    Ok(())
}

/// With `FARM_SCREENSHOT_DIR` set, saves a PNG of the page (for a person to look at).
async fn shot(page: &mut farm_e2e::browser::Page, name: &str) -> Result<()> {
    if let Some(dir) = std::env::var_os("FARM_SCREENSHOT_DIR") {
        page.screenshot(&std::path::Path::new(&dir).join(name))
            .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_the_production_views_without_the_actions_it_may_not_take() {
    let mut farm = farm_letting_in(Some("viewer")).await;
    let r = viewer(&mut farm).await;
    or_logs(r, &farm);
}

async fn viewer(farm: &mut Farm) -> Result<()> {
    farm.enrol("p-1", true, FAST).await?;
    let task = overdue_task(farm, "p-1").await?;
    let browser = Browser::launch().await?;
    let mut page = browser.open(&format!("{}/", farm.http)).await?;
    page.wait_for(
        "the role in the page",
        "document.querySelector('#who')?.textContent === 'viewer'",
        Duration::from_secs(20),
    )
    .await?;
    page.eval("location.hash = '#/stock'").await?;
    let hidden = page
        .wait_for(
            "the overdue task, without its Done button",
            &format!(
                "(() => {{ const b = document.querySelector('tr[data-task-id=\"{}\"] [data-action=\"complete\"]');
                          return !!b && getComputedStyle(b.parentElement).display === 'none'
                              && getComputedStyle(document.querySelector('#upload')).display === 'none'; }})()",
                task
            ),
            Duration::from_secs(10),
        )
        .await?;
    ensure!(hidden == true, "actions hidden for a viewer");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_anonymous_access_the_dashboard_asks_for_a_token_and_signs_in_with_it() {
    let farm = farm_letting_in(None).await;
    let r = sign_in(&farm).await;
    or_logs(r, &farm);
}

async fn sign_in(farm: &Farm) -> Result<()> {
    let browser = Browser::launch().await?;
    let mut page = browser.open(&format!("{}/", farm.http)).await?;
    page.wait_for(
        "the sign-in dialog",
        "document.querySelector('#login')?.open === true",
        Duration::from_secs(20),
    )
    .await?;
    page.eval(&format!(
        "document.querySelector('#login-token').value = {:?}; document.querySelector('#login-submit').click()",
        farm.admin
    ))
    .await?;
    page.wait_for(
        "live, signed in as admin, with the operator's actions",
        "document.querySelector('#live')?.textContent.trim() === 'live'
         && document.querySelector('#who').textContent.endsWith('admin')
         && document.body.classList.contains('can-operate')",
        Duration::from_secs(20),
    )
    .await?;
    Ok(())
}

/// A farm whose dashboard lets the local browser in as `role` without a token (or not at all).
async fn farm_letting_in(role: Option<&'static str>) -> Farm {
    Farm::start(FarmOptions {
        anonymous_role: role,
        ..FarmOptions::default()
    })
    .await
    .expect("controller")
}

/// A daily maintenance task on `printer`, last done years ago: overdue. Returns its id.
async fn overdue_task(farm: &Farm, printer: &str) -> Result<String> {
    let (s, task) = farm
        .post_json(
            "/api/v1/maintenance/tasks",
            json!({"printer": printer, "name": "Clean the bed", "interval": {"days": 1.0},
                   "last_done_at": "2020-01-01T00:00:00Z"}),
        )
        .await?;
    ensure!(s == 201, "maintenance task: {s} {task}");
    Ok(task["id"].as_str().unwrap_or_default().to_string())
}

//! Operators steer the queue through the REST API, and the printers follow: a job moved to
//! the front prints first, a held job waits until it is let go, a pinned job waits for its
//! printer, a cancelled job can be requeued once (as a new attempt), and in manual release mode
//! an order's copies wait until an operator releases the order. A real controller and two sim
//! agents over MQTT; the outcome is read from the jobs' own records (which printer, when).

use anyhow::{Context, Result, ensure};
use farm_e2e::{Farm, FarmOptions, data, eventually, or_logs};
use serde_json::{Value, json};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const FAST: &str = "speed = 100.0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_reorder_pin_hold_requeue_and_release_and_the_printers_follow() {
    let mut farm = Farm::start(FarmOptions {
        extra_toml: "[orders]\nmanual_release = true\n".into(),
        ..FarmOptions::default()
    })
    .await
    .expect("controller starts");
    let r = steer(&mut farm).await;
    or_logs(r, &farm);
}

fn id(job: &Value) -> String {
    job["id"].as_str().unwrap_or_default().to_string()
}

async fn job(farm: &Farm, id: &str) -> Result<Value> {
    farm.get(&format!("/api/v1/jobs/{id}")).await
}

fn at(job: &Value, field: &str) -> Result<OffsetDateTime> {
    let s = job[field]
        .as_str()
        .with_context(|| format!("job {} has no {field}: {job}", id(job)))?;
    Ok(OffsetDateTime::parse(s, &Rfc3339)?)
}

/// The waiting reason the latest plan gives for `job`, once it gives one.
async fn waiting_reason(farm: &Farm, job: &str) -> Result<String> {
    eventually(
        "the plan to list the job as waiting",
        Duration::from_secs(10),
        async || {
            let q = farm.get("/api/v1/queue").await.ok()?;
            q["items"].as_array()?.iter().find_map(|e| {
                (e["job_id"] == job)
                    .then(|| e["waiting"].as_str().map(str::to_string))
                    .flatten()
            })
        },
    )
    .await
}

/// Waits until every job in `ids` completed.
async fn done(farm: &Farm, ids: Vec<String>) -> Result<()> {
    eventually("jobs completed", Duration::from_secs(120), async || {
        for i in &ids {
            if job(farm, i).await.ok()?["state"] != "completed" {
                return None;
            }
        }
        Some(())
    })
    .await
}

async fn steer(farm: &mut Farm) -> Result<()> {
    // Both printers enrolled, neither agent running yet: nothing can start while we arrange.
    farm.enrol("p-a", true, FAST).await?;
    farm.enrol("p-b", true, FAST).await?;
    let jobs = farm
        .upload("short-print.gcode", data("short-print.gcode"), 5)
        .await?;
    ensure!(jobs.len() == 5, "five copies: {jobs:?}");
    let (j1, j2, j3, j4, j5) = (
        id(&jobs[0]),
        id(&jobs[1]),
        id(&jobs[2]),
        id(&jobs[3]),
        id(&jobs[4]),
    );
    let sha = jobs[0]["sha256"].as_str().unwrap_or_default().to_string();

    // j3 to the front, j2 held, j4 pinned to p-b.
    let (s, v) = farm
        .request(
            "PATCH",
            &format!("/api/v1/queue/{j3}"),
            json!({ "before": j1 }),
        )
        .await?;
    ensure!(s == 200, "move j3 before j1: {s} {v}");
    let (s, v) = farm
        .request(
            "PATCH",
            &format!("/api/v1/queue/{j2}"),
            json!({ "hold": true }),
        )
        .await?;
    ensure!(s == 200 && v["hold"].is_string(), "hold j2: {s} {v}");
    let (s, v) = farm
        .request(
            "PATCH",
            &format!("/api/v1/queue/{j4}"),
            json!({ "pin": "p-b" }),
        )
        .await?;
    ensure!(s == 200 && v["pinned_printer"] == "p-b", "pin j4: {s} {v}");

    // Mistakes are refused with a reason and change nothing.
    let (s, v) = farm
        .request(
            "PATCH",
            &format!("/api/v1/queue/{j4}"),
            json!({ "pin": "no-such" }),
        )
        .await?;
    ensure!(
        s == 404 && v["detail"].is_string(),
        "pin to an unknown printer: {s} {v}"
    );
    let (s, v) = farm
        .request(
            "PATCH",
            &format!("/api/v1/queue/{j1}"),
            json!({ "before": "no-such" }),
        )
        .await?;
    ensure!(
        s == 422 && v["detail"].is_string(),
        "move before an unknown job: {s} {v}"
    );
    let (s, v) = farm
        .request(
            "PATCH",
            &format!("/api/v1/queue/{j1}"),
            json!({ "hold": "yes" }),
        )
        .await?;
    ensure!(s == 422, "a hold that is not a boolean: {s} {v}");

    // Cancel a queued copy, requeue it once: a new job, the next attempt; twice is refused.
    let (s, v) = farm
        .post_json(&format!("/api/v1/jobs/{j5}/cancel"), Value::Null)
        .await?;
    ensure!(
        s == 200 && v["state"] == "cancelled",
        "cancel queued j5: {s} {v}"
    );
    let (s, retry) = farm
        .post_json(&format!("/api/v1/queue/{j5}/requeue"), Value::Null)
        .await?;
    ensure!(
        s == 201
            && retry["state"] == "queued"
            && retry["attempt"] == 2
            && retry["retry_of"] == j5.as_str()
            && id(&retry) != j5,
        "requeue j5: {s} {retry}"
    );
    let j6 = id(&retry);
    let (s, v) = farm
        .post_json(&format!("/api/v1/queue/{j5}/requeue"), Value::Null)
        .await?;
    ensure!(s == 409, "a second requeue of j5: {s} {v}");
    let (s, v) = farm
        .request(
            "PATCH",
            &format!("/api/v1/queue/{j5}"),
            json!({ "hold": true }),
        )
        .await?;
    ensure!(s == 409, "holding a cancelled job: {s} {v}");
    let (s, v) = farm
        .post_json(&format!("/api/v1/queue/{j6}/requeue"), Value::Null)
        .await?;
    ensure!(s == 409, "requeueing a queued job: {s} {v}");

    // An order in manual release mode: accepted, its copy queued but held for release.
    let r = farm
        .client
        .post(format!("{}/api/v1/orders", farm.http))
        .bearer_auth(&farm.admin)
        .header("idempotency-key", "queue-test-1")
        .json(&json!({ "customer_ref": "Q-1", "items": [{ "sha256": sha, "quantity": 1 }] }))
        .send()
        .await?;
    let (s, order): (u16, Value) = (r.status().as_u16(), r.json().await?);
    ensure!(
        s == 201 && order["order"]["status"] == "received",
        "order: {s} {order}"
    );
    let order_id = order["order"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let order_job = eventually("the order's job", Duration::from_secs(10), async || {
        let jobs = farm.get("/api/v1/jobs").await.ok()?;
        jobs["items"]
            .as_array()?
            .iter()
            .find_map(|j| (j["order"]["order_id"] == order_id.as_str()).then(|| id(j)))
    })
    .await?;
    ensure!(
        job(farm, &order_job).await?["hold"] == "awaiting release",
        "the order's copy waits for release"
    );

    // The plan says why the held and the pinned jobs wait.
    let why = waiting_reason(farm, &j2).await?;
    ensure!(why.contains("held"), "j2 waits because it is held: {why}");
    let why = waiting_reason(farm, &j4).await?;
    ensure!(why.contains("p-b"), "j4 waits for p-b: {why}");
    let why = waiting_reason(farm, &order_job).await?;
    ensure!(
        why.contains("awaiting release"),
        "the order's copy waits for its release: {why}"
    );
    // That plan lists the waiting jobs in queue order: j3 now ahead of j1.
    let q = farm.get("/api/v1/queue").await?;
    let order: Vec<&str> = q["items"]
        .as_array()
        .context("queue items")?
        .iter()
        .filter_map(|e| e["job_id"].as_str())
        .collect();
    let pos = |j: &str| order.iter().position(|x| *x == j);
    ensure!(
        pos(&j3).is_some() && pos(&j3) < pos(&j1),
        "the queue shows j3 ahead of j1: {order:?}"
    );

    // Only p-a comes online: it prints j3, then j1 and the retry j6 — never the held j2, the
    // pinned j4 or the unreleased order.
    farm.start_agent("p-a").await?;
    done(farm, vec![j3.clone(), j1.clone(), j6.clone()]).await?;
    let (a3, a1) = (job(farm, &j3).await?, job(farm, &j1).await?);
    ensure!(
        a3["printer_id"] == "p-a" && a1["printer_id"] == "p-a",
        "both on p-a: {a3} {a1}"
    );
    ensure!(
        at(&a3, "assigned_at")? < at(&a1, "assigned_at")?,
        "j3 was moved before j1 and prints first: {} vs {}",
        a3["assigned_at"],
        a1["assigned_at"]
    );
    for (j, what) in [
        (&j2, "held"),
        (&j4, "pinned to p-b"),
        (&order_job, "unreleased"),
    ] {
        let v = job(farm, j).await?;
        ensure!(
            v["state"] == "queued" && v["printer_id"].is_null(),
            "{what} job {j} stayed queued: {v}"
        );
    }

    // Let j2 go: it prints on p-a, assigned only after the hold was lifted.
    let lifted = OffsetDateTime::now_utc();
    let (s, v) = farm
        .request(
            "PATCH",
            &format!("/api/v1/queue/{j2}"),
            json!({ "hold": false }),
        )
        .await?;
    ensure!(s == 200 && v["hold"].is_null(), "unhold j2: {s} {v}");
    done(farm, vec![j2.clone()]).await?;
    let a2 = job(farm, &j2).await?;
    ensure!(a2["printer_id"] == "p-a", "j2 on p-a: {a2}");
    ensure!(
        at(&a2, "assigned_at")? >= lifted,
        "j2 started only after its hold was lifted: {a2}"
    );

    // p-b comes online and takes its pinned job.
    farm.start_agent("p-b").await?;
    done(farm, vec![j4.clone()]).await?;
    let a4 = job(farm, &j4).await?;
    ensure!(
        a4["printer_id"] == "p-b",
        "j4 printed on its pinned printer: {a4}"
    );
    let v = job(farm, &order_job).await?;
    ensure!(
        v["state"] == "queued",
        "the order still waits for release: {v}"
    );

    // Releasing the order lets its copy print; the order becomes ready.
    let (s, v) = farm
        .post_json(&format!("/api/v1/orders/{order_id}/release"), Value::Null)
        .await?;
    ensure!(s == 200, "release: {s} {v}");
    done(farm, vec![order_job.clone()]).await?;
    eventually("the order ready", Duration::from_secs(10), async || {
        let o = farm.get(&format!("/api/v1/orders/{order_id}")).await.ok()?;
        (o["status"] == "ready").then_some(())
    })
    .await?;
    Ok(())
}

//! The load generator's quick run against a real controller (embedded broker): 500 printers
//! for 20 s with a reconnect storm. Asserts what must hold at any speed — no event lost,
//! every event acked, every printer online and fresh afterwards, the storm recovered, a
//! command answered — never timings (those go to BENCHMARKS.md, `scripts/bench-floor.sh`).

use clap::Parser;
use farm_e2e::{Farm, FarmOptions, eventually, or_logs};
use farm_loadgen::Settings;
use std::time::Duration;

const PRINTERS: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_printers_through_a_reconnect_storm_lose_nothing() {
    let farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller");
    let settings = Settings::parse_from([
        "farm-loadgen",
        "--controller",
        &farm.http,
        "--broker",
        &format!("127.0.0.1:{}", farm.mqtt_port),
        "--admin-token",
        &farm.admin,
        "--printers",
        &PRINTERS.to_string(),
        "--duration",
        "15s",
        "--settle",
        "30s",
        // The debug controller on a loaded CI machine: 100 statuses/s and ~8 events/s, so
        // the run checks what must hold, not how fast a debug build is.
        "--status-interval",
        "5s",
        "--event-every",
        "60s",
        "--storm-at",
        "5s",
        "--connect-concurrency",
        "64",
        "--connect-timeout",
        "30s",
        "--drain",
        "30s",
    ]);
    let run = tokio::spawn(farm_loadgen::run(settings));

    // A command from the controller, answered as an agent answers: a command_result event.
    let commanded = async {
        eventually(
            "printer lg-00001 online",
            Duration::from_secs(40),
            async || {
                let p = farm.get("/api/v1/printers/lg-00001").await.ok()?;
                (p["online"] == true).then_some(())
            },
        )
        .await?;
        let (code, body) = farm
            .post_json(
                "/api/v1/printers/lg-00001/commands",
                serde_json::json!({"kind": "set_telemetry", "interval_ms": 1000}),
            )
            .await?;
        anyhow::ensure!(code == 202, "command answered {code}: {body}");
        Ok(())
    }
    .await;
    or_logs(commanded, &farm);
    let report = or_logs(run.await.expect("the load generator panicked"), &farm);
    println!("{report}");

    let e = &report.events;
    assert!(
        e.created >= PRINTERS as u64 / 10,
        "too few events to judge\n{report}"
    );
    assert_eq!(e.unacked, 0, "events never acked\n{report}");
    assert_eq!(e.acked, e.created, "{report}");
    assert_eq!(e.commands_answered, 1, "{report}");
    // Exactly once on the controller's side: every event applied, none twice.
    let applied = or_logs(farm.metric("farm_events_applied_total").await, &farm);
    assert_eq!(applied as u64, e.created, "{report}");
    assert!(
        report.stream.storm_recovered_s.is_some(),
        "not every printer came back online and fresh after the storm\n{report}"
    );
    assert_eq!(report.online_at_end, PRINTERS, "{report}");
    assert!(report.stream.statuses_seen > 0, "{report}");
}

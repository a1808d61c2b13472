//! The load generator against a real controller process (embedded broker). Asserts what must
//! hold at any speed, never timings (those go to BENCHMARKS.md, `scripts/bench-floor.sh`):
//!
//! - 500 printers for 20 s with a reconnect storm: no event lost, every event acked, every
//!   printer online and fresh afterwards, the storm recovered, a command answered;
//! - `kill -9` of the controller while events stream: every event it acked is on disk, and
//!   after the restart and the printers' resends every event is applied exactly once.

use clap::Parser;
use farm_e2e::{Farm, FarmOptions, eventually, or_logs};
use farm_loadgen::Settings;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

const PRINTERS: usize = 500;

/// The load generator's settings for `printers` against `farm`, plus `more` options.
fn loadgen_against(farm: &Farm, printers: usize, more: &[&str]) -> Settings {
    let (broker, n) = (
        format!("127.0.0.1:{}", farm.mqtt_port),
        printers.to_string(),
    );
    let base = [
        "farm-loadgen",
        "--controller",
        &farm.http,
        "--broker",
        &broker,
        "--admin-token",
        &farm.admin,
        "--printers",
        &n,
    ];
    Settings::parse_from(base.iter().chain(more))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_printers_through_a_reconnect_storm_lose_nothing() {
    let farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller");
    let settings = loadgen_against(
        &farm,
        PRINTERS,
        &[
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
        ],
    );
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

const STREAMING: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_events_stream_loses_nothing_acknowledged() {
    let mut farm = Farm::start(FarmOptions::default())
        .await
        .expect("controller");
    let settings = loadgen_against(
        &farm,
        STREAMING,
        &[
            // 20 printers × one event per 50 ms: ~400 events/s in flight when the kill comes.
            "--event-every",
            "50ms",
            "--event-kind",
            "printer-ready",
            "--duration",
            "10s",
            "--drain",
            "30s",
            "--settle",
            "30s",
            "--connect-timeout",
            "30s",
        ],
    );
    let (probe, shared) = tokio::sync::oneshot::channel();
    let run = tokio::spawn(farm_loadgen::run_with(settings, Some(probe)));
    let shared = shared.await.expect("the load generator started");
    let c = &shared.counters;

    // The kill comes at an event: the 300th ack, with events still streaming in.
    or_logs(
        eventually("300 events acked", Duration::from_secs(40), async || {
            (c.events_acked.load(Relaxed) >= 300).then_some(())
        })
        .await,
        &farm,
    );
    or_logs(farm.kill_controller().await, &farm);
    // Once every printer has seen its connection end, every ack the dead controller sent
    // has been read: these marks are final until the restart.
    or_logs(
        eventually(
            "every printer disconnected",
            Duration::from_secs(20),
            async || (c.connected.load(Relaxed) == 0).then_some(()),
        )
        .await,
        &farm,
    );
    let slots = &shared.slots[..STREAMING];
    let acked: Vec<u64> = slots.iter().map(|s| s.acked_seq.load(Relaxed)).collect();
    let made: Vec<u64> = slots.iter().map(|s| s.made_seq.load(Relaxed)).collect();
    let on_disk: HashMap<String, u64> = {
        let path = farm.dir.path().join("controller/farm.redb");
        let store = farm_controller::store::Store::open(&path)
            .expect("the killed controller's store opens");
        store
            .applied_seqs()
            .expect("applied marks")
            .into_iter()
            .collect()
    };
    let ids: Vec<String> = (1..=STREAMING).map(|i| format!("lg-{i:05}")).collect();
    let mut at_restart = Vec::with_capacity(STREAMING);
    for (i, id) in ids.iter().enumerate() {
        let disk = on_disk.get(id).copied().unwrap_or(0);
        assert!(
            disk >= acked[i],
            "{id}: the controller acked seq {} but only {disk} is on disk after kill -9",
            acked[i]
        );
        assert!(
            disk <= made[i],
            "{id}: {disk} applied but only {} made",
            made[i]
        );
        at_restart.push(disk);
    }
    println!(
        "at the kill: {} events acked, {} made, {} applied on disk",
        acked.iter().sum::<u64>(),
        made.iter().sum::<u64>(),
        at_restart.iter().sum::<u64>()
    );

    // Same store, same ports: the printers reconnect, resend what is pending and go on.
    or_logs(farm.start_controller().await, &farm);
    let report = or_logs(run.await.expect("the load generator panicked"), &farm);
    println!("{report}");
    let e = &report.events;
    assert_eq!(
        e.ack_regressions, 0,
        "the restarted controller acked less than before the kill\n{report}"
    );
    assert_eq!(
        e.unacked, 0,
        "events never acked after the restart\n{report}"
    );
    assert_eq!(e.acked, e.created, "{report}");
    assert!(
        e.created > made.iter().sum::<u64>(),
        "no events after the restart\n{report}"
    );
    let mut left = 0;
    for (i, id) in ids.iter().enumerate() {
        let (acked, made) = (
            slots[i].acked_seq.load(Relaxed),
            slots[i].made_seq.load(Relaxed),
        );
        assert_eq!(acked, made, "{id}: last event not applied\n{report}");
        left += made - at_restart[i];
    }
    // Exactly once: the restarted controller applied each event it did not have once, and
    // every resend of one it had was a replay.
    let applied = or_logs(farm.metric("farm_events_applied_total").await, &farm);
    assert_eq!(applied as u64, left, "{report}");
    assert_eq!(report.online_at_end, STREAMING, "{report}");
}

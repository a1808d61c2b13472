//! Status ingest: signed statuses per second through the MQTT entry point, one thread.
//!
//! `cargo run --release -p farm-controller --example status_bench [-- PRINTERS ROUNDS SUBSCRIBERS]`
//!
//! PRINTERS enrolled printers each send ROUNDS statuses (the load generator's ~560-byte
//! printing status, a new `uptime_s` and progress each time, so every one changes the
//! printer's view), interleaved printer by printer as the broker would deliver them, through
//! [`farm_controller::mqtt::ingest::handle`]: topic parse, secret lookup, HMAC check, JSON
//! parse, apply to the mirror, diff for the live stream. SUBSCRIBERS threads read the stream
//! and render each change as the SSE handler does, as dashboards would. The statuses are
//! sealed before the clock starts.
//!
//! STAGE (fifth argument) runs one stage only over the same statuses, for instruction counts
//! per stage (the release binary is stripped, so callgrind cannot name functions; subtract
//! the `none` run's total and divide by PRINTERS × ROUNDS):
//! - `all` (default): the whole entry point, as above;
//! - `none`: the set-up only (enrol, seal, and decode every status once for `apply`);
//! - `hmac`: split and HMAC check only; `open`: [`farm_protocol::open`] (HMAC + JSON parse);
//! - `apply`: [`Farm::apply_status`] on the decoded statuses (mirror, view, diff, stream);
//! - `diff`: [`fleet::view`] and [`fleet::diff`] alone, on a private record.
//!
//! `for s in none hmac open apply diff all; do valgrind --tool=callgrind --callgrind-out-file=cg.$s target/release/examples/status_bench 200 20 1 $s; done`
//! (run `apply` also with SUBSCRIBERS 0: the difference is rendering for one stream client).

use farm_controller::farm::Farm;
use farm_controller::printers::fleet;
use farm_protocol::messages::{Activity, AgentHealth, Heater, JobProgress, Status, StatusMessage};
use farm_protocol::{Channel, Envelope, PrinterId, seal};
use hmac::{KeyInit, Mac};
use std::time::Instant;

fn main() {
    let printers = arg(1, 1000);
    let rounds = arg(2, 20);
    let subscribers = arg(3, 1);
    let stage = std::env::args().nth(4).unwrap_or_else(|| "all".into());
    let dir = tempfile::tempdir().expect("tempdir");
    let store = farm_controller::store::Store::open(&dir.path().join("farm.redb")).expect("store");
    let topics = farm_protocol::Topics::new("farm").expect("topics");
    let (farm, _outbound) = Farm::load(store, topics.clone(), "http://x".into()).expect("load");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ids: Vec<PrinterId> = (0..printers)
        .map(|i| PrinterId::new(format!("p-{i:05}")).expect("id"))
        .collect();
    // Enrolled concurrently, so the writer commits them in a few batches.
    let secrets: Vec<String> = rt.block_on(async {
        let tasks: Vec<_> = ids
            .iter()
            .map(|id| {
                let (farm, id) = (farm.clone(), id.to_string());
                tokio::spawn(async move { farm.add_printer(&id, None, false).await })
            })
            .collect();
        let mut out = vec![];
        for t in tasks {
            out.push(t.await.expect("task").expect("enrol").0.secret);
        }
        out
    });
    let mut wire = Vec::with_capacity(printers * rounds);
    for n in 0..rounds {
        for (i, (id, secret)) in ids.iter().zip(&secrets).enumerate() {
            let env = Envelope::new(id.clone(), StatusMessage::Status(status(n as u32)));
            let payload = seal(&env, secret.as_bytes()).expect("seal");
            wire.push((i, topics.printer(id, Channel::Status), payload));
        }
    }
    // Decoded once, for the stages after decoding.
    let decoded: Vec<Status> = wire
        .iter()
        .map(|(i, _, payload)| {
            let env: Envelope<StatusMessage> =
                farm_protocol::open(payload, secrets[*i].as_bytes(), &ids[*i]).expect("open");
            let StatusMessage::Status(s) = env.body;
            s
        })
        .collect();
    let readers: Vec<_> = (0..subscribers)
        .map(|_| {
            let (_, mut rx) = farm.subscribe();
            std::thread::spawn(move || {
                let (mut changes, mut bytes) = (0u64, 0usize);
                loop {
                    match rx.blocking_recv() {
                        Ok(c) => {
                            changes += 1;
                            bytes += c.encoded(farm_controller::api::stream::encode).len();
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
                (changes, bytes)
            })
        })
        .collect();
    let start = Instant::now();
    match stage.as_str() {
        "all" => {
            for (_, topic, payload) in &wire {
                farm_controller::mqtt::ingest::handle(&farm, topic, payload);
            }
        }
        "none" => {}
        "hmac" => {
            for (i, _, payload) in &wire {
                let (json, tag) = farm_protocol::envelope::split(payload).expect("split");
                let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secrets[*i].as_bytes())
                    .expect("key");
                mac.update(json);
                mac.verify_slice(&tag).expect("signature");
            }
        }
        "open" => {
            for (i, _, payload) in &wire {
                let env: Envelope<StatusMessage> =
                    farm_protocol::open(payload, secrets[*i].as_bytes(), &ids[*i]).expect("open");
                std::hint::black_box(env);
            }
        }
        "apply" => {
            for ((i, _, _), s) in wire.iter().zip(decoded) {
                farm.apply_status(ids[*i].as_str(), s);
            }
        }
        "diff" => {
            let recs: Vec<_> = farm.printers().into_iter().map(|v| v.id).collect();
            let mut lives = vec![fleet::Live::default(); printers];
            let mut views: Vec<Option<fleet::PrinterView>> = vec![None; printers];
            for ((i, _, _), s) in wire.iter().zip(decoded) {
                let rec = fleet::PrinterRecord::new(
                    recs[*i].clone(),
                    recs[*i].clone(),
                    String::new(),
                    String::new(),
                    time::OffsetDateTime::UNIX_EPOCH,
                );
                lives[*i].online = true;
                lives[*i].last_seen = Some(time::OffsetDateTime::now_utc());
                lives[*i].status = Some(s);
                let v = fleet::view(&rec, &lives[*i]);
                std::hint::black_box(fleet::diff(views[*i].as_ref(), &v));
                views[*i] = Some(v);
            }
        }
        other => panic!("unknown stage {other:?}: all, none, hmac, open, apply, diff"),
    }
    let secs = start.elapsed().as_secs_f64();
    let total = wire.len();
    let dropped = farm.metrics.mqtt_dropped.get("bad_signature")
        + farm.metrics.mqtt_dropped.get("malformed")
        + farm.metrics.mqtt_dropped.get("unknown_printer");
    assert_eq!(dropped, 0, "every status verifies");
    let online = farm.online_count();
    drop(farm);
    drop(rt);
    let seen: Vec<(u64, usize)> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    println!(
        "stage={stage} printers={printers} statuses={total} seconds={secs:.3} statuses_per_s={:.0} ns_per_status={:.0} online={online} stream_changes_per_subscriber={:?}",
        total as f64 / secs,
        secs * 1e9 / total as f64,
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
    );
}

/// The load generator's printing status (`loadgen/src/printer.rs`), about 560 bytes sealed.
fn status(n: u32) -> Status {
    let p = f64::from(n % 1000) / 1000.0;
    let heater = |name: &str, actual, target| Heater {
        name: name.into(),
        actual,
        target,
    };
    Status {
        state: Activity::Printing,
        temps: vec![
            heater("tool0", 214.8, 215.0),
            heater("bed", 59.9, 60.0),
            heater("chamber", 38.2, 0.0),
        ],
        job: Some(JobProgress {
            job_id: "job-01HQ7ZLOADGEN".into(),
            progress: p,
            file_pos: (p * 4_096_000.0) as u64,
            file_size: 4_096_000,
            layer: Some(n % 120),
            layer_count: Some(120),
            elapsed_s: f64::from(n),
            eta_s: Some(4575.0),
            extruded_mm: vec![3120.45],
        }),
        message: None,
        agent: AgentHealth {
            version: "0.1.0".into(),
            backend: "loadgen".into(),
            uptime_s: u64::from(n),
            outbox_pending: 0,
        },
        interval_ms: 1000,
        trays: vec![],
    }
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

//! Durable event ingest: events committed and acked per second.
//!
//! `cargo run -p farm-controller --example ingest_bench [-- MODE PRINTERS EVENTS]`
//! MODE `writer` (default): events go through [`Farm::submit_event`], as ingest hands them to
//! the writer thread (group commit). MODE `direct`: one event at a time, each committed before
//! the next is sent, then acked ([`Farm::apply_event`] + [`Farm::ack`]: one fsync per event, the
//! rate ingest had before the writer). Timed from the first event to the last printer's ack
//! of its last event, on a fresh store in a temporary directory.
//!
//! API writes: MODE `adjust` sends spool adjustments from PRINTERS concurrent callers (as
//! many HTTP requests at once would), EVENTS in all, each answered after its commit (group
//! commit in the writer). MODE `adjust-serial` sends them one at a time: one fsync each, the
//! rate of the old path, where every API write committed on its caller's thread under the
//! mirror lock (so concurrent callers queued for it one fsync at a time).

use farm_controller::farm::Farm;
use farm_protocol::messages::{AckMessage, Event};
use farm_protocol::{Channel, open};
use std::collections::HashMap;
use std::time::Instant;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "writer".into());
    let printers: usize = arg(2, 100);
    let events: u64 = arg(3, 20_000) as u64 / printers as u64;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = farm_controller::store::Store::open(&dir.path().join("farm.redb")).expect("store");
    let topics = farm_protocol::Topics::new("farm").expect("topics");
    let (farm, mut outbound) = Farm::load(store, topics, "http://x".into()).expect("load");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    if mode.starts_with("adjust") {
        return rt.block_on(adjustments(farm, mode == "adjust", printers, events));
    }
    let mut secrets = HashMap::new();
    let ids: Vec<String> = (0..printers).map(|i| format!("p-{i:05}")).collect();
    for id in &ids {
        let (rec, _) = rt
            .block_on(farm.add_printer(id, None, false))
            .expect("enrol");
        secrets.insert(id.clone(), rec.secret);
    }
    let acks = {
        let farm = farm.clone();
        std::thread::spawn(move || {
            let mut done = 0;
            let mut last: HashMap<String, u64> = HashMap::new();
            while done < printers {
                let Some(msg) = outbound.blocking_recv() else {
                    break;
                };
                let Some((pid, Channel::Acks)) = farm.topics().parse(&msg.topic) else {
                    continue;
                };
                let key = secrets[pid.as_str()].as_bytes();
                let AckMessage::Ack { applied_seq } = open::<AckMessage>(&msg.payload, key, &pid)
                    .expect("ack")
                    .body;
                let prev = last.insert(pid.to_string(), applied_seq).unwrap_or(0);
                if applied_seq == events && prev < events {
                    done += 1;
                }
            }
            Instant::now()
        })
    };
    let start = Instant::now();
    for seq in 1..=events {
        for p in &ids {
            let e = Event::FirmwareMessage {
                message: format!("line {seq}"),
            };
            if mode == "direct" {
                farm.apply_event(p, seq, &e).expect("apply");
                farm.ack(p, seq);
            } else {
                while !farm.submit_event(p, seq, e.clone()) {
                    std::thread::yield_now();
                }
            }
        }
    }
    let end = acks.join().expect("acks");
    let total = events * printers as u64;
    let secs = (end - start).as_secs_f64();
    println!(
        "mode={mode} printers={printers} events={total} seconds={secs:.3} events_per_s={:.0}",
        total as f64 / secs
    );
}

/// Spool adjustments through the writer: `callers` at once (or one at a time).
async fn adjustments(farm: std::sync::Arc<Farm>, concurrent: bool, callers: usize, each: u64) {
    use farm_controller::inventory::ledger::{Adjust, Reason};
    let n = farm_controller::inventory::NewMaterial {
        id: None,
        material: "PLA".into(),
        colour: "black".into(),
        diameter_mm: None,
        density_g_cm3: None,
        cost_per_kg: 20.0,
        low_stock_g: None,
    };
    let mat = farm_controller::inventory::new_material(n, 1.75).expect("material");
    let mat = farm.put_material(mat, false).await.expect("material");
    let spool = farm
        .add_spools(farm_controller::inventory::NewSpool {
            material: mat.id,
            initial_g: 1000.0,
            tare_g: None,
            lot: None,
            location: None,
            count: Some(1),
        })
        .await
        .expect("spool")
        .remove(0)
        .spool
        .id;
    let adjust = || Adjust {
        reason: Reason::Delivery,
        gross_g: None,
        net_g: None,
        delta_g: Some(1.0),
        note: None,
    };
    let start = Instant::now();
    if concurrent {
        let tasks: Vec<_> = (0..callers)
            .map(|_| {
                let (farm, spool) = (farm.clone(), spool.clone());
                tokio::spawn(async move {
                    for _ in 0..each {
                        farm.adjust_spool(&spool, adjust(), "bench")
                            .await
                            .expect("adjust");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("caller");
        }
    } else {
        for _ in 0..each * callers as u64 {
            farm.adjust_spool(&spool, adjust(), "bench")
                .await
                .expect("adjust");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let total = each * callers as u64;
    let left = farm.spool(&spool).expect("spool").remaining_g;
    assert_eq!(left, 1000.0 + total as f64, "every adjustment booked once");
    println!(
        "mode={} callers={callers} adjustments={total} seconds={secs:.3} per_s={:.0}",
        if concurrent {
            "adjust"
        } else {
            "adjust-serial"
        },
        total as f64 / secs
    );
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

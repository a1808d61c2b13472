//! Durable event ingest: events committed and acked per second.
//!
//! `cargo run -p farm-controller --example ingest_bench [-- MODE PRINTERS EVENTS]`
//! MODE `writer` (default): events go through [`Farm::submit_event`], as ingest hands them to
//! the writer thread (group commit). MODE `direct`: each event is applied and committed on the
//! caller's thread, then acked ([`Farm::apply_event`] + [`Farm::ack`]: one fsync per event, the
//! path ingest took before the writer). Timed from the first event to the last printer's ack
//! of its last event, on a fresh store in a temporary directory.

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
    let mut secrets = HashMap::new();
    let ids: Vec<String> = (0..printers).map(|i| format!("p-{i:05}")).collect();
    for id in &ids {
        let (rec, _) = farm.add_printer(id, None, false).expect("enrol");
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

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

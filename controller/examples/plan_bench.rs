//! Scheduler speed: plan 10,000 queued jobs on 1,000 printers.
//!
//! `cargo run --release -p farm-controller --example plan_bench [-- PRINTERS JOBS HISTORY]`
//! Printers: 4 materials × 4 colours, half idle and half busy, some blocked, declared volumes;
//! jobs: mixed materials/colours/priorities/due dates, a quarter with no material requirement.
//! HISTORY = 1: every printer has learnt time corrections from finished prints (an
//! established farm), so every placed job looks its correction up; 0 (default): none.

use farm_controller::jobs::scheduler::{JobInput, Loaded, PlanInput, PrinterInput, Tool, plan};
use farm_controller::printers::fleet::PrinterState;
use std::time::Instant;
use time::OffsetDateTime;

const MATERIALS: [&str; 4] = ["PLA", "PETG", "ABS", "TPU"];
const COLOURS: [&str; 4] = ["black", "white", "red", "blue"];

fn main() {
    let printers: usize = arg(1, 1000);
    let jobs: usize = arg(2, 10_000);
    let history = arg(3, 0) != 0;
    let now = OffsetDateTime::now_utc();
    let mut input = PlanInput::default();
    input.rules.max_heating = Some(50);
    for i in 0..printers {
        input.printers.push(PrinterInput {
            id: format!("p-{i:04}"),
            state: if i % 2 == 0 {
                PrinterState::Idle
            } else {
                PrinterState::Busy
            },
            blocked: i % 97 == 0,
            auto_eject: i % 3 == 0,
            build_volume_mm: Some(if i % 5 == 0 {
                [180.0; 3]
            } else {
                [250.0, 210.0, 210.0]
            }),
            tools: vec![Tool {
                nozzle_mm: Some(if i % 7 == 0 { 0.6 } else { 0.4 }),
                loaded: Some(Loaded {
                    material: MATERIALS[i % 4].into(),
                    colour: COLOURS[(i / 4) % 4].into(),
                    remaining_g: if i % 2 == 0 { Some(1000.0) } else { None },
                }),
            }],
            trays: vec![],
            busy_remaining_s: (i % 13) as f64 * 600.0,
        });
    }
    if history {
        for i in 0..printers {
            for (k, m) in MATERIALS.iter().enumerate() {
                let ratio = 0.9 + ((i + k) % 5) as f64 * 0.05;
                for _ in 0..3 {
                    input
                        .corrections
                        .observe(&format!("p-{i:04}"), m, 3600.0, 3600.0 * ratio);
                }
            }
        }
    }
    for i in 0..jobs {
        let any = i % 4 == 0;
        input.jobs.push(JobInput {
            id: format!("job-{i}").into(),
            priority: (i % 3) as i32,
            due: (i % 5 == 0).then(|| now + time::Duration::hours((i % 48) as i64)),
            position: i as i64,
            material: (!any).then(|| MATERIALS[i % 4].into()),
            colour: (!any).then(|| COLOURS[(i / 3) % 4].into()),
            nozzle_mm: None,
            size_mm: Some([(i % 200) as f64 + 10.0, 50.0, 30.0]),
            grams: smallvec::smallvec![5.0 + (i % 50) as f64],
            estimated_s: 1800.0 + (i % 20) as f64 * 300.0,
            pinned: None,
            hold: (i % 50 == 0).then(|| "held by an operator".into()),
        });
    }
    // Warm up, then take the median of several runs.
    let _ = plan(&input, now);
    let mut times = vec![];
    let mut out = None;
    for _ in 0..9 {
        let t = Instant::now();
        let p = plan(&input, now);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        out = Some(p);
    }
    times.sort_by(f64::total_cmp);
    let p = out.unwrap_or_default();
    // What a deep copy of the queue costs (the controller made one per plan before it kept
    // the queue as shared `JobInput`s).
    let t = Instant::now();
    let copy: Vec<JobInput> = input.jobs.iter().cloned().collect();
    let copy_ms = t.elapsed().as_secs_f64() * 1000.0;
    drop(copy);
    println!("copying the {jobs} queued jobs: {copy_ms:.1} ms");
    println!(
        "plan: {jobs} queued jobs on {printers} printers: median {:.1} ms, min {:.1} ms, max {:.1} ms ({} start now, {} on the timeline, {} waiting)",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        p.starts.len(),
        p.timeline.len(),
        p.waiting.len()
    );
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

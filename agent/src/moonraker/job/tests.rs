//! The job rules against the status diffs of the captured Klipper sessions.

use super::*;
use farm_protocol::gcode::ExtrusionIndex;
use serde_json::json;

fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/moonraker")
        .join(name)
}

/// A capture's subscribe answer (the objects before the job) and the status diffs that
/// arrived after `printer.print.start` answered.
fn capture(name: &str) -> (Objects, Vec<Value>) {
    let text = std::fs::read_to_string(data(name)).unwrap_or_default();
    let mut objects = Objects::default();
    let mut diffs = vec![];
    let mut start_id = None;
    let mut started = false;
    for line in text.lines() {
        let r: Value = serde_json::from_str(line).unwrap_or_default();
        let msg = &r["msg"];
        if r["dir"] == "send" && msg["method"] == "printer.print.start" {
            start_id = msg["id"].as_u64();
        }
        if r["dir"] != "recv" {
            continue;
        }
        if !started && msg["result"]["status"].is_object() {
            objects.replace(&msg["result"]["status"]);
        }
        if start_id.is_some() && msg["id"].as_u64() == start_id && msg.get("result").is_some() {
            started = true;
        }
        if started && msg["method"] == "notify_status_update" {
            diffs.push(msg["params"][0].clone());
        }
    }
    assert!(started, "{name} has a print start");
    (objects, diffs)
}

/// Feeds the diffs; returns every change with the diff index it came from.
fn follow(watch: &mut JobWatch, mut objects: Objects, diffs: &[Value]) -> Vec<(usize, JobChange)> {
    let mut out = vec![];
    for (i, d) in diffs.iter().enumerate() {
        objects.merge(d);
        out.extend(watch.observe(d, &objects).into_iter().map(|c| (i, c)));
    }
    out
}

fn index(name: &str) -> ExtrusionIndex {
    let f = std::fs::File::open(data(name)).expect("fixture");
    ExtrusionIndex::build(std::io::BufReader::new(f), 64 * 1024).expect("index")
}

#[test]
fn b2_completes_and_bills_the_whole_file_where_klipper_says_less() {
    let (objects, diffs) = capture("b2-print-filament-undercount.jsonl");
    // The previous job's state lingers: complete, another file, its position.
    assert_eq!(objects.print_state(), Some("complete"));
    let mut w = JobWatch::new("fixture-segments.gcode", 5500);
    let changes = follow(&mut w, objects, &diffs);
    assert_eq!(
        changes.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
        [JobChange::Finished {
            outcome: Outcome::Completed,
            reason: None
        }]
    );
    assert_eq!((w.max_pos, w.in_flight()), (5500, false));
    let idx = index("fixture-segments.gcode");
    let mm = idx
        .consumed_at(
            std::fs::File::open(data("fixture-segments.gcode")).expect("f"),
            w.max_pos,
        )
        .expect("read");
    let klipper = diffs
        .iter()
        .filter_map(|d| d["print_stats"]["filament_used"].as_f64())
        .fold(0.0, f64::max);
    assert!((mm[0] - 4.0).abs() < 1e-9, "{mm:?}");
    assert!(
        (klipper - 3.84).abs() < 1e-9,
        "Klipper's counter ended at {klipper}"
    );
}

#[test]
fn b3_a_file_read_before_the_first_poll_still_completes() {
    let (objects, diffs) = capture("b3-print-shorter-than-lookahead.jsonl");
    assert!(
        diffs.iter().all(|d| d["print_stats"]["state"].is_null()),
        "never printing"
    );
    let mut w = JobWatch::new("fixture-instant.gcode", 2346);
    let changes = follow(&mut w, objects, &diffs);
    assert_eq!(
        changes,
        [(
            0,
            JobChange::Finished {
                outcome: Outcome::Completed,
                reason: None
            }
        )]
    );
    assert_eq!(w.max_pos, 2346);
}

#[test]
fn a_stale_result_of_the_same_file_does_not_end_a_new_job() {
    let mut o = Objects::default();
    o.replace(&json!({
        "print_stats": {"state": "complete", "filename": "x.gcode"},
        "virtual_sdcard": {"file_position": 100, "file_size": 100, "is_active": false},
    }));
    let mut w = JobWatch::new("x.gcode", 100);
    // A diff that says nothing about this job (temperatures, durations).
    let d = json!({"print_stats": {"total_duration": 1.0}, "extruder": {"temperature": 30.0}});
    o.merge(&d);
    assert_eq!(w.observe(&d, &o), []);
    assert!(!w.confirmed);
    let d = json!({"print_stats": {"state": "printing"}, "virtual_sdcard": {"file_position": 10, "is_active": true}});
    o.merge(&d);
    assert_eq!(w.observe(&d, &o), []);
    assert!(w.confirmed && w.in_flight());
}

#[test]
fn c_pause_resume_cancel_and_the_line_in_flight() {
    let (objects, diffs) = capture("c-pause-resume-cancel.jsonl");
    let mut w = JobWatch::new("fixture-long.gcode", 7686);
    let changes: Vec<JobChange> = follow(&mut w, objects, &diffs)
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(
        changes,
        [
            JobChange::Paused,
            JobChange::Resumed,
            JobChange::Finished {
                outcome: Outcome::Cancelled,
                reason: None
            },
        ]
    );
    // Cancel resets file_position to 0; the bill keeps the last position read while printing,
    // with the move Klipper had in hand.
    assert_eq!(w.max_pos, 295);
    assert!(w.in_flight());
}

#[test]
fn another_file_on_the_printer_fails_the_job() {
    let mut o = Objects::default();
    o.replace(&json!({"print_stats": {"state": "standby", "filename": ""}}));
    let mut w = JobWatch::new("ours.gcode", 1000);
    let d = json!({"print_stats": {"state": "printing", "filename": "ours.gcode"}, "virtual_sdcard": {"file_position": 50, "is_active": true}});
    o.merge(&d);
    assert_eq!(w.observe(&d, &o), []);
    let d = json!({"print_stats": {"filename": "theirs.gcode"}, "virtual_sdcard": {"file_position": 10}});
    o.merge(&d);
    let c = w.observe(&d, &o);
    assert!(
        matches!(&c[..], [JobChange::Finished { outcome: Outcome::Failed, reason: Some(r) }] if r.contains("theirs.gcode")),
        "{c:?}"
    );
    assert_eq!(w.max_pos, 50, "the other file's position is not ours");
}

#[test]
fn a_print_error_fails_the_job_with_klippers_reason() {
    let mut o = Objects::default();
    o.replace(&json!({"print_stats": {"state": "standby", "filename": "a.gcode", "message": ""}}));
    let mut w = JobWatch::new("a.gcode", 10);
    let d = json!({"print_stats": {"state": "printing"}});
    o.merge(&d);
    w.observe(&d, &o);
    let d = json!({"print_stats": {"state": "error", "message": "Move exceeds maximum extrusion (0.7mm^2 vs 0.6mm^2)\nSee the 'max_extrude_cross_section'"}});
    o.merge(&d);
    let c = w.observe(&d, &o);
    assert!(
        matches!(&c[..], [JobChange::Finished { outcome: Outcome::Failed, reason: Some(r) }] if r.ends_with("(0.7mm^2 vs 0.6mm^2)")),
        "{c:?}"
    );
    assert!(w.observe(&d, &o).is_empty(), "finished once");
}

//! The core against real OctoPrint 1.11.8 traffic (`agent/tests/data/octoprint/ws-*.jsonl`,
//! replayed frame by frame at their recorded times) and against the cases the captures do
//! not hold (polling fallback, a refused key, pause seen twice).

use super::*;
use crate::octoprint::job_file::JobFile;
use crate::octoprint::wire::{Frame, parse_frame};
use serde_json::Value;
use std::path::PathBuf;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/octoprint")
        .join(name)
}

/// What a replay produced: effects in order, and the farm activities it went through.
struct Replay {
    effects: Vec<Effect>,
    activities: Vec<Activity>,
    tracker: Tracker,
}

/// Feeds a capture to a tracker the way the shell does: the upload's request registers the
/// job, its 201 starts it, every websocket frame is parsed and observed or applied.
fn replay(capture: &str) -> Replay {
    let text = std::fs::read_to_string(data(capture)).expect("capture");
    let t0 = Instant::now();
    let mut t = Tracker::new();
    let mut effects = t.set_reach(Reach::Up);
    let mut activities = vec![];
    for line in text.lines() {
        let rec: Value = serde_json::from_str(line).expect("jsonl");
        let now = t0 + Duration::from_secs_f64(rec["t"].as_f64().unwrap_or(0.0));
        let (dir, kind) = (rec["dir"].as_str(), rec["kind"].as_str());
        match (dir, kind) {
            (Some("send"), Some("http")) if rec["path"] == "/api/files/local" => {
                let form = &rec["form"]["file"];
                let name = form["filename"].as_str().expect("filename");
                t.begin("job-1", name, form["size"].as_u64().expect("size"), now);
            }
            (Some("recv"), Some("http")) if rec["status"] == 201 => {
                let path = rec["body"]["files"]["local"]["path"]
                    .as_str()
                    .expect("path");
                effects.extend(t.started(path));
            }
            (Some("recv"), Some("ws")) => {
                match parse_frame(&rec["msg"].to_string()).expect("frame") {
                    Frame::Status {
                        observation,
                        history,
                    } => effects.extend(t.observe(observation, !history, now)),
                    Frame::Event(ev) => effects.extend(t.event(ev, now)),
                    Frame::ReauthRequired | Frame::Other => {}
                }
            }
            _ => {}
        }
        let a = t.activity().0;
        if activities.last() != Some(&a) {
            activities.push(a);
        }
    }
    Replay {
        effects,
        activities,
        tracker: t,
    }
}

/// The effects' kinds, with the farm event kind or the job outcome and position.
fn summary(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .map(|e| match e {
            Effect::Emit(ev) => serde_json::to_value(ev)
                .ok()
                .and_then(|v| v["kind"].as_str().map(str::to_string))
                .unwrap_or_default(),
            Effect::Finish { outcome, at, .. } => format!("finish {outcome:?} {at:?}"),
        })
        .collect()
}

#[test]
fn a_print_to_the_end_starts_once_and_finishes_with_the_whole_file() {
    let r = replay("ws-print-done.jsonl");
    // The capture disconnects and reconnects the printer first: one error, one recovery.
    assert_eq!(
        summary(&r.effects),
        [
            "printer_error",
            "printer_ready",
            "job_started",
            "finish Completed Whole"
        ]
    );
    use Activity::*;
    assert_eq!(
        r.activities,
        [Disconnected, Idle, Disconnected, Idle, Printing, Idle]
    );
    assert!(r.tracker.job().is_none());
    let Some(Effect::Finish {
        job_id, duration_s, ..
    }) = r.effects.last()
    else {
        panic!("no finish")
    };
    assert_eq!(job_id, "job-1");
    // PrintDone came 19.7 s after the upload in the capture.
    assert!((19.0..21.0).contains(duration_s), "{duration_s}");
}

#[test]
fn a_cancel_ends_the_job_once_at_octoprints_exact_file_position() {
    let r = replay("ws-print-cancelled.jsonl");
    // PrintCancelled carries fileposition 565; the PrintFailed(cancelled) after it changes nothing.
    assert_eq!(
        summary(&r.effects),
        [
            "printer_error",
            "printer_ready",
            "job_started",
            "finish Cancelled Offset(565)"
        ]
    );
    assert_eq!(r.activities.last(), Some(&Activity::Idle));
}

#[tokio::test]
async fn the_cancelled_partial_is_the_analyzers_filament_up_to_that_position() {
    let path = data("fixture-long.gcode");
    let mut file = JobFile::open(&path).await.expect("index");
    let partial = file.at(565).await;
    // Re-parse independently: the lines that end at or before byte 565.
    let bytes = std::fs::read(&path).expect("read");
    let mut end = 0;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' && i < 565 {
            end = i + 1;
        }
    }
    let head = farm_protocol::gcode::analyze(&bytes[..end]).expect("analyze");
    assert_eq!(partial, head.filament_mm);
    let whole = file.whole();
    assert!(
        partial[0] > 0.0 && partial[0] < whole[0],
        "{partial:?} of {whole:?}"
    );
}

#[test]
fn a_firmware_error_fails_the_job_at_the_position_printfailed_reports() {
    let r = replay("ws-print-error.jsonl");
    let kinds = summary(&r.effects);
    // PrintFailed(error) gives progress 0.0798855 of 7686 bytes = 614 (the last `current`
    // said 540).
    assert_eq!(
        kinds,
        [
            "printer_error",
            "printer_ready",
            "job_started",
            "printer_error",
            "finish Failed Offset(614)"
        ]
    );
    let Some(Effect::Emit(Event::PrinterError { message })) = r.effects.get(3) else {
        panic!("no printer error")
    };
    assert!(message.contains("Thermal Runaway"), "{message}");
    let Some(Effect::Finish { reason, .. }) = r.effects.last() else {
        panic!("no finish")
    };
    assert!(reason.as_deref().unwrap_or("").contains("Thermal Runaway"));
    let (activity, message) = r.tracker.activity();
    assert_eq!(activity, Activity::Error);
    assert!(message.unwrap_or_default().contains("M999"));
}

fn obs(phase: Phase, file: Option<&str>, filepos: Option<u64>) -> Observation {
    Observation {
        phase,
        text: format!("{phase:?}"),
        error: None,
        file: file.map(str::to_string),
        filepos,
        completion: None,
        time_left_s: None,
        temps: vec![],
    }
}

fn printing_job(t: &mut Tracker, now: Instant) {
    t.set_reach(Reach::Up);
    t.observe(obs(Phase::Idle, None, None), true, now);
    t.begin("j", "j-abc.gcode", 1000, now);
    assert_eq!(summary(&t.started("j-abc.gcode")), ["job_started"]);
    t.observe(
        obs(Phase::Printing, Some("j-abc.gcode"), Some(300)),
        true,
        now,
    );
}

#[test]
fn a_current_frame_racing_ahead_of_its_event_never_ends_the_job() {
    let now = Instant::now();
    let mut t = Tracker::new();
    printing_job(&mut t, now);
    let idle = obs(Phase::Idle, Some("j-abc.gcode"), None);
    assert!(t.observe(idle, true, now).is_empty());
    assert!(t.job().is_some());
    assert_eq!(t.activity().0, Activity::Printing);
}

#[test]
fn while_polling_a_print_that_vanished_ends_as_cancelled_at_the_last_position_seen() {
    let now = Instant::now();
    let mut t = Tracker::new();
    printing_job(&mut t, now);
    let effects = t.observe(obs(Phase::Idle, Some("j-abc.gcode"), None), false, now);
    assert_eq!(summary(&effects), ["finish Cancelled Offset(300)"]);
    // Finished to the end while unobserved: the whole file.
    let mut t = Tracker::new();
    printing_job(&mut t, now);
    let mut done = obs(Phase::Idle, Some("j-abc.gcode"), Some(1000));
    done.completion = Some(100.0);
    assert_eq!(
        summary(&t.observe(done, false, now)),
        ["finish Completed Whole"]
    );
    // OctoPrint lost the printer meanwhile: failed, with its error.
    let mut t = Tracker::new();
    printing_job(&mut t, now);
    let mut gone = obs(Phase::Error, None, None);
    gone.error = Some("Printer halted".into());
    let effects = t.observe(gone, false, now);
    assert_eq!(
        summary(&effects),
        ["finish Failed Offset(300)", "printer_error"]
    );
}

#[test]
fn an_upload_octoprint_never_shows_fails_after_the_grace_only() {
    let now = Instant::now();
    let mut t = Tracker::new();
    t.set_reach(Reach::Up);
    t.observe(obs(Phase::Idle, None, None), true, now);
    t.begin("j", "j-abc.gcode", 1000, now);
    t.started("j-abc.gcode");
    assert!(
        t.observe(
            obs(Phase::Idle, None, None),
            false,
            now + Duration::from_secs(1)
        )
        .is_empty()
    );
    let late = now + START_GRACE + Duration::from_secs(1);
    let effects = t.observe(obs(Phase::Idle, None, None), false, late);
    assert_eq!(summary(&effects), ["finish Failed Offset(0)"]);
}

#[test]
fn pause_and_resume_are_told_once_whether_seen_in_state_or_event_first() {
    let now = Instant::now();
    let mut t = Tracker::new();
    printing_job(&mut t, now);
    // Pausing while heating: not yet paused, and the farm is told so in the message.
    assert!(
        t.observe(
            obs(Phase::Pausing, Some("j-abc.gcode"), Some(310)),
            true,
            now
        )
        .is_empty()
    );
    let (a, m) = t.activity();
    assert_eq!(a, Activity::Paused);
    assert!(m.unwrap_or_default().contains("heating"));
    let e1 = t.observe(
        obs(Phase::Paused, Some("j-abc.gcode"), Some(320)),
        true,
        now,
    );
    let e2 = t.event(
        OpEvent::PrintPaused {
            path: "j-abc.gcode".into(),
            filepos: Some(320),
        },
        now,
    );
    assert_eq!(summary(&e1), ["job_paused"]);
    assert!(e2.is_empty());
    let e3 = t.event(
        OpEvent::PrintResumed {
            path: "j-abc.gcode".into(),
        },
        now,
    );
    let e4 = t.observe(
        obs(Phase::Printing, Some("j-abc.gcode"), Some(330)),
        true,
        now,
    );
    assert_eq!(summary(&e3), ["job_resumed"]);
    assert!(e4.is_empty());
    assert_eq!(t.job().map(|j| j.filepos), Some(330));
    // Another file's events are not ours.
    let other = t.event(
        OpEvent::PrintDone {
            path: "x.gcode".into(),
        },
        now,
    );
    assert!(other.is_empty() && t.job().is_some());
}

#[test]
fn a_refused_key_is_an_error_told_once_and_recovery_is_told_once() {
    let mut t = Tracker::new();
    let msg =
        "OctoPrint at http://h refused the API key (HTTP 403): put it in printer.octoprint.api_key";
    let e = t.set_reach(Reach::Refused(msg.into()));
    assert_eq!(summary(&e), ["printer_error"]);
    assert!(t.set_reach(Reach::Refused(msg.into())).is_empty());
    let (a, m) = t.activity();
    assert_eq!((a, m.as_deref()), (Activity::Error, Some(msg)));
    assert!(t.refuse_start().unwrap_or_default().contains("API key"));
    // Back: no news until the first status, then ready.
    assert!(t.set_reach(Reach::Up).is_empty());
    let now = Instant::now();
    assert_eq!(
        summary(&t.observe(obs(Phase::Idle, None, None), true, now)),
        ["printer_ready"]
    );
    assert_eq!(t.refuse_start(), None);
    // Unreachable: disconnected, with the reason.
    let e = t.set_reach(Reach::Unreachable(
        "cannot reach OctoPrint at http://h".into(),
    ));
    assert_eq!(summary(&e), ["printer_error"]);
    assert_eq!(t.activity().0, Activity::Disconnected);
}

#[test]
fn the_snapshot_shows_progress_by_file_position_and_keeps_the_last_temperatures() {
    let now = Instant::now();
    let mut t = Tracker::new();
    printing_job(&mut t, now);
    let mut o = obs(Phase::Printing, Some("j-abc.gcode"), Some(500));
    o.temps = vec![Heater {
        name: "tool0".into(),
        actual: 200.0,
        target: 210.0,
    }];
    o.time_left_s = Some(12.0);
    t.observe(o, true, now);
    t.observe(
        obs(Phase::Printing, Some("j-abc.gcode"), Some(400)),
        true,
        now,
    );
    let s = t.snapshot(vec![1.5], now + Duration::from_secs(2));
    assert_eq!(s.state, Activity::Printing);
    assert_eq!(s.temps.len(), 1);
    let j = s.job.expect("job");
    assert_eq!(
        (j.file_pos, j.progress, j.extruded_mm),
        (500, 0.5, vec![1.5])
    );
    assert_eq!(j.eta_s, None, "the last frame had no estimate");
    assert!((j.elapsed_s - 2.0).abs() < 1e-9);
}

#[test]
fn a_resume_goes_once_octoprint_said_paused_even_before_its_state_report_says_so() {
    let now = Instant::now();
    let mut t = Tracker::new();
    printing_job(&mut t, now);
    assert_eq!(t.refuse_resume().as_deref(), Some("the job is not paused"));
    t.observe(
        obs(Phase::Pausing, Some("j-abc.gcode"), Some(310)),
        true,
        now,
    );
    let why = t.refuse_resume().unwrap_or_default();
    assert!(why.contains("still pausing"), "{why}");
    // The event arrives; the next state report (still "Pausing" in `last`) has not yet.
    t.event(
        OpEvent::PrintPaused {
            path: "j-abc.gcode".into(),
            filepos: Some(320),
        },
        now,
    );
    assert_eq!(t.phase(), Some(Phase::Pausing));
    assert_eq!(t.refuse_resume(), None);
}

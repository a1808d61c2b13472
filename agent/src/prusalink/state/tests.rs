//! The tracker on hand-made status sequences in the shapes PrusaLink's OpenAPI document gives.

use super::*;
use crate::prusalink::wire::parse_status;
use serde_json::json;

/// One `/api/v1/status` body: a state, and a job (id, progress) when given.
fn status(state: &str, job: Option<(Option<u64>, f64)>) -> Observation {
    let mut v = json!({"printer": {"state": state, "temp_nozzle": 215.0, "target_nozzle": 215.0,
        "temp_bed": 60.0, "target_bed": 60.0}});
    if let Some((id, progress)) = job {
        v["job"] = json!({"progress": progress, "time_printing": 10, "time_remaining": 100});
        if let Some(id) = id {
            v["job"]["id"] = json!(id);
        }
    }
    parse_status(v.to_string().as_bytes()).expect("a status in the spec's shape")
}

fn attention(message: &str) -> Observation {
    let v = json!({"printer": {"state": "ATTENTION",
        "status_printer": {"ok": false, "message": message}}, "job": {"id": 8, "progress": 40.0}});
    parse_status(v.to_string().as_bytes()).expect("parse")
}

fn events(effects: &[Effect]) -> Vec<&Event> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Emit(ev) => Some(ev),
            Effect::Finish { .. } => None,
        })
        .collect()
}

fn finish(effects: &[Effect]) -> Option<(Outcome, Option<String>, MaterialAt)> {
    effects.iter().find_map(|e| match e {
        Effect::Finish {
            outcome,
            reason,
            at,
            ..
        } => Some((*outcome, reason.clone(), *at)),
        Effect::Emit(_) => None,
    })
}

/// A tracker connected to a printer that shows `shown`, with job `j-1` started on it.
fn started(shown: Observation, t0: Instant) -> Tracker {
    let mut t = Tracker::new();
    t.set_reach(Reach::Up);
    t.observe(shown, t0);
    assert_eq!(t.refuse_start(), None, "a ready printer takes a job");
    t.begin("j-1", "j-1-abc.gcode", 1000, t0);
    let fx = t.started(t0);
    assert!(matches!(events(&fx)[..], [Event::JobStarted { .. }]));
    t
}

#[test]
fn a_finished_left_over_from_the_previous_print_does_not_end_ours_and_the_end_bills_the_whole_file()
{
    let t0 = Instant::now();
    let mut t = started(status("FINISHED", Some((Some(7), 100.0))), t0);
    // Still the old job's FINISHED: not news about ours.
    let fx = t.observe(status("FINISHED", Some((Some(7), 100.0))), t0);
    assert_eq!(finish(&fx), None);
    assert_eq!(t.activity().0, Activity::Printing, "starting, not idle");
    assert!(t.printer_job().is_err(), "no id of ours yet");
    // Our print appears with a new id; progress is a high-water mark.
    t.observe(status("PRINTING", Some((Some(8), 25.0))), t0);
    t.observe(status("PRINTING", Some((Some(8), 20.0))), t0);
    let j = t.job().expect("job");
    assert_eq!(
        (j.printer_job, j.progress, j.offset()),
        (Some(8), 25.0, 250)
    );
    assert_eq!(t.printer_job(), Ok(8));
    let snap = t.snapshot(vec![1.0], t0);
    let p = snap.job.expect("progress");
    assert_eq!((p.progress, p.file_pos, p.eta_s), (0.25, 250, Some(100.0)));
    let fx = t.observe(status("FINISHED", Some((Some(8), 100.0))), t0);
    assert_eq!(
        finish(&fx),
        Some((Outcome::Completed, None, MaterialAt::Whole))
    );
    assert_eq!(t.activity().0, Activity::Idle);
}

#[test]
fn without_job_ids_only_a_print_seen_running_after_the_start_can_finish() {
    let t0 = Instant::now();
    let mut t = started(status("FINISHED", Some((None, 100.0))), t0);
    let fx = t.observe(status("FINISHED", Some((None, 100.0))), t0);
    assert_eq!(finish(&fx), None, "the old print's FINISHED");
    t.observe(status("PRINTING", Some((None, 3.0))), t0);
    let fx = t.observe(status("FINISHED", Some((None, 100.0))), t0);
    assert_eq!(
        finish(&fx),
        Some((Outcome::Completed, None, MaterialAt::Whole))
    );
}

#[test]
fn a_print_never_shown_fails_after_the_grace_and_not_before() {
    let t0 = Instant::now();
    let mut t = started(status("IDLE", None), t0);
    let fx = t.observe(status("IDLE", None), t0 + START_GRACE / 2);
    assert_eq!(finish(&fx), None);
    let fx = t.observe(status("IDLE", None), t0 + START_GRACE);
    let (outcome, reason, _) = finish(&fx).expect("ended");
    assert_eq!(outcome, Outcome::Failed);
    assert!(reason.unwrap_or_default().contains("never showed"));
}

#[test]
fn attention_pauses_our_job_tells_the_operator_and_cannot_be_resumed_from_here() {
    let t0 = Instant::now();
    let mut t = started(status("IDLE", None), t0);
    t.observe(status("PRINTING", Some((Some(8), 30.0))), t0);
    let fx = t.observe(attention("Filament runout"), t0);
    let evs = events(&fx);
    assert!(
        matches!(&evs[..], [Event::FirmwareMessage { message }, Event::JobPaused { reason: Some(r), .. }]
            if message.contains("waits for someone at it: Filament runout") && r == message),
        "{evs:?}"
    );
    let (activity, message) = t.activity();
    assert_eq!(activity, Activity::Paused);
    assert!(message.unwrap_or_default().contains("Filament runout"));
    assert!(
        t.refuse_resume()
            .is_some_and(|w| w.contains("a person at the printer"))
    );
    assert_eq!(
        t.job().map(|j| j.progress),
        Some(40.0),
        "progress still counts"
    );
    // The same attention again says nothing new; someone fixes it and the print goes on.
    assert!(events(&t.observe(attention("Filament runout"), t0)).is_empty());
    let fx = t.observe(status("PRINTING", Some((Some(8), 41.0))), t0);
    assert!(matches!(events(&fx)[..], [Event::JobResumed { .. }]));
}

#[test]
fn attention_without_a_farm_job_is_one_printer_error() {
    let mut t = Tracker::new();
    let t0 = Instant::now();
    t.set_reach(Reach::Up);
    t.observe(status("IDLE", None), t0);
    let obs = parse_status(br#"{"printer":{"state":"ATTENTION","status_printer":{"ok":false,"message":"Crash detected"}}}"#)
        .expect("parse");
    let fx = t.observe(obs.clone(), t0);
    assert!(
        matches!(&events(&fx)[..], [Event::PrinterError { message }] if message.contains("Crash detected")),
        "{fx:?}"
    );
    assert!(t.observe(obs, t0).is_empty(), "one error per outage");
    let fx = t.observe(status("IDLE", None), t0);
    assert!(matches!(events(&fx)[..], [Event::PrinterReady {}]));
}

#[test]
fn an_outage_is_one_printer_error_whatever_the_retries_say_and_one_ready_after() {
    let mut t = Tracker::new();
    let t0 = Instant::now();
    assert!(t.set_reach(Reach::Starting).is_empty());
    let fx = t.set_reach(Reach::Unreachable("connection refused".into()));
    assert_eq!(events(&fx).len(), 1);
    assert!(
        t.set_reach(Reach::Unreachable("timed out".into()))
            .is_empty()
    );
    // A refused login is a different fault: worth its own line.
    assert_eq!(
        events(&t.set_reach(Reach::Refused("wrong password".into()))).len(),
        1
    );
    assert!(t.set_reach(Reach::Up).is_empty(), "up, no status yet");
    let fx = t.observe(status("IDLE", None), t0);
    assert!(matches!(events(&fx)[..], [Event::PrinterReady {}]));
}

#[test]
fn a_stop_bills_to_the_highest_progress_and_says_who_stopped_it() {
    let t0 = Instant::now();
    let mut t = started(status("IDLE", None), t0);
    t.observe(status("PRINTING", Some((Some(8), 55.5))), t0);
    t.stopping();
    let fx = t.observe(status("STOPPED", Some((Some(8), 0.0))), t0);
    assert_eq!(
        finish(&fx),
        Some((Outcome::Cancelled, None, MaterialAt::Offset(555)))
    );

    let mut t = started(status("STOPPED", Some((Some(8), 55.0))), t0);
    t.observe(status("PRINTING", Some((Some(9), 10.0))), t0);
    let fx = t.observe(status("STOPPED", Some((Some(9), 10.0))), t0);
    let (outcome, reason, at) = finish(&fx).expect("ended");
    assert_eq!((outcome, at), (Outcome::Cancelled, MaterialAt::Offset(100)));
    assert_eq!(reason.as_deref(), Some("stopped at the printer"));
}

#[test]
fn an_error_fails_the_job_with_the_printers_words() {
    let t0 = Instant::now();
    let mut t = started(status("IDLE", None), t0);
    t.observe(status("PRINTING", Some((Some(8), 12.0))), t0);
    let obs = parse_status(br#"{"printer":{"state":"ERROR","status_printer":{"ok":false,"message":"Thermal runaway"}},"job":{"id":8,"progress":12.0}}"#)
        .expect("parse");
    let fx = t.observe(obs, t0);
    let (outcome, reason, at) = finish(&fx).expect("ended");
    assert_eq!((outcome, at), (Outcome::Failed, MaterialAt::Offset(120)));
    assert!(reason.unwrap_or_default().contains("Thermal runaway"));
    assert!(events(&fx).iter().any(
        |e| matches!(e, Event::PrinterError { message } if message.contains("Thermal runaway"))
    ));
}

#[test]
fn a_print_gone_unseen_is_completed_at_full_progress_and_cancelled_before() {
    let t0 = Instant::now();
    let mut t = started(status("IDLE", None), t0);
    t.observe(status("PRINTING", Some((Some(8), 100.0))), t0);
    let fx = t.observe(status("IDLE", None), t0);
    assert_eq!(
        finish(&fx),
        Some((Outcome::Completed, None, MaterialAt::Whole))
    );

    let mut t = started(status("IDLE", None), t0);
    t.observe(status("PRINTING", Some((Some(8), 50.0))), t0);
    let fx = t.observe(status("PRINTING", Some((Some(9), 1.0))), t0);
    let (outcome, reason, at) = finish(&fx).expect("ended");
    assert_eq!((outcome, at), (Outcome::Cancelled, MaterialAt::Offset(500)));
    assert!(reason.unwrap_or_default().contains("another print"));
}

#[test]
fn pause_and_resume_as_the_printer_reports_them() {
    let t0 = Instant::now();
    let mut t = started(status("IDLE", None), t0);
    t.observe(status("PRINTING", Some((Some(8), 5.0))), t0);
    assert_eq!(t.refuse_resume().as_deref(), Some("the job is not paused"));
    let fx = t.observe(status("PAUSED", Some((Some(8), 6.0))), t0);
    assert!(matches!(
        events(&fx)[..],
        [Event::JobPaused { reason: None, .. }]
    ));
    assert_eq!(t.activity(), (Activity::Paused, None));
    assert_eq!(t.refuse_resume(), None);
    let fx = t.observe(status("PRINTING", Some((Some(8), 6.0))), t0);
    assert!(matches!(events(&fx)[..], [Event::JobResumed { .. }]));
}

#[test]
fn a_print_that_is_not_ours_keeps_the_printer_from_taking_jobs() {
    let mut t = Tracker::new();
    t.set_reach(Reach::Up);
    t.observe(status("PRINTING", Some((Some(3), 10.0))), Instant::now());
    let why = t.refuse_start().expect("busy");
    assert!(why.contains("not a farm job"), "{why}");
}

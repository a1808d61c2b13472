//! Tests of the simulated printer through the back-end interface, as the runner uses it.

use super::*;
use crate::printer::Printer;
use crate::test_gcode::sample;
use std::path::PathBuf;

const WAIT: Duration = Duration::from_secs(20);

fn cfg(speed: f64) -> SimConfig {
    SimConfig {
        speed,
        heat_rate_c_per_s: 100.0,
        ambient_c: 22.0,
        fail_after_progress: None,
        fail_probability: 0.0,
    }
}

struct Rig {
    printer: Printer,
    path: PathBuf,
    total: Vec<f64>,
    layers: u32,
    _dir: tempfile::TempDir,
}

fn rig(config: SimConfig, layers: u32) -> Rig {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("job.gcode");
    std::fs::write(&path, sample(layers)).expect("write");
    let a = farm_protocol::gcode::analyze(std::io::BufReader::new(
        std::fs::File::open(&path).expect("open"),
    ))
    .expect("analyze");
    assert_eq!(a.filament_mm.len(), 2, "the sample uses two tools");
    Rig {
        printer: Printer::spawn(Sim::new(config)),
        path,
        total: a.filament_mm,
        layers: a.layers,
        _dir: dir,
    }
}

async fn next_event(p: &mut Printer) -> Event {
    tokio::time::timeout(WAIT, p.events.recv())
        .await
        .expect("an event in time")
        .expect("events channel open")
}

async fn start(r: &mut Rig, job_id: &str) {
    r.printer
        .send(PrinterCommand::Start {
            job_id: job_id.into(),
            name: "cube".into(),
            path: r.path.clone(),
            filament: Default::default(),
            plate: None,
        })
        .await
        .expect("start accepted");
    assert_eq!(next_event(&mut r.printer).await, Event::job_started(job_id));
}

async fn wait_snapshot(p: &Printer, what: impl Fn(&Snapshot) -> bool) -> Snapshot {
    let mut rx = p.snapshot.clone();
    tokio::time::timeout(WAIT, async {
        loop {
            {
                let s = rx.borrow_and_update();
                if what(&s) {
                    return s.clone();
                }
            }
            rx.changed().await.expect("back end alive");
        }
    })
    .await
    .expect("snapshot condition in time")
}

fn finished(e: Event) -> (Outcome, Option<String>, Vec<f64>) {
    match e {
        Event::JobFinished {
            outcome,
            reason,
            extruded_mm,
            ..
        } => (outcome, reason, extruded_mm),
        other => panic!("expected job_finished, got {other:?}"),
    }
}

#[tokio::test]
async fn a_finished_job_reports_exactly_the_analyzer_total() {
    let mut r = rig(cfg(2000.0), 20);
    start(&mut r, "j-1").await;
    let (outcome, reason, extruded) = finished(next_event(&mut r.printer).await);
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(reason, None);
    assert_eq!(extruded, r.total, "bit-exact equality with analyze()");
    let s = wait_snapshot(&r.printer, |s| s.job.is_none()).await;
    assert_eq!(s.state, Activity::Idle);
    // Heaters were turned off after the job.
    assert!(s.temps.iter().all(|h| h.target == 0.0), "{:?}", s.temps);
    assert_eq!(s.temps.len(), 3, "tool0, tool1, bed");
}

#[tokio::test]
async fn pause_holds_the_position_and_resume_finishes_exactly() {
    let mut r = rig(cfg(40.0), 30);
    start(&mut r, "j-2").await;
    wait_snapshot(&r.printer, |s| {
        s.job.as_ref().is_some_and(|j| j.file_pos > 0)
    })
    .await;
    r.printer.send(PrinterCommand::Pause).await.expect("pause");
    assert!(
        matches!(next_event(&mut r.printer).await, Event::JobPaused { job_id, .. } if job_id == "j-2")
    );
    let paused = wait_snapshot(&r.printer, |s| s.state == Activity::Paused).await;
    let pos = paused.job.as_ref().map(|j| j.file_pos);
    // Not synchronisation: the claim under test is that nothing moves for a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = r.printer.snapshot.borrow().clone();
    assert_eq!(still.job.as_ref().map(|j| j.file_pos), pos);
    assert!(r.printer.send(PrinterCommand::Pause).await.is_err());

    r.printer
        .send(PrinterCommand::Resume)
        .await
        .expect("resume");
    assert_eq!(
        next_event(&mut r.printer).await,
        Event::JobResumed {
            job_id: "j-2".into()
        }
    );
    let (outcome, _, extruded) = finished(next_event(&mut r.printer).await);
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(extruded, r.total);
}

#[tokio::test]
async fn cancel_reports_the_partial_material() {
    let mut r = rig(cfg(40.0), 30);
    start(&mut r, "j-3").await;
    let s = wait_snapshot(&r.printer, |s| {
        s.job.as_ref().is_some_and(|j| j.progress >= 0.3)
    })
    .await;
    let job = s.job.expect("job");
    assert_eq!(job.layer_count, Some(r.layers));
    assert!(job.eta_s.is_some_and(|e| e > 0.0));
    r.printer
        .send(PrinterCommand::Cancel)
        .await
        .expect("cancel");
    let (outcome, _, extruded) = finished(next_event(&mut r.printer).await);
    assert_eq!(outcome, Outcome::Cancelled);
    let (done, total): (f64, f64) = (extruded.iter().sum(), r.total.iter().sum());
    assert!(done > 0.0 && done < total, "{done} of {total}");
    // At least what the snapshot showed before the cancel: material never goes backwards.
    assert!(extruded[0] >= job.extruded_mm[0]);
    assert!(r.printer.send(PrinterCommand::Cancel).await.is_err());
}

#[tokio::test]
async fn sim_fail_fails_the_job_and_enters_error_until_recovered() {
    let mut r = rig(cfg(20.0), 30);
    start(&mut r, "j-4").await;
    r.printer
        .send(PrinterCommand::Gcode(vec![
            "SIM_FAIL nozzle clogged".into(),
        ]))
        .await
        .expect("raw");
    let (outcome, reason, extruded) = finished(next_event(&mut r.printer).await);
    assert_eq!(outcome, Outcome::Failed);
    assert_eq!(reason.as_deref(), Some("nozzle clogged"));
    assert!(extruded.iter().sum::<f64>() < r.total.iter().sum::<f64>());
    assert_eq!(
        next_event(&mut r.printer).await,
        Event::PrinterError {
            message: "nozzle clogged".into()
        }
    );
    let s = wait_snapshot(&r.printer, |s| s.state == Activity::Error).await;
    assert_eq!(s.message.as_deref(), Some("nozzle clogged"));
    let refused = r
        .printer
        .send(PrinterCommand::Start {
            job_id: "j-5".into(),
            name: "x".into(),
            path: r.path.clone(),
            filament: Default::default(),
            plate: None,
        })
        .await
        .expect_err("no start while in error");
    assert!(refused.contains("M999"), "{refused}");

    r.printer
        .send(PrinterCommand::Gcode(vec!["SIM_RECOVER".into()]))
        .await
        .expect("raw");
    assert_eq!(next_event(&mut r.printer).await, Event::PrinterReady {});
    wait_snapshot(&r.printer, |s| s.state == Activity::Idle).await;
}

#[tokio::test]
async fn fail_after_progress_and_emergency_stop() {
    let mut config = cfg(2000.0);
    config.fail_after_progress = Some(0.5);
    let mut r = rig(config, 20);
    start(&mut r, "j-6").await;
    let (outcome, reason, extruded) = finished(next_event(&mut r.printer).await);
    assert_eq!(outcome, Outcome::Failed);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("thermal runaway")),
        "{reason:?}"
    );
    let (done, total): (f64, f64) = (extruded.iter().sum(), r.total.iter().sum());
    assert!(
        done > 0.3 * total && done < 0.7 * total,
        "{done} of {total}"
    );
    assert!(matches!(
        next_event(&mut r.printer).await,
        Event::PrinterError { .. }
    ));
    r.printer
        .send(PrinterCommand::Gcode(vec!["M999".into()]))
        .await
        .expect("raw");
    assert_eq!(next_event(&mut r.printer).await, Event::PrinterReady {});

    // Emergency stop mid-print: job failed, heaters off, printer in error.
    r.printer
        .send(PrinterCommand::Reconfigure(crate::config::PrinterConfig {
            backend: "sim".into(),
            sim: cfg(20.0),
            serial: None,
            octoprint: None,
            moonraker: None,
            bambu: None,
            prusalink: None,
        }))
        .await
        .expect("reconfigure");
    start(&mut r, "j-7").await;
    r.printer
        .send(PrinterCommand::EmergencyStop)
        .await
        .expect("estop");
    let (outcome, reason, _) = finished(next_event(&mut r.printer).await);
    assert_eq!(
        (outcome, reason.as_deref()),
        (Outcome::Failed, Some("emergency stop"))
    );
    assert_eq!(
        next_event(&mut r.printer).await,
        Event::PrinterError {
            message: "emergency stop".into()
        }
    );
    let s = wait_snapshot(&r.printer, |s| s.state == Activity::Error).await;
    assert!(s.temps.iter().all(|h| h.target == 0.0));
}

#[tokio::test]
async fn heaters_ramp_toward_targets_set_by_hand() {
    let r = rig(cfg(10.0), 2);
    r.printer
        .send(PrinterCommand::Gcode(vec![
            "M104 S200".into(),
            "M140 S110".into(),
        ]))
        .await
        .expect("raw");
    let s = wait_snapshot(&r.printer, |s| {
        s.temps
            .iter()
            .any(|h| h.name == "tool0" && h.actual >= 199.0)
    })
    .await;
    let bed = s.temps.iter().find(|h| h.name == "bed").expect("bed");
    assert_eq!(bed.target, 110.0);
    // The bed heats at a quarter of the hot-end rate.
    assert!(bed.actual < 110.0 && bed.actual > 22.0, "{bed:?}");
}

#[tokio::test]
async fn a_random_failure_recovers_by_itself() {
    let mut config = cfg(2000.0);
    config.fail_probability = 1.0;
    let mut r = rig(config, 20);
    start(&mut r, "j-8").await;
    let (outcome, reason, _) = finished(next_event(&mut r.printer).await);
    assert_eq!(outcome, Outcome::Failed);
    assert!(reason.is_some_and(|r| r.starts_with("simulated")));
    assert!(matches!(
        next_event(&mut r.printer).await,
        Event::PrinterError { .. }
    ));
    // No SIM_RECOVER: the demo farm keeps going on its own.
    assert_eq!(next_event(&mut r.printer).await, Event::PrinterReady {});
    let s = wait_snapshot(&r.printer, |s| s.state == Activity::Idle).await;
    assert_eq!(s.message, None);
}

#[tokio::test]
async fn m118_text_reaches_the_host_as_a_firmware_message() {
    let mut r = rig(cfg(20.0), 3);
    r.printer
        .send(PrinterCommand::Gcode(vec![
            "M118 A1 Filament runout soon".into(),
            "M118".into(),
            "M118 E1 P0 second".into(),
        ]))
        .await
        .expect("raw");
    for want in ["Filament runout soon", "second"] {
        assert_eq!(
            next_event(&mut r.printer).await,
            Event::FirmwareMessage {
                message: want.into()
            }
        );
    }
}

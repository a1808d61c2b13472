//! Runner tests: commands in, durable events out (read back from the outbox), with the
//! simulated printer and a real local HTTP file server.

use super::*;
use crate::config::SimConfig;
use crate::sim::Sim;
use crate::test_gcode::sample;
use farm_protocol::PrinterId;
use farm_protocol::gcode::analyze;
use sha2::{Digest, Sha256};
use std::path::Path;

const KEY: &str = "runner-test-secret";
const WAIT: Duration = Duration::from_secs(20);

fn id() -> PrinterId {
    PrinterId::new("p-1").expect("id")
}

fn config(state: &Path) -> Config {
    Config::from_toml_str(&config_text(state, "mqtt://127.0.0.1:1", 1000)).expect("config")
}

fn config_text(state: &Path, broker: &str, interval: u32) -> String {
    format!(
        r#"
printer_id = "p-1"
secret = "{KEY}"
token = "tok"
controller_url = "http://127.0.0.1:1"
broker_url = "{broker}"
state_dir = "{}"
status_interval_ms = {interval}
[printer]
backend = "sim"
"#,
        state.display()
    )
}

fn sim(speed: f64) -> SimConfig {
    SimConfig {
        speed,
        heat_rate_c_per_s: 100.0,
        ..SimConfig::default()
    }
}

/// A file server for job files.
async fn files(dir: &Path) -> String {
    let app = axum::Router::new().fallback_service(tower_http::services::ServeDir::new(dir));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// A runner task and its ends.
struct Running {
    outbox: Outbox,
    commands: mpsc::UnboundedSender<Envelope<Command>>,
    interval: watch::Receiver<u32>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), OutboxError>>,
}

struct Rig {
    state: tempfile::TempDir,
    srv_dir: tempfile::TempDir,
    base: String,
    run: Running,
}

fn open_outbox(state: &Path) -> Outbox {
    Outbox::open(&state.join("outbox.redb"), id(), KEY.into()).expect("outbox")
}

fn start_runner(state: &Path, speed: f64) -> Running {
    start_runner_with(state, speed, config(state))
}

fn start_runner_with(state: &Path, speed: f64, config: Config) -> Running {
    crate::ensure_crypto_provider();
    let outbox = open_outbox(state);
    let mut fetcher = Fetcher::new(state.join("files"), "tok".into(), 1 << 30).expect("fetcher");
    fetcher.retry_delays = vec![];
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (iv_tx, iv_rx) = watch::channel(1000);
    let (tr_tx, _tr_rx) = watch::channel(None);
    let (stop_tx, stop_rx) = watch::channel(false);
    let runner = Runner::new(
        config,
        outbox.clone(),
        Printer::spawn(Sim::new(sim(speed))),
        fetcher,
        RunnerIo {
            commands: cmd_rx,
            interval_ms: iv_tx,
            transfer: tr_tx,
        },
    );
    let task = tokio::spawn(runner.run(stop_rx));
    Running {
        outbox,
        commands: cmd_tx,
        interval: iv_rx,
        stop: stop_tx,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.stop.send_replace(true);
        self.task.await.expect("join").expect("runner");
    }
}

async fn rig(speed: f64) -> Rig {
    let state = tempfile::tempdir().expect("tmp");
    let srv_dir = tempfile::tempdir().expect("tmp");
    let base = files(srv_dir.path()).await;
    let run = start_runner(state.path(), speed);
    Rig {
        state,
        srv_dir,
        base,
        run,
    }
}

impl Rig {
    /// Puts a G-code file on the server; returns the assignment and the analyzer's totals.
    fn job(&self, job_id: &str, layers: u32) -> (JobAssignment, Vec<f64>) {
        let body = sample(layers);
        let total = analyze(body.as_bytes()).expect("analyze").filament_mm;
        (
            self.serve(job_id, &format!("{job_id}.gcode"), body.as_bytes()),
            total,
        )
    }

    /// Puts `body` on the server as `name`; its assignment as job `job_id`.
    fn serve(&self, job_id: &str, name: &str, body: &[u8]) -> JobAssignment {
        std::fs::write(self.srv_dir.path().join(name), body).expect("write");
        JobAssignment {
            job_id: job_id.into(),
            name: name.into(),
            url: format!("{}/{name}", self.base),
            sha256: hex::encode(Sha256::digest(body)),
            size: body.len() as u64,
            material: None,
            colour: None,
            trays: vec![],
            plate: None,
        }
    }

    fn send(&self, command_id: &str, cmd: Command) {
        self.run
            .commands
            .send(Envelope::new(id(), cmd).with_command_id(command_id))
            .expect("runner alive");
    }

    async fn stop(self) -> tempfile::TempDir {
        self.run.stop().await;
        self.state
    }
}

/// Every event in the outbox, in seq order.
async fn events(outbox: &Outbox) -> Vec<Event> {
    outbox
        .pending_from(0, 10_000)
        .await
        .expect("read")
        .into_iter()
        .map(|(seq, wire)| {
            let env: Envelope<Event> =
                farm_protocol::open(&wire, KEY.as_bytes(), &id()).expect("open");
            assert_eq!(env.seq, Some(seq));
            env.body
        })
        .collect()
}

async fn wait_for(outbox: &Outbox, what: impl Fn(&[Event]) -> bool) -> Vec<Event> {
    let mut rx = outbox.watch();
    tokio::time::timeout(WAIT, async {
        loop {
            rx.borrow_and_update();
            let evs = events(outbox).await;
            if what(&evs) {
                return evs;
            }
            rx.changed().await.expect("outbox alive");
        }
    })
    .await
    .unwrap_or_else(|_| panic!("condition not reached in time"))
}

fn result_of<'a>(evs: &'a [Event], id: &str) -> Vec<(&'a bool, &'a String)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::CommandResult {
                command_id,
                ok,
                message,
            } if command_id == id => Some((ok, message)),
            _ => None,
        })
        .collect()
}

fn finished(evs: &[Event], job: &str) -> Option<(Outcome, Option<String>, Vec<f64>)> {
    evs.iter().find_map(|e| match e {
        Event::JobFinished {
            job_id,
            outcome,
            reason,
            extruded_mm,
            ..
        } if job_id == job => Some((*outcome, reason.clone(), extruded_mm.clone())),
        _ => None,
    })
}

#[tokio::test]
async fn a_job_goes_through_fetch_and_print_with_exact_material_and_commands_run_once() {
    let r = rig(2000.0).await;
    let (a, total) = r.job("j-1", 20);
    r.send("c-1", Command::AssignJob(a.clone()));
    let evs = wait_for(&r.run.outbox, |e| finished(e, "j-1").is_some()).await;
    assert_eq!(
        evs[..4],
        [
            Event::AgentStarted {
                version: env!("CARGO_PKG_VERSION").into(),
                backend: "sim".into()
            },
            Event::CommandResult {
                command_id: "c-1".into(),
                ok: true,
                message: "accepted job j-1".into()
            },
            Event::JobAccepted {
                job_id: "j-1".into()
            },
            Event::job_started("j-1"),
        ]
    );
    let (outcome, _, extruded) = finished(&evs, "j-1").expect("finished");
    assert_eq!((outcome, extruded), (Outcome::Completed, total));
    assert_eq!(r.run.outbox.current_job().await.expect("job"), None);

    // The same command id again: not executed, no second result.
    r.send("c-1", Command::AssignJob(a));
    r.send("c-2", Command::SetTelemetry { interval_ms: 5 });
    let evs = wait_for(&r.run.outbox, |e| !result_of(e, "c-2").is_empty()).await;
    assert_eq!(result_of(&evs, "c-1").len(), 1);
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Event::JobAccepted { .. }))
            .count(),
        1
    );
    assert_eq!(*r.run.interval.borrow(), 100, "clamped to the minimum");
    r.stop().await;
}

#[tokio::test]
async fn busy_wrong_job_and_bad_file_are_refused_with_reasons() {
    let r = rig(20.0).await;
    let (a, _) = r.job("j-1", 40);
    r.send("c-1", Command::AssignJob(a));
    wait_for(&r.run.outbox, |e| e.contains(&Event::job_started("j-1"))).await;
    let (b, _) = r.job("j-2", 1);
    r.send("c-2", Command::AssignJob(b));
    r.send(
        "c-3",
        Command::Pause {
            job_id: "j-9".into(),
        },
    );
    r.send(
        "c-4",
        Command::Pause {
            job_id: "j-1".into(),
        },
    );
    r.send(
        "c-5",
        Command::Resume {
            job_id: "j-1".into(),
        },
    );
    r.send(
        "c-6",
        Command::Cancel {
            job_id: "j-1".into(),
        },
    );
    let evs = wait_for(&r.run.outbox, |e| finished(e, "j-1").is_some()).await;
    let (ok, msg) = result_of(&evs, "c-2")[0];
    assert!(!ok && msg.contains("printer busy with job j-1"), "{msg}");
    let (ok, msg) = result_of(&evs, "c-3")[0];
    assert!(!ok && msg.contains("j-1"), "{msg}");
    for c in ["c-4", "c-5", "c-6"] {
        assert!(*result_of(&evs, c)[0].0, "{c}");
    }
    assert!(evs.contains(&Event::JobPaused {
        job_id: "j-1".into(),
        reason: None
    }));
    assert!(evs.contains(&Event::JobResumed {
        job_id: "j-1".into()
    }));
    assert_eq!(finished(&evs, "j-1").map(|f| f.0), Some(Outcome::Cancelled));

    // A file whose hash does not match fails the job, extruding nothing.
    let (mut c, _) = r.job("j-3", 1);
    c.sha256 = hex::encode(Sha256::digest(b"other"));
    r.send("c-7", Command::AssignJob(c));
    let evs = wait_for(&r.run.outbox, |e| finished(e, "j-3").is_some()).await;
    let (outcome, reason, extruded) = finished(&evs, "j-3").expect("finished");
    assert_eq!(outcome, Outcome::Failed);
    assert!(
        reason.as_deref().is_some_and(|r| r.contains("sha256")),
        "{reason:?}"
    );
    assert!(extruded.is_empty());
    r.stop().await;
}

#[tokio::test]
async fn emergency_stop_and_sim_fail_fail_the_job_and_raise_printer_errors() {
    let r = rig(20.0).await;
    let (a, _) = r.job("j-1", 40);
    r.send("c-1", Command::AssignJob(a));
    wait_for(&r.run.outbox, |e| e.contains(&Event::job_started("j-1"))).await;
    r.send("c-2", Command::EmergencyStop {});
    let evs = wait_for(&r.run.outbox, |e| {
        e.iter().any(|e| matches!(e, Event::PrinterError { .. }))
    })
    .await;
    let (outcome, reason, _) = finished(&evs, "j-1").expect("finished");
    assert_eq!(
        (outcome, reason.as_deref()),
        (Outcome::Failed, Some("emergency stop"))
    );
    assert!(evs.contains(&Event::PrinterError {
        message: "emergency stop".into()
    }));

    // In error: new jobs are refused until the printer recovers.
    let (b, _) = r.job("j-2", 40);
    r.send("c-3", Command::AssignJob(b.clone()));
    r.send(
        "c-4",
        Command::RawGcode {
            lines: vec!["M999".into()],
        },
    );
    let evs = wait_for(&r.run.outbox, |e| e.contains(&Event::PrinterReady {})).await;
    let (ok, msg) = result_of(&evs, "c-3")[0];
    assert!(!ok && msg.contains("M999"), "{msg}");

    r.send("c-5", Command::AssignJob(b));
    wait_for(&r.run.outbox, |e| e.contains(&Event::job_started("j-2"))).await;
    r.send(
        "c-6",
        Command::RawGcode {
            lines: vec!["SIM_FAIL heater fault".into()],
        },
    );
    let evs = wait_for(&r.run.outbox, |e| finished(e, "j-2").is_some()).await;
    let (outcome, reason, _) = finished(&evs, "j-2").expect("finished");
    assert_eq!(
        (outcome, reason.as_deref()),
        (Outcome::Failed, Some("heater fault"))
    );
    r.stop().await;
}

#[tokio::test]
async fn a_restart_mid_print_reports_the_job_failed_once() {
    let r = rig(5.0).await;
    let (a, _) = r.job("j-1", 200);
    r.send("c-1", Command::AssignJob(a));
    wait_for(&r.run.outbox, |e| e.contains(&Event::job_started("j-1"))).await;
    assert!(
        r.run
            .outbox
            .current_job()
            .await
            .expect("job")
            .is_some_and(|j| j.printing)
    );
    let state = r.stop().await;

    let again = start_runner(state.path(), 5.0);
    let outbox = again.outbox.clone();
    let evs = wait_for(&outbox, |e| finished(e, "j-1").is_some()).await;
    let (outcome, reason, _) = finished(&evs, "j-1").expect("finished");
    assert_eq!(outcome, Outcome::Failed);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("agent restarted during the print")),
        "{reason:?}"
    );
    assert_eq!(
        evs.iter()
            .filter(|e| matches!(e, Event::AgentStarted { .. }))
            .count(),
        2
    );
    assert_eq!(outbox.current_job().await.expect("job"), None);
    drop(outbox);
    again.stop().await;
}

#[tokio::test]
async fn reload_without_a_config_file_says_so() {
    let r = rig(20.0).await;
    r.send("c-1", Command::ReloadConfig {});
    let evs = wait_for(&r.run.outbox, |e| !result_of(e, "c-1").is_empty()).await;
    let (ok, msg) = result_of(&evs, "c-1")[0];
    assert!(!ok && msg.contains("not supported"), "{msg}");
    r.stop().await;
}

#[tokio::test]
async fn reload_applies_the_interval_and_names_what_needs_a_restart() {
    let state = tempfile::tempdir().expect("tmp");
    let file = state.path().join("agent.toml");
    std::fs::write(&file, config_text(state.path(), "mqtt://127.0.0.1:1", 1000)).expect("write");
    let run = start_runner_with(state.path(), 20.0, Config::load(&file).expect("load"));
    std::fs::write(
        &file,
        config_text(state.path(), "mqtt://10.0.0.9:1883", 2500),
    )
    .expect("write");
    run.commands
        .send(Envelope::new(id(), Command::ReloadConfig {}).with_command_id("c-1"))
        .expect("send");
    let evs = wait_for(&run.outbox, |e| !result_of(e, "c-1").is_empty()).await;
    let (ok, msg) = result_of(&evs, "c-1")[0];
    assert!(ok, "{msg}");
    assert!(
        msg.contains("restart the agent to apply changes to: broker_url"),
        "{msg}"
    );
    assert_eq!(*run.interval.borrow(), 2500);
    run.stop().await;
}

#[tokio::test]
async fn a_3mf_plate_is_extracted_printed_and_billed_and_a_missing_plate_fails_the_job() {
    use std::io::Write;
    let r = rig(2000.0).await;
    let (plate1, plate2) = (sample(4), sample(12));
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
    let deflated = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (n, g) in [(1, &plate1), (2, &plate2)] {
        w.start_file(format!("Metadata/plate_{n}.gcode"), deflated)
            .expect("entry");
        w.write_all(g.as_bytes()).expect("write");
    }
    let body = w.finish().expect("zip").into_inner();
    let assign = |job: &str, plate| JobAssignment {
        plate: Some(plate),
        ..r.serve(job, "two.gcode.3mf", &body)
    };
    r.send("c-1", Command::AssignJob(assign("j-1", 2)));
    let evs = wait_for(&r.run.outbox, |e| finished(e, "j-1").is_some()).await;
    let (outcome, _, extruded) = finished(&evs, "j-1").expect("finished");
    let want = analyze(plate2.as_bytes()).expect("analyze").filament_mm;
    assert_eq!(
        (outcome, extruded),
        (Outcome::Completed, want),
        "plate 2's filament"
    );

    r.send("c-2", Command::AssignJob(assign("j-2", 7)));
    let evs = wait_for(&r.run.outbox, |e| finished(e, "j-2").is_some()).await;
    let (outcome, reason, _) = finished(&evs, "j-2").expect("finished");
    assert_eq!(outcome, Outcome::Failed);
    let reason = reason.unwrap_or_default();
    assert!(
        reason.contains("plate 7") && reason.contains("plates are 1, 2"),
        "{reason}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_bgcode_job_is_printed_as_its_text_and_billed_its_filament() {
    let r = rig(2000.0).await;
    let body =
        include_bytes!("../../../protocol/tests/data/bgcode/prusaslicer-2.8.1-mini-cube.bgcode");
    let a = r.serve("j-b", "cube.bgcode", body);
    r.send("c-1", Command::AssignJob(a));
    let evs = wait_for(&r.run.outbox, |e| finished(e, "j-b").is_some()).await;
    let (outcome, reason, extruded) = finished(&evs, "j-b").expect("finished");
    let want = farm_protocol::bgcode::analyze_with(&body[..], Default::default())
        .expect("analyse")
        .filament_mm;
    assert_eq!(
        (outcome, reason, extruded),
        (Outcome::Completed, None, want),
        "the simulated printer printed the decoded text"
    );
    r.stop().await;
}

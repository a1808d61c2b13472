//! The Bambu back end's task: one MQTT session at a time to the printer's own broker, reports
//! into [`Report`], commands out as requests, our job through [`JobWatch`].
//!
//! On each connect it subscribes to `device/<serial>/report` and sends `get_version` and one
//! `pushall` (more often lags a P1P). A lost connection is retried with a doubling delay
//! (1 s to 30 s) and reported once per outage (`printer_error`, then `printer_ready` when the
//! first report arrives again). If nothing arrives for a minute the printer is asked to
//! restart its pushes (`pushing.start`, as pybambu does: older firmware stopped silently).

use super::ams;
use super::commands::{self, Request, Sequence};
use super::hms::{DEVELOPER_MODE_HINT, UNSIGNED_REFUSED};
use super::job::{JobChange, JobWatch};
use super::plan::JobPlan;
use super::report::{Incoming, Report};
use super::tls::{PrinterVerifier, TlsMode, bambu_client_config};
use super::{BambuConfig, ftps};
use crate::printer::{Envelope, Filament, Port, PrinterCommand, Reply, Snapshot};
use farm_protocol::Backoff;
use farm_protocol::messages::{Activity, Event, JobProgress, Outcome};
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS, Transport};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

const RECONNECT: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
/// A session that lasted this long was a working one: the next outage starts the schedule over.
const SESSION_OK: Duration = Duration::from_secs(30);
/// Silence after which the printer is asked to restart its pushes.
const QUIET: Duration = Duration::from_secs(60);
/// How long a command waits for the printer's reply before it is answered "sent".
const REPLY_WAIT: Duration = Duration::from_secs(10);
/// Reports are a few KiB to ~40 KiB (an H2D with two AMS); rumqttc's default is 10 KiB.
const MAX_PACKET: usize = 1 << 20;

/// Our job on the printer.
struct ActiveJob {
    job_id: String,
    watch: JobWatch,
    /// Filament per tool when each layer begins, the analyzer's total and its planned time
    /// (of the plate's G-code, read in place, for a `.gcode.3mf`), with the model's limits.
    plan: JobPlan,
    extruded: Vec<f64>,
    started: Instant,
    /// The `sequence_id` of the print request: a refusal in its reply ends the job.
    request: String,
    /// The tray that feeds each tool (the `ams_mapping` sent), told to the farm at the start.
    tool_trays: Vec<Option<u32>>,
}

/// A command waiting for the printer's reply.
struct Pending {
    reply: oneshot::Sender<Reply>,
    done: String,
    deadline: Instant,
}

struct Shell {
    cfg: BambuConfig,
    snapshot: watch::Sender<Snapshot>,
    events: mpsc::UnboundedSender<Event>,
    verifier: Arc<PrinterVerifier>,
    report: Report,
    version: Option<String>,
    /// `None` while connected; the operator's text while not.
    down: Option<String>,
    job: Option<ActiveJob>,
    seq: Sequence,
    pending: HashMap<String, Pending>,
    error_reported: bool,
    /// The Developer Mode hint went out on this connection.
    hinted: bool,
}

fn verifier_for(cfg: &BambuConfig) -> Arc<PrinterVerifier> {
    let pin = cfg
        .pin_file
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| hex::decode(s.trim()).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok());
    let mut roots = super::tls::bambu_roots();
    if let Some(f) = &cfg.ca_file {
        match std::fs::read(f) {
            Ok(pem) => {
                let (extra, bad) = super::tls::roots_from_pem(&[&pem]);
                if bad > 0 || extra.is_empty() {
                    tracing::warn!(file = %f.display(), bad, "printer.bambu.ca_file: certificates that do not parse were skipped");
                }
                roots.roots.extend(extra.roots);
            }
            Err(e) => {
                tracing::warn!(error = %e, file = %f.display(), "cannot read printer.bambu.ca_file; trusting Bambu's CAs only")
            }
        }
    }
    Arc::new(PrinterVerifier::new(
        cfg.tls,
        &cfg.serial,
        roots,
        pin,
        cfg.pin_file.clone().unwrap_or_default(),
    ))
}

pub(super) async fn run(cfg: BambuConfig, port: Port) {
    let Port {
        mut commands,
        snapshot,
        events,
    } = port;
    let mut sh = Shell {
        verifier: verifier_for(&cfg),
        cfg,
        snapshot,
        events,
        report: Report::default(),
        version: None,
        down: Some("connecting to the printer".into()),
        job: None,
        seq: Sequence::default(),
        pending: HashMap::new(),
        error_reported: false,
        hinted: false,
    };
    let mut backoff = RECONNECT;
    loop {
        sh.publish();
        let began = Instant::now();
        let reason = match sh.session(&mut commands).await {
            None => return,
            Some(r) => r,
        };
        if began.elapsed() > SESSION_OK {
            backoff.reset();
        }
        let delay = backoff.next(0.0);
        sh.link_down(format!("{reason}; retrying in {} s", delay.as_secs()));
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some((PrinterCommand::Reconfigure(pc), reply)) => {
                        let _ = reply.send(sh.reconfigure(pc));
                        break;
                    }
                    Some((_, reply)) => {
                        let _ = reply.send(Err(format!("the printer is not reachable: {reason}")));
                    }
                },
            }
        }
    }
}

/// What a `Start` command asks of the printer, taken apart once.
struct StartJob {
    job_id: String,
    name: String,
    path: std::path::PathBuf,
    filament: Filament,
    plate: Option<u32>,
}

impl Shell {
    fn emit(&self, e: Event) {
        self.publish();
        let _ = self.events.send(e);
    }

    /// One connection; `None` when the agent is stopping, else why it ended.
    async fn session(&mut self, commands: &mut mpsc::Receiver<Envelope>) -> Option<String> {
        if self.cfg.tls == TlsMode::Insecure {
            tracing::warn!(host = %self.cfg.host, "TLS VERIFICATION IS OFF for this Bambu printer (printer.bambu.tls = \"insecure\"): anyone on the network can pose as it; use only on a test rig");
        }
        let tls = match bambu_client_config(self.verifier.clone()) {
            Ok(c) => Arc::new(c),
            Err(e) => return Some(format!("cannot set up TLS: {e}")),
        };
        let id = format!("farm-agent-{}", rand::random::<u64>());
        let mut opts = MqttOptions::new(id, self.cfg.host.clone(), self.cfg.mqtt_port);
        opts.set_credentials("bblp", self.cfg.access_code.clone())
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_transport(Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let report_topic = format!("device/{}/report", self.cfg.serial);
        let mut last_news = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = eventloop.poll() => match ev {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        self.report.clear();
                        self.hinted = false;
                        let _ = client.try_subscribe(report_topic.clone(), QoS::AtMostOnce);
                        let v = commands::get_version(&mut self.seq);
                        self.send(&client, &v);
                        let p = commands::pushall(&mut self.seq);
                        self.send(&client, &p);
                        self.store_pin().await;
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        last_news = Instant::now();
                        self.on_message(&p.payload);
                    }
                    Ok(_) => {}
                    Err(e) => return Some(connection_error(&e)),
                },
                cmd = commands.recv() => match cmd {
                    None => {
                        let _ = client.try_disconnect();
                        return None;
                    }
                    Some((PrinterCommand::Reconfigure(pc), reply)) => {
                        let changed = pc.bambu.as_ref().is_some_and(|c| **c != self.cfg);
                        let _ = reply.send(self.reconfigure(pc));
                        if changed {
                            return Some("reconnecting with the new [printer.bambu] settings".into());
                        }
                    }
                    Some((cmd, reply)) => self.command(&client, &tls, cmd, reply).await,
                },
                _ = tick.tick() => {
                    self.expire();
                    if last_news.elapsed() > QUIET && self.down.is_none() {
                        last_news = Instant::now();
                        tracing::info!("no report from the printer for a minute; asking it to push again");
                        let mut r = commands::pushall(&mut self.seq);
                        r.payload["pushing"]["command"] = "start".into();
                        self.send(&client, &r);
                    }
                }
            }
        }
    }

    fn send(&self, client: &AsyncClient, r: &Request) {
        let topic = format!("device/{}/request", self.cfg.serial);
        if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, r.bytes()) {
            tracing::warn!(error = %e, "cannot queue a request to the printer");
        }
    }

    /// Writes a pin learned on this connection (`tls = "pin"`), once.
    async fn store_pin(&self) {
        let (Some(path), Some(pin)) = (&self.cfg.pin_file, self.verifier.pin()) else {
            return;
        };
        if self.cfg.tls != TlsMode::Pin || tokio::fs::metadata(path).await.is_ok() {
            return;
        }
        match tokio::fs::write(path, hex::encode(pin)).await {
            Ok(()) => {
                tracing::info!(file = %path.display(), "pinned the printer's certificate on first use")
            }
            Err(e) => {
                tracing::warn!(error = %e, file = %path.display(), "cannot store the certificate pin; it is kept in memory only")
            }
        }
    }

    fn on_message(&mut self, payload: &[u8]) {
        match Incoming::parse(payload) {
            None => tracing::debug!("a report that is not JSON; ignored"),
            Some(Incoming::Status(delta)) => {
                if self.down.take().is_some() || !self.report.complete {
                    tracing::info!(serial = %self.cfg.serial, "printer reports arriving");
                }
                self.report.merge(&delta);
                if self.error_reported && self.report.activity() != Activity::Error {
                    self.error_reported = false;
                    self.emit(Event::PrinterReady {});
                }
                if self.report.signature_required() && !self.hinted {
                    self.hinted = true;
                    self.emit(Event::FirmwareMessage {
                        message: format!(
                            "Bambu printer {}: {DEVELOPER_MODE_HINT}",
                            self.cfg.serial
                        ),
                    });
                }
                self.observe_job(&delta);
            }
            Some(Incoming::Reply(r)) => {
                let refused = !r.ok;
                let why = if r.err_code == Some(UNSIGNED_REFUSED as u64)
                    || (refused && self.report.signature_required())
                {
                    DEVELOPER_MODE_HINT.to_string()
                } else {
                    format!(
                        "the printer refused {}: {}",
                        r.command,
                        r.reason
                            .clone()
                            .or(r.err_code.map(|c| format!("error {c:08X}")))
                            .unwrap_or_else(|| "no reason given".into())
                    )
                };
                if let Some(p) = self.pending.remove(&r.sequence_id) {
                    let _ = p.reply.send(if refused {
                        Err(why.clone())
                    } else {
                        Ok(p.done)
                    });
                }
                if refused
                    && self
                        .job
                        .as_ref()
                        .is_some_and(|j| j.request == r.sequence_id)
                {
                    self.finish(Outcome::Failed, Some(why));
                }
            }
            Some(Incoming::Version(v)) => {
                tracing::info!(serial = %self.cfg.serial, firmware = %v, "Bambu printer firmware");
                self.version = Some(v);
            }
            Some(Incoming::Other) => {}
        }
        self.publish();
    }

    fn observe_job(&mut self, delta: &serde_json::Value) {
        let Some(job) = self.job.as_mut() else { return };
        let changes = job.watch.observe(delta, &self.report);
        job.extruded = job.watch.billed_mm(
            &job.plan.layer_starts,
            &job.plan.total,
            false,
            &job.extruded,
        );
        let job_id = job.job_id.clone();
        let tool_trays = job.tool_trays.clone();
        for c in changes {
            match c {
                JobChange::Confirmed => self.emit(Event::JobStarted {
                    job_id: job_id.clone(),
                    tool_trays: tool_trays.clone(),
                }),
                JobChange::Paused => self.emit(Event::JobPaused {
                    job_id: job_id.clone(),
                    reason: self.report.problems(),
                }),
                JobChange::Resumed => self.emit(Event::JobResumed {
                    job_id: job_id.clone(),
                }),
                JobChange::Finished { outcome, reason } => self.finish(outcome, reason),
            }
        }
    }

    fn finish(&mut self, outcome: Outcome, reason: Option<String>) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        job.extruded = job.watch.billed_mm(
            &job.plan.layer_starts,
            &job.plan.total,
            outcome == Outcome::Completed,
            &job.extruded,
        );
        tracing::info!(job = %job.job_id, ?outcome, ?reason, layer = job.watch.max_layer, "job finished on the Bambu printer");
        self.emit(Event::JobFinished {
            job_id: job.job_id,
            outcome,
            reason,
            extruded_mm: job.extruded,
            duration_s: job.started.elapsed().as_secs_f64(),
        });
    }

    /// Answers commands whose reply did not come: the request went out, the state will tell.
    fn expire(&mut self) {
        let now = Instant::now();
        let late: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in late {
            if let Some(p) = self.pending.remove(&k) {
                let _ = p.reply.send(Ok(format!(
                    "{} (sent; the printer did not confirm it, watch its state)",
                    p.done
                )));
            }
        }
    }

    fn ask(&mut self, client: &AsyncClient, r: Request, done: &str, reply: oneshot::Sender<Reply>) {
        self.send(client, &r);
        self.pending.insert(
            r.sequence_id,
            Pending {
                reply,
                done: done.into(),
                deadline: Instant::now() + REPLY_WAIT,
            },
        );
    }

    async fn command(
        &mut self,
        client: &AsyncClient,
        tls: &Arc<rustls::ClientConfig>,
        cmd: PrinterCommand,
        reply: oneshot::Sender<Reply>,
    ) {
        if let Some(why) = &self.down {
            let _ = reply.send(Err(format!("the printer is not reachable: {why}")));
            return;
        }
        let activity = self.report.activity();
        match cmd {
            PrinterCommand::Start {
                job_id,
                name,
                path,
                filament,
                plate,
            } => {
                let job = StartJob {
                    job_id,
                    name,
                    path,
                    filament,
                    plate,
                };
                let r = self.start(client, tls, job).await;
                let _ = reply.send(r);
            }
            PrinterCommand::Pause if self.job.is_none() => {
                let _ = reply.send(Err("nothing is printing".into()));
            }
            PrinterCommand::Pause if activity == Activity::Paused => {
                let _ = reply.send(Err("the job is already paused".into()));
            }
            PrinterCommand::Pause => {
                let r = commands::print_control(&mut self.seq, "pause");
                self.ask(client, r, "paused", reply);
            }
            PrinterCommand::Resume if activity != Activity::Paused || self.job.is_none() => {
                let _ = reply.send(Err("the job is not paused".into()));
            }
            PrinterCommand::Resume => {
                let r = commands::print_control(&mut self.seq, "resume");
                self.ask(client, r, "resumed", reply);
            }
            PrinterCommand::Cancel => match self.job.as_mut() {
                Some(j) => {
                    j.watch.stop_sent = true;
                    let r = commands::print_control(&mut self.seq, "stop");
                    self.ask(client, r, "cancel requested", reply);
                }
                None => {
                    let _ = reply.send(Err("no job to cancel".into()));
                }
            },
            PrinterCommand::EmergencyStop => {
                if let Some(j) = self.job.as_mut() {
                    j.watch.stop_sent = true;
                }
                let r = commands::print_control(&mut self.seq, "stop");
                self.ask(client, r, "stopped: Bambu's LAN protocol has no emergency stop, the print was stopped instead; check the printer", reply);
            }
            PrinterCommand::Gcode(lines) => {
                let r = commands::gcode_line(&mut self.seq, &lines);
                let done = format!("{} line(s) sent", lines.len());
                self.ask(client, r, &done, reply);
            }
            PrinterCommand::Reconfigure(pc) => {
                let _ = reply.send(self.reconfigure(pc));
            }
        }
    }

    async fn start(
        &mut self,
        client: &AsyncClient,
        tls: &Arc<rustls::ClientConfig>,
        job: StartJob,
    ) -> Reply {
        let StartJob {
            job_id,
            name,
            path,
            filament,
            plate,
        } = job;
        let path = path.as_path();
        if let Some(j) = &self.job {
            return Err(format!("printer busy with job {}", j.job_id));
        }
        let activity = self.report.activity();
        if activity != Activity::Idle {
            return Err(format!(
                "printer is not idle ({activity:?}{})",
                self.report
                    .problems()
                    .map(|p| format!(": {p}"))
                    .unwrap_or_default()
            ));
        }
        // A job that names a plate is a `.gcode.3mf` (the file name is only a label); the
        // config's plate is for one queued without (a controller from before plates).
        let plate = plate.or_else(|| name.ends_with(".3mf").then_some(self.cfg.plate));
        let is_3mf = plate.is_some();
        // Which tray feeds each filament, decided before anything is uploaded or sent.
        let ams_mapping = match plate {
            Some(n) => {
                let (p, job, trays, configured) = (
                    path.to_path_buf(),
                    filament.clone(),
                    self.report.trays(),
                    self.cfg.ams_mapping.clone(),
                );
                tokio::task::spawn_blocking(move || {
                    ams::mapping_for_plate(&p, n, &job, &trays, &configured)
                })
                .await
                .map_err(|e| format!("reading the plate stopped: {e}"))??
            }
            None => vec![],
        };
        let plan = {
            let p = path.to_path_buf();
            let base = self.base_limits();
            tokio::task::spawn_blocking(move || JobPlan::of_file(&p, plate, base))
                .await
                .map_err(|e| format!("file indexing stopped: {e}"))?
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        };
        let remote_name = if is_3mf {
            format!("farm-{job_id}.gcode.3mf")
        } else {
            format!("farm-{job_id}.gcode")
        };
        let remote = format!("/cache/{remote_name}");
        ftps::upload(
            tls.clone(),
            &self.cfg.host,
            self.cfg.ftps_port,
            &self.cfg.access_code,
            path,
            &remote,
        )
        .await
        .map_err(|e| e.to_string())?;
        let request = if is_3mf {
            commands::project_file(
                &mut self.seq,
                self.cfg.storage,
                &remote,
                plate.unwrap_or(self.cfg.plate),
                &ams_mapping,
            )
        } else {
            commands::gcode_file(&mut self.seq, &remote)
        };
        self.send(client, &request);
        let tools = plan.total.len().max(1);
        self.job = Some(ActiveJob {
            job_id,
            watch: JobWatch::new(&remote_name),
            plan,
            extruded: vec![0.0; tools],
            started: Instant::now(),
            request: request.sequence_id,
            tool_trays: ams::tool_trays(&ams_mapping),
        });
        self.publish();
        Ok(format!(
            "uploaded {remote} and asked the printer to print it"
        ))
    }

    /// The analyzer's starting limits: the configured printer model's (validated with the
    /// config), else the defaults.
    fn base_limits(&self) -> farm_protocol::gcode::Limits {
        crate::model_profile::base_limits(self.cfg.model.as_deref()).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "printer.bambu.model; analysing with the defaults");
            farm_protocol::gcode::Limits::default()
        })
    }

    fn reconfigure(&mut self, pc: crate::config::PrinterConfig) -> Reply {
        match pc.bambu {
            Some(c) if *c != self.cfg => {
                self.verifier = verifier_for(&c);
                self.cfg = *c;
                Ok("new [printer.bambu] settings applied; reconnecting".into())
            }
            Some(_) => Ok("[printer.bambu] unchanged".into()),
            None => Err("the new config has no [printer.bambu] section; nothing applied".into()),
        }
    }

    fn link_down(&mut self, reason: String) {
        tracing::warn!(%reason, "Bambu printer link down");
        self.down = Some(reason.clone());
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(format!(
                "the connection to the printer dropped: {reason}"
            )));
        }
        if !self.error_reported {
            self.error_reported = true;
            self.emit(Event::PrinterError { message: reason });
        } else {
            self.publish();
        }
    }

    fn snapshot_now(&self) -> Snapshot {
        if let Some(why) = &self.down {
            return Snapshot {
                state: Activity::Disconnected,
                temps: vec![],
                job: None,
                message: Some(why.clone()),
                trays: vec![],
            };
        }
        if !self.report.complete {
            return Snapshot {
                state: Activity::Disconnected,
                temps: vec![],
                job: None,
                message: Some("connected; waiting for the printer's first report".into()),
                trays: vec![],
            };
        }
        let r = &self.report;
        let job = self.job.as_ref().map(|j| {
            // Before the printer took our job up, its figures are the last job's.
            let live = j.watch.confirmed;
            let (layer, layer_count) = if live { r.layer() } else { (None, None) };
            JobProgress {
                job_id: j.job_id.clone(),
                progress: if live {
                    r.progress().unwrap_or(0.0)
                } else {
                    0.0
                },
                // Bambu reports no file position.
                file_pos: 0,
                file_size: j.plan.size,
                layer,
                layer_count,
                elapsed_s: j.started.elapsed().as_secs_f64(),
                // The printer's own time left; the analyzer's from the layer if it gives none.
                eta_s: live.then(|| {
                    r.remaining_s()
                        .unwrap_or_else(|| j.plan.left_at_layer(layer))
                }),
                extruded_mm: j.extruded.clone(),
            }
        });
        Snapshot {
            state: r.activity(),
            temps: r.temps(),
            job,
            message: r.problems(),
            trays: r.trays(),
        }
    }

    fn publish(&self) {
        let next = self.snapshot_now();
        self.snapshot.send_if_modified(|cur| {
            if *cur == next {
                false
            } else {
                *cur = next;
                true
            }
        });
    }
}

/// The operator's text for a failed connection.
fn connection_error(e: &rumqttc::ConnectionError) -> String {
    use rumqttc::{ConnectReturnCode, ConnectionError as C};
    match e {
        C::ConnectionRefused(ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized) => {
            "the printer refused the access code; check printer.bambu.access_code against the code on the printer's screen (it changes when LAN mode is toggled)".into()
        }
        C::Tls(t) => format!("TLS with the printer failed: {t}"),
        other => format!("MQTT connection to the printer failed: {other}"),
    }
}

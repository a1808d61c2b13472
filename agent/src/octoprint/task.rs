//! The imperative shell of the OctoPrint back end: one task that owns the REST client, the
//! push channel, the timers and the job file, and feeds everything through the [`Tracker`].
//!
//! Connection life: check `/api/version` → open the push channel → status from `current`
//! frames. When the push channel drops, status is polled over REST (`/api/printer` +
//! `/api/job`) every `poll_interval_ms` while the channel is re-opened with backoff. When
//! OctoPrint cannot be reached or refuses the key, nothing is polled: one `/api/version` per
//! backoff step (1 s doubling to 15 s when unreachable; 5 s doubling to 60 s for a refused
//! key, which needs a person), with the reason in the status message.

use super::OctoPrintConfig;
use super::client::{Api, ApiError};
use super::job_file::{JobFile, event_for, upload_name};
use super::push::{Incoming, Push, PushError};
use super::state::{Effect, Reach, Tracker};
use super::wire::{Frame, Phase, observation_from_rest, parse_frame};
use crate::printer::{Port, PrinterCommand, Reply, Snapshot};
use farm_protocol::Backoff;
use farm_protocol::gcode::parse_line;
use farm_protocol::messages::{Event, Outcome};
use serde_json::json;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// A push channel quiet for this long is pinged. OctoPrint sends `current` every 0.5 s ×
/// throttle while it talks to the printer, but nothing at all while it is offline.
const PUSH_QUIET: Duration = Duration::from_secs(10);
/// A ping unanswered for this long means the channel is dead.
const PONG_TIMEOUT: Duration = Duration::from_secs(10);
/// Nothing due: wake up anyway this often (cheap; keeps the loop simple).
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// OctoPrint unreachable: 1 s doubling to 15 s, no jitter (one agent per OctoPrint, usually
/// on the same Pi or LAN; one `/api/version` per step is cheap and a restarted OctoPrint is
/// found within 15 s).
pub(crate) const UNREACHABLE: Backoff =
    Backoff::new(Duration::from_secs(1), Duration::from_secs(15));
/// OctoPrint refused the API key: 5 s doubling to 60 s, since a person must fix the key and
/// quicker retries would only fill OctoPrint's log.
pub(crate) const REFUSED: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));

/// Counts one more failure on `retries` (an [`UNREACHABLE`] schedule) and returns the wait,
/// on the [`REFUSED`] schedule when the key was refused: one count for both.
pub(crate) fn retry_delay(retries: &mut Backoff, refused: bool) -> Duration {
    let unreachable = retries.next(0.0);
    if refused {
        REFUSED.delay_after(retries.failures(), 0.0)
    } else {
        unreachable
    }
}

pub(super) struct Shell {
    cfg: OctoPrintConfig,
    api: Api,
    snapshot: watch::Sender<Snapshot>,
    events: mpsc::UnboundedSender<Event>,
    tracker: Tracker,
    push: Option<Push>,
    /// When the push channel last said something; a status frame since opening resets backoff.
    push_heard: Instant,
    push_confirmed: bool,
    /// A ping is out since then.
    ping_sent: Option<Instant>,
    file: Option<JobFile>,
    next_connect: Option<Instant>,
    next_poll: Option<Instant>,
    backoff: Backoff,
    /// After an emergency stop: show `Error` until OctoPrint reports the printer offline.
    estop: bool,
}

async fn next_frame(push: &mut Option<Push>) -> Option<Incoming> {
    match push {
        Some(p) => p.next().await,
        None => std::future::pending().await,
    }
}

async fn connect(api: &Api) -> Result<String, ApiError> {
    api.connect_printer()
        .await
        .map(|()| "asked OctoPrint to connect to the printer".to_string())
}

impl Shell {
    pub(super) async fn run(cfg: OctoPrintConfig, port: Port) {
        let Port {
            mut commands,
            snapshot,
            events,
        } = port;
        let api = match Api::new(&cfg.url, &cfg.api_key) {
            Ok(api) => api,
            Err(e) => {
                snapshot.send_replace(Snapshot {
                    state: farm_protocol::messages::Activity::Error,
                    message: Some(e.to_string()),
                    ..Snapshot::default()
                });
                while let Some((_, reply)) = commands.recv().await {
                    let _ = reply.send(Err(e.to_string()));
                }
                return;
            }
        };
        let now = Instant::now();
        let mut shell = Shell {
            cfg,
            api,
            snapshot,
            events,
            tracker: Tracker::new(),
            push: None,
            push_heard: now,
            push_confirmed: false,
            ping_sent: None,
            file: None,
            next_connect: Some(now),
            next_poll: None,
            backoff: UNREACHABLE,
            estop: false,
        };
        loop {
            let wake = shell.next_wake();
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => break,
                    Some((cmd, reply)) => {
                        let answer = shell.handle(cmd).await;
                        let _ = reply.send(answer);
                    }
                },
                frame = next_frame(&mut shell.push) => shell.on_frame(frame).await,
                _ = tokio::time::sleep_until(wake) => shell.on_timer().await,
            }
            shell.publish().await;
        }
        if let Some(p) = shell.push.take() {
            p.close().await;
        }
    }

    fn throttle(&self) -> u32 {
        self.cfg.poll_interval_ms.div_ceil(500).max(1)
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + IDLE_WAKE;
        if self.push.is_some() {
            wake = wake.min(match self.ping_sent {
                Some(t) => t + PONG_TIMEOUT,
                None => self.push_heard + PUSH_QUIET,
            });
        } else {
            for t in [self.next_connect, self.next_poll].into_iter().flatten() {
                wake = wake.min(t);
            }
        }
        wake
    }

    async fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            let event = event_for(effect, &mut self.file).await;
            if let Event::PrinterError { message } = &event {
                tracing::warn!(message, "printer error");
            }
            // A closed channel means the agent is stopping.
            let _ = self.events.send(event);
        }
    }

    async fn publish(&mut self) {
        let now = Instant::now();
        let pos = self.tracker.job().map(|j| j.filepos);
        let mm = match (pos, self.file.as_mut()) {
            (Some(p), Some(f)) => f.at(p).await,
            _ => vec![],
        };
        let mut snap = self.tracker.snapshot(mm, now);
        // The farm's ETA is the analyzer's planned time left from OctoPrint's file position
        // (OctoPrint's own estimate stays when the file cannot be read).
        if let (Some(p), Some(f), Some(job)) = (pos, self.file.as_mut(), snap.job.as_mut())
            && let Some(left) = f.remaining(p).await
        {
            job.eta_s = Some(left);
        }
        if self.estop && self.tracker.reach() == &Reach::Up {
            snap.state = farm_protocol::messages::Activity::Error;
            snap.message =
                Some("emergency stop: send raw G-code M999 to reconnect the printer".into());
        }
        self.snapshot.send_replace(snap);
    }

    /// OctoPrint cannot be used now: say why, stop polling, try again after a backoff step.
    async fn unavailable(&mut self, e: &ApiError) {
        let refused = matches!(e, ApiError::Refused { .. });
        let delay = retry_delay(&mut self.backoff, refused);
        tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "OctoPrint not available; retrying");
        if let Some(p) = self.push.take() {
            p.close().await;
        }
        let reach = if refused {
            Reach::Refused(e.to_string())
        } else {
            Reach::Unreachable(e.to_string())
        };
        let effects = self.tracker.set_reach(reach);
        self.apply(effects).await;
        self.next_poll = None;
        self.next_connect = Some(Instant::now() + delay);
    }

    /// A REST error from a command or poll: only a lost or refusing OctoPrint changes state.
    async fn note(&mut self, e: &ApiError) {
        if matches!(e, ApiError::Refused { .. } | ApiError::Unreachable { .. }) {
            self.unavailable(e).await;
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        match (self.push.as_mut(), self.ping_sent) {
            (Some(_), Some(t)) if now >= t + PONG_TIMEOUT => {
                tracing::warn!(
                    "OctoPrint's push channel did not answer a ping for {PONG_TIMEOUT:?}; reconnecting"
                );
                self.push_lost().await;
            }
            (Some(p), None) if now >= self.push_heard + PUSH_QUIET => {
                if p.ping().await {
                    self.ping_sent = Some(now);
                } else {
                    self.push_lost().await;
                }
            }
            _ => {}
        }
        if self.push.is_none() && self.next_connect.is_some_and(|t| t <= now) {
            self.connect().await;
        }
        if self.push.is_none() && self.next_poll.is_some_and(|t| t <= now) {
            self.poll().await;
        }
    }

    async fn connect(&mut self) {
        self.next_connect = None;
        match self.api.version().await {
            Ok(v) => {
                if self.tracker.reach() != &Reach::Up {
                    tracing::info!(url = self.api.base(), version = v, "OctoPrint reachable");
                }
            }
            Err(e) => return self.unavailable(&e).await,
        }
        let effects = self.tracker.set_reach(Reach::Up);
        self.apply(effects).await;
        match Push::open(&self.api, self.throttle()).await {
            Ok(p) => {
                self.push = Some(p);
                self.push_heard = Instant::now();
                self.push_confirmed = false;
                self.ping_sent = None;
                self.next_poll = None;
            }
            Err(PushError::Api(e)) => self.unavailable(&e).await,
            Err(e) => {
                let delay = retry_delay(&mut self.backoff, false);
                tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "no push channel; polling OctoPrint's status meanwhile");
                self.next_poll = Some(Instant::now());
                self.next_connect = Some(Instant::now() + delay);
            }
        }
    }

    async fn push_lost(&mut self) {
        if let Some(p) = self.push.take() {
            p.close().await;
        }
        let delay = retry_delay(&mut self.backoff, false);
        // Poll at once: if OctoPrint itself is gone this says so; if only the socket is, the
        // status keeps flowing.
        self.next_poll = Some(Instant::now());
        self.next_connect = Some(Instant::now() + delay);
    }

    async fn poll(&mut self) {
        let polled = match self.api.printer().await {
            Ok(p) => self.api.job().await.map(|j| (p, j)),
            Err(e) => Err(e),
        };
        match polled {
            Ok((p, j)) => {
                let now = Instant::now();
                let obs = observation_from_rest(p, j);
                self.observed_phase(obs.phase);
                let effects = self.tracker.observe(obs, false, now);
                self.apply(effects).await;
                self.next_poll =
                    Some(now + Duration::from_millis(self.cfg.poll_interval_ms.into()));
            }
            Err(e) => {
                self.note(&e).await;
                if !matches!(e, ApiError::Refused { .. } | ApiError::Unreachable { .. }) {
                    tracing::warn!(error = %e, "OctoPrint status poll failed");
                    self.next_poll = Some(
                        Instant::now() + Duration::from_millis(self.cfg.poll_interval_ms.into()),
                    );
                }
            }
        }
    }

    fn observed_phase(&mut self, phase: Phase) {
        // The e-stop shows until OctoPrint itself reports the printer gone (then its own error
        // text shows) or until M999.
        if !phase.operational() {
            self.estop = false;
        }
    }

    async fn on_frame(&mut self, frame: Option<Incoming>) {
        let now = Instant::now();
        let text = match frame {
            None => {
                tracing::info!("OctoPrint's push channel closed; polling until it is back");
                self.push = None;
                return self.push_lost().await;
            }
            Some(Incoming::Pong) => None,
            Some(Incoming::Text(t)) => Some(t),
        };
        self.push_heard = now;
        self.ping_sent = None;
        let Some(text) = text else { return };
        match parse_frame(&text) {
            Ok(Frame::Status {
                observation,
                history,
            }) => {
                if !self.push_confirmed {
                    self.push_confirmed = true;
                    self.backoff.reset();
                    tracing::info!("OctoPrint push channel up");
                }
                self.observed_phase(observation.phase);
                // `history` follows a (re)connect: events before it may have been missed.
                let effects = self.tracker.observe(observation, !history, now);
                self.apply(effects).await;
            }
            Ok(Frame::Event(ev)) => {
                let effects = self.tracker.event(ev, now);
                self.apply(effects).await;
            }
            Ok(Frame::ReauthRequired) => {
                tracing::info!("OctoPrint asks the push channel to log in again");
                if let Some(p) = self.push.take() {
                    p.close().await;
                }
                self.next_connect = Some(now);
            }
            Ok(Frame::Other) => {}
            Err(e) => tracing::debug!(error = %e, "unreadable push frame ignored"),
        }
    }

    async fn handle(&mut self, cmd: PrinterCommand) -> Reply {
        match cmd {
            PrinterCommand::Start {
                job_id, name, path, ..
            } => self.start(&job_id, &name, &path).await,
            PrinterCommand::Pause => {
                let j = self.tracker.job().ok_or("nothing is printing")?;
                if j.paused {
                    return Err("the job is already paused".into());
                }
                self.job_command(json!({"command": "pause", "action": "pause"}))
                    .await?;
                Ok("pause requested; OctoPrint pauses after the current command".into())
            }
            PrinterCommand::Resume => {
                if let Some(why) = self.tracker.refuse_resume() {
                    return Err(why);
                }
                self.job_command(json!({"command": "pause", "action": "resume"}))
                    .await?;
                Ok("resume requested".into())
            }
            PrinterCommand::Cancel => {
                self.tracker.job().ok_or("no job to cancel")?;
                match self.api.job_command(json!({"command": "cancel"})).await {
                    Ok(()) => Ok("cancel requested".into()),
                    Err(e) if e.is_conflict() => {
                        let why = format!("OctoPrint had no print to cancel ({e})");
                        let effects =
                            self.tracker
                                .end_job(Outcome::Cancelled, &why, Instant::now());
                        self.apply(effects).await;
                        Ok("cancelled".into())
                    }
                    Err(e) => {
                        self.note(&e).await;
                        Err(e.to_string())
                    }
                }
            }
            PrinterCommand::EmergencyStop => self.emergency_stop().await,
            PrinterCommand::Gcode(lines) => self.gcode(lines).await,
            PrinterCommand::Reconfigure(config) => self.reconfigure(config.octoprint).await,
        }
    }

    async fn job_command(&mut self, body: serde_json::Value) -> Result<(), String> {
        match self.api.job_command(body).await {
            Ok(()) => Ok(()),
            Err(e) => {
                self.note(&e).await;
                Err(e.to_string())
            }
        }
    }

    async fn start(&mut self, job_id: &str, name: &str, path: &std::path::Path) -> Reply {
        if let Some(why) = self.tracker.refuse_start() {
            return Err(why);
        }
        let file = JobFile::open(path).await?;
        let upload = upload_name(job_id, &file.sha256);
        let size = file.size;
        self.tracker.begin(job_id, &upload, size, Instant::now());
        self.file = Some(file);
        match self.api.upload_and_print(path, &upload, size).await {
            Ok(up) if up.printing => {
                let effects = self.tracker.started(&up.path);
                self.apply(effects).await;
                tracing::info!(job = job_id, file = up.path, "printing on OctoPrint");
                Ok(format!("printing {name} on OctoPrint as {}", up.path))
            }
            Ok(up) => {
                self.tracker.abandon();
                self.file = None;
                Err(format!(
                    "OctoPrint stored {} but did not start it: the printer is not operational; \
                     check OctoPrint's connection to the printer",
                    up.path
                ))
            }
            Err(e) => {
                self.tracker.abandon();
                self.file = None;
                self.note(&e).await;
                Err(e.to_string())
            }
        }
    }

    async fn emergency_stop(&mut self) -> Reply {
        let answer = match self.api.printer_command(&["M112".to_string()]).await {
            Ok(()) => {
                self.estop = true;
                "emergency stop: M112 sent; OctoPrint halts and disconnects the printer \
                 (send raw G-code M999 to reconnect)"
            }
            Err(e) if e.is_conflict() => "OctoPrint is not connected to the printer; nothing runs",
            Err(e) => {
                self.note(&e).await;
                return Err(e.to_string());
            }
        };
        let effects = self
            .tracker
            .end_job(Outcome::Failed, "emergency stop", Instant::now());
        self.apply(effects).await;
        Ok(answer.into())
    }

    /// Raw lines go to the printer; `M999` while the printer is not connected asks OctoPrint
    /// to connect it (the farm's "recover" for a halted printer).
    async fn gcode(&mut self, lines: Vec<String>) -> Reply {
        let recover = lines
            .iter()
            .any(|l| parse_line(l.trim().as_bytes()).is(b'M', 999));
        // After an e-stop OctoPrint closes the port, maybe not yet reported: connect.
        let operational = self.tracker.phase().is_some_and(Phase::operational) && !self.estop;
        if recover {
            self.estop = false;
        }
        let result = if recover && !operational {
            connect(&self.api).await
        } else {
            match self.api.printer_command(&lines).await {
                // OctoPrint lost the printer since its last status.
                Err(e) if recover && e.is_conflict() => connect(&self.api).await,
                r => r.map(|()| format!("{} line(s) sent", lines.len())),
            }
        };
        match result {
            Ok(m) => Ok(m),
            Err(e) => {
                self.note(&e).await;
                Err(e.to_string())
            }
        }
    }

    async fn reconfigure(&mut self, config: Option<OctoPrintConfig>) -> Reply {
        let Some(config) = config else {
            return Err("the reloaded config has no [printer.octoprint] section".into());
        };
        if config == self.cfg {
            return Ok("OctoPrint settings unchanged".into());
        }
        self.api = Api::new(&config.url, &config.api_key).map_err(|e| e.to_string())?;
        self.cfg = config;
        if let Some(p) = self.push.take() {
            p.close().await;
        }
        self.backoff.reset();
        self.next_poll = None;
        self.next_connect = Some(Instant::now());
        Ok("OctoPrint settings applied; reconnecting".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_a_refused_key_waits_longer() {
        let secs = |refused: bool| {
            let mut b = UNREACHABLE;
            (0..7)
                .map(|_| retry_delay(&mut b, refused).as_secs())
                .collect::<Vec<_>>()
        };
        assert_eq!(secs(false), [1, 2, 4, 8, 15, 15, 15]);
        assert_eq!(secs(true), [5, 10, 20, 40, 60, 60, 60]);
        let mut b = UNREACHABLE;
        retry_delay(&mut b, false);
        retry_delay(&mut b, true);
        b.reset();
        assert_eq!(retry_delay(&mut b, false), Duration::from_secs(1));
    }
}

//! One connection to a printer that answered the handshake: the imperative shell around the
//! pure pieces. It owns the port (read here, in this task: no reader task, no channel) and
//! the timers, and calls the core on every event:
//!
//! * a firmware line → [`parse_reply`] → [`Streamer`] (ok, resend), [`Watchdog`] (life),
//!   the [`Job`] ledger (material from acknowledged lines), temperatures, host actions,
//!   firmware errors;
//! * an agent command → start / pause / resume / cancel / e-stop / raw G-code;
//! * a tick → resend quiet timer, stall detection, temperature polling, snapshot.
//!
//! After each batch of events [`Session::fill`] writes whatever the window allows: lines to
//! resend first, then host lines (scripts, polls, raw G-code), then job lines.
//! Host-side pause and cancel first let the job's lines in flight be acknowledged, so the
//! pause position and the material are exact, then send the profile's script.

use super::backend::SerialConfig;
use super::handshake::Link;
use super::job::{Job, Phase};
use super::port::Port;
use super::profile::FirmwareProfile;
use super::reply::{FirmwareInfo, Reply, Temps, parse_reply};
use super::stream::{Ack, Resend, Streamer};
use super::watchdog::{Verdict, Watchdog};
use crate::printer::{Envelope, Snapshot};
use farm_protocol::messages::{Activity, Event, Heater, Outcome};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Rejected lines still unanswered after this much quiet were flushed by the firmware.
const RESEND_QUIET: Duration = Duration::from_millis(500);
/// Timer resolution for the quiet timer, stall checks, polls and snapshots.
const TICK: Duration = Duration::from_millis(200);
/// Snapshots are refreshed at most this often unless the state changed.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);
/// Firmware `Error:` lines forwarded as events per connection (the rest are only logged).
const MAX_ERROR_EVENTS: u32 = 20;
/// Lines handled in one go before the window is refilled.
const BATCH: usize = 64;

/// Why a session ended.
#[derive(Debug)]
pub enum End {
    /// The agent is stopping.
    Stop,
    /// The link is gone or dead: the reason, for the operator.
    Closed(String),
    /// Start over (after `M999`, a firmware restart, or new settings).
    Reconnect(Option<SerialConfig>),
}

/// A host line waiting for room in the window.
struct HostLine {
    cmd: String,
    /// The final `M400` of a job: its acknowledgement completes the job.
    job_end: bool,
}

pub struct Session {
    cfg: SerialConfig,
    profile: FirmwareProfile,
    info: FirmwareInfo,
    port: Port,
    /// The firmware line being handled (reused: no allocation per line).
    rx: String,
    streamer: Streamer,
    watchdog: Watchdog,
    host: VecDeque<HostLine>,
    job: Option<Job>,
    /// The line number of the job's final `M400`, once sent.
    job_end_n: Option<u64>,
    /// Host-side pause (the pause script ran) or the printer paused itself.
    paused_by_host: bool,
    cancel_deadline: Option<Instant>,
    state: Activity,
    message: Option<String>,
    heaters: Vec<Heater>,
    prompt: Option<(String, Vec<String>)>,
    error_events: u32,
    poll_every: Option<(Duration, Duration)>,
    next_poll: Instant,
    last_rx: Instant,
    snapshot: watch::Sender<Snapshot>,
    events: mpsc::UnboundedSender<Event>,
    published_at: Instant,
    out: String,
    end: Option<End>,
}

impl Session {
    pub fn new(
        link: Link,
        cfg: &SerialConfig,
        snapshot: watch::Sender<Snapshot>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Session {
        let Link {
            port,
            streamer,
            info,
            profile,
            ..
        } = link;
        let now = Instant::now();
        let timeout = cfg
            .timeout_s
            .unwrap_or(profile.timeouts.communication_s)
            .clamp(0.1, 86_400.0);
        let mut host = VecDeque::new();
        let t = &profile.temperature;
        let autoreport = t.autoreport && profile.capability(&info, "AUTOREPORT_TEMP");
        let poll_every = if autoreport {
            host.push_back(HostLine {
                cmd: format!("M155 S{}", t.autoreport_interval_s.max(1)),
                job_end: false,
            });
            None
        } else {
            Some((
                Duration::from_secs_f64(t.poll_interval_idle_s),
                Duration::from_secs_f64(t.poll_interval_active_s),
            ))
        };
        Session {
            cfg: cfg.clone(),
            watchdog: Watchdog::new(
                Duration::from_secs_f64(timeout),
                profile.timeouts.max_timeouts,
                now,
            ),
            profile,
            info,
            port,
            rx: String::with_capacity(256),
            streamer,
            host,
            job: None,
            job_end_n: None,
            paused_by_host: false,
            cancel_deadline: None,
            state: Activity::Idle,
            message: None,
            heaters: vec![],
            prompt: None,
            error_events: 0,
            poll_every,
            next_poll: now,
            last_rx: now,
            snapshot,
            events,
            published_at: now,
            out: String::with_capacity(512),
            end: None,
        }
    }

    /// Runs until the link ends or the agent stops.
    pub async fn run(mut self, commands: &mut mpsc::Receiver<Envelope>) -> End {
        self.publish(true);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Err(e) = self.fill().await {
                self.lost(e);
            }
            if let Some(end) = self.end.take() {
                self.publish(true);
                return end;
            }
            self.publish(false);
            tokio::select! {
                biased;
                r = self.port.next_line(&mut self.rx) => {
                    match r {
                        Ok(()) => self.take_line(),
                        Err(why) => self.lost(why),
                    }
                    // Take what else was read before refilling the window.
                    for _ in 0..BATCH {
                        if self.end.is_some() || !self.port.buffered_line(&mut self.rx) {
                            break;
                        }
                        self.take_line();
                    }
                }
                cmd = commands.recv() => match cmd {
                    None => {
                        self.fail_job("the agent stopped during the print".into());
                        return End::Stop;
                    }
                    Some((c, reply)) => {
                        let answer = self.command(c).await;
                        let _ = reply.send(answer);
                        self.publish(true);
                    }
                },
                _ = tick.tick() => self.tick().await,
            }
            self.advance();
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    /// Handles the line in `rx`.
    fn take_line(&mut self) {
        let text = std::mem::take(&mut self.rx);
        self.line(&text);
        self.rx = text;
    }

    /// The link is gone: the job fails, the backend reconnects.
    fn lost(&mut self, why: String) {
        if self.end.is_some() {
            return;
        }
        self.fail_job(format!(
            "{why}; the job cannot resume on a lost connection (the printer may have reset): \
             check the bed before starting it again"
        ));
        self.end = Some(End::Closed(why));
    }

    fn line(&mut self, text: &str) {
        let now = Instant::now();
        self.last_rx = now;
        let reply = parse_reply(text);
        self.watchdog.heard(now, reply.is_ok());
        match reply {
            Reply::Ok {
                line,
                buffer_free,
                temps,
                ..
            } => {
                if let Some(t) = temps {
                    self.temps(&t);
                }
                if let Ack::Line(n) = self.streamer.on_ok(line, buffer_free) {
                    if let Some(job) = self.job.as_mut() {
                        job.acked(n);
                    }
                    if self.job_end_n.is_some_and(|e| n >= e) {
                        self.job_end_n = None;
                        self.finish(Outcome::Completed, None);
                    }
                }
            }
            Reply::Resend(n) => match self.streamer.on_resend(n) {
                Resend::Rewind(n) => {
                    tracing::debug!(line = n, "resend requested");
                    if let Some((n, times)) = self.streamer.resend_loop() {
                        self.lost(format!(
                            "the printer asked for line {n} {times} times in a row (the link is \
                             too noisy, or the firmware loops): check the USB cable and the baud rate"
                        ));
                    }
                }
                Resend::Duplicate | Resend::Ahead => {
                    tracing::trace!(line = n, "resend request ignored")
                }
                Resend::Unavailable(n) => self.lost(format!(
                    "the printer asked for line {n} again, which is no longer kept (the link is \
                     too noisy: check the USB cable and the baud rate)"
                )),
            },
            Reply::CommError { text, .. } => tracing::debug!(text, "transmission error"),
            Reply::Busy(_) | Reply::Wait => {}
            Reply::Error(text) => {
                tracing::info!(text, "firmware error");
                if self.error_events < MAX_ERROR_EVENTS {
                    self.error_events += 1;
                    self.emit(Event::FirmwareMessage {
                        message: format!("Error: {text}"),
                    });
                }
            }
            Reply::Halted(text) => self.halted(text),
            Reply::Start => {
                if self.end.is_none() {
                    self.fail_job(
                        "the printer restarted (it printed `start`) and lost the job".into(),
                    );
                    self.end = Some(End::Reconnect(None));
                }
            }
            Reply::Action(a) => self.action(a),
            Reply::Temperature(t) => self.temps(&t),
            other => tracing::trace!(?other, "firmware line"),
        }
    }

    fn halted(&mut self, text: &str) {
        tracing::error!(text, "the firmware stopped");
        if self.state == Activity::Error {
            let m = self.message.get_or_insert_with(String::new);
            if m.len() < 400 {
                m.push_str(" / ");
                m.push_str(text);
            }
            self.emit(Event::FirmwareMessage {
                message: text.to_string(),
            });
            return;
        }
        self.fail_job(format!("the printer stopped: {text}"));
        self.enter_error(text.to_string());
    }

    fn enter_error(&mut self, message: String) {
        self.host.clear();
        self.state = Activity::Error;
        self.message = Some(message.clone());
        self.emit(Event::PrinterError { message });
    }

    fn temps(&mut self, t: &Temps) {
        let mut set = |name: String, r: Option<super::reply::Reading>| {
            let Some(r) = r else { return };
            let round = |v: f32| (f64::from(v) * 10.0).round() / 10.0;
            match self.heaters.iter_mut().find(|h| h.name == name) {
                Some(h) => {
                    h.actual = round(r.actual);
                    if let Some(tg) = r.target {
                        h.target = round(tg);
                    }
                }
                None => self.heaters.push(Heater {
                    name,
                    actual: round(r.actual),
                    target: r.target.map_or(0.0, round),
                }),
            }
        };
        for i in 0..super::reply::MAX_TOOLS {
            set(format!("tool{i}"), t.hotend(i));
        }
        set("bed".into(), t.bed);
        set("chamber".into(), t.chamber);
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        if self.streamer.has_rejected() && now.duration_since(self.last_rx) >= RESEND_QUIET {
            let n = self.streamer.on_quiet();
            tracing::debug!(
                dropped = n,
                "rejected lines never answered: flushed by the firmware"
            );
        }
        if self.streamer.in_flight() == 0 {
            self.watchdog.idle(now);
        } else {
            let allowance = self
                .streamer
                .oldest_pending()
                .and_then(|n| self.streamer.command_of(n))
                .and_then(|c| self.profile.timeouts.long_command_allowance(c))
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0)));
            match self.watchdog.check(now, allowance) {
                Verdict::Fine => {}
                Verdict::Poke => {
                    tracing::warn!("the printer is silent; poking it");
                    let poke = format!("{}\n", self.profile.temperature.poll_command);
                    if let Err(e) = self.write_now(&poke).await {
                        self.lost(e);
                    }
                }
                Verdict::Dead { silent } => self.lost(format!(
                    "the printer stopped answering (nothing for {:.0} s, {} pokes unanswered)",
                    silent.as_secs_f64(),
                    self.watchdog.max_pokes
                )),
            }
        }
        if let Some(d) = self.cancel_deadline
            && now >= d
        {
            // A blocking command never finished: cancel with what was acknowledged.
            self.cancel_deadline = None;
            if let Some(job) = self.job.as_mut() {
                job.phase = Phase::Cancelling;
            }
            self.finish_cancel();
        }
        if let Some((idle, active)) = self.poll_every
            && now >= self.next_poll
            && self.state != Activity::Error
        {
            let heating = self.heaters.iter().any(|h| h.target > 0.0);
            self.next_poll = now + if heating { active } else { idle };
            if !self
                .host
                .iter()
                .any(|h| h.cmd == self.profile.temperature.poll_command)
            {
                self.host.push_back(HostLine {
                    cmd: self.profile.temperature.poll_command.clone(),
                    job_end: false,
                });
            }
        }
    }

    /// Phase changes that wait for the job's lines to be acknowledged.
    fn advance(&mut self) {
        let Some(job) = self.job.as_mut() else {
            return;
        };
        match &job.phase {
            Phase::Printing if job.all_acked() && self.job_end_n.is_none() => {
                if !self.host.iter().any(|h| h.job_end) {
                    self.host.push_back(HostLine {
                        cmd: "M400".into(),
                        job_end: true,
                    });
                }
                job.phase = Phase::Finishing;
            }
            Phase::Pausing { reason } if job.drained() => {
                let reason = reason.clone();
                let job_id = job.id.clone();
                job.phase = Phase::Paused;
                let script: Vec<String> = self
                    .profile
                    .scripts
                    .pause
                    .iter()
                    .map(|l| job.position.fill(l))
                    .collect();
                self.queue_script(script);
                self.paused_by_host = true;
                self.state = Activity::Paused;
                self.emit(Event::JobPaused { job_id, reason });
            }
            Phase::Cancelling if job.drained() => self.finish_cancel(),
            _ => {}
        }
    }

    /// Ends the job with the exact material of its acknowledged lines.
    fn finish(&mut self, outcome: Outcome, reason: Option<String>) {
        if let Some(job) = self.job.take() {
            let s = self.streamer.stats();
            tracing::info!(
                job = %job.id, ?outcome, lines = job.acked_lines, seconds = job.elapsed_s(),
                resent = s.resent, rewinds = s.rewinds, "job ended"
            );
            self.emit(Event::JobFinished {
                job_id: job.id.clone(),
                outcome,
                reason,
                extruded_mm: job.extruded_mm(),
                duration_s: job.elapsed_s(),
            });
        }
        self.job_end_n = None;
        self.host.retain(|h| !h.job_end);
        if self.state != Activity::Error {
            self.state = Activity::Idle;
            self.message = None;
        }
    }

    fn fail_job(&mut self, reason: String) {
        if self.job.is_some() {
            self.finish(Outcome::Failed, Some(reason));
        }
    }

    /// Writes what the window allows: resends, host lines, job lines.
    async fn fill(&mut self) -> Result<(), String> {
        if self.end.is_some() {
            return Ok(());
        }
        self.out.clear();
        loop {
            if let Some((_, framed)) = self.streamer.poll_resend() {
                self.out.push_str(framed);
                continue;
            }
            if self.streamer.resending() || self.state == Activity::Error {
                break;
            }
            if let Some(h) = self.host.front() {
                if !self.streamer.can_send(&h.cmd) {
                    break;
                }
                let job_end = h.job_end;
                let (n, framed) = self.streamer.push(&h.cmd);
                self.out.push_str(framed);
                if job_end {
                    self.job_end_n = Some(n);
                }
                self.host.pop_front();
                continue;
            }
            let Some(job) = self.job.as_mut().filter(|j| j.phase == Phase::Printing) else {
                break;
            };
            let max = self.profile.framing.max_line_bytes;
            match job.peek() {
                Ok(Some(l)) => {
                    let len = self.streamer.framed_len(&l.cmd) - 1;
                    if len > max {
                        let reason = format!(
                            "line {} of the file is {len} bytes when framed, more than the {} \
                             accepts ({max}): shorten it (e.g. an M117 text) and upload again",
                            l.file_line, self.profile.display_name
                        );
                        self.fail_job(reason);
                        break;
                    }
                    if !self.streamer.can_send(&l.cmd) {
                        break;
                    }
                    let (n, framed) = self.streamer.push(&l.cmd);
                    self.out.push_str(framed);
                    job.sent(n);
                }
                Ok(None) => break,
                Err(e) => {
                    self.fail_job(format!("cannot read the job file: {e}"));
                    break;
                }
            }
        }
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let r = self.write_now(&out).await;
        self.out = out;
        r
    }

    async fn write_now(&mut self, s: &str) -> Result<(), String> {
        self.port.write_all(s.as_bytes()).await
    }

    fn snapshot_now(&self) -> Snapshot {
        Snapshot {
            state: self.state,
            temps: self.heaters.clone(),
            job: self.job.as_ref().map(Job::progress),
            message: self.message.clone(),
            trays: vec![],
        }
    }

    /// Refreshes the snapshot: at once when `force` or the state changed, else rate-limited.
    fn publish(&mut self, force: bool) {
        let now = Instant::now();
        let changed = {
            let cur = self.snapshot.borrow();
            cur.state != self.state
                || cur.message != self.message
                || cur.job.as_ref().map(|j| &j.job_id) != self.job.as_ref().map(|j| &j.id)
        };
        if force || changed || now.duration_since(self.published_at) >= SNAPSHOT_EVERY {
            self.published_at = now;
            self.snapshot.send_replace(self.snapshot_now());
        }
    }
}

mod control;

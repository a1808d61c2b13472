//! The simulated printer back end (`backend = "sim"`).
//!
//! It prints a G-code file at a realistic pace: every line goes through the shared
//! [`Machine`] model (the same one the analyzer uses, line by line with the same rules), so
//! move times, layers and filament are what a real printer would do, and a finished job
//! reports exactly `analyze(file).filament_mm`. Time is scaled by `speed`; lines are
//! processed in batches worth at least 20 ms of real time so a fast sim does not spin.
//! Heaters ramp toward their targets and `M109`/`M190` wait until within 1 °C.
//!
//! Failures for tests and demos: `fail_after_progress` (stays in `Error` until `SIM_RECOVER`
//! or `M999`), `fail_probability` (recovers by itself after [`AUTO_RECOVER`]), and the raw
//! G-code `SIM_FAIL <reason>`.

use crate::config::SimConfig;
use crate::printer::{Backend, Port, PrinterCommand, Reply, Snapshot};
use farm_protocol::gcode::machine::Heat;
use farm_protocol::gcode::{Content, LineSplitter};
use farm_protocol::gcode::{Machine, analyze_with, limits_from_tail, parse_line};
use farm_protocol::messages::{Activity, Event, Heater, JobProgress, Outcome};
use std::path::Path;
use std::time::Duration;
use tokio::fs::File;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

/// Smallest batch of simulated work (real seconds) before the sim sleeps.
const BATCH_S: f64 = 0.02;
/// At most this many lines per batch, so commands stay responsive at any speed.
const BATCH_LINES: usize = 4096;
/// Heater animation and heat-wait polling step while nothing else is due.
const IDLE_WAKE: Duration = Duration::from_millis(250);
/// Snapshots are refreshed at most this often unless the state changed.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(100);
/// A `fail_probability` failure clears itself after this long.
pub const AUTO_RECOVER: Duration = Duration::from_secs(4);
/// `M109`/`M190` are satisfied within this many °C.
const HEAT_TOLERANCE_C: f64 = 1.0;

/// The simulated printer; see the module docs.
pub struct Sim {
    config: SimConfig,
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        Self { config }
    }
}

impl Backend for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn run(self, port: Port) {
        let Port {
            mut commands,
            snapshot,
            events,
        } = port;
        let mut sim = SimPrinter::new(self.config, snapshot, events);
        sim.publish(true);
        loop {
            let now = Instant::now();
            sim.advance_heaters(now);
            let wake = sim.next_wake(now);
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => break,
                    Some((cmd, reply)) => {
                        let answer = sim.handle(cmd).await;
                        let _ = reply.send(answer);
                        sim.publish(true);
                    }
                },
                _ = tokio::time::sleep_until(wake) => {
                    sim.tick().await;
                    sim.publish(false);
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct HeaterState {
    actual: f64,
    target: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Wait {
    Tool(usize),
    Bed,
}

#[derive(Clone, Copy, Debug)]
struct Failure {
    at_progress: f64,
    auto_recover: bool,
}

struct PrintJob {
    job_id: String,
    reader: BufReader<File>,
    line: LineSplitter,
    /// End of file reached and the planner's last moves scheduled: the next tick completes.
    drained: bool,
    machine: Machine,
    file_pos: u64,
    file_size: u64,
    layer_count: u32,
    estimated_s: f64,
    /// Machine time of the lines done so far (unscaled).
    machine_s: f64,
    started: Instant,
    failure: Option<Failure>,
    heat_wait: Option<Wait>,
    next_step: Instant,
}

impl PrintJob {
    fn progress(&self) -> f64 {
        if self.file_size == 0 {
            1.0
        } else {
            self.file_pos as f64 / self.file_size as f64
        }
    }
}

struct SimPrinter {
    cfg: SimConfig,
    snapshot: tokio::sync::watch::Sender<Snapshot>,
    events: tokio::sync::mpsc::UnboundedSender<Event>,
    tools: Vec<HeaterState>,
    bed: HeaterState,
    state: Activity,
    message: Option<String>,
    job: Option<PrintJob>,
    recover_at: Option<Instant>,
    heat_clock: Instant,
    published_at: Instant,
}

/// Reads the next line with the analyzer's rules (the shared [`LineSplitter`]), so byte
/// offsets and filament agree with the analyzer exactly. `false` at end of file.
/// `M118`'s own flags (`A1` prefix `//`, `E1` prefix `echo:`, `Pn` port), not its text.
fn is_m118_flag(w: &str) -> bool {
    let mut c = w.chars();
    matches!(c.next(), Some('A' | 'E' | 'P')) && c.as_str().parse::<u8>().is_ok()
}

async fn read_line(r: &mut BufReader<File>, line: &mut LineSplitter) -> std::io::Result<bool> {
    line.clear();
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(line.pending());
        }
        let (take, eol) = line.feed(chunk);
        r.consume(take);
        if eol {
            return Ok(true);
        }
    }
}

impl SimPrinter {
    fn new(
        cfg: SimConfig,
        snapshot: tokio::sync::watch::Sender<Snapshot>,
        events: tokio::sync::mpsc::UnboundedSender<Event>,
    ) -> Self {
        let cold = HeaterState {
            actual: cfg.ambient_c,
            target: 0.0,
        };
        let now = Instant::now();
        Self {
            cfg,
            snapshot,
            events,
            tools: vec![cold],
            bed: cold,
            state: Activity::Idle,
            message: None,
            job: None,
            recover_at: None,
            heat_clock: now,
            published_at: now,
        }
    }

    fn emit(&self, event: Event) {
        // A closed channel means the agent is stopping; nothing left to tell.
        let _ = self.events.send(event);
    }

    fn effective(&self, h: HeaterState) -> f64 {
        h.target.max(self.cfg.ambient_c)
    }

    fn rate(&self, bed: bool) -> f64 {
        let r = self.cfg.heat_rate_c_per_s * self.cfg.speed;
        if bed { r / 4.0 } else { r }
    }

    fn advance_heaters(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.heat_clock).as_secs_f64();
        self.heat_clock = now;
        let (tool_step, bed_step) = (self.rate(false) * dt, self.rate(true) * dt);
        let ambient = self.cfg.ambient_c;
        let approach = |h: &mut HeaterState, step: f64| {
            let goal = h.target.max(ambient);
            let d = goal - h.actual;
            h.actual += d.clamp(-step, step);
        };
        for t in &mut self.tools {
            approach(t, tool_step);
        }
        approach(&mut self.bed, bed_step);
    }

    fn heater(&self, w: Wait) -> HeaterState {
        match w {
            Wait::Tool(i) => self.tools.get(i).copied().unwrap_or(self.bed),
            Wait::Bed => self.bed,
        }
    }

    fn reached(&self, w: Wait) -> bool {
        let h = self.heater(w);
        (h.actual - self.effective(h)).abs() <= HEAT_TOLERANCE_C
    }

    fn time_to_reach(&self, w: Wait) -> Duration {
        let h = self.heater(w);
        let gap = (h.actual - self.effective(h)).abs() - HEAT_TOLERANCE_C;
        Duration::from_secs_f64((gap.max(0.0) / self.rate(w == Wait::Bed)).min(3600.0))
    }

    fn apply_heat(&mut self, heat: Heat) -> Option<Wait> {
        match heat {
            Heat::Tool { tool, target, wait } => {
                if self.tools.len() <= tool {
                    let cold = HeaterState {
                        actual: self.cfg.ambient_c,
                        target: 0.0,
                    };
                    self.tools.resize(tool + 1, cold);
                }
                self.tools[tool].target = target.clamp(0.0, 500.0);
                wait.then_some(Wait::Tool(tool))
            }
            Heat::Bed { target, wait } => {
                self.bed.target = target.clamp(0.0, 200.0);
                wait.then_some(Wait::Bed)
            }
        }
    }

    fn heaters_off(&mut self) {
        for t in &mut self.tools {
            t.target = 0.0;
        }
        self.bed.target = 0.0;
    }

    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = now + IDLE_WAKE;
        if let Some(t) = self.recover_at {
            wake = wake.min(t);
        }
        if let (Activity::Printing, Some(job)) = (self.state, &self.job) {
            let step = match job.heat_wait {
                Some(w) => job.next_step.max(
                    now + self
                        .time_to_reach(w)
                        .clamp(Duration::from_millis(5), IDLE_WAKE),
                ),
                None => job.next_step,
            };
            wake = wake.min(step);
        }
        wake
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        if self.recover_at.is_some_and(|t| t <= now) {
            self.recover();
        }
        if self.state == Activity::Printing {
            self.step_job(now).await;
        }
    }

    /// Runs one batch of lines of the current job.
    async fn step_job(&mut self, now: Instant) {
        let Some(mut job) = self.job.take() else {
            return;
        };
        if now < job.next_step {
            self.job = Some(job);
            return;
        }
        if let Some(w) = job.heat_wait {
            if !self.reached(w) {
                self.job = Some(job);
                return;
            }
            job.heat_wait = None;
        }
        let mut owed_s = 0.0;
        let speed = self.cfg.speed;
        for _ in 0..BATCH_LINES {
            let read = read_line(&mut job.reader, &mut job.line).await;
            match read {
                Ok(true) => {}
                Ok(false) => {
                    // The planner holds the last moves back for look-ahead: run them out
                    // (paced like any other batch) before the print counts as done.
                    let rest = if job.drained {
                        0.0
                    } else {
                        job.machine.finish()
                    };
                    job.drained = true;
                    if rest > 0.0 {
                        job.machine_s += rest;
                        owed_s += rest / speed;
                        break;
                    }
                    self.job = Some(job);
                    self.finish(Outcome::Completed, None);
                    return;
                }
                Err(e) => {
                    self.job = Some(job);
                    self.fail(format!("cannot read the job file: {e}"), false);
                    return;
                }
            };
            job.file_pos += job.line.len();
            if let Content::Text(text) = job.line.content() {
                let step = job.machine.step(&parse_line(text));
                job.machine_s += step.duration_s;
                owed_s += step.duration_s / speed;
                if let Some(heat) = step.heat {
                    job.heat_wait = self.apply_heat(heat).or(job.heat_wait);
                }
            }
            if let Some(f) = job.failure
                && job.progress() >= f.at_progress
            {
                let tool = job.machine.tool();
                self.job = Some(job);
                self.fail(
                    format!("simulated thermal runaway on tool{tool}"),
                    f.auto_recover,
                );
                return;
            }
            if job.heat_wait.is_some() || owed_s >= BATCH_S {
                break;
            }
        }
        job.next_step = now + Duration::from_secs_f64(owed_s.min(3600.0));
        self.job = Some(job);
    }

    /// Ends the current job (if any) with the exact material so far; heaters cool down.
    fn finish(&mut self, outcome: Outcome, reason: Option<String>) {
        if let Some(job) = self.job.take() {
            self.emit(Event::JobFinished {
                job_id: job.job_id,
                outcome,
                reason,
                extruded_mm: job.machine.consumed_mm(),
                duration_s: job.started.elapsed().as_secs_f64(),
            });
        }
        self.heaters_off();
        self.state = Activity::Idle;
        self.message = None;
    }

    /// Fails the current job (if any) and enters `Error`.
    fn fail(&mut self, reason: String, auto_recover: bool) {
        self.finish(Outcome::Failed, Some(reason.clone()));
        self.state = Activity::Error;
        self.message = Some(reason.clone());
        self.emit(Event::PrinterError { message: reason });
        self.recover_at = auto_recover.then(|| Instant::now() + AUTO_RECOVER);
    }

    fn recover(&mut self) {
        self.recover_at = None;
        if self.state == Activity::Error {
            self.state = Activity::Idle;
            self.message = None;
            self.emit(Event::PrinterReady {});
        }
    }

    async fn handle(&mut self, cmd: PrinterCommand) -> Reply {
        match cmd {
            PrinterCommand::Start {
                job_id, name, path, ..
            } => self.start(job_id, &name, &path).await,
            PrinterCommand::Pause => match (&self.job, self.state) {
                (Some(job), Activity::Printing) => {
                    let job_id = job.job_id.clone();
                    self.state = Activity::Paused;
                    self.emit(Event::JobPaused {
                        job_id,
                        reason: None,
                    });
                    Ok("paused".into())
                }
                (Some(_), Activity::Paused) => Err("the job is already paused".into()),
                _ => Err("nothing is printing".into()),
            },
            PrinterCommand::Resume => match (&mut self.job, self.state) {
                (Some(job), Activity::Paused) => {
                    job.next_step = Instant::now();
                    let job_id = job.job_id.clone();
                    self.state = Activity::Printing;
                    self.emit(Event::JobResumed { job_id });
                    Ok("resumed".into())
                }
                (Some(_), _) => Err("the job is not paused".into()),
                _ => Err("nothing is printing".into()),
            },
            PrinterCommand::Cancel => {
                if self.job.is_none() {
                    return Err("no job to cancel".into());
                }
                self.finish(Outcome::Cancelled, None);
                Ok("cancelled".into())
            }
            PrinterCommand::EmergencyStop => {
                self.emergency_stop();
                Ok("emergency stop: heaters off, printer halted".into())
            }
            PrinterCommand::Gcode(lines) => {
                for line in &lines {
                    self.raw_line(line.trim());
                }
                Ok(format!("{} line(s) sent", lines.len()))
            }
            PrinterCommand::Reconfigure(config) => {
                self.cfg = config.sim;
                Ok("sim settings applied".into())
            }
        }
    }

    fn emergency_stop(&mut self) {
        self.fail("emergency stop".into(), false);
    }

    fn raw_line(&mut self, line: &str) {
        let word = line.split_whitespace().next().unwrap_or("");
        if word.eq_ignore_ascii_case("SIM_FAIL") {
            let reason = line[word.len()..].trim();
            let reason = if reason.is_empty() {
                "simulated failure"
            } else {
                reason
            };
            self.fail(reason.to_string(), false);
            return;
        }
        if word.eq_ignore_ascii_case("SIM_RECOVER") {
            self.recover();
            return;
        }
        if word.eq_ignore_ascii_case("M118") {
            // Marlin's "serial print": the host reads the text, so it is a firmware message.
            let text = line[word.len()..]
                .split_whitespace()
                .skip_while(|w| is_m118_flag(w))
                .collect::<Vec<_>>()
                .join(" ");
            if !text.is_empty() {
                self.emit(Event::FirmwareMessage { message: text });
            }
            return;
        }
        let parsed = parse_line(line.as_bytes());
        if parsed.is(b'M', 999) {
            self.recover();
        } else if parsed.is(b'M', 112) {
            self.emergency_stop();
        } else if let Some(heat) = Machine::default().step(&parsed).heat {
            // Heater commands work by hand too; waiting is the file's business only.
            self.apply_heat(heat);
        }
    }

    async fn start(&mut self, job_id: String, name: &str, path: &Path) -> Reply {
        match (self.state, &self.job) {
            (Activity::Idle, None) => {}
            (_, Some(job)) => return Err(format!("printer busy with job {}", job.job_id)),
            (Activity::Error, _) => {
                return Err(format!(
                    "printer is in error ({}); send M999 or SIM_RECOVER first",
                    self.message.as_deref().unwrap_or("unknown")
                ));
            }
            (other, _) => return Err(format!("printer is not ready ({other:?})")),
        }
        let p = path.to_path_buf();
        let (analysis, limits) = tokio::task::spawn_blocking(move || {
            let mut r = std::io::BufReader::new(std::fs::File::open(p)?);
            let limits = limits_from_tail(&mut r)?;
            Ok::<_, std::io::Error>((analyze_with(r, limits)?, limits))
        })
        .await
        .map_err(|e| format!("file analysis stopped: {e}"))?
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let file = File::open(path)
            .await
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;

        let tools = analysis.filament_mm.len().max(1);
        if self.tools.len() < tools {
            let cold = HeaterState {
                actual: self.cfg.ambient_c,
                target: 0.0,
            };
            self.tools.resize(tools, cold);
        }
        let failure = match self.cfg.fail_after_progress {
            Some(at) => Some(Failure {
                at_progress: at,
                auto_recover: false,
            }),
            None if self.cfg.fail_probability > 0.0
                && rand::random_bool(self.cfg.fail_probability) =>
            {
                Some(Failure {
                    at_progress: rand::random_range(0.05..0.95),
                    auto_recover: true,
                })
            }
            None => None,
        };
        let now = Instant::now();
        self.job = Some(PrintJob {
            job_id: job_id.clone(),
            reader: BufReader::with_capacity(64 * 1024, file),
            line: LineSplitter::default(),
            drained: false,
            machine: Machine::new(limits),
            file_pos: 0,
            file_size: analysis.bytes,
            layer_count: analysis.layers,
            estimated_s: analysis.estimated_s,
            machine_s: 0.0,
            started: now,
            failure,
            heat_wait: None,
            next_step: now,
        });
        self.state = Activity::Printing;
        self.message = None;
        self.emit(Event::job_started(job_id));
        Ok(format!("printing {name}"))
    }

    fn snapshot_now(&self) -> Snapshot {
        let round = |v: f64| (v * 10.0).round() / 10.0;
        let mut temps: Vec<Heater> = self
            .tools
            .iter()
            .enumerate()
            .map(|(i, h)| Heater {
                name: format!("tool{i}"),
                actual: round(h.actual),
                target: h.target,
            })
            .collect();
        temps.push(Heater {
            name: "bed".into(),
            actual: round(self.bed.actual),
            target: self.bed.target,
        });
        let job = self.job.as_ref().map(|j| JobProgress {
            job_id: j.job_id.clone(),
            progress: j.progress().min(1.0),
            file_pos: j.file_pos,
            file_size: j.file_size,
            layer: Some(j.machine.layers()),
            layer_count: Some(j.layer_count),
            elapsed_s: j.started.elapsed().as_secs_f64(),
            eta_s: Some((j.estimated_s - j.machine_s).max(0.0) / self.cfg.speed),
            extruded_mm: j.machine.consumed_mm(),
        });
        Snapshot {
            state: self.state,
            temps,
            job,
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
                || cur.job.as_ref().map(|j| &j.job_id) != self.job.as_ref().map(|j| &j.job_id)
        };
        if force || changed || now.duration_since(self.published_at) >= SNAPSHOT_EVERY {
            self.published_at = now;
            self.snapshot.send_replace(self.snapshot_now());
        }
    }
}

#[cfg(test)]
mod tests;

//! The imperative shell of the PrusaLink back end: one task that owns the HTTP client, the
//! poll timer and the job file, and feeds every status reading through the [`Tracker`].
//!
//! Connection life: `GET /api/version` (logged once per connection) → `GET /api/v1/status`
//! every `poll_interval_ms`. When PrusaLink cannot be reached or refuses the login, nothing
//! is polled: one `/api/version` per backoff step (1 s doubling to 15 s when unreachable; 5 s
//! doubling to 60 s for a refused login, which needs a person), with the reason in the status
//! message and one `printer_error` for the whole outage.

use super::PrusaLinkConfig;
use super::client::{Api, ApiError};
use super::state::{Effect, Reach, Tracker};
use super::wire::choose_storage;
use crate::octoprint::job_file::{JobFile, event_for, upload_name};
use crate::octoprint::task::{UNREACHABLE, retry_delay};
use crate::printer::{Port, PrinterCommand, Reply, Snapshot};
use farm_protocol::Backoff;
use farm_protocol::messages::{Activity, Event, Outcome};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The first bytes of a binary G-code (`.bgcode`) file.
const BGCODE_MAGIC: &[u8; 4] = b"GCDE";

pub(super) struct Shell {
    cfg: PrusaLinkConfig,
    api: Api,
    snapshot: watch::Sender<Snapshot>,
    events: mpsc::UnboundedSender<Event>,
    tracker: Tracker,
    file: Option<JobFile>,
    /// Status is polled (PrusaLink is up); otherwise the next try to connect is due.
    up: bool,
    next: Instant,
    backoff: Backoff,
    /// A status poll failed without an outage (a 500, an odd answer): logged once in a row.
    poll_failing: bool,
}

impl Shell {
    pub(super) async fn run(cfg: PrusaLinkConfig, port: Port) {
        let Port {
            mut commands,
            snapshot,
            events,
        } = port;
        let api = match Api::new(&cfg.url, cfg.credentials()) {
            Ok(api) => api,
            Err(e) => {
                snapshot.send_replace(Snapshot {
                    state: Activity::Error,
                    message: Some(e.to_string()),
                    ..Snapshot::default()
                });
                while let Some((_, reply)) = commands.recv().await {
                    let _ = reply.send(Err(e.to_string()));
                }
                return;
            }
        };
        let mut shell = Shell {
            cfg,
            api,
            snapshot,
            events,
            tracker: Tracker::new(),
            file: None,
            up: false,
            next: Instant::now(),
            // OctoPrint's schedule: the same kind of host (one HTTP server per printer, a key
            // or password a person must fix when refused).
            backoff: UNREACHABLE,
            poll_failing: false,
        };
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => break,
                    Some((cmd, reply)) => {
                        let answer = shell.handle(cmd).await;
                        let _ = reply.send(answer);
                    }
                },
                _ = tokio::time::sleep_until(shell.next) => shell.on_timer().await,
            }
            shell.publish().await;
        }
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.cfg.poll_interval_ms.into())
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
        let pos = self.tracker.job().map(|j| j.offset());
        let mm = match (pos, self.file.as_mut()) {
            (Some(p), Some(f)) => f.at(p).await,
            _ => vec![],
        };
        let mut snap = self.tracker.snapshot(mm, now);
        // PrusaLink's own time left (from the slicer's M73 lines) is finer than a percent of
        // the file; the analyzer's plan from the progress offset stands in when it has none.
        if let (Some(p), Some(f), Some(job)) = (pos, self.file.as_mut(), snap.job.as_mut())
            && job.eta_s.is_none()
        {
            job.eta_s = f.remaining(p).await;
        }
        self.snapshot.send_replace(snap);
    }

    /// PrusaLink cannot be used now: say why, stop polling, try again after a backoff step.
    async fn unavailable(&mut self, e: &ApiError) {
        let refused = matches!(e, ApiError::Refused { .. });
        let delay = retry_delay(&mut self.backoff, refused);
        tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "PrusaLink not available; retrying");
        let reach = if refused {
            Reach::Refused(e.to_string())
        } else {
            Reach::Unreachable(e.to_string())
        };
        let effects = self.tracker.set_reach(reach);
        self.apply(effects).await;
        self.up = false;
        self.next = Instant::now() + delay;
    }

    /// An error from a command: only a lost or refusing PrusaLink changes state.
    async fn note(&mut self, e: &ApiError) {
        if e.is_outage() {
            self.unavailable(e).await;
        }
    }

    async fn on_timer(&mut self) {
        if !self.up {
            match self.api.version().await {
                Ok(v) => {
                    tracing::info!(
                        url = self.api.base(),
                        version = v.describe(),
                        "PrusaLink reachable"
                    );
                    if v.refuses_put_upload() {
                        tracing::warn!(
                            "this PrusaLink says it cannot take uploads by PUT; job uploads will fail"
                        );
                    }
                    self.up = true;
                    let effects = self.tracker.set_reach(Reach::Up);
                    self.apply(effects).await;
                }
                Err(e) => return self.unavailable(&e).await,
            }
        }
        self.poll().await;
    }

    async fn poll(&mut self) {
        match self.api.status().await {
            Ok(obs) => {
                self.backoff.reset();
                self.poll_failing = false;
                let effects = self.tracker.observe(obs, Instant::now());
                self.apply(effects).await;
                self.next = Instant::now() + self.poll_interval();
            }
            Err(e) if e.is_outage() => self.unavailable(&e).await,
            Err(e) => {
                if !self.poll_failing {
                    tracing::warn!(error = %e, "PrusaLink status poll failed; still polling");
                }
                self.poll_failing = true;
                self.next = Instant::now() + self.poll_interval();
            }
        }
    }

    async fn handle(&mut self, cmd: PrinterCommand) -> Reply {
        match cmd {
            PrinterCommand::Start {
                job_id, name, path, ..
            } => self.start(&job_id, &name, &path).await,
            PrinterCommand::Pause => {
                let id = self.tracker.printer_job()?;
                if self.tracker.job().is_some_and(|j| j.paused) {
                    return Err("the job is already paused".into());
                }
                let r = self.api.pause(id).await;
                self.answer(r, "pause requested").await
            }
            PrinterCommand::Resume => {
                if let Some(why) = self.tracker.refuse_resume() {
                    return Err(why);
                }
                let id = self.tracker.printer_job()?;
                let r = self.api.resume(id).await;
                self.answer(r, "resume requested").await
            }
            PrinterCommand::Cancel => self.stop(Outcome::Cancelled, "cancelled").await,
            PrinterCommand::EmergencyStop => {
                // PrusaLink v1 has no emergency stop and takes no raw G-code: stop the print.
                self.stop(
                    Outcome::Failed,
                    "emergency stop: PrusaLink has no emergency stop, so the print was \
                     stopped (the printer parks and turns its heaters off)",
                )
                .await
            }
            PrinterCommand::Gcode(_) => Err(
                "PrusaLink's API takes no raw G-code; use the printer's screen or PrusaSlicer"
                    .into(),
            ),
            PrinterCommand::Reconfigure(config) => {
                self.reconfigure(config.prusalink.map(|c| *c)).await
            }
        }
    }

    /// A command's reply: a 409 says the printer's state did not allow it.
    async fn answer(&mut self, r: Result<(), ApiError>, done: &str) -> Reply {
        match r {
            Ok(()) => Ok(done.into()),
            Err(e) if e.is_conflict() || e.is_not_found() => Err(format!(
                "the printer's state does not allow this now ({e}); see its screen"
            )),
            Err(e) => {
                self.note(&e).await;
                Err(e.to_string())
            }
        }
    }

    /// Stops our print (`DELETE /api/v1/job/{id}`); the job ends when the printer says
    /// `STOPPED`. If PrusaLink has no such print any more, the job ends here with `outcome`.
    async fn stop(&mut self, outcome: Outcome, why: &str) -> Reply {
        if self.tracker.job().is_none() {
            return Err("no job to stop".into());
        }
        if self.tracker.printer_job().is_err() && self.up {
            // Just started: the printer's id for it may be one poll away.
            self.poll().await;
        }
        let id = match self.tracker.printer_job() {
            Ok(id) => id,
            Err(_) if self.tracker.job().is_none() => return Ok("the job had ended".into()),
            Err(why) => return Err(why),
        };
        match self.api.stop(id).await {
            Ok(()) => {
                self.tracker.stopping();
                if outcome == Outcome::Failed {
                    let effects = self.tracker.end_job(outcome, why, Instant::now());
                    self.apply(effects).await;
                }
                Ok(format!("{why}: stop requested"))
            }
            Err(e) if e.is_conflict() || e.is_not_found() => {
                let why = format!("{why}; PrusaLink had no print to stop ({e})");
                let effects = self.tracker.end_job(outcome, &why, Instant::now());
                self.apply(effects).await;
                Ok(why)
            }
            Err(e) => {
                self.note(&e).await;
                Err(e.to_string())
            }
        }
    }

    async fn start(&mut self, job_id: &str, name: &str, path: &Path) -> Reply {
        if let Some(why) = self.tracker.refuse_start() {
            return Err(why);
        }
        let binary = is_bgcode(path).await;
        let file = JobFile::open_with(path, self.cfg.base_limits()).await?;
        let mut upload = upload_name(job_id, &file.sha256);
        if binary {
            upload = format!("{}.bgcode", upload.trim_end_matches(".gcode"));
        }
        let size = file.size;
        self.tracker.begin(job_id, &upload, size, Instant::now());
        self.file = Some(file);
        match self.upload_and_print(&upload, path, size).await {
            Ok(storage) => {
                let effects = self.tracker.started(Instant::now());
                self.apply(effects).await;
                tracing::info!(
                    job = job_id,
                    storage,
                    file = upload,
                    "printing on PrusaLink"
                );
                Ok(format!(
                    "printing {name} on PrusaLink as {storage}/{upload}"
                ))
            }
            Err(e) => {
                self.tracker.abandon();
                self.file = None;
                Err(e)
            }
        }
    }

    /// Storage, upload, start; the storage's name on success.
    async fn upload_and_print(
        &mut self,
        upload: &str,
        path: &Path,
        size: u64,
    ) -> Result<String, String> {
        let result = async {
            // Read every time: a USB stick may have been put in or taken out. It also renews
            // a Digest nonce just before the long upload.
            let list = self.api.storage().await?;
            let storage = match choose_storage(&list, self.cfg.storage.as_deref()) {
                Ok(s) => s,
                Err(why) => return Ok(Err(why)),
            };
            self.api.upload(&storage, upload, path, size).await?;
            match self.api.print(&storage, upload).await {
                Ok(()) => Ok(Ok(storage)),
                Err(e) if e.is_conflict() => Ok(Err(format!(
                    "PrusaLink stored {storage}/{upload} but would not start it: the printer \
                     is busy or waits for someone ({e})"
                ))),
                Err(e) => Err(e),
            }
        }
        .await;
        match result {
            Ok(r) => r,
            Err(e) => {
                self.note(&e).await;
                Err(e.to_string())
            }
        }
    }

    async fn reconfigure(&mut self, config: Option<PrusaLinkConfig>) -> Reply {
        let Some(config) = config else {
            return Err("the reloaded config has no [printer.prusalink] section".into());
        };
        if config == self.cfg {
            return Ok("PrusaLink settings unchanged".into());
        }
        self.api = Api::new(&config.url, config.credentials()).map_err(|e| e.to_string())?;
        self.cfg = config;
        self.backoff.reset();
        self.up = false;
        self.next = Instant::now();
        Ok("PrusaLink settings applied; reconnecting".into())
    }
}

/// Whether the file is binary G-code (it starts with `GCDE`).
async fn is_bgcode(path: &Path) -> bool {
    let mut head = [0u8; 4];
    match tokio::fs::File::open(path).await {
        Ok(mut f) => f.read_exact(&mut head).await.is_ok() && &head == BGCODE_MAGIC,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_and_a_refused_login_waits_longer() {
        let secs = |refused: bool| {
            let mut b = UNREACHABLE;
            (0..7)
                .map(|_| retry_delay(&mut b, refused).as_secs())
                .collect::<Vec<_>>()
        };
        assert_eq!(secs(false), [1, 2, 4, 8, 15, 15, 15]);
        assert_eq!(secs(true), [5, 10, 20, 40, 60, 60, 60]);
    }

    #[tokio::test]
    async fn binary_gcode_is_told_by_its_magic() {
        let dir = tempfile::tempdir().expect("tmp");
        let (b, a) = (dir.path().join("b"), dir.path().join("a"));
        std::fs::write(&b, b"GCDE\x01\x00\x00\x00").expect("write");
        std::fs::write(&a, b"G28\nG1 X1\n").expect("write");
        assert!(is_bgcode(&b).await);
        assert!(!is_bgcode(&a).await);
        assert!(!is_bgcode(&dir.path().join("missing")).await);
    }
}

//! The session's answers to the agent's commands and to the printer's host actions: start,
//! host-side pause / resume / cancel with the profile's scripts, emergency stop, raw G-code.
//! A child of `session`, so it works on the session's own fields.

use super::Session;
use super::{End, HostLine};
use crate::printer::{PrinterCommand, Reply as CmdReply};
use crate::serial::job::{Job, Phase};
use crate::serial::reply::HostAction;
use farm_protocol::messages::{Activity, Event, Outcome};
use std::time::{Duration, Instant};

impl Session {
    pub(super) fn action(&mut self, a: HostAction<'_>) {
        match a {
            HostAction::Pause => {
                let _ = self.pause(Some("the printer asked to pause (//action:pause)".into()));
            }
            HostAction::Paused => {
                if let Some(job) = self.job.as_mut().filter(|j| j.phase == Phase::Printing) {
                    job.phase = Phase::Paused;
                    self.paused_by_host = false;
                    self.state = Activity::Paused;
                    let job_id = job.id.clone();
                    self.emit(Event::JobPaused {
                        job_id,
                        reason: Some("the printer paused itself (//action:paused)".into()),
                    });
                }
            }
            HostAction::Resume => {
                let _ = self.resume();
            }
            HostAction::Resumed => {
                if !self.paused_by_host {
                    let _ = self.resume();
                }
            }
            HostAction::Cancel => {
                let _ = self.cancel();
            }
            HostAction::Notification(t) => self.emit(Event::FirmwareMessage {
                message: t.to_string(),
            }),
            HostAction::PromptBegin(t) => self.prompt = Some((t.to_string(), vec![])),
            HostAction::PromptButton(b) => {
                if let Some((_, buttons)) = self.prompt.as_mut() {
                    buttons.push(b.to_string());
                }
            }
            HostAction::PromptShow => {
                if let Some((title, buttons)) = &self.prompt {
                    let choices: Vec<String> = buttons
                        .iter()
                        .enumerate()
                        .map(|(i, b)| format!("{i} = {b}"))
                        .collect();
                    let answer = self
                        .profile
                        .emergency
                        .prompt_response
                        .replace("{index}", "<n>");
                    self.emit(Event::FirmwareMessage {
                        message: format!(
                            "the printer asks: {title} [{}]; answer with raw G-code `{answer}`",
                            choices.join(", ")
                        ),
                    });
                }
            }
            HostAction::PromptEnd => self.prompt = None,
            other => tracing::debug!(?other, "host action ignored"),
        }
    }

    pub(super) fn queue_script(&mut self, lines: Vec<String>) {
        for l in lines {
            let cmd = crate::serial::framing::clean_line(&l).into_owned();
            if !cmd.is_empty() {
                self.host.push_back(HostLine {
                    cmd,
                    job_end: false,
                });
            }
        }
    }

    pub(super) fn finish_cancel(&mut self) {
        self.cancel_deadline = None;
        let script = self.profile.scripts.cancel.clone();
        self.queue_script(script);
        self.finish(Outcome::Cancelled, None);
    }

    pub(super) async fn command(&mut self, c: PrinterCommand) -> CmdReply {
        match c {
            PrinterCommand::Start {
                job_id, name, path, ..
            } => {
                if self.state == Activity::Error {
                    return Err(format!(
                        "the printer is in error ({}); send M999 to reconnect and reset it",
                        self.message.as_deref().unwrap_or("unknown")
                    ));
                }
                if let Some(j) = &self.job {
                    return Err(format!("printer busy with job {}", j.id));
                }
                let id = job_id.clone();
                let base = self.profile.motion.limits();
                let job = tokio::task::spawn_blocking(move || Job::open(id, &path, base))
                    .await
                    .map_err(|e| format!("file analysis stopped: {e}"))?
                    .map_err(|e| e.to_string())?;
                self.job = Some(job);
                self.paused_by_host = false;
                self.state = Activity::Printing;
                self.message = None;
                self.emit(Event::job_started(job_id));
                Ok(format!("printing {name} on {}", self.info.name))
            }
            PrinterCommand::Pause => self.pause(None),
            PrinterCommand::Resume => self.resume(),
            PrinterCommand::Cancel => self.cancel(),
            PrinterCommand::EmergencyStop => {
                let mut out = String::new();
                for l in &self.profile.emergency.stop {
                    out.push_str(l);
                    out.push('\n');
                }
                let sent = self.write_now(&out).await;
                self.fail_job("emergency stop".into());
                self.enter_error(
                    "emergency stop: the printer is halted; send M999 to reconnect".into(),
                );
                sent.map(|()| format!("{} sent", self.profile.emergency.stop.join(", ")))
            }
            PrinterCommand::Gcode(lines) => {
                let mut queued = 0;
                for l in &lines {
                    let cmd = crate::serial::framing::clean_line(l).into_owned();
                    let word = cmd
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    if word == "M112" {
                        return Box::pin(self.command(PrinterCommand::EmergencyStop)).await;
                    }
                    if self
                        .profile
                        .emergency
                        .recover
                        .iter()
                        .any(|r| r.eq_ignore_ascii_case(&cmd))
                        || (self.state == Activity::Error && word == "M999")
                    {
                        // A halted firmware needs a reset; reconnecting gives it one (DTR) and a
                        // fresh handshake.
                        let _ = self.write_now(&format!("{cmd}\n")).await;
                        self.end = Some(End::Reconnect(None));
                        return Ok("recovering: reconnecting to the printer".into());
                    }
                    if !cmd.is_empty() {
                        self.host.push_back(HostLine {
                            cmd,
                            job_end: false,
                        });
                        queued += 1;
                    }
                }
                if self.state == Activity::Error {
                    self.host.clear();
                    return Err("the printer is in error; send M999 first".into());
                }
                Ok(format!("{queued} line(s) queued"))
            }
            PrinterCommand::Reconfigure(p) => {
                match p.serial {
                    Some(s) if s != self.cfg => {
                        if self.job.is_some() {
                            return Err("new serial settings need a reconnect; finish or cancel the job first".into());
                        }
                        self.end = Some(End::Reconnect(Some(s)));
                        Ok("serial settings changed: reconnecting".into())
                    }
                    _ => Ok("serial settings unchanged".into()),
                }
            }
        }
    }

    pub(super) fn pause(&mut self, reason: Option<String>) -> CmdReply {
        let Some(job) = self.job.as_mut() else {
            return Err("nothing is printing".into());
        };
        match job.phase {
            Phase::Printing => {
                job.phase = Phase::Pausing { reason };
                Ok("pausing: the lines in flight finish, then the head parks".into())
            }
            Phase::Pausing { .. } | Phase::Paused => Err("the job is already paused".into()),
            Phase::Cancelling => Err("the job is being cancelled".into()),
            Phase::Finishing => Err("the job is finishing its last moves".into()),
        }
    }

    pub(super) fn resume(&mut self) -> CmdReply {
        let Some(job) = self.job.as_mut() else {
            return Err("nothing is printing".into());
        };
        if job.phase != Phase::Paused {
            return Err("the job is not paused".into());
        }
        let script: Vec<String> = if self.paused_by_host {
            self.profile
                .scripts
                .resume
                .iter()
                .map(|l| job.position.fill(l))
                .collect()
        } else {
            vec![]
        };
        job.phase = Phase::Printing;
        let job_id = job.id.clone();
        self.queue_script(script);
        self.state = Activity::Printing;
        self.emit(Event::JobResumed { job_id });
        Ok("resumed".into())
    }

    pub(super) fn cancel(&mut self) -> CmdReply {
        let Some(job) = self.job.as_mut() else {
            return Err("no job to cancel".into());
        };
        job.phase = Phase::Cancelling;
        // A heating wait at the head of the queue would hold the cancel for minutes.
        let waiting = self
            .streamer
            .oldest_pending()
            .and_then(|n| self.streamer.command_of(n))
            .is_some_and(|c| self.profile.timeouts.long_command_allowance(c).is_some());
        if waiting && !self.profile.emergency.break_wait.is_empty() {
            self.host.push_front(HostLine {
                cmd: self.profile.emergency.break_wait.clone(),
                job_end: false,
            });
        }
        self.cancel_deadline = Some(Instant::now() + Duration::from_secs(30));
        Ok("cancelling: the lines in flight finish, then the cancel script runs".into())
    }
}

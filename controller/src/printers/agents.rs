//! Writes that come from agents: status, presence, events, and the acks that answer them.

use crate::farm::{Applied, Farm, FarmError, Mirror, now};
use crate::inventory::writes::BookingWrite;
use crate::jobs::Job;
use crate::jobs::{self, Effect, JobState};
use crate::orders::follow_up::FollowUp;
use crate::printers::fleet::PrinterRecord;
use crate::store::{CommandRecord, Tx};
use farm_protocol::messages::{AckMessage, Event, Status};
use farm_protocol::{Channel, Envelope, PrinterId, seal};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

/// One presence line: a single change in plain words, held-back changes with their count
/// (`why` is empty for the sweep's report of held changes).
fn log_presence(
    printer: &str,
    online: bool,
    why: &str,
    line: crate::printers::fleet::PresenceLine,
) {
    let changes = line.changes;
    let counted = match line.since_last {
        Some(d) if changes > 1 || why.is_empty() => {
            let s = if changes == 1 { "" } else { "s" };
            format!(
                " ({changes} presence change{s} in the last {} s)",
                d.as_secs()
            )
        }
        _ => String::new(),
    };
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    };
    if online {
        tracing::info!(printer, changes, "printer back online{counted}");
    } else {
        tracing::warn!(printer, changes, "printer offline{why}{counted}");
    }
}

impl Farm {
    pub fn apply_status(&self, printer: &str, status: Status) {
        let mut m = self.lock();
        let Some(e) = m.printers.get_mut(printer) else {
            return;
        };
        e.live.online = true;
        e.live.last_seen = Some(now());
        let progress = status.job.as_ref().map(|j| (j.job_id.clone(), j.progress));
        e.live.status = Some(status);
        self.announce_printer(e);
        // Progress lives in the mirror only (it is telemetry); announce it in whole percents.
        if let Some((job_id, p)) = progress
            && let Some(n) = m.job_numbers.get(&job_id).copied()
            && let Some(j) = m.jobs.get(&n)
            && j.printer_id.as_deref() == Some(printer)
            && j.state.is_active()
        {
            let step = (p * 100.0).floor() != (j.progress * 100.0).floor();
            if let Some(j) = m.jobs.set_progress(n, p.clamp(0.0, 1.0))
                && step
            {
                self.announce_job(j);
            }
        }
    }

    pub fn apply_online(&self, printer: &str, online: bool) {
        let mut m = self.lock();
        let Some(e) = m.printers.get_mut(printer) else {
            return;
        };
        // The broker's own per-connection lines are off by default (see the controller's
        // `logging`), so a change of presence is logged here, in the farm's words, at most
        // once a minute per printer. A first appearance is the agent's `started` event,
        // logged with its version.
        let changed = match (e.live.online, online) {
            (false, true) => e.live.last_seen.is_some(),
            (true, false) => true,
            _ => false,
        };
        if changed && let Some(line) = e.live.presence_log.change(Instant::now()) {
            log_presence(
                printer,
                online,
                "its agent stopped or lost its connection to the broker",
                line,
            );
        }
        e.live.online = online;
        if online {
            e.live.last_seen = Some(now());
        }
        self.announce_printer(e);
    }

    /// Marks printers offline whose status stopped arriving (no last will reached us).
    pub fn sweep_stale(&self, older_than: time::Duration) {
        let cutoff = now() - older_than;
        let clock = Instant::now();
        let mut m = self.lock();
        for (printer, e) in m.printers.iter_mut() {
            if e.live.online && e.live.last_seen.is_some_and(|t| t < cutoff) {
                if let Some(line) = e.live.presence_log.change(clock) {
                    let why = format!("no status from its agent for {older_than}");
                    log_presence(printer, false, &why, line);
                }
                e.live.online = false;
                self.announce_printer(e);
            } else if let Some(line) = e.live.presence_log.flush(clock) {
                log_presence(printer, e.live.online, "", line);
            }
        }
    }

    /// Applies one event exactly once, in seq order (DESIGN §4), and waits until it is
    /// durable: one request to the writer, for threads that may block (tests, the bench).
    /// Ingest hands events over without waiting ([`Farm::submit_event`]); both are staged
    /// with [`Farm::decide_event`], [`Farm::write_event`] and [`Farm::finish_event`].
    pub fn apply_event(
        &self,
        printer: &str,
        seq: u64,
        event: &Event,
    ) -> Result<Applied, FarmError> {
        let (printer, event) = (printer.to_string(), event.clone());
        self.write_blocking(
            move |farm, s| match farm.decide_event(s.m, &printer, seq, &event)? {
                Decided::Done(a) => Ok(a),
                Decided::Apply(mut step) => {
                    s.put(|m, tx| farm.write_event(m, tx, &mut step));
                    Ok(farm.finish_event(s.m, *step))
                }
            },
        )
    }

    /// What an event does: nothing (a replay or a gap) or a [`Step`] to write. Reads the
    /// mirror (and a command's record); writes nothing.
    pub(crate) fn decide_event(
        &self,
        m: &Mirror,
        printer: &str,
        seq: u64,
        event: &Event,
    ) -> Result<Decided, FarmError> {
        let have = m.applied.get(printer).copied().unwrap_or(0);
        if seq <= have {
            self.metrics.events_replayed.fetch_add(1, Relaxed);
            return Ok(Decided::Done(Applied::Replay(have)));
        }
        if seq != have + 1 {
            self.metrics.events_out_of_order.fetch_add(1, Relaxed);
            return Ok(Decided::Done(Applied::Gap { have }));
        }
        let entry = m
            .printers
            .get(printer)
            .ok_or_else(|| FarmError::NoPrinter(printer.into()))?;
        let mut rec = entry.rec.clone();
        let t = now();
        let job_number = event.job_id().and_then(|id| m.job_numbers.get(id).copied());
        let mut job = job_number.and_then(|n| m.jobs.get(&n).cloned());
        let mut command: Option<CommandRecord> = None;
        let mut refused = None;

        match event {
            Event::CommandResult {
                command_id,
                ok,
                message,
            } => {
                if let Some(mut c) = self.store.command(command_id)? {
                    c.result = Some((*ok, message.clone()));
                    if !ok
                        && c.kind == "assign_job"
                        && let Some(n) = c.job_id.as_ref().and_then(|id| m.job_numbers.get(id))
                        && let Some(mut j) = m.jobs.get(n).cloned()
                        && j.assign_command_id.as_deref() == Some(command_id.as_str())
                    {
                        jobs::unassign(&mut j, &format!("printer {printer} refused it: {message}"));
                        if rec.current_job.as_deref() == Some(j.id.as_str()) {
                            rec.current_job = None;
                        }
                        job = Some(j);
                    }
                    command = Some(c);
                }
            }
            ev if ev.job_id().is_some() => match job.as_mut() {
                Some(j) => match jobs::apply(j, printer, ev, t) {
                    Ok(Effect::Finished { outcome, printed }) => {
                        if rec.current_job.as_deref() == Some(j.id.as_str()) {
                            rec.current_job = None;
                        }
                        if printed && !rec.auto_eject {
                            rec.awaiting_clear = true;
                        }
                        tracing::info!(job = %j.id, printer, ?outcome, reason = ?j.failure_reason, "job finished");
                    }
                    Ok(Effect::Changed) => {}
                    Err(r) => refused = Some(r.to_string()),
                },
                None => refused = Some(format!("unknown job {:?}", ev.job_id())),
            },
            Event::PrinterError { message } => tracing::warn!(printer, %message, "printer error"),
            Event::FirmwareMessage { message } => tracing::info!(printer, %message, "firmware"),
            Event::AgentStarted { version, backend } => {
                tracing::info!(printer, %version, %backend, "agent started")
            }
            _ => {}
        }

        // Inventory: book the job's new cumulative material to the loaded spools, in this
        // same transaction as the seq mark, so it happens exactly once (DESIGN §4).
        let booking = job
            .as_ref()
            .and_then(|j| crate::inventory::writes::plan_booking(m, j, printer, seq, t));

        Ok(Decided::Apply(Box::new(Step {
            printer: printer.to_string(),
            seq,
            t,
            rec_changed: rec != entry.rec,
            rec,
            job,
            command,
            refused,
            booking,
            firmware: match event {
                Event::FirmwareMessage { message } => Some(message.clone()),
                _ => None,
            },
            follow: Default::default(),
        })))
    }

    /// Writes a decided event's rows, its `(printer, seq)` mark among them, into `tx`.
    pub(crate) fn write_event(
        &self,
        m: &Mirror,
        tx: &mut Tx<'_>,
        step: &mut Step,
    ) -> Result<(), FarmError> {
        if let Some(b) = step.booking.as_mut() {
            crate::inventory::writes::write_booking(tx, b)?;
        }
        if let Some(j) = step.job.as_mut() {
            step.follow = self.follow_job(m, tx, j, step.t)?;
        }
        if let Some(j) = &step.job {
            tx.put_job(j)?;
        }
        if let Some(c) = &step.command {
            tx.put_command(c)?;
        }
        if step.rec_changed {
            tx.put_printer(&step.rec)?;
        }
        tx.set_applied_seq(&step.printer, step.seq)?;
        Ok(())
    }

    /// Applies a written event to the mirror and announces it.
    pub(crate) fn finish_event(&self, m: &mut Mirror, step: Step) -> Applied {
        let Step {
            printer,
            seq,
            t,
            rec,
            job,
            refused,
            booking,
            firmware,
            follow,
            ..
        } = step;
        let printer = printer.as_str();
        m.applied.insert(printer.to_string(), seq);
        if let Some(b) = booking {
            crate::inventory::writes::commit_booking(m, b);
        }
        if let Some(r) = refused {
            self.metrics.events_refused.fetch_add(1, Relaxed);
            tracing::debug!(printer, seq, "event recorded without effect: {r}");
        }
        if let Some(j) = job {
            self.announce_job(&j);
            if j.state == JobState::Queued {
                self.kick.notify_one();
            }
            m.jobs.insert(j.number, j);
        }
        // After the job itself, so the stream shows a failure before its retry.
        self.after_follow_up(m, follow);
        if let Some(e) = m.printers.get_mut(printer) {
            e.rec = rec;
            if let Some(message) = &firmware {
                e.live.note(t, message);
            }
            self.announce_printer(e);
        }
        self.metrics.events_applied.fetch_add(1, Relaxed);
        Applied::Applied(seq)
    }

    /// Tells an agent which events are applied, so it can forget them.
    pub fn ack(&self, printer: &str, applied_seq: u64) {
        let Some(secret) = self.secret(printer) else {
            return;
        };
        let Ok(pid) = PrinterId::new(printer) else {
            return;
        };
        if let Ok(p) = seal(
            &Envelope::new(pid, AckMessage::Ack { applied_seq }),
            secret.as_bytes(),
        ) {
            self.send(printer, Channel::Acks, p);
        }
    }
}

/// What [`Farm::decide_event`] found an event does.
pub(crate) enum Decided {
    /// Nothing to write: a replay or a gap, answered with the applied seq.
    Done(Applied),
    Apply(Box<Step>),
}

/// One event's decided changes: the rows to write, then the mirror's update.
pub(crate) struct Step {
    printer: String,
    seq: u64,
    t: time::OffsetDateTime,
    rec: PrinterRecord,
    rec_changed: bool,
    job: Option<Job>,
    command: Option<CommandRecord>,
    refused: Option<String>,
    booking: Option<BookingWrite>,
    firmware: Option<String>,
    follow: FollowUp,
}

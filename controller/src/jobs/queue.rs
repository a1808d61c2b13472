//! Writes that come from operators and the scheduler: queueing and cancelling jobs, bed clear,
//! commands, and placing queued jobs on idle printers.

use crate::auth::random_hex;
use crate::farm::{Farm, FarmError, Mirror, clean_name, now};
use crate::jobs::{self, Job, JobState, Needs};
use crate::printers::fleet::{PrinterState, PrinterView};
use crate::store::CommandRecord;
use farm_protocol::messages::{Body, Command, JobAssignment};
use farm_protocol::{Channel, Envelope, PrinterId, seal};

impl Farm {
    /// Queues `copies` jobs for a stored file (not a `.gcode.3mf` with several plates).
    pub fn add_jobs(
        &self,
        name: &str,
        stored: &crate::catalog::files::Stored,
        copies: u32,
        priority: i32,
    ) -> Result<Vec<Job>, FarmError> {
        self.add_jobs_needing(name, stored, None, copies, priority, &Needs::default())
    }

    /// [`Farm::add_jobs`] for jobs that only a printer with `needs` loaded may print; for a
    /// `.gcode.3mf`, of `plate` (which may be left out if it has one plate) with its figures.
    pub fn add_jobs_needing(
        &self,
        name: &str,
        stored: &crate::catalog::files::Stored,
        plate: Option<u32>,
        copies: u32,
        priority: i32,
        needs: &Needs,
    ) -> Result<Vec<Job>, FarmError> {
        let name = clean_name(name)?;
        let (plate, analysis) = stored.plate(plate).map_err(FarmError::Invalid)?;
        if !(1..=1000).contains(&copies) {
            return Err(FarmError::Invalid(
                "copies must be between 1 and 1000".into(),
            ));
        }
        let mut m = self.lock();
        let t = now();
        let meta = crate::orders::follow_up::file_meta(&name, stored);
        let jobs = self.store.write(|tx| {
            tx.put_file_meta(&meta)?;
            let mut out = vec![];
            for _ in 0..copies {
                let number = tx.next_job_number()?;
                let mut j = Job::new(number, name.clone(), stored.sha256.clone(), stored.size, t);
                j.priority = priority;
                j.material.clone_from(&needs.material);
                j.colour.clone_from(&needs.colour);
                j.filament_mm = analysis.filament_mm.clone();
                j.estimated_s = analysis.estimated_s;
                j.size_mm = crate::orders::follow_up::extent(analysis);
                j.plate = plate;
                tx.put_job(&j)?;
                out.push(j);
            }
            Ok::<_, FarmError>(out)
        })?;
        m.book.files.insert(meta.sha256.clone(), meta);
        for j in &jobs {
            self.mirror_new_job(&mut m, j.clone());
        }
        self.kick.notify_one();
        Ok(jobs)
    }

    /// Cancels a job: directly if queued, by command if it is on a printer.
    pub fn cancel_job(&self, id: &str) -> Result<Job, FarmError> {
        let job = self.job(id).ok_or_else(|| FarmError::NoJob(id.into()))?;
        if job.state.is_active() {
            let printer = job.printer_id.clone().unwrap_or_default();
            self.send_command(&printer, Command::Cancel { job_id: id.into() })?;
            return Ok(job);
        }
        let mut m = self.lock();
        let n = *m
            .job_numbers
            .get(id)
            .ok_or_else(|| FarmError::NoJob(id.into()))?;
        let mut j = m
            .jobs
            .get(&n)
            .cloned()
            .ok_or_else(|| FarmError::NoJob(id.into()))?;
        jobs::cancel_queued(&mut j, now()).map_err(|e| FarmError::Conflict(e.to_string()))?;
        let mirror = &*m;
        let follow = self.store.write(|tx| {
            let follow = self.follow_job(mirror, tx, &mut j, now())?;
            tx.put_job(&j)?;
            Ok::<_, FarmError>(follow)
        })?;
        self.announce_job(&j);
        m.jobs.insert(n, j.clone());
        self.after_follow_up(&mut m, follow);
        Ok(j)
    }

    /// The operator confirms the bed is empty.
    pub fn clear_bed(&self, printer: &str) -> Result<PrinterView, FarmError> {
        let mut m = self.lock();
        let e = m
            .printers
            .get_mut(printer)
            .ok_or_else(|| FarmError::NoPrinter(printer.into()))?;
        if !e.rec.awaiting_clear {
            return Err(FarmError::Conflict(format!(
                "printer {printer} is not waiting for its bed to be cleared"
            )));
        }
        let mut rec = e.rec.clone();
        rec.awaiting_clear = false;
        self.store.write(|tx| tx.put_printer(&rec))?;
        e.rec = rec;
        self.announce_printer(e);
        self.kick.notify_one();
        Ok(e.view.clone())
    }

    /// Records and sends a command; returns its id. The result arrives later as an event.
    pub fn send_command(&self, printer: &str, command: Command) -> Result<String, FarmError> {
        let secret = self
            .secret(printer)
            .ok_or_else(|| FarmError::NoPrinter(printer.into()))?;
        let pid = PrinterId::new(printer).map_err(|e| FarmError::Invalid(e.to_string()))?;
        let id = format!("c-{}", random_hex(8));
        let env = Envelope::new(pid, command).with_command_id(id.clone());
        let kind = serde_json::to_value(&env)
            .ok()
            .and_then(|v| v["kind"].as_str().map(str::to_string))
            .unwrap_or_default();
        let job_id = match &env.body {
            Command::AssignJob(a) => Some(a.job_id.clone()),
            Command::Pause { job_id } | Command::Resume { job_id } | Command::Cancel { job_id } => {
                Some(job_id.clone())
            }
            _ => None,
        };
        let payload =
            seal(&env, secret.as_bytes()).map_err(|e| FarmError::Invalid(e.to_string()))?;
        let rec = CommandRecord {
            id: id.clone(),
            printer_id: printer.into(),
            kind: kind.clone(),
            job_id,
            sent_at: now(),
            result: None,
        };
        self.store.write(|tx| tx.put_command(&rec))?;
        self.send(printer, Channel::Commands, payload);
        self.metrics.commands_sent.inc(
            Command::KINDS
                .iter()
                .find(|k| **k == kind)
                .copied()
                .unwrap_or("other"),
        );
        Ok(id)
    }

    /// The assignment of `j` to `printer`: its file, its material and colour, and the changer
    /// trays of the printer that hold them (the agent maps the job onto them).
    fn assignment(&self, m: &Mirror, j: &Job, printer: &str) -> JobAssignment {
        let trays = m
            .printers
            .get(printer)
            .map(|e| {
                let spools = m.stock.loaded_spools(printer);
                let p = crate::jobs::scheduler::PrinterInput {
                    id: printer.into(),
                    state: e.view.state,
                    blocked: false,
                    auto_eject: e.rec.auto_eject,
                    build_volume_mm: None,
                    tools: vec![],
                    trays: crate::inventory::loadout::changer(
                        e.live.status.as_ref().map_or(&[][..], |s| &s.trays),
                        &spools,
                    ),
                    busy_remaining_s: 0.0,
                };
                crate::jobs::scheduler::matching_trays(&p, &crate::jobs::production::job_input(j))
            })
            .unwrap_or_default();
        JobAssignment {
            job_id: j.id.clone(),
            name: j.name.clone(),
            url: format!("{}/api/v1/files/{}", self.public_url, j.sha256),
            sha256: j.sha256.clone(),
            size: j.size,
            material: j.material.clone(),
            colour: j.colour.clone(),
            trays,
            plate: j.plate,
        }
    }

    /// Runs the scheduler once and starts what it places. Returns how many jobs started.
    pub fn schedule(&self) -> Result<usize, FarmError> {
        // Copy the input out under the lock, plan without it (writes go on meanwhile), then
        // re-check each start under the lock below.
        let (input, numbers, version) = {
            let m = self.lock();
            let v = self
                .production
                .queue_version
                .load(std::sync::atomic::Ordering::SeqCst);
            (self.plan_input(&m), m.jobs.queued_numbers(), v)
        };
        let t0 = std::time::Instant::now();
        let mut plan = crate::jobs::scheduler::plan(&input, now());
        let took = t0.elapsed();
        let starts = std::mem::take(&mut plan.starts);
        self.remember_plan(plan, numbers, version, took.as_micros() as u64);
        let mut started = 0;
        for s in starts {
            let mut m = self.lock();
            let (Some(n), Some(e)) = (
                m.job_numbers.get(&*s.job_id).copied(),
                m.printers.get(s.printer_id.as_str()),
            ) else {
                continue;
            };
            // Re-check under the lock: the farm may have moved since planning.
            let Some(mut j) = m.jobs.get(&n).cloned() else {
                continue;
            };
            if j.state != JobState::Queued || e.view.state != PrinterState::Idle {
                continue;
            }
            let mut rec = e.rec.clone();
            let secret = rec.secret.clone();
            let command_id = format!("c-{}", random_hex(8));
            jobs::assign(&mut j, &rec.id, command_id.clone(), now());
            rec.current_job = Some(j.id.clone());
            let assignment = self.assignment(&m, &j, &rec.id);
            let pid =
                PrinterId::new(rec.id.as_str()).map_err(|e| FarmError::Invalid(e.to_string()))?;
            let env = Envelope::new(pid, Command::AssignJob(assignment))
                .with_command_id(command_id.clone());
            let payload =
                seal(&env, secret.as_bytes()).map_err(|e| FarmError::Invalid(e.to_string()))?;
            let crec = CommandRecord {
                id: command_id,
                printer_id: rec.id.clone(),
                kind: "assign_job".into(),
                job_id: Some(j.id.clone()),
                sent_at: now(),
                result: None,
            };
            let mirror = &*m;
            let follow = self.store.write(|tx| {
                let follow = self.follow_job(mirror, tx, &mut j, now())?;
                tx.put_job(&j)?;
                tx.put_printer(&rec)?;
                tx.put_command(&crec)?;
                Ok::<_, FarmError>(follow)
            })?;
            self.send(&rec.id, Channel::Commands, payload);
            self.metrics.commands_sent.inc("assign_job");
            tracing::info!(job = %j.id, printer = %rec.id, "job assigned");
            self.announce_job(&j);
            m.jobs.insert(n, j);
            self.after_follow_up(&mut m, follow);
            if let Some(e) = m.printers.get_mut(&rec.id) {
                e.rec = rec;
                self.announce_printer(e);
            }
            started += 1;
        }
        Ok(started)
    }

    /// Resends assignments that no agent has taken up yet (lost while a link was down, or
    /// sent before a controller restart). The command id is unchanged, so an agent that did
    /// receive it runs it once.
    pub fn resend_assignments(&self, older_than: time::Duration) {
        let cutoff = now() - older_than;
        let pending: Vec<(Job, String, JobAssignment)> = {
            let m = self.lock();
            m.jobs
                .values()
                .filter(|j| {
                    j.state == JobState::Assigned && j.assigned_at.is_some_and(|t| t < cutoff)
                })
                .filter_map(|j| {
                    let printer = j.printer_id.as_deref()?;
                    let p = m.printers.get(printer)?;
                    p.live.online.then(|| {
                        (
                            j.clone(),
                            p.rec.secret.clone(),
                            self.assignment(&m, j, printer),
                        )
                    })
                })
                .collect()
        };
        for (j, secret, assignment) in pending {
            let (Some(printer), Some(cid)) = (j.printer_id.clone(), j.assign_command_id.clone())
            else {
                continue;
            };
            let Ok(pid) = PrinterId::new(printer.as_str()) else {
                continue;
            };
            let env = Envelope::new(pid, Command::AssignJob(assignment)).with_command_id(cid);
            if let Ok(p) = seal(&env, secret.as_bytes()) {
                tracing::debug!(job = %j.id, %printer, "resending assignment");
                self.send(&printer, Channel::Commands, p);
            }
        }
    }
}

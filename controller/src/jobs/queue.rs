//! Writes that come from operators and the scheduler: queueing and cancelling jobs, bed clear,
//! commands, and placing queued jobs on idle printers.

use crate::auth::random_hex;
use crate::farm::writer::Staging;
use crate::farm::{Farm, FarmError, Mirror, clean_name, now};
use crate::jobs::{self, Job, JobState, Needs};
use crate::printers::fleet::PrinterRecord;
use crate::printers::fleet::{PrinterState, PrinterView};
use crate::store::CommandRecord;
use farm_protocol::messages::{Body, Command, JobAssignment};
use farm_protocol::{Channel, Envelope, PrinterId, seal};

impl Farm {
    /// Queues `copies` jobs for a stored file (not a `.gcode.3mf` with several plates).
    pub async fn add_jobs(
        &self,
        name: &str,
        stored: &crate::catalog::files::Stored,
        copies: u32,
        priority: i32,
    ) -> Result<Vec<Job>, FarmError> {
        self.add_jobs_needing(name, stored, None, copies, priority, &Needs::default())
            .await
    }

    /// [`Farm::add_jobs`] for jobs that only a printer with `needs` loaded may print; for a
    /// `.gcode.3mf`, of `plate` (which may be left out if it has one plate) with its figures.
    pub async fn add_jobs_needing(
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
        let t = now();
        let meta = crate::orders::follow_up::file_meta(&name, stored);
        let (sha256, size) = (stored.sha256.clone(), stored.size);
        let (filament_mm, estimated_s) = (analysis.filament_mm.clone(), analysis.estimated_s);
        let size_mm = crate::orders::follow_up::extent(analysis);
        let needs = needs.clone();
        self.write(move |farm, s| {
            let jobs = s.put(|_, tx| {
                tx.put_file_meta(&meta)?;
                let mut out = vec![];
                for _ in 0..copies {
                    let number = tx.next_job_number()?;
                    let mut j = Job::new(number, name.clone(), sha256.clone(), size, t);
                    j.priority = priority;
                    j.material.clone_from(&needs.material);
                    j.colour.clone_from(&needs.colour);
                    j.filament_mm = filament_mm.clone();
                    j.estimated_s = estimated_s;
                    j.size_mm = size_mm;
                    j.plate = plate;
                    tx.put_job(&j)?;
                    out.push(j);
                }
                Ok::<_, FarmError>(out)
            });
            s.m.book.files.insert(meta.sha256.clone(), meta);
            for j in &jobs {
                farm.mirror_new_job(s.m, j.clone());
            }
            farm.kick.notify_one();
            Ok(jobs)
        })
        .await
    }

    /// Cancels a job: directly if queued, by command if it is on a printer.
    pub async fn cancel_job(&self, id: &str) -> Result<Job, FarmError> {
        let id = id.to_string();
        self.write(move |farm, s| farm.stage_cancel(s, &id)).await
    }

    fn stage_cancel(&self, s: &mut Staging<'_>, id: &str) -> Result<Job, FarmError> {
        let job =
            s.m.job_numbers
                .get(id)
                .and_then(|n| s.m.jobs.get(n))
                .ok_or_else(|| FarmError::NoJob(id.into()))?;
        let mut j = match jobs::actions::decide_cancel(job, now()) {
            jobs::actions::Cancel::OnPrinter(printer) => {
                let job = job.clone();
                self.stage_command(s, &printer, Command::Cancel { job_id: id.into() })?;
                return Ok(job);
            }
            jobs::actions::Cancel::Refused(why) => return Err(FarmError::Conflict(why)),
            jobs::actions::Cancel::Queued(j) => *j,
        };
        let follow = s.put(|m, tx| {
            let follow = self.follow_job(m, tx, &mut j, now())?;
            tx.put_job(&j)?;
            Ok::<_, FarmError>(follow)
        });
        self.announce_job(&j);
        s.m.jobs.insert(j.number, j.clone());
        self.after_follow_up(s.m, follow);
        Ok(j)
    }

    /// The operator confirms the bed is empty.
    pub async fn clear_bed(&self, printer: &str) -> Result<PrinterView, FarmError> {
        let printer = printer.to_string();
        self.write(move |farm, s| {
            let e =
                s.m.printers
                    .get_mut(&printer)
                    .ok_or_else(|| FarmError::NoPrinter(printer.clone()))?;
            let rec =
                crate::printers::registry::decide_bed_clear(&e.rec).map_err(FarmError::Conflict)?;
            s.put(|_, tx| tx.put_printer(&rec));
            let e = s.m.printers.get_mut(&printer).expect("checked above");
            e.rec = rec;
            farm.announce_printer(e);
            farm.kick.notify_one();
            Ok(e.view.clone())
        })
        .await
    }

    /// Records and sends a command; returns its id. The result arrives later as an event.
    pub async fn send_command(&self, printer: &str, command: Command) -> Result<String, FarmError> {
        let printer = printer.to_string();
        self.write(move |farm, s| farm.stage_command(s, &printer, command))
            .await
    }

    /// Records a command in the batch and queues it for the agent (sent after the commit).
    pub(crate) fn stage_command(
        &self,
        s: &mut Staging<'_>,
        printer: &str,
        command: Command,
    ) -> Result<String, FarmError> {
        let secret =
            s.m.printers
                .get(printer)
                .map(|e| e.rec.secret.clone())
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
        s.put(|_, tx| tx.put_command(&rec));
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
    /// The plan runs on a blocking thread; the starts are one request to the writer.
    pub async fn schedule(self: &std::sync::Arc<Self>) -> Result<usize, FarmError> {
        let f = self.clone();
        let starts = tokio::task::spawn_blocking(move || f.plan_starts())
            .await
            .map_err(|e| FarmError::Invalid(format!("the planner failed: {e}")))?;
        if starts.is_empty() {
            return Ok(0);
        }
        self.write(move |farm, s| Ok(farm.stage_starts(s, starts)))
            .await
    }

    /// Plans the farm as it is and keeps the plan; returns the starts it wants now.
    /// Copies the input out under the lock and plans without it (writes go on meanwhile);
    /// each start is re-checked when it is staged ([`Farm::stage_starts`]).
    pub(crate) fn plan_starts(&self) -> Vec<crate::jobs::scheduler::Start> {
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
        starts
    }

    /// Stages the planned starts the farm still allows: job assigned, printer busy, the
    /// signed assignment sent after the commit. Returns how many started.
    fn stage_starts(
        &self,
        s: &mut Staging<'_>,
        starts: Vec<crate::jobs::scheduler::Start>,
    ) -> usize {
        let mut started = 0;
        for st in starts {
            let Some((mut j, mut rec)) = decide_start(s.m, &st.job_id, st.printer_id.as_str())
            else {
                continue;
            };
            let command_id = format!("c-{}", random_hex(8));
            jobs::assign(&mut j, &rec.id, command_id.clone(), now());
            rec.current_job = Some(j.id.clone());
            let assignment = self.assignment(s.m, &j, &rec.id);
            let Ok(pid) = PrinterId::new(rec.id.as_str()) else {
                continue;
            };
            let env = Envelope::new(pid, Command::AssignJob(assignment))
                .with_command_id(command_id.clone());
            let Ok(payload) = seal(&env, rec.secret.as_bytes()) else {
                continue;
            };
            let crec = CommandRecord {
                id: command_id,
                printer_id: rec.id.clone(),
                kind: "assign_job".into(),
                job_id: Some(j.id.clone()),
                sent_at: now(),
                result: None,
            };
            let follow = s.put(|m, tx| {
                let follow = self.follow_job(m, tx, &mut j, now())?;
                tx.put_job(&j)?;
                tx.put_printer(&rec)?;
                tx.put_command(&crec)?;
                Ok::<_, FarmError>(follow)
            });
            self.send(&rec.id, Channel::Commands, payload);
            self.metrics.commands_sent.inc("assign_job");
            tracing::info!(job = %j.id, printer = %rec.id, "job assigned");
            self.announce_job(&j);
            s.m.jobs.insert(j.number, j);
            self.after_follow_up(s.m, follow);
            if let Some(e) = s.m.printers.get_mut(&rec.id) {
                e.rec = rec;
                self.announce_printer(e);
            }
            started += 1;
        }
        started
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

/// Whether a planned start still holds on the farm as it is now: the job still queued, the
/// printer still idle. The job and printer record to change, or `None` (pure).
pub(crate) fn decide_start(
    m: &Mirror,
    job_id: &str,
    printer: &str,
) -> Option<(Job, PrinterRecord)> {
    let n = m.job_numbers.get(job_id)?;
    let j = m.jobs.get(n)?;
    let e = m.printers.get(printer)?;
    (j.state == JobState::Queued && e.view.state == PrinterState::Idle)
        .then(|| (j.clone(), e.rec.clone()))
}

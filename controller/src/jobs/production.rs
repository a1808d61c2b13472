//! The production side of the farm: settings, the scheduler's input and its latest plan,
//! learnt time corrections, operators' queue actions.

use crate::catalog::FileMeta;
use crate::farm::{Farm, FarmError, Mirror, now};
use crate::jobs::learning::Corrections;
use crate::jobs::scheduler::{JobInput, Plan, PlanInput, PrinterInput, Rules, Slot, Waiting};
use crate::jobs::{self, Job, JobState};
use smol_str::SmolStr;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Order and scheduling settings (from the config's `[orders]`, `[scheduler]`, `[webhooks]`).
#[derive(Debug, Clone)]
pub struct Settings {
    pub manual_release: bool,
    pub max_attempts: u32,
    pub rules: Rules,
    /// Shops with a webhook endpoint: only their orders write deliveries.
    pub webhook_shops: HashSet<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            manual_release: false,
            max_attempts: 3,
            rules: Rules::default(),
            webhook_shops: HashSet::new(),
        }
    }
}

/// The latest plan, indexed for order views. It keeps the plan's own lists (moved, not
/// copied) and one index of job id → place in them.
#[derive(Debug, Default)]
pub struct PlanCache {
    pub version: u64,
    timeline: Vec<Slot>,
    waiting: Vec<Waiting>,
    /// The planned jobs' numbers, ascending (the plan input's order).
    numbers: Vec<u64>,
    /// Per planned job, as `numbers`: `Ok(i)`: `timeline[i]`; `Err(i)`: `waiting[i]`. Built
    /// for every plan of the whole queue, so it is two arrays and no hashing.
    at: Vec<Result<u32, u32>>,
    pub planned_jobs: usize,
    pub took_us: u64,
}

impl PlanCache {
    /// `numbers[k]` is the number of the plan input's job `k`.
    fn new(plan: Plan, numbers: Vec<u64>, version: u64, took_us: u64) -> Self {
        let mut at = vec![Err(u32::MAX); numbers.len()];
        for (i, s) in plan.timeline.iter().enumerate() {
            if let Some(a) = at.get_mut(s.index as usize) {
                *a = Ok(i as u32);
            }
        }
        for (i, w) in plan.waiting.iter().enumerate() {
            if let Some(a) = at.get_mut(w.index as usize) {
                *a = Err(i as u32);
            }
        }
        PlanCache {
            version,
            planned_jobs: plan.timeline.len() + plan.waiting.len(),
            timeline: plan.timeline,
            waiting: plan.waiting,
            numbers,
            at,
            took_us,
        }
    }

    fn place(&self, job_number: u64) -> Option<Result<u32, u32>> {
        let k = self.numbers.binary_search(&job_number).ok()?;
        self.at.get(k).copied()
    }

    /// Where and when queued job number `job_number` prints, if the plan placed it.
    pub fn slot(&self, job_number: u64) -> Option<&Slot> {
        self.timeline.get(self.place(job_number)?.ok()? as usize)
    }

    /// Why queued job number `job_number` waits, if the plan could not place it.
    pub fn waiting(&self, job_number: u64) -> Option<&str> {
        let i = self.place(job_number)?.err()?;
        self.waiting.get(i as usize).map(|w| &*w.reason)
    }

    pub fn slots(&self) -> &[Slot] {
        &self.timeline
    }

    pub fn waitings(&self) -> &[Waiting] {
        &self.waiting
    }
}

/// Production state that is not in the mirror (derived, or configuration).
pub struct Production {
    settings: Mutex<Arc<Settings>>,
    plan: Mutex<Arc<PlanCache>>,
    /// Bumped by order intake; a plan records the version it saw.
    pub queue_version: AtomicU64,
    pub plan_done: watch::Sender<u64>,
    pub corrections: Mutex<Corrections>,
}

impl Production {
    pub fn new(corrections: Corrections) -> Self {
        Self {
            settings: Mutex::new(Arc::new(Settings::default())),
            plan: Mutex::new(Arc::new(PlanCache::default())),
            queue_version: AtomicU64::new(0),
            plan_done: watch::channel(0).0,
            corrections: Mutex::new(corrections),
        }
    }

    pub fn settings(&self) -> Arc<Settings> {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_settings(&self, s: Settings) {
        *self.settings.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(s);
    }

    pub fn plan(&self) -> Arc<PlanCache> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn corrections(&self) -> Corrections {
        self.corrections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Learns from every completed job in the store, oldest finish first.
pub fn learn(jobs: &std::collections::BTreeMap<u64, Job>) -> Corrections {
    let mut done: Vec<&Job> = jobs
        .values()
        .filter(|j| j.state == JobState::Completed)
        .collect();
    done.sort_by_key(|j| j.finished_at);
    let mut c = Corrections::default();
    for j in done {
        observe(&mut c, j);
    }
    c
}

fn observe(c: &mut Corrections, j: &Job) {
    if let (Some(p), Some(s), Some(f)) = (&j.printer_id, j.started_at, j.finished_at) {
        c.observe(
            p,
            j.material.as_deref().unwrap_or(""),
            j.estimated_s,
            (f - s).as_seconds_f64(),
        );
    }
}

/// A queued job as the scheduler sees it.
pub(crate) fn job_input(j: &Job) -> JobInput {
    let material = j.material.as_deref().unwrap_or("PLA");
    JobInput {
        id: j.id.as_str().into(),
        priority: j.priority,
        due: j.due,
        position: j.queue_position(),
        material: j.material.as_deref().map(SmolStr::new),
        colour: j.colour.as_deref().map(SmolStr::new),
        nozzle_mm: j.nozzle_mm,
        size_mm: j.size_mm,
        grams: j
            .filament_mm
            .iter()
            .map(|mm| crate::inventory::loadout::grams(*mm, material))
            .collect(),
        estimated_s: j.estimated_s,
        pinned: j.pinned_printer.as_deref().map(SmolStr::new),
        hold: j.hold.as_deref().map(SmolStr::new),
    }
}

pub use crate::jobs::actions::QueuePatch;

impl Farm {
    // ---- the scheduler's input --------------------------------------------------------------

    pub(crate) fn scheduler_printers(&self, m: &Mirror) -> Vec<PrinterInput> {
        let corrections = self.production.corrections();
        let due_blocking = crate::maintenance::writes::blocked_printers(m);
        m.printers
            .values()
            .map(|e| {
                let current = e
                    .rec
                    .current_job
                    .as_ref()
                    .and_then(|id| m.job_numbers.get(id))
                    .and_then(|n| m.jobs.get(n));
                let busy_remaining_s = current.map_or(0.0, |j| {
                    let f = corrections.factor(&e.rec.id, j.material.as_deref().unwrap_or(""));
                    j.estimated_s * f * (1.0 - j.progress.clamp(0.0, 1.0))
                });
                let spools = m.stock.loaded_spools(&e.rec.id);
                PrinterInput {
                    id: e.rec.id.clone(),
                    state: e.view.state,
                    blocked: crate::inventory::loadout::blocked(
                        &e.rec,
                        due_blocking.contains(&e.rec.id),
                    ),
                    auto_eject: e.rec.auto_eject,
                    build_volume_mm: e.rec.build_volume_mm,
                    tools: crate::inventory::loadout::tools(&e.rec, &spools),
                    trays: crate::inventory::loadout::changer(
                        e.live.status.as_ref().map_or(&[][..], |s| &s.trays),
                        &spools,
                    ),
                    busy_remaining_s,
                }
            })
            .collect()
    }

    pub(crate) fn job_input_for(&self, f: &FileMeta, item: &crate::orders::Item) -> JobInput {
        let mut j = Job::new(0, f.name.clone(), f.sha256.clone(), f.size, now());
        j.filament_mm = f.filament_mm.clone();
        j.size_mm = f.size_mm;
        j.material = item.material.clone();
        j.colour = item.colour.clone();
        j.nozzle_mm = item.nozzle_mm;
        job_input(&j)
    }

    /// Everything the scheduler needs, taken under the lock (queued jobs are shared, not copied).
    pub(crate) fn plan_input(&self, m: &Mirror) -> PlanInput {
        let settings = self.production.settings();
        let t = now();
        let heat = time::Duration::seconds_f64(settings.rules.heat_s);
        PlanInput {
            printers: self.scheduler_printers(m),
            jobs: m.jobs.queued(),
            heating_since: m
                .jobs
                .active()
                .filter_map(|j| j.assigned_at)
                .filter(|a| t - *a < heat)
                .collect(),
            rules: settings.rules.clone(),
            corrections: self.production.corrections(),
        }
    }

    /// Keeps the latest plan for order views and tells intake waiting for it.
    pub(crate) fn remember_plan(&self, plan: Plan, numbers: Vec<u64>, version: u64, took_us: u64) {
        let cache = Arc::new(PlanCache::new(plan, numbers, version, took_us));
        let old = std::mem::replace(
            &mut *self
                .production
                .plan
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
            cache,
        );
        self.production.plan_done.send_replace(version);
        // Freed after intake is told, not before.
        drop(old);
    }

    /// When `copies` copies of `probe` would be done if they were queued now: the real planner
    /// on the farm as it is, with the copies behind every queued job of their rank. `None`
    /// when no printer could take them (nothing matches, or nothing can work).
    pub fn promise(&self, probe: &JobInput, copies: u32) -> Option<time::OffsetDateTime> {
        let mut input = {
            let m = self.lock();
            self.plan_input(&m)
        };
        let last = input.jobs.iter().map(|j| j.position).max().unwrap_or(0);
        // Ids no real job can have (job ids are `job-N`).
        let ids: Vec<SmolStr> = (0..copies)
            .map(|i| smol_str::format_smolstr!("promise-{i}"))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let mut j = probe.clone();
            j.id = id.clone();
            j.position = last + 1 + i as i64;
            j.pinned = None;
            j.hold = None;
            input.jobs.push(j);
        }
        let plan = crate::jobs::scheduler::plan(&input, now());
        let ends: HashMap<&str, time::OffsetDateTime> =
            plan.timeline.iter().map(|s| (&*s.job_id, s.end)).collect();
        ids.iter()
            .map(|id| ends.get(&**id).copied())
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }

    /// The latest timeline (`GET /api/v1/queue`, order ETAs).
    pub fn timeline(&self) -> Arc<PlanCache> {
        self.production.plan()
    }

    /// Learns from a job that just completed.
    pub(crate) fn learn_from(&self, j: &Job) {
        if j.state == JobState::Completed {
            observe(
                &mut self
                    .production
                    .corrections
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
                j,
            );
        }
    }

    pub fn time_factor(&self, printer: &str, material: &str) -> f64 {
        self.production.corrections().factor(printer, material)
    }

    // ---- operators' queue actions -----------------------------------------------------------

    /// Reorders, pins, holds or re-prioritises a queued job.
    pub async fn update_queued(&self, id: &str, p: QueuePatch) -> Result<Job, FarmError> {
        let id = id.to_string();
        self.write(move |farm, s| {
            let m = &*s.m;
            let job = m
                .job_numbers
                .get(&id)
                .and_then(|n| m.jobs.get(n))
                .ok_or_else(|| FarmError::NoJob(id.clone()))?;
            let j = crate::jobs::actions::decide_queue_patch(
                job,
                p,
                |pin| m.printers.contains_key(pin),
                |before| m.job_numbers.get(before).and_then(|n| m.jobs.get(n)),
            )?;
            s.put(|_, tx| tx.put_job(&j));
            farm.announce_job(&j);
            s.m.jobs.insert(j.number, j.clone());
            farm.kick.notify_one();
            Ok(j)
        })
        .await
    }

    /// Queues a failed or cancelled job again as a new attempt (whatever the attempt limit).
    pub async fn requeue(&self, id: &str) -> Result<Job, FarmError> {
        let id = id.to_string();
        self.write(move |farm, s| {
            let t = now();
            let m = &*s.m;
            let mut j = m
                .job_numbers
                .get(&id)
                .and_then(|n| m.jobs.get(n))
                .cloned()
                .ok_or_else(|| FarmError::NoJob(id.clone()))?;
            let order_final = j
                .order
                .as_ref()
                .and_then(|r| m.book.numbers.get(&r.order_id))
                .and_then(|n| m.book.orders.get(n))
                .filter(|o| o.state.is_final())
                .map(|o| (o.id.as_str(), o.state.as_str()));
            crate::jobs::actions::decide_requeue(&j, order_final)?;
            let retry = s.put(|_, tx| {
                let r = jobs::retry(&mut j, tx.next_job_number()?, t);
                tx.put_job(&j)?;
                tx.put_job(&r)?;
                Ok::<_, FarmError>(r)
            });
            farm.announce_job(&j);
            s.m.jobs.insert(j.number, j);
            farm.mirror_new_job(s.m, retry.clone());
            farm.kick.notify_one();
            Ok(retry)
        })
        .await
    }
}

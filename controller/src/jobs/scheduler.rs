//! Placing queued jobs on printers: a pure function of the farm's state (DESIGN §6).
//!
//! [`plan`] answers two questions at once: which queued jobs start **now** and where, and when
//! every other queued job is expected to start and end (the **timeline**, which drives the
//! queue API's timeline and the completion times the order API promises).
//!
//! Hard constraints ([`fits`]): the printer is online, idle and its bed clear (for a start now),
//! not blocked by maintenance, the loaded material, colour and nozzle match what the job asks,
//! the job's bounding box fits the build volume, and the loaded spool holds the job's filament
//! plus a margin. Queue order: held jobs wait; then priority (high first), due date (earliest
//! first), then queue position (age, or where an operator moved the job).
//!
//! Soft preferences: among printers that fit equally early, a job takes the one that other
//! queued jobs need least — so a job that can print anywhere does not occupy the only printer
//! with PETG loaded while PETG work waits, and nobody has to swap a spool to serve it. Power:
//! at most `max_heating` printers heat up at once; starts are spaced `heat_s / max_heating`
//! apart, which guarantees no more than `max_heating` heat-ups overlap. Beds of printers
//! without auto-eject are cleared only inside working hours, which the timeline respects.
//! Print time is the analyzer's estimate times a correction learnt per printer and material
//! ([`crate::jobs::learning`]).

use crate::jobs::learning::Corrections;
use crate::printers::fleet::PrinterState;
use rustc_hash::FxHashMap;
use smallvec::SmallVec;
use smol_str::SmolStr;
use std::sync::Arc;
use time::OffsetDateTime;

/// What is loaded on one tool (part B's inventory fills this from its spools; until then the
/// operator's declaration does, see `inventory/loadout.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub material: String,
    pub colour: String,
    /// Filament left on the spool, g. `None`: unknown, so no quantity check.
    pub remaining_g: Option<f64>,
}

/// One tool (extruder) of a printer, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tool {
    pub nozzle_mm: Option<f64>,
    pub loaded: Option<Loaded>,
}

/// One slot of a filament changer (Bambu's AMS) that can feed any of a job's filaments.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangerSlot {
    /// The printer's id for the slot (Bambu's absolute tray id), sent back in the assignment.
    pub slot: u32,
    /// The inventory spool's material, colour and grams when the tray is matched to one; else
    /// the tray's own material and colour, grams unknown.
    pub loaded: Loaded,
    /// The colour the printer reports (`#RRGGBB`), also accepted for a job's colour.
    pub reported_colour: Option<String>,
}

/// One printer, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterInput {
    pub id: String,
    pub state: PrinterState,
    /// Blocking maintenance is due (part B); the printer takes no work.
    pub blocked: bool,
    /// Clears its own bed: no operator, no working hours.
    pub auto_eject: bool,
    pub build_volume_mm: Option<[f64; 3]>,
    pub tools: Vec<Tool>,
    /// A filament changer's loaded slots: when there are any, each of a job's filaments may
    /// come from any of them (the agent maps them), so they replace the per-tool check.
    pub trays: Vec<ChangerSlot>,
    /// For a busy or paused printer: estimated seconds until its current job ends.
    pub busy_remaining_s: f64,
}

/// One queued job, as the scheduler sees it.
///
/// Strings and grams are stored inline (`SmolStr` up to 23 bytes, up to 4 tools), so a job is
/// one block of memory: a plan reads 30,000 of them, and every separate allocation it had to
/// follow was a cache miss (they were most of a plan's time).
#[derive(Debug, Clone, PartialEq)]
pub struct JobInput {
    /// Copied into the plan's output without touching any other memory.
    pub id: SmolStr,
    pub priority: i32,
    pub due: Option<OffsetDateTime>,
    /// Queue position: job number (age) unless an operator moved the job.
    pub position: i64,
    pub material: Option<SmolStr>,
    pub colour: Option<SmolStr>,
    pub nozzle_mm: Option<f64>,
    /// Extent of the printed part (max − min of the analyzer's bounds), mm.
    pub size_mm: Option<[f64; 3]>,
    /// Filament per tool, g.
    pub grams: SmallVec<[f64; 4]>,
    /// The analyzer's estimate, s (heat-up included).
    pub estimated_s: f64,
    /// Only this printer may take it.
    pub pinned: Option<SmolStr>,
    /// Why it is held out of the schedule (an operator, an order awaiting release): not
    /// placed, and this is its waiting reason.
    pub hold: Option<SmolStr>,
}

/// Farm-wide scheduling rules (from the `[scheduler]` config section).
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Filament margin on top of the job's own, g and fraction of the job.
    pub margin_g: f64,
    pub margin_fraction: f64,
    /// At most this many printers heating at once; `None`: no power budget.
    pub max_heating: Option<u32>,
    /// How long a heat-up lasts, s.
    pub heat_s: f64,
    /// Operators clear beds only inside these hours (UTC); `None`: any time.
    pub working_hours: Option<WorkingHours>,
    /// How long an operator takes to clear a bed once there, s.
    pub clear_s: f64,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            // The same as `[inventory] spool_margin_*`'s defaults, which the farm runs with.
            margin_g: 10.0,
            margin_fraction: 0.05,
            max_heating: None,
            heat_s: 300.0,
            working_hours: None,
            clear_s: 300.0,
        }
    }
}

/// Daily hours, minutes after midnight UTC, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkingHours {
    pub start_min: u16,
    pub end_min: u16,
}

impl WorkingHours {
    /// Parses `"08:00-18:00"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("working hours {s:?} must look like \"08:00-18:00\" (UTC, start before end)")
        };
        let hm = |t: &str| -> Option<u16> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m) = (h.parse::<u16>().ok()?, m.parse::<u16>().ok()?);
            (h <= 24 && m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let (start_min, end_min) = (hm(a).ok_or_else(bad)?, hm(b).ok_or_else(bad)?);
        if start_min >= end_min {
            return Err(bad());
        }
        Ok(Self { start_min, end_min })
    }

    /// The first moment at or after `t` inside working hours.
    pub fn next_open(self, t: OffsetDateTime) -> OffsetDateTime {
        let t = t.to_offset(time::UtcOffset::UTC);
        let minute = u16::from(t.hour()) * 60 + u16::from(t.minute());
        let midnight = t.replace_time(time::Time::MIDNIGHT);
        let open = midnight + time::Duration::minutes(i64::from(self.start_min));
        if minute < self.start_min {
            open
        } else if minute < self.end_min {
            t
        } else {
            open + time::Duration::days(1)
        }
    }
}

/// The queued jobs, in chunks of jobs stored side by side and shared (copy-on-write) with the
/// farm's mirror: taking a plan's input copies one pointer per chunk, not one per job, and a
/// plan reads the queue as sequential memory instead of chasing a pointer per job.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    chunks: Vec<Arc<Vec<JobInput>>>,
}

impl Queue {
    /// A queue made of shared chunks, in order.
    pub fn from_chunks(chunks: Vec<Arc<Vec<JobInput>>>) -> Self {
        Queue { chunks }
    }

    pub fn iter(&self) -> impl Iterator<Item = &JobInput> {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(|c| c.is_empty())
    }

    /// Appends a job (to a copy of the last chunk if that chunk is shared).
    pub fn push(&mut self, j: JobInput) {
        match self.chunks.last_mut() {
            Some(last) => Arc::make_mut(last).push(j),
            None => self.chunks.push(Arc::new(vec![j])),
        }
    }
}

impl FromIterator<JobInput> for Queue {
    fn from_iter<I: IntoIterator<Item = JobInput>>(jobs: I) -> Self {
        Queue {
            chunks: vec![Arc::new(jobs.into_iter().collect())],
        }
    }
}

/// Everything [`plan`] looks at.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    pub printers: Vec<PrinterInput>,
    /// Shared with the farm's queue, so building the input copies no job.
    pub jobs: Queue,
    /// When the heat-ups still under way began (recent starts), for the power budget.
    pub heating_since: Vec<OffsetDateTime>,
    pub rules: Rules,
    pub corrections: Corrections,
}

/// Start `job_id` on `printer_id` now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub job_id: SmolStr,
    pub printer_id: SmolStr,
}

/// Where and when a queued job is expected to print.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    pub job_id: SmolStr,
    /// Where the job is in [`PlanInput::jobs`], so a caller can index the plan by its own
    /// facts about the queue without hashing ids.
    pub index: u32,
    pub printer_id: SmolStr,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// A queued job no printer can take, and why (for the operator and the shop).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub job_id: SmolStr,
    /// Where the job is in [`PlanInput::jobs`].
    pub index: u32,
    /// Shared between the jobs that wait for the same reason.
    pub reason: Arc<str>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub starts: Vec<Start>,
    pub timeline: Vec<Slot>,
    pub waiting: Vec<Waiting>,
}

fn secs(s: f64) -> time::Duration {
    time::Duration::seconds_f64(if s.is_finite() {
        s.clamp(0.0, 1e9)
    } else {
        0.0
    })
}

/// When an operator has cleared the bed after a print that ended at `end`.
fn after_clear(end: OffsetDateTime, auto_eject: bool, rules: &Rules) -> OffsetDateTime {
    if auto_eject {
        return end;
    }
    let open = rules.working_hours.map_or(end, |w| w.next_open(end));
    open + secs(rules.clear_s)
}

/// When a printer can begin its next job, or `None` if it takes no work at all.
pub fn available_at(
    p: &PrinterInput,
    now: OffsetDateTime,
    rules: &Rules,
) -> Option<OffsetDateTime> {
    if p.blocked {
        return None;
    }
    match p.state {
        PrinterState::Idle => Some(now),
        PrinterState::Busy | PrinterState::Paused => Some(after_clear(
            now + secs(p.busy_remaining_s),
            p.auto_eject,
            rules,
        )),
        PrinterState::AwaitingClear => Some(after_clear(now, false, rules)),
        PrinterState::Offline | PrinterState::Error | PrinterState::Maintenance => None,
    }
}

/// Spacing of starts under the power budget, s (0: no budget).
fn start_gap(rules: &Rules) -> i64 {
    match rules.max_heating {
        Some(k) if k > 0 => (rules.heat_s / f64::from(k)).ceil() as i64,
        Some(_) => i64::MAX / 4,
        None => 0,
    }
}

/// Start slots under the power budget: slot `k` starts at `now + k·gap`, one start per slot,
/// so starts are at least `gap` apart. "Next free slot" is a union-find, so placing thousands
/// of jobs stays near-linear even when every slot up to the far future is taken.
struct PowerSlots {
    now: i64,
    gap: i64,
    /// Slot → a later slot to look at (path-compressed); absent: free.
    next: FxHashMap<i64, i64>,
}

impl PowerSlots {
    fn new(now: i64, gap: i64, heating_since: &[i64]) -> Self {
        let mut s = PowerSlots {
            now,
            gap,
            next: FxHashMap::default(),
        };
        if gap > 0 {
            // A heat-up that began at `h` keeps every slot within `gap` of it.
            for h in heating_since {
                let mut k = 0;
                while now + k * gap - h < gap {
                    s.next.insert(k, k + 1);
                    k += 1;
                }
            }
        }
        s
    }

    fn find(&mut self, k: i64) -> i64 {
        let mut root = k;
        while let Some(n) = self.next.get(&root) {
            root = *n;
        }
        let mut k = k;
        while let Some(n) = self.next.get(&k).copied() {
            if n == root {
                break;
            }
            self.next.insert(k, root);
            k = n;
        }
        root
    }

    /// Takes the first free start at or after `t` (unix s) and returns it.
    fn take(&mut self, t: i64) -> i64 {
        if self.gap == 0 {
            return t;
        }
        let k0 = ((t - self.now).max(0) + self.gap - 1) / self.gap;
        let k = self.find(k0);
        self.next.insert(k, k + 1);
        self.now + k * self.gap
    }
}

/// Where a job stands in queue order — priority (high first), due date (earliest first, none
/// last), position, then input order — as plain numbers, so sorting the queue reads no job.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct QueueKey {
    priority: std::cmp::Reverse<i32>,
    /// Unix ns; no due date sorts last.
    due: i128,
    position: i64,
    index: u32,
}

impl QueueKey {
    fn of(j: &JobInput, index: usize) -> Self {
        QueueKey {
            priority: std::cmp::Reverse(j.priority),
            due: j.due.map_or(i128::MAX, |d| d.unix_timestamp_nanos()),
            position: j.position,
            index: index as u32,
        }
    }
}

/// What the placing loop needs of a job that it may not place: read in the first pass, so a
/// job that waits is never read again.
struct Prep<'a> {
    job: &'a JobInput,
    id: SmolStr,
    /// Index into the class lists; `HELD` for held jobs.
    class: u32,
    /// Its class as spelt (`NO_RAW`: not memoised), for waiting reasons; for a held job,
    /// its hold's index in the plan's shared hold reasons.
    raw: u32,
    size_mm: Option<[f64; 3]>,
}

const HELD: u32 = u32::MAX;

/// Plans the farm at `now`: starts now, the timeline of every queued job, and what waits.
///
/// Two passes: the first reads every job once, in input order (its queue key, class and
/// what a waiting reason needs); the second walks the sorted keys and reads a job again only
/// to place it. A queue of 30,000 jobs is megabytes, far more than a core's cache, so how
/// often and in what order a plan reads the jobs is most of its time.
pub fn plan(input: &PlanInput, now: OffsetDateTime) -> Plan {
    let rules = &input.rules;
    let printers = &input.printers;

    // Candidate printers per class of job (static constraints only, computed once per class).
    let queued = input.jobs.len();
    let mut keys: Vec<QueueKey> = Vec::with_capacity(queued);
    let mut prep: Vec<Prep> = Vec::with_capacity(queued);
    let mut class_lists: Vec<Vec<usize>> = vec![];
    let mut class_ids: FxHashMap<Class, usize> = FxHashMap::default();
    let mut raw_ids: Memo<RawClass<'_>, (usize, u32)> = Memo::default();
    // Holds have a handful of spellings: one shared reason each.
    let mut holds: Vec<Arc<str>> = vec![];
    for (k, j) in input.jobs.iter().enumerate() {
        keys.push(QueueKey::of(j, k));
        let (class, raw) = if let Some(h) = &j.hold {
            let i = match holds.iter().position(|r| **r == **h) {
                Some(i) => i,
                None => {
                    holds.push(Arc::from(h.as_str()));
                    holds.len() - 1
                }
            };
            (HELD, i as u32)
        } else {
            let raw = raw_class(j);
            match raw.tools.is_some().then(|| raw_ids.get(&raw)).flatten() {
                Some((id, r)) => (id as u32, r),
                None => {
                    let key = class_of(j);
                    let id = match class_ids.get(&key) {
                        Some(id) => *id,
                        None => {
                            let list: Vec<usize> = (0..printers.len())
                                .filter(|&i| fits_class(&printers[i], j).is_ok())
                                .collect();
                            class_lists.push(list);
                            class_ids.insert(key, class_lists.len() - 1);
                            class_lists.len() - 1
                        }
                    };
                    let r = if raw.tools.is_some() {
                        let r = raw_ids.len() as u32;
                        raw_ids.insert(raw, (id, r));
                        r
                    } else {
                        NO_RAW
                    };
                    (id as u32, r)
                }
            }
        };
        prep.push(Prep {
            job: j,
            id: j.id.clone(),
            class,
            raw,
            size_mm: j.size_mm,
        });
    }
    // The farm keeps its queue in job order, so this is mostly one sorted run (near-linear).
    keys.sort_unstable();

    // How many queued jobs could use each printer: the soft preference keeps busy ones free.
    let mut demand = vec![0u64; printers.len()];
    let mut per_class = vec![0u64; class_lists.len()];
    for p in &prep {
        if p.class != HELD {
            per_class[p.class as usize] += 1;
        }
    }
    for (c, list) in class_lists.iter().enumerate() {
        for &i in list {
            demand[i] += per_class[c];
        }
    }

    let mut free_at: Vec<Option<i64>> = printers
        .iter()
        .map(|p| available_at(p, now, rules).map(|t| t.unix_timestamp()))
        .collect();
    let mut remaining: Vec<Vec<Option<f64>>> = printers
        .iter()
        .map(|p| {
            p.tools
                .iter()
                .map(|t| t.loaded.as_ref().and_then(|l| l.remaining_g))
                .collect()
        })
        .collect();
    let printer_ids: Vec<SmolStr> = printers.iter().map(|p| SmolStr::new(&p.id)).collect();
    let gap = start_gap(rules);
    let now_s = now.unix_timestamp();
    let heating: Vec<i64> = input
        .heating_since
        .iter()
        .map(|t| t.unix_timestamp())
        .filter(|t| now_s - t < rules.heat_s as i64)
        .collect();
    let mut slots = PowerSlots::new(now_s, gap, &heating);
    // A printer that takes no work now takes none later in this plan either, so a class whose
    // candidates are all out (or that has none) skips the search, and its jobs share one
    // reason per spelling and size.
    let class_works: Vec<bool> = class_lists
        .iter()
        .map(|list| list.iter().any(|&i| free_at[i].is_some()))
        .collect();
    let mut reasons: Memo<(u32, Option<[u64; 3]>), Arc<str>> = Memo::default();

    let mut out = Plan::default();
    for q in &keys {
        let k = q.index as usize;
        let pre = &prep[k];
        if pre.class == HELD {
            out.waiting.push(Waiting {
                job_id: pre.id.clone(),
                index: q.index,
                reason: holds[pre.raw as usize].clone(),
            });
            continue;
        }
        let c = pre.class as usize;
        let mut best: Option<(i64, u64, usize)> = None;
        if class_works[c] {
            let j = pre.job;
            for &i in &class_lists[c] {
                let Some(t) = free_at[i] else { continue };
                if fits_size(&printers[i], j).is_err()
                    || fits_quantity(&printers[i], j, rules, Some(&remaining[i])).is_err()
                {
                    continue;
                }
                let key = (t, demand[i], i);
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
        let Some((t, _, i)) = best else {
            // Stable for the whole plan when the class takes no work (see `class_works`).
            let key = (!class_works[c] && pre.raw != NO_RAW)
                .then(|| (pre.raw, pre.size_mm.map(|s| s.map(f64::to_bits))));
            let reason = match key.and_then(|k| reasons.get(&k)) {
                Some(r) => r,
                None => {
                    let r: Arc<str> =
                        waiting_reason(printers, &class_lists[c], &free_at, pre.job, rules).into();
                    if let Some(k) = key {
                        reasons.insert(k, r.clone());
                    }
                    r
                }
            };
            out.waiting.push(Waiting {
                job_id: pre.id.clone(),
                index: q.index,
                reason,
            });
            continue;
        };
        let j = pre.job;
        let p = &printers[i];
        let start = slots.take(t.max(now_s));
        let material = j.material.as_deref().unwrap_or("");
        let run = j.estimated_s * input.corrections.factor(&p.id, material);
        let start_t = OffsetDateTime::from_unix_timestamp(start).unwrap_or(now);
        let end = start_t + secs(run);
        free_at[i] = Some(after_clear(end, p.auto_eject, rules).unix_timestamp());
        for (tool, g) in j.grams.iter().enumerate() {
            if let Some(Some(r)) = remaining[i].get_mut(tool) {
                *r -= g;
            }
        }
        if start <= now_s && p.state == PrinterState::Idle {
            out.starts.push(Start {
                job_id: pre.id.clone(),
                printer_id: printer_ids[i].clone(),
            });
        }
        out.timeline.push(Slot {
            job_id: pre.id.clone(),
            index: q.index,
            printer_id: printer_ids[i].clone(),
            start: start_t,
            end,
        });
    }
    out
}

mod fits;
pub use fits::{Misfit, fits, matching_trays, needed_g};
use fits::{fits_class, fits_quantity, fits_size};

mod classes;
pub use classes::why_waiting;
use classes::{Class, Memo, NO_RAW, RawClass, class_of, raw_class, waiting_reason};

#[cfg(test)]
mod tests;

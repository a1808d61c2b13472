//! Classes of jobs: jobs with the same static requirements share one list of candidate
//! printers, and jobs that wait for the same reason share one sentence. A long queue repeats
//! a few classes, so the plan works per class and per job only compares with the last one.

use super::{JobInput, PrinterInput, Rules, fits, fits_size};
use rustc_hash::FxHashMap;
use std::hash::Hash;

/// A map that remembers its last hit: a queue repeats the same class run after run, and
/// comparing with the last key is cheaper than hashing it. FxHash, not SipHash: the keys are
/// a plan's own (classes and sizes of the farm's queue), looked up once per job.
pub(super) struct Memo<K, V> {
    map: FxHashMap<K, V>,
    last: Option<(K, V)>,
}

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo {
            map: FxHashMap::default(),
            last: None,
        }
    }
}

impl<K: Hash + Eq + Copy, V: Clone> Memo<K, V> {
    pub fn get(&mut self, k: &K) -> Option<V> {
        if let Some((lk, lv)) = &self.last
            && lk == k
        {
            return Some(lv.clone());
        }
        let v = self.map.get(k)?.clone();
        self.last = Some((*k, v.clone()));
        Some(v)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn insert(&mut self, k: K, v: V) {
        self.map.insert(k, v.clone());
        self.last = Some((k, v));
    }
}

/// A job whose class as spelt is not numbered (more than 64 tools).
pub(super) const NO_RAW: u32 = u32::MAX;

/// Jobs with the same static requirements share one list of candidate printers.
#[derive(Hash, PartialEq, Eq)]
pub(super) struct Class {
    material: Option<String>,
    colour: Option<String>,
    nozzle: Option<u64>,
    pinned: Option<smol_str::SmolStr>,
    tools: Vec<bool>,
}

/// A job's class fields exactly as written (no lowercasing, no allocation): most of a queue
/// repeats a few of these, so each is normalised into a [`Class`] once. Also the key for
/// waiting reasons, which quote the job's own spelling.
#[derive(Hash, PartialEq, Eq, Clone, Copy)]
pub(super) struct RawClass<'a> {
    material: Option<&'a str>,
    colour: Option<&'a str>,
    nozzle: Option<u64>,
    pinned: Option<&'a str>,
    /// Which tools print, as bits; `None` for more than 64 tools (then not memoised).
    pub tools: Option<(u64, usize)>,
}

pub(super) fn raw_class(j: &JobInput) -> RawClass<'_> {
    let tools = (j.grams.len() <= 64).then(|| {
        let bits = j
            .grams
            .iter()
            .enumerate()
            .filter(|(_, g)| **g > 0.0)
            .fold(0u64, |b, (i, _)| b | 1 << i);
        (bits, j.grams.len())
    });
    RawClass {
        material: j.material.as_deref(),
        colour: j.colour.as_deref(),
        nozzle: j.nozzle_mm.map(f64::to_bits),
        pinned: j.pinned.as_deref(),
        tools,
    }
}

pub(super) fn class_of(j: &JobInput) -> Class {
    Class {
        material: j.material.as_ref().map(|m| m.trim().to_lowercase()),
        colour: j.colour.as_ref().map(|c| c.trim().to_lowercase()),
        nozzle: j.nozzle_mm.map(f64::to_bits),
        pinned: j.pinned.clone(),
        tools: j.grams.iter().map(|g| *g > 0.0).collect(),
    }
}

/// Why `j`, of a class whose candidates are `list`, found no printer in this plan.
pub(super) fn waiting_reason(
    printers: &[PrinterInput],
    list: &[usize],
    free_at: &[Option<i64>],
    j: &JobInput,
    rules: &Rules,
) -> String {
    let list: Vec<usize> = list
        .iter()
        .copied()
        .filter(|&i| fits_size(&printers[i], j).is_ok())
        .collect();
    if list.is_empty() {
        return why_waiting(printers, j, rules);
    }
    let names: Vec<&str> = list
        .iter()
        .take(3)
        .map(|&i| printers[i].id.as_str())
        .collect();
    if list.iter().all(|&i| free_at[i].is_none()) {
        format!(
            "the printers that could take it ({}) are offline, in error or in maintenance",
            names.join(", ")
        )
    } else {
        format!(
            "the printers that could take it ({}) do not hold enough filament for it after the jobs ahead of it",
            names.join(", ")
        )
    }
}

/// A sentence for a job nothing can take: the misfit of the printer that came closest.
pub fn why_waiting(printers: &[PrinterInput], j: &JobInput, rules: &Rules) -> String {
    if printers.is_empty() {
        return "no printers are enrolled".into();
    }
    let mut reasons: Vec<String> = printers
        .iter()
        .map(|p| match fits(p, j, rules) {
            Ok(()) => format!("{}: {}", p.id, p.state.as_str()),
            Err(m) => format!("{}: {m}", p.id),
        })
        .take(3)
        .collect();
    if printers.len() > 3 {
        reasons.push(format!("and {} more", printers.len() - 3));
    }
    format!("no printer can take it now ({})", reasons.join("; "))
}

//! Time a slicer's estimator adds beyond planned moves and dwells: filament changes, bed
//! levelling, chamber heating. We add what the slicer adds, by the slicer's own rules, so our
//! time is comparable with the estimate the slicer wrote into the file; the rules and where
//! they come from:
//!
//! **Tool change** (`T<n>` to another tool; `T255`, `T1000`, `T1100` are Bambu placeholders and
//! cost nothing): unload time of the tool left (only once a filament has been loaded: the first
//! change loads into an empty nozzle), plus load time of the new tool, plus a fixed tool-change
//! time. `M702 C` unloads (unload time; the next change is a first load again). OrcaSlicer
//! `GCodeProcessor::process_T` / `get_filament_load_time` / `get_filament_unload_time` /
//! `process_M702` (SoftFever/OrcaSlicer@0082f57d, the Bambu Studio 1.x code it forked from), with
//! `machine_load_filament_time`, `machine_unload_filament_time`, `machine_tool_change_time`;
//! PrusaSlicer's `process_T` is the same rule with the per-filament `filament_load_time` and
//! `filament_unload_time` and no fixed part. (Bambu Studio 2.x, bambulab/BambuStudio@01951ee2,
//! `process_filament_change`, charges unload + load only when the nozzle held another filament,
//! so its first load is free too; it adds `machine_switch_extruder_time` on two-nozzle printers,
//! which we do not model.)
//!
//! **`G29`** (levelling; not `G29.1`/`G29.2`, whose command word differs): a fixed allowance,
//! `machine_prepare_compensation_time` when the file states it, else 260 s. Orca's
//! `process_G29` hard-codes 260 s; Bambu Studio 2.x uses the configured value (260 in every Bambu
//! profile) inside the `M622 J1` block that holds the levelling in Bambu start G-code. PrusaSlicer
//! does not time `G29`.
//!
//! **`M191 S>40`** (wait for the chamber): 720 s, Orca and Bambu Studio `process_M191`.
//!
//! The Orca/Bambu rules apply when the file is theirs: their configuration block states one of
//! the `machine_*_time` keys above (PrusaSlicer's does not). Heat-up (`M109`/`M190`) is not timed
//! by any of these estimators; we report it apart (`Analysis::heat_s`).

/// Tools with their own load/unload time; higher tools share the last value.
pub const TOOL_TIMES: usize = 16;

/// The levelling allowance Orca hard-codes and Bambu's profiles state, s.
pub const LEVELLING_S: f64 = 260.0;

/// Chamber-heating allowance for `M191 S` above 40 °C (Orca, Bambu Studio), s.
pub const CHAMBER_S: f64 = 720.0;

/// Per-tool seconds from a comma-separated list (the last value repeats).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ToolTimes {
    values: [f64; TOOL_TIMES],
    len: usize,
}

impl ToolTimes {
    /// One value for every tool.
    pub fn all(v: f64) -> Self {
        Self {
            values: [v; TOOL_TIMES],
            len: 1,
        }
    }

    /// `"29"` or `"0,0,30"`; `None` when a value is not a finite number ≥ 0.
    pub fn parse(list: &str) -> Option<Self> {
        let mut t = Self::default();
        for v in list.split(',') {
            let v = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)?;
            if t.len < TOOL_TIMES {
                t.values[t.len] = v;
                t.len += 1;
            }
        }
        Some(t)
    }

    pub fn get(&self, tool: usize) -> f64 {
        match self.len {
            0 => 0.0,
            n => self.values[tool.min(n - 1)],
        }
    }
}

/// Whose estimator's rules the file is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Estimator {
    /// No slicer rules known (Cura, SuperSlicer, a plain stream): what the firmware does, so
    /// `G4` and `M400 S`/`P` dwell.
    #[default]
    Firmware,
    /// PrusaSlicer (its header says so): its `process_gcode_line` has no `G4`, `M400`, `G29`
    /// or `M191` (prusa3d/PrusaSlicer@19cd58dd), so none of them is timed.
    PrusaSlicer,
    /// OrcaSlicer (a configuration block with the `machine_*_time` keys).
    Orca,
    /// Bambu Studio: its header comment (`; BambuStudio 01.08.04.51`) says so.
    BambuStudio,
}

/// What the slicer's configuration says about non-motion time.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Allowances {
    pub estimator: Estimator,
    /// PrusaSlicer `filament_load_time` / `filament_unload_time`, per tool, s.
    pub filament_load: ToolTimes,
    pub filament_unload: ToolTimes,
    /// Orca / Bambu `machine_load_filament_time`, `machine_unload_filament_time`,
    /// `machine_tool_change_time`, s.
    pub machine_load_s: f64,
    pub machine_unload_s: f64,
    pub machine_change_s: f64,
    /// `machine_prepare_compensation_time`, s (`None`: not stated, [`LEVELLING_S`]).
    pub levelling_s: Option<f64>,
}

impl Allowances {
    /// Applies one configuration comment (`key = value`); returns whether it was one of ours.
    pub fn apply_config_comment(&mut self, comment: &str) -> bool {
        let Some((key, value)) = comment.split_once('=') else {
            return false;
        };
        let (key, value) = (key.trim(), value.trim());
        let first = || {
            value
                .split(',')
                .next()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        match key {
            "filament_load_time" | "filament_unload_time" => {
                let Some(t) = ToolTimes::parse(value) else {
                    return false;
                };
                if key == "filament_load_time" {
                    self.filament_load = t;
                } else {
                    self.filament_unload = t;
                }
            }
            "machine_load_filament_time"
            | "machine_unload_filament_time"
            | "machine_tool_change_time"
            | "machine_prepare_compensation_time" => {
                let Some(v) = first() else {
                    return false;
                };
                if matches!(self.estimator, Estimator::Firmware | Estimator::PrusaSlicer) {
                    self.estimator = Estimator::Orca;
                }
                match key {
                    "machine_load_filament_time" => self.machine_load_s = v,
                    "machine_unload_filament_time" => self.machine_unload_s = v,
                    "machine_tool_change_time" => self.machine_change_s = v,
                    _ => self.levelling_s = Some(v),
                }
            }
            _ => return false,
        }
        true
    }

    /// A header comment naming the slicer: `; BambuStudio 01.08.04.51`, `; generated by
    /// PrusaSlicer 2.7.4 …`.
    pub fn apply_header_comment(&mut self, comment: &str) {
        if comment.starts_with("BambuStudio ") {
            self.estimator = Estimator::BambuStudio;
        } else if comment.starts_with("generated by PrusaSlicer")
            && self.estimator == Estimator::Firmware
        {
            self.estimator = Estimator::PrusaSlicer;
        }
    }

    /// Is this comment a header line [`Allowances::apply_header_comment`] reads?
    pub fn is_header_comment(comment: &str) -> bool {
        comment.starts_with("BambuStudio ") || comment.starts_with("generated by PrusaSlicer")
    }

    /// Whether `G4` and `M400 S`/`P` dwells count (all but PrusaSlicer's estimator).
    pub fn times_dwells(&self) -> bool {
        self.estimator != Estimator::PrusaSlicer
    }

    /// Is this comment a key [`Allowances::apply_config_comment`] reads?
    pub fn is_config_key(comment: &str) -> bool {
        comment.starts_with("filament_load_time")
            || comment.starts_with("filament_unload_time")
            || (comment.starts_with("machine_") && comment.contains("_time"))
    }

    pub fn load_s(&self, tool: usize) -> f64 {
        match self.estimator {
            Estimator::Firmware | Estimator::PrusaSlicer => self.filament_load.get(tool),
            _ => self.machine_load_s,
        }
    }

    pub fn unload_s(&self, tool: usize) -> f64 {
        match self.estimator {
            Estimator::Firmware | Estimator::PrusaSlicer => self.filament_unload.get(tool),
            _ => self.machine_unload_s,
        }
    }

    /// Fixed part of every tool change, s.
    pub fn change_s(&self) -> f64 {
        match self.estimator {
            Estimator::Orca => self.machine_change_s,
            _ => 0.0,
        }
    }

    /// What `G29` costs, s (0: the estimator does not time it).
    pub fn levelling_s(&self) -> f64 {
        match self.estimator {
            Estimator::Firmware | Estimator::PrusaSlicer => 0.0,
            _ => self.levelling_s.unwrap_or(LEVELLING_S),
        }
    }

    /// What `M191 S<target>` costs, s.
    pub fn chamber_s(&self, target: f64) -> f64 {
        if matches!(self.estimator, Estimator::Orca | Estimator::BambuStudio) && target > 40.0 {
            CHAMBER_S
        } else {
            0.0
        }
    }
}

/// What the slicer's estimator tracks to apply these rules.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SlicerState {
    /// A filament is in the nozzle (PrusaSlicer/Orca: not `extruder_unloaded`; Bambu Studio: the
    /// nozzle holds a filament).
    pub loaded: bool,
    /// Bambu Studio: inside `M622 J1` … `M623`, where it times `G29` (`m_measure_g29_time`).
    pub measure_levelling: bool,
}

impl SlicerState {
    /// Time of `T<to>` while tool `from` is active, s.
    pub fn select(&mut self, a: &Allowances, from: usize, to: usize) -> f64 {
        if a.estimator == Estimator::BambuStudio {
            // The first filament selected fills an empty nozzle: free.
            let was = std::mem::replace(&mut self.loaded, true);
            return if was && from != to {
                a.unload_s(from) + a.load_s(to)
            } else {
                0.0
            };
        }
        if from == to {
            return 0.0;
        }
        let unload = if self.loaded { a.unload_s(from) } else { 0.0 };
        self.loaded = true;
        unload + a.load_s(to) + a.change_s()
    }

    /// `M702 C`: the filament goes back to the feeder, s.
    pub fn unload(&mut self, a: &Allowances, tool: usize) -> f64 {
        let t = if self.loaded { a.unload_s(tool) } else { 0.0 };
        self.loaded = false;
        t
    }

    /// `G29`, s.
    pub fn levelling(&self, a: &Allowances) -> f64 {
        match a.estimator {
            Estimator::BambuStudio if !self.measure_levelling => 0.0,
            _ => a.levelling_s(),
        }
    }

    /// Bambu's conditional blocks: `M622 J1` opens one the slicer times `G29` in, `M623` ends it.
    pub fn condition(&mut self, m622_j: Option<f64>) {
        match m622_j {
            Some(j) if j.round() == 1.0 => self.measure_levelling = true,
            Some(_) => {}
            None => self.measure_levelling = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcode::{Machine, parse_line};

    /// Planned time of a little file, s.
    fn time(lines: &[&str]) -> f64 {
        let mut m = Machine::default();
        let mut t = 0.0;
        for l in lines {
            t += m.step(&parse_line(l.as_bytes())).duration_s;
        }
        t + m.finish()
    }

    /// What `extra` adds to `base`, s.
    fn adds(base: &[&str], extra: &[&str]) -> f64 {
        let all: Vec<&str> = base.iter().chain(extra).copied().collect();
        time(&all) - time(base)
    }

    const MOVE: &[&str] = &["G1 X50 Y20 F6000"];
    const ORCA: &[&str] = &[
        "; machine_load_filament_time = 25",
        "; machine_tool_change_time = 2",
        "; machine_unload_filament_time = 29",
        "G1 X50 Y20 F6000",
    ];

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() < 1e-6
    }

    #[test]
    fn dwells_are_timed_and_a_bare_m400_is_not() {
        assert!(close(adds(MOVE, &["G4 P500"]), 0.5));
        assert!(close(adds(MOVE, &["G4 S2"]), 2.0));
        assert!(close(adds(MOVE, &["M400 S3"]), 3.0));
        assert!(close(adds(MOVE, &["M400 P200"]), 0.2));
        assert!(close(
            adds(MOVE, &["M400", "G1 X60"]),
            adds(MOVE, &["G1 X60"])
        ));
    }

    #[test]
    fn prusaslicer_times_no_dwell() {
        let prusa = [
            "; generated by PrusaSlicer 2.7.4+MacOS-x64",
            "G1 X50 Y20 F6000",
        ];
        assert!(close(adds(&prusa, &["G4 S30", "M400 S3"]), 0.0));
        // The header does not undo Orca's keys, and other headers change nothing.
        assert!(close(adds(&["; generated by Cura"], &["G4 S1"]), 1.0));
    }

    #[test]
    fn g28_homes_the_axes_it_names_even_bare_and_nothing_in_relative_mode() {
        let from = &["G1 X100 Y100 F6000"];
        assert!(close(adds(from, &["G28 X"]), adds(from, &["G1 X0"])));
        assert!(close(adds(from, &["G28"]), adds(from, &["G1 X0 Y0 Z0"])));
        assert!(close(adds(from, &["G91", "G28 Z P0 T140"]), 0.0));
    }

    #[test]
    fn levelling_is_timed_as_each_slicer_does() {
        // PrusaSlicer's estimator does not time G29.
        assert!(close(adds(MOVE, &["G29"]), 0.0));
        assert!(close(adds(ORCA, &["G29 A1 X10 Y10"]), LEVELLING_S));
        assert!(close(adds(ORCA, &["G29.2 S1"]), 0.0));
        let stated = [&["; machine_prepare_compensation_time = 100"], ORCA].concat();
        assert!(close(adds(&stated, &["G29"]), 100.0));
        // Bambu Studio: only inside the `M622 J1` block of its start G-code.
        let bambu = [&["; BambuStudio 01.08.04.51"], ORCA].concat();
        assert!(close(adds(&bambu, &["G29"]), 0.0));
        assert!(close(
            adds(&bambu, &["M622 J1", "G29", "M623"]),
            LEVELLING_S
        ));
        assert!(close(adds(ORCA, &["M191 S60"]), CHAMBER_S));
        assert!(close(adds(MOVE, &["M191 S60"]), 0.0));
    }

    #[test]
    fn tool_changes_cost_what_the_config_states() {
        // Orca: T0 is the tool already active; the first change only loads.
        assert!(close(adds(ORCA, &["T0"]), 0.0));
        assert!(close(adds(ORCA, &["T1"]), 25.0 + 2.0));
        assert!(close(
            adds(ORCA, &["T1", "T0"]),
            2.0 * 25.0 + 29.0 + 2.0 * 2.0
        ));
        // Placeholders (`T1000`, `T255`) cost nothing.
        assert!(close(adds(ORCA, &["T1000", "T255"]), 0.0));
        // Bambu Studio: the first T fills the nozzle for free, then unload + load.
        let bambu = [&["; BambuStudio 01.08.04.51"], ORCA].concat();
        assert!(close(adds(&bambu, &["T0", "T1", "T1"]), 29.0 + 25.0));
        // PrusaSlicer MMU: per-filament times, `M702 C` unloads at the end.
        let prusa = [
            "; filament_load_time = 10,12",
            "; filament_unload_time = 7,8",
            "G1 X50 F6000",
        ];
        assert!(close(
            adds(&prusa, &["T1", "T0", "M702 C"]),
            12.0 + 8.0 + 10.0 + 7.0
        ));
    }

    fn bambu() -> Allowances {
        let mut a = Allowances::default();
        for c in [
            "machine_load_filament_time = 29",
            "machine_unload_filament_time = 28",
            "machine_tool_change_time = 3",
        ] {
            assert!(a.apply_config_comment(c), "{c}");
        }
        a
    }

    #[test]
    fn orca_first_change_loads_later_ones_unload_and_load() {
        let a = bambu();
        assert_eq!(a.estimator, Estimator::Orca);
        let mut n = SlicerState::default();
        assert_eq!(n.select(&a, 0, 0), 0.0);
        assert_eq!(n.select(&a, 0, 1), 29.0 + 3.0);
        assert_eq!(n.select(&a, 1, 2), 28.0 + 29.0 + 3.0);
        assert_eq!(n.unload(&a, 2), 28.0);
        assert_eq!(n.select(&a, 2, 0), 29.0 + 3.0);
    }

    #[test]
    fn bambu_studio_first_selection_is_free_then_unload_and_load() {
        let mut a = bambu();
        a.apply_header_comment("BambuStudio 01.08.04.51");
        assert_eq!(a.estimator, Estimator::BambuStudio);
        let mut n = SlicerState::default();
        assert_eq!(n.select(&a, 0, 0), 0.0);
        assert_eq!(
            n.select(&a, 0, 1),
            28.0 + 29.0,
            "no fixed part in Bambu Studio"
        );
        assert_eq!(n.select(&a, 1, 1), 0.0);
        // G29 only inside `M622 J1` … `M623`.
        assert_eq!(n.levelling(&a), 0.0);
        n.condition(Some(1.0));
        assert_eq!(n.levelling(&a), 260.0);
        n.condition(Some(0.0));
        assert_eq!(n.levelling(&a), 260.0);
        n.condition(None);
        assert_eq!(n.levelling(&a), 0.0);
    }

    #[test]
    fn prusaslicer_times_are_per_filament_and_have_no_fixed_part() {
        let mut a = Allowances::default();
        assert!(a.apply_config_comment("filament_load_time = 10,20"));
        assert!(a.apply_config_comment("filament_unload_time = 5"));
        assert_eq!(a.estimator, Estimator::Firmware);
        let mut n = SlicerState {
            loaded: true,
            ..SlicerState::default()
        };
        assert_eq!(n.select(&a, 0, 1), 5.0 + 20.0);
        assert_eq!(n.select(&a, 1, 7), 5.0 + 20.0, "the last value repeats");
        assert_eq!((a.levelling_s(), a.chamber_s(60.0)), (0.0, 0.0));
        // Orca writes the machine keys, which switch to its rules (machine values win).
        assert!(a.apply_config_comment("machine_load_filament_time = 25"));
        assert_eq!(a.load_s(0), 25.0);
        assert_eq!(a.levelling_s(), LEVELLING_S);
    }

    #[test]
    fn levelling_and_chamber_follow_the_file() {
        let mut a = bambu();
        assert_eq!(a.levelling_s(), 260.0);
        assert!(a.apply_config_comment("machine_prepare_compensation_time = 200"));
        assert_eq!(a.levelling_s(), 200.0);
        assert_eq!((a.chamber_s(40.0), a.chamber_s(45.0)), (0.0, 720.0));
        assert!(!a.apply_config_comment("machine_load_filament_time = x"));
        assert!(!a.apply_config_comment("filament_load_time = 1,nan"));
        assert!(Allowances::is_config_key("machine_tool_change_time = 0"));
        assert!(!Allowances::is_config_key("machine_max_speed_x = 500"));
    }
}

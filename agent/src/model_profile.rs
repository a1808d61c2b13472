//! Printer-model profiles: motion limits and slicer allowances for printers the agent drives over
//! the network (Bambu Lab X1 / P1 / A1 / A1 mini / H2D, Prusa MK4 / CORE One), where the serial
//! profiles' framing and buffers mean nothing.
//!
//! One TOML file per model family in `firmware-profiles/printers/`, embedded at build time. Each
//! names its sources (the slicers' own printer presets) in comments; `[motion]` has exactly the
//! keys of a serial profile's `[motion]` ([`MotionLimits`]), `[allowances]` the time the slicer's
//! estimator charges for what the firmware does on its own (filament changes, levelling), used
//! when a file does not state its own. Like the serial profiles, files are strict: unknown or
//! missing keys are errors naming the file and the key.
//!
//! [`ModelProfile::limits`] is the analyzer's starting point for a file from that printer; the
//! file's configuration comments and `M201`–`M205` still override it.

use crate::serial::profile::{MotionLimits, ProfileError};
use farm_protocol::gcode::Limits;
use farm_protocol::gcode::allowances::ToolTimes;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The embedded profiles: (name, TOML text). The name is also the file stem.
const BUILTIN: [(&str, &str); 7] = [
    (
        "bambu-x1",
        include_str!("../../firmware-profiles/printers/bambu-x1.toml"),
    ),
    (
        "bambu-p1",
        include_str!("../../firmware-profiles/printers/bambu-p1.toml"),
    ),
    (
        "bambu-a1",
        include_str!("../../firmware-profiles/printers/bambu-a1.toml"),
    ),
    (
        "bambu-a1-mini",
        include_str!("../../firmware-profiles/printers/bambu-a1-mini.toml"),
    ),
    (
        "bambu-h2d",
        include_str!("../../firmware-profiles/printers/bambu-h2d.toml"),
    ),
    (
        "prusa-mk4",
        include_str!("../../firmware-profiles/printers/prusa-mk4.toml"),
    ),
    (
        "prusa-core-one",
        include_str!("../../firmware-profiles/printers/prusa-core-one.toml"),
    ),
];

/// One printer model (or family of models with the same limits).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelProfile {
    /// Equals the file stem (`bambu-p1`).
    pub name: String,
    pub display_name: String,
    pub detect: ModelDetect,
    pub motion: MotionLimits,
    pub allowances: ModelAllowances,
}

/// `[detect]`: the names printers and slicers give the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDetect {
    /// Exact, case-insensitive: Bambu model codes (`C12`), PrusaLink printer types (`MK4S`),
    /// the slicers' `printer_model` (`Bambu Lab P1S`).
    pub models: Vec<String>,
}

/// `[allowances]`, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelAllowances {
    /// Loading a filament into the nozzle (`machine_load_filament_time`).
    pub load_filament_s: f64,
    /// Unloading it (`machine_unload_filament_time`).
    pub unload_filament_s: f64,
    /// Fixed part of every change (`machine_tool_change_time`).
    pub tool_change_s: f64,
    /// Bed levelling `G29` (`machine_prepare_compensation_time`).
    pub levelling_s: f64,
}

impl ModelProfile {
    /// Parses one profile file's text. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<ModelProfile, ProfileError> {
        let p: ModelProfile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        let bad = |key: &str, message: String| ProfileError::Invalid {
            path: origin.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if let Some(stem) = origin.file_stem().and_then(|s| s.to_str())
            && stem != p.name
        {
            return Err(bad(
                "name",
                format!("is {:?} but the file is {stem}.toml", p.name),
            ));
        }
        if p.detect.models.is_empty() || p.detect.models.iter().any(|m| m.trim().is_empty()) {
            return Err(bad(
                "detect.models",
                "needs at least one non-empty model name".into(),
            ));
        }
        p.motion
            .check()
            .map_err(|(key, why)| bad(&format!("motion{key}"), why))?;
        let a = &p.allowances;
        for (key, v) in [
            ("load_filament_s", a.load_filament_s),
            ("unload_filament_s", a.unload_filament_s),
            ("tool_change_s", a.tool_change_s),
            ("levelling_s", a.levelling_s),
        ] {
            if !(v.is_finite() && (0.0..3600.0).contains(&v)) {
                return Err(bad(
                    &format!("allowances.{key}"),
                    format!("must be 0..3600 seconds, not {v}"),
                ));
            }
        }
        Ok(p)
    }

    /// The analyzer's starting limits for a file from this printer: motion, heater rates and
    /// retraction from `[motion]`, filament-change and levelling allowances from `[allowances]`
    /// (for every slicer's rules: PrusaSlicer's per-filament times and Orca / Bambu's machine
    /// times alike). The file's own configuration and commands override all of it.
    pub fn limits(&self) -> Limits {
        let mut limits = self.motion.limits();
        let a = &self.allowances;
        let al = &mut limits.allowances;
        al.filament_load = ToolTimes::all(a.load_filament_s);
        al.filament_unload = ToolTimes::all(a.unload_filament_s);
        al.machine_load_s = a.load_filament_s;
        al.machine_unload_s = a.unload_filament_s;
        al.machine_change_s = a.tool_change_s;
        al.levelling_s = Some(a.levelling_s);
        limits
    }

    fn matches(&self, model: &str) -> bool {
        let model = model.trim();
        self.detect
            .models
            .iter()
            .any(|m| m.eq_ignore_ascii_case(model))
    }
}

/// Parses the embedded profiles. They are checked by the tests, so this cannot fail at run time
/// for a build that passed them.
#[must_use]
pub fn builtin() -> Vec<ModelProfile> {
    BUILTIN
        .iter()
        .map(|(name, text)| {
            let origin = PathBuf::from(format!("firmware-profiles/printers/{name}.toml"));
            ModelProfile::from_toml(text, &origin)
                .unwrap_or_else(|e| panic!("built-in printer-model profile is invalid: {e}"))
        })
        .collect()
}

/// The built-in profile named `name` (`bambu-p1`) or listing `name` as one of its models
/// (`C12`, `Bambu Lab P1S`, `MK4S`).
#[must_use]
pub fn find(name: &str) -> Option<ModelProfile> {
    let all = builtin();
    let by_name = all.iter().position(|p| p.name.eq_ignore_ascii_case(name));
    let i = by_name.or_else(|| all.iter().position(|p| p.matches(name)))?;
    all.into_iter().nth(i)
}

/// The analyzer's starting limits for a job on a printer of `model` (a profile name like
/// `bambu-p1` or a model it lists like `C12`, `MK4S`; see `firmware-profiles/printers/`):
/// [`ModelProfile::limits`], or the analyzer's defaults when no model is configured. The
/// file's own configuration and commands still override them.
pub fn base_limits(model: Option<&str>) -> Result<Limits, String> {
    let Some(model) = model else {
        return Ok(Limits::default());
    };
    find(model).map(|p| p.limits()).ok_or_else(|| {
        format!(
            "no printer-model profile {model:?}: give one of {} or a model code they list \
             (firmware-profiles/printers/*.toml)",
            names().join(", ")
        )
    })
}

/// The names `find` accepts as profile names, for error messages.
#[must_use]
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests;

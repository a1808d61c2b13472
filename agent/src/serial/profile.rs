//! Firmware profiles: what the serial back end needs to know about a firmware family.
//!
//! One TOML file per family lives in `firmware-profiles/` at the workspace root
//! (`marlin2`, `prusa`, `reprapfirmware3`, `klipper`); they are embedded at build time
//! ([`builtin`]) and each can be replaced by a same-named file in a config directory
//! ([`load_override`]). `firmware-profiles/marlin2.toml` documents every key. Files are
//! strict: unknown keys and missing keys are errors that name the file and the key.
//!
//! [`detect`] picks the profile for a connected printer from its `M115` reply: the profile
//! whose `detect.firmware_name_contains` pattern is the longest substring of `FIRMWARE_NAME`
//! wins; nothing matching (or no `M115` answer) falls back to `marlin2` with
//! [`Detection::fallback`] set so the caller can warn.

use super::reply::FirmwareInfo;
use farm_protocol::gcode::{self, Heating, Limits, Retraction};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The embedded profiles: (name, TOML text). The name is also the file stem.
const BUILTIN: [(&str, &str); 4] = [
    (
        "marlin2",
        include_str!("../../../firmware-profiles/marlin2.toml"),
    ),
    (
        "prusa",
        include_str!("../../../firmware-profiles/prusa.toml"),
    ),
    (
        "reprapfirmware3",
        include_str!("../../../firmware-profiles/reprapfirmware3.toml"),
    ),
    (
        "klipper",
        include_str!("../../../firmware-profiles/klipper.toml"),
    ),
];

/// The profile used when detection finds nothing.
pub const FALLBACK: &str = "marlin2";

/// One firmware family. Field docs are short; the TOML files explain each key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirmwareProfile {
    /// Equals the file stem (`marlin2`).
    pub name: String,
    pub display_name: String,
    pub detect: Detect,
    pub capabilities: Capabilities,
    pub framing: Framing,
    pub buffers: Buffers,
    pub temperature: Temperature,
    pub progress: Progress,
    pub keepalive: Keepalive,
    pub timeouts: Timeouts,
    pub emergency: Emergency,
    pub scripts: Scripts,
    pub motion: MotionLimits,
}

/// `[detect]`: how to recognise the family from `M115`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    /// Case-insensitive substrings of `FIRMWARE_NAME`; the longest match over all profiles wins.
    pub firmware_name_contains: Vec<String>,
}

/// `[capabilities]`: what to assume for capabilities the `M115` reply does not report.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    pub assumed: BTreeMap<String, bool>,
}

/// Whether an `ok` follows a resend request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OkAfterResend {
    Always,
    Never,
    /// Watch for it briefly after each resend request (OctoPrint's `detect`).
    Detect,
}

/// `[framing]`: line numbers, checksums, resends, handshake.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framing {
    pub line_numbers: bool,
    pub checksums: bool,
    /// The longest line the firmware accepts (Marlin `MAX_CMD_SIZE`).
    pub max_line_bytes: usize,
    pub resend_requests: bool,
    /// Marlin drops everything still in its RX buffer after a bad line.
    pub flushes_rx_on_error: bool,
    pub ok_after_resend: OkAfterResend,
    /// The hello sent until the firmware answers (framed when `line_numbers`).
    pub hello: String,
    /// The firmware-info request (`M115`).
    pub firmware_info: String,
    /// How long to wait for the `start` banner after opening the port, s (0 = don't wait).
    pub wait_for_start_s: f64,
}

/// `[buffers]`: the firmware's receive side, and the streamer's window.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buffers {
    /// Receive ring in bytes (Marlin `RX_BUFFER_SIZE`).
    pub rx_bytes: usize,
    /// Command queue entries (Marlin `BUFSIZE`).
    pub command_slots: u32,
    /// Planner ring (Marlin `BLOCK_BUFFER_SIZE`).
    pub planner_blocks: u32,
    /// Unacknowledged lines by default (1 = ping-pong).
    pub default_in_flight: u32,
    /// Upper bound of the window (also with ADVANCED_OK).
    pub max_in_flight: u32,
    /// Whether `ok N P B` may drive the window when the firmware sends it.
    pub advanced_ok: bool,
}

/// `[temperature]`: auto-reports and polling.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Temperature {
    /// `M155 S<s>` exists (used only with `AUTOREPORT_TEMP`).
    pub autoreport: bool,
    pub autoreport_interval_s: u32,
    pub poll_command: String,
    pub poll_interval_idle_s: f64,
    pub poll_interval_active_s: f64,
    /// Temperature lines arrive about once per second during `M109`/`M190`.
    pub reports_while_heating: bool,
}

/// `[progress]`: SD progress and `M73` text.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    pub sd_status_command: String,
    /// `M27 S<s>` exists (used only with `AUTOREPORT_SD_STATUS`).
    pub sd_autoreport: bool,
    pub m73_reports: bool,
}

/// `[keepalive]`: `busy:` and `wait` lines.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keepalive {
    pub busy_protocol: bool,
    pub busy_interval_s: f64,
    /// `M113` (empty if unsupported).
    pub set_interval_command: String,
    pub sends_wait: bool,
}

/// `[timeouts]`, seconds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    pub communication_s: f64,
    pub communication_busy_s: f64,
    pub max_timeouts: u32,
    /// Command word (`M109`) → allowance for its `ok`, s; 0 = no limit.
    pub long_commands: BTreeMap<String, f64>,
}

impl Timeouts {
    /// The allowance for a (cleaned) command line: `Some(0.0)` = wait without limit, `None`
    /// = an ordinary command (use `communication_s`).
    #[must_use]
    pub fn long_command_allowance(&self, cmd: &str) -> Option<f64> {
        let word = cmd.split_ascii_whitespace().next()?;
        self.long_commands
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(word))
            .map(|(_, v)| *v)
    }
}

/// `[emergency]`: commands that bypass the queue, and recovery.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Emergency {
    /// Sent unnumbered, at once (`M112`).
    pub stop: Vec<String>,
    /// Breaks heating / `M0` waits (`M108`), empty if unsupported.
    pub break_wait: String,
    /// Flushes the planner (`M410`), empty if unsupported.
    pub quickstop: String,
    /// Recovers a stopped firmware (`M999`).
    pub recover: Vec<String>,
    /// `M876 S{index}`, empty if unsupported.
    pub prompt_response: String,
}

/// `[scripts]`: G-code the agent sends on host-side pause, resume and cancel. Placeholders
/// `{x} {y} {z} {e} {f} {extrusion_mode}` are filled by the streamer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scripts {
    pub pause: Vec<String>,
    pub resume: Vec<String>,
    pub cancel: Vec<String>,
}

/// How the firmware limits speed through corners (mirrors the farm-protocol planner's
/// `Corner`: classic jerk, Marlin 2 junction deviation, Klipper square-corner velocity).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corner {
    /// mm/s, X Y Z E.
    Jerk([f64; 4]),
    /// mm.
    JunctionDeviation(f64),
    /// mm/s.
    SquareCornerVelocity(f64),
}

/// `[motion]`: defaults for print-time estimates, in the units of the farm-protocol G-code
/// planner's `Limits` (mm, s): per-axis arrays are X, Y, Z, E.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotionLimits {
    /// mm/s (`M203`).
    pub max_feed: [f64; 4],
    /// mm/s² (`M201`).
    pub max_accel: [f64; 4],
    /// mm/s² (`M204 P`, `R`, `T`).
    pub print_accel: f64,
    pub retract_accel: f64,
    pub travel_accel: f64,
    pub corner: Corner,
    /// Heat-up model for `M109`/`M190` waits.
    pub heating: HeatRates,
    /// `G10`/`G11` settings until the file's `M207`/`M208` say otherwise.
    pub retraction: FwRetraction,
}

/// `[motion] heating`: °C/s.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeatRates {
    pub tool_up: f64,
    pub tool_down: f64,
    pub bed_up: f64,
    pub bed_down: f64,
}

/// `[motion] retraction`: firmware retraction defaults, mm and mm/s.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FwRetraction {
    pub length: f64,
    pub speed: f64,
    pub extra: f64,
    pub recover_speed: f64,
    pub lift: f64,
}

impl MotionLimits {
    /// Checks the values (serial and printer-model profiles alike): on error, the key below
    /// `motion` (`""`, `".heating"`, `".retraction"`) and why.
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        let all = self.max_feed.iter().chain(&self.max_accel).chain([
            &self.print_accel,
            &self.retract_accel,
            &self.travel_accel,
        ]);
        if all.into_iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(("", "feed rates and accelerations must be > 0".into()));
        }
        if !self.limits().heating.is_valid() {
            return Err((".heating", "rates must be > 0 °C/s".into()));
        }
        let r = &self.retraction;
        let lengths_ok = [r.length, r.extra, r.lift]
            .iter()
            .all(|v| v.is_finite() && (0.0..1000.0).contains(v));
        let speeds_ok = [r.speed, r.recover_speed]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0);
        if !(lengths_ok && speeds_ok) {
            return Err((
                ".retraction",
                "lengths must be 0..1000 mm and speeds > 0 mm/s".into(),
            ));
        }
        Ok(())
    }

    /// The analyzer's starting limits for this firmware: print-time estimates, heat-up waits
    /// and `G10`/`G11` use them until the file (or its slicer's comments) says otherwise.
    pub fn limits(&self) -> Limits {
        let r = &self.retraction;
        let h = &self.heating;
        Limits {
            max_feed: self.max_feed,
            max_accel: self.max_accel,
            print_accel: self.print_accel,
            retract_accel: self.retract_accel,
            travel_accel: self.travel_accel,
            corner: match self.corner {
                Corner::Jerk(j) => gcode::Corner::Jerk(j),
                Corner::JunctionDeviation(d) => gcode::Corner::Deviation(d),
                Corner::SquareCornerVelocity(v) => gcode::Corner::SquareCorner(v),
            },
            retraction: Retraction {
                length_mm: r.length,
                speed_mm_s: r.speed,
                extra_mm: r.extra,
                recover_speed_mm_s: r.recover_speed,
                lift_mm: r.lift,
                ..Retraction::default()
            },
            heating: Heating {
                tool_up: h.tool_up,
                tool_down: h.tool_down,
                bed_up: h.bed_up,
                bed_down: h.bed_down,
            },
            ..Limits::default()
        }
    }
}

impl FirmwareProfile {
    /// Parses one profile file's text. `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<FirmwareProfile, ProfileError> {
        let profile: FirmwareProfile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            path: origin.to_path_buf(),
            message: e.to_string(),
        })?;
        profile.validate(origin)?;
        Ok(profile)
    }

    fn validate(&self, origin: &Path) -> Result<(), ProfileError> {
        let bad = |key: &str, why: String| {
            Err(ProfileError::Invalid {
                path: origin.to_path_buf(),
                key: key.to_string(),
                message: why,
            })
        };
        if let Some(stem) = origin.file_stem().and_then(|s| s.to_str())
            && stem != self.name
        {
            return bad(
                "name",
                format!("is {:?} but the file is {stem}.toml", self.name),
            );
        }
        if self.detect.firmware_name_contains.is_empty()
            || self
                .detect
                .firmware_name_contains
                .iter()
                .any(|p| p.trim().is_empty())
        {
            return bad(
                "detect.firmware_name_contains",
                "needs at least one non-empty pattern".into(),
            );
        }
        if self.framing.checksums && !self.framing.line_numbers {
            return bad(
                "framing.checksums",
                "checksums need framing.line_numbers = true".into(),
            );
        }
        if self.framing.max_line_bytes < 16 {
            return bad("framing.max_line_bytes", "must be at least 16".into());
        }
        let b = &self.buffers;
        if b.rx_bytes < 16 {
            return bad("buffers.rx_bytes", "must be at least 16".into());
        }
        if b.command_slots == 0 {
            return bad("buffers.command_slots", "must be at least 1".into());
        }
        if b.default_in_flight == 0 || b.default_in_flight > b.max_in_flight {
            return bad(
                "buffers.default_in_flight",
                format!("must be 1..={} (buffers.max_in_flight)", b.max_in_flight),
            );
        }
        if b.max_in_flight > b.command_slots.max(1) {
            return bad(
                "buffers.max_in_flight",
                format!(
                    "must not exceed buffers.command_slots ({})",
                    b.command_slots
                ),
            );
        }
        let t = &self.timeouts;
        for (key, v) in [
            ("timeouts.communication_s", t.communication_s),
            ("timeouts.communication_busy_s", t.communication_busy_s),
            (
                "temperature.poll_interval_idle_s",
                self.temperature.poll_interval_idle_s,
            ),
            (
                "temperature.poll_interval_active_s",
                self.temperature.poll_interval_active_s,
            ),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(
                    key,
                    format!("must be a positive number of seconds, not {v}"),
                );
            }
        }
        for (cmd, v) in &t.long_commands {
            if !(v.is_finite() && *v >= 0.0) {
                return bad(
                    &format!("timeouts.long_commands.{cmd}"),
                    format!("must be >= 0 seconds, not {v}"),
                );
            }
        }
        if self.emergency.stop.is_empty() {
            return bad("emergency.stop", "needs at least one command".into());
        }
        if let Err((key, why)) = self.motion.check() {
            return bad(&format!("motion{key}"), why);
        }
        Ok(())
    }

    /// Whether a capability may be used: what the firmware reported in `Cap:` lines, else
    /// this profile's `capabilities.assumed`, else no.
    #[must_use]
    pub fn capability(&self, info: &FirmwareInfo, name: &str) -> bool {
        info.capability(name)
            .or_else(|| self.capabilities.assumed.get(name).copied())
            .unwrap_or(false)
    }

    /// Length of this profile's longest pattern found in `firmware_name`, if any.
    fn match_len(&self, firmware_name: &str) -> Option<usize> {
        let name = firmware_name.to_ascii_lowercase();
        self.detect
            .firmware_name_contains
            .iter()
            .filter(|p| name.contains(&p.to_ascii_lowercase()))
            .map(String::len)
            .max()
    }
}

/// Why a profile could not be loaded. Messages name the file and, where known, the key.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("firmware profile {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("firmware profile {path}: key `{key}` {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error("firmware profile {path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The result of [`detect`].
#[derive(Debug, Clone, Copy)]
pub struct Detection<'a> {
    pub profile: &'a FirmwareProfile,
    /// Nothing matched: `profile` is the `marlin2` fallback; the caller should warn.
    pub fallback: bool,
}

/// A complete set of profiles: always holds every built-in name.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileSet {
    profiles: Vec<FirmwareProfile>,
}

impl ProfileSet {
    /// The embedded profiles.
    #[must_use]
    pub fn builtin() -> ProfileSet {
        ProfileSet {
            profiles: builtin(),
        }
    }

    /// All profiles, in built-in order.
    #[must_use]
    pub fn profiles(&self) -> &[FirmwareProfile] {
        &self.profiles
    }

    /// The profile with this name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&FirmwareProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// Picks the profile for the firmware that answered `M115` (see the module docs).
    #[must_use]
    pub fn detect(&self, info: &FirmwareInfo) -> Detection<'_> {
        let best = self
            .profiles
            .iter()
            .filter_map(|p| p.match_len(&info.name).map(|len| (len, p)))
            // First profile wins a tie (built-in order).
            .fold(None::<(usize, &FirmwareProfile)>, |best, cur| match best {
                Some(b) if b.0 >= cur.0 => Some(b),
                _ => Some(cur),
            });
        match best {
            Some((_, profile)) => Detection {
                profile,
                fallback: false,
            },
            None => Detection {
                profile: self.fallback(),
                fallback: true,
            },
        }
    }

    fn fallback(&self) -> &FirmwareProfile {
        // A ProfileSet is only built from the built-ins (possibly overridden one by one),
        // so the fallback is always there; the first profile is marlin2 as well.
        self.get(FALLBACK).unwrap_or(&self.profiles[0])
    }
}

/// Parses the embedded profiles. They are checked by the tests, so this cannot fail at run
/// time for a build that passed them.
#[must_use]
pub fn builtin() -> Vec<FirmwareProfile> {
    BUILTIN
        .iter()
        .map(|(name, text)| {
            let origin = PathBuf::from(format!("firmware-profiles/{name}.toml"));
            FirmwareProfile::from_toml(text, &origin)
                .unwrap_or_else(|e| panic!("built-in profile is invalid: {e}"))
        })
        .collect()
}

fn builtin_set() -> &'static ProfileSet {
    static SET: OnceLock<ProfileSet> = OnceLock::new();
    SET.get_or_init(ProfileSet::builtin)
}

/// [`ProfileSet::detect`] over the built-in profiles.
#[must_use]
pub fn detect(info: &FirmwareInfo) -> Detection<'static> {
    builtin_set().detect(info)
}

/// The built-in profiles, each replaced by `<dir>/<name>.toml` when that file exists (a
/// complete profile, not a patch: copy the built-in file and edit it). Other files in `dir`
/// are ignored, so it may be the agent's config directory.
pub fn load_override(dir: &Path) -> Result<ProfileSet, ProfileError> {
    let mut profiles = builtin();
    for p in &mut profiles {
        let path = dir.join(format!("{}.toml", p.name));
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(ProfileError::Read { path, source }),
        };
        *p = FirmwareProfile::from_toml(&text, &path)?;
    }
    Ok(ProfileSet { profiles })
}

#[cfg(test)]
mod tests;

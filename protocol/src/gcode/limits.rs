//! Machine motion limits, and the commands and slicer comments that set them.
//!
//! A [`Limits`] is what the [motion planner](super::planner) needs to know about the
//! printer: per-axis maximum speed and acceleration, the accelerations `M204` selects for
//! printing / retracting / travelling, and how corners are taken (classic jerk, Marlin 2
//! junction deviation or Klipper's square-corner velocity). Units are always mm and s
//! (`M203` uses Marlin's mm/s).
//!
//! Values come, in increasing priority, from:
//! 1. [`Limits::default`] (Marlin 2 stock configuration), or a firmware profile the agent supplies;
//! 2. the slicer's configuration comments (`; machine_max_acceleration_x = 9000,1000`, PrusaSlicer,
//!    SuperSlicer, OrcaSlicer, Bambu Studio; the first value is the normal mode, a second one
//!    the "silent"/stealth mode, which is ignored), see [`Limits::apply_config_comment`];
//! 3. commands in the file: `M201`, `M203`, `M204`, `M205`, Klipper's `SET_VELOCITY_LIMIT`
//!    ([`Limits::apply_command`], [`Limits::apply_macro`]). The [`Machine`](super::Machine)
//!    stops reading configuration comments once the file has issued a limit command, so the
//!    configuration block PrusaSlicer writes at the end of a file never undoes a command.

use super::allowances::Allowances;
use super::heaters::Heating;
use super::line::Line;
use super::retraction::Retraction;

/// Axis indices used by every per-axis array.
pub const X: usize = 0;
pub const Y: usize = 1;
pub const Z: usize = 2;
pub const E: usize = 3;

/// How the firmware limits the speed through a corner between two moves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Corner {
    /// Classic jerk (Marlin 1, Prusa firmware, `M205 X Y Z E`): the largest instantaneous
    /// per-axis speed change, mm/s, indexed X, Y, Z, E. This is also what the PrusaSlicer-family
    /// estimators model.
    Jerk([f64; 4]),
    /// Marlin 2 junction deviation (`M205 J`), mm.
    Deviation(f64),
    /// Klipper `square_corner_velocity`, mm/s (junction deviation derived from the acceleration,
    /// plus Klipper's centripetal limit for short segments).
    SquareCorner(f64),
}

/// Limits of one machine. `f64::INFINITY` means "no limit".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Per-axis maximum feed rate, mm/s (`M203`), X Y Z E.
    pub max_feed: [f64; 4],
    /// Per-axis maximum acceleration, mm/s² (`M201`), X Y Z E.
    pub max_accel: [f64; 4],
    /// Acceleration of moves that extrude (`M204 P`, or `S`), mm/s².
    pub print_accel: f64,
    /// Acceleration of extruder-only moves (retract / unretract, `M204 R`), mm/s².
    pub retract_accel: f64,
    /// Acceleration of moves without E (`M204 T`, or `S`), mm/s².
    pub travel_accel: f64,
    /// Slicer-side caps on the three accelerations above (PrusaSlicer's
    /// `machine_max_acceleration_extruding / _retracting / _travel`). Firmware has no such caps;
    /// they only come from configuration comments.
    pub accel_caps: [f64; 3],
    pub corner: Corner,
    /// Minimum feed rate of printing moves, mm/s (`M205 S`).
    pub min_feed: f64,
    /// Minimum feed rate of travel moves, mm/s (`M205 T`).
    pub min_travel_feed: f64,
    /// Minimum segment time, s (`M205 B`, µs in the command). Applied as a cap on the cruise
    /// speed of very short moves (what Marlin does when its buffer runs low; an upper bound).
    pub min_segment_s: f64,
    /// Klipper `max_accel_to_decel`, mm/s²: caps the peak speed of short moves that never cruise.
    pub accel_to_decel: Option<f64>,
    /// Time the slicer's estimator adds beyond motion: filament changes (an AMS swap takes
    /// about a minute inside the firmware), levelling, chamber heating (see [`Allowances`]).
    pub allowances: Allowances,
    /// Firmware retraction settings for `G10`/`G11` (not motion limits, but the same sources:
    /// profile, slicer comments, `M207`/`M208`, see [`Retraction`]).
    pub retraction: Retraction,
    /// Heater rates for heat-up waits (profile only; no G-code sets them).
    pub heating: Heating,
}

impl Default for Limits {
    /// Marlin 2 stock `Configuration.h` (max feed 300/300/5/25 is the stock value; we use the
    /// more common printer values 500/500/12/120), accelerations 1000 mm/s² (between the stock 3000
    /// and the 500 of many bed slingers), junction deviation 0.013 mm.
    fn default() -> Self {
        Self {
            max_feed: [500.0, 500.0, 12.0, 120.0],
            max_accel: [3000.0, 3000.0, 100.0, 10_000.0],
            print_accel: 1000.0,
            retract_accel: 1000.0,
            travel_accel: 1000.0,
            accel_caps: [f64::INFINITY; 3],
            corner: Corner::Deviation(0.013),
            min_feed: 0.0,
            min_travel_feed: 0.0,
            min_segment_s: 0.0,
            accel_to_decel: None,
            allowances: Allowances::default(),
            retraction: Retraction::default(),
            heating: Heating::default(),
        }
    }
}

/// Marlin's stock classic-jerk values, used for axes a `M205` does not name when it switches
/// a junction-deviation machine to jerk.
const DEFAULT_JERK: [f64; 4] = [10.0, 10.0, 0.4, 5.0];

fn positive(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v > 0.0)
}

/// A Klipper macro's `KEY=number` words: upper-cased key, the number if it parses.
pub(super) fn macro_params(args: &str) -> impl Iterator<Item = (String, Option<f64>)> + '_ {
    args.split_ascii_whitespace().filter_map(|word| {
        let (k, v) = word.split_once('=')?;
        Some((k.to_ascii_uppercase(), v.parse::<f64>().ok()))
    })
}

impl Limits {
    /// Effective acceleration for printing (0), retracting (1) and travel (2) moves.
    pub fn accel_for(&self, kind: usize) -> f64 {
        let a = [self.print_accel, self.retract_accel, self.travel_accel][kind];
        a.min(self.accel_caps[kind])
    }

    fn jerk_mut(&mut self) -> &mut [f64; 4] {
        if !matches!(self.corner, Corner::Jerk(_)) {
            self.corner = Corner::Jerk(DEFAULT_JERK);
        }
        match &mut self.corner {
            Corner::Jerk(j) => j,
            _ => unreachable!("just set"),
        }
    }

    /// Applies `M201`, `M203`, `M204` or `M205`; returns whether the line was one of them.
    pub fn apply_command(&mut self, l: &Line<'_>) -> bool {
        if l.letter != Some(b'M') || l.sub.is_some() {
            return false;
        }
        const AXES: [char; 4] = ['X', 'Y', 'Z', 'E'];
        match l.number {
            Some(201) => {
                for (i, c) in AXES.into_iter().enumerate() {
                    if let Some(v) = positive(l.get(c)) {
                        self.max_accel[i] = v;
                    }
                }
            }
            Some(203) => {
                for (i, c) in AXES.into_iter().enumerate() {
                    if let Some(v) = positive(l.get(c)) {
                        self.max_feed[i] = v;
                    }
                }
            }
            Some(204) => {
                // Marlin 2 and the PrusaSlicer estimator: S sets both print and travel.
                if let Some(s) = positive(l.get('S')) {
                    self.print_accel = s;
                    self.travel_accel = s;
                }
                if let Some(p) = positive(l.get('P')) {
                    self.print_accel = p;
                }
                if let Some(r) = positive(l.get('R')) {
                    self.retract_accel = r;
                }
                if let Some(t) = positive(l.get('T')) {
                    self.travel_accel = t;
                }
            }
            Some(205) => {
                if let Some(s) = l.get('S').filter(|v| *v >= 0.0) {
                    self.min_feed = s;
                }
                if let Some(t) = l.get('T').filter(|v| *v >= 0.0) {
                    self.min_travel_feed = t;
                }
                if let Some(b) = l.get('B').filter(|v| *v >= 0.0) {
                    self.min_segment_s = b / 1e6;
                }
                if let Some(j) = positive(l.get('J')) {
                    self.corner = Corner::Deviation(j);
                }
                for (i, c) in AXES.into_iter().enumerate() {
                    if let Some(v) = l.get(c).filter(|v| *v >= 0.0) {
                        self.jerk_mut()[i] = v;
                    }
                }
            }
            _ => return false,
        }
        true
    }

    /// Applies Klipper's `SET_VELOCITY_LIMIT VELOCITY= ACCEL= ACCEL_TO_DECEL=
    /// SQUARE_CORNER_VELOCITY=` given the macro name and its argument text.
    pub fn apply_macro(&mut self, name: &str, args: &str) -> bool {
        if !name.eq_ignore_ascii_case("SET_VELOCITY_LIMIT") {
            return false;
        }
        for (k, v) in macro_params(args) {
            let Some(v) = positive(v).or_else(|| {
                // SQUARE_CORNER_VELOCITY=0 is legal (stop at every corner).
                v.filter(|v| *v == 0.0)
            }) else {
                continue;
            };
            match k.as_str() {
                "VELOCITY" if v > 0.0 => {
                    self.max_feed[X] = v;
                    self.max_feed[Y] = v;
                }
                "ACCEL" if v > 0.0 => {
                    self.print_accel = v;
                    self.travel_accel = v;
                    self.retract_accel = v;
                    self.max_accel[X] = self.max_accel[X].max(v);
                    self.max_accel[Y] = self.max_accel[Y].max(v);
                }
                "ACCEL_TO_DECEL" if v > 0.0 => self.accel_to_decel = Some(v),
                "SQUARE_CORNER_VELOCITY" => self.corner = Corner::SquareCorner(v),
                _ => {}
            }
        }
        true
    }

    /// Applies one slicer configuration comment (the text after `;`), e.g.
    /// `machine_max_acceleration_x = 9000,1000`. Returns whether it was a limit.
    ///
    /// Only the first (normal mode) value of a list is used. Keys: PrusaSlicer / SuperSlicer
    /// `machine_max_feedrate_*`, Orca / Bambu `machine_max_speed_*`, `machine_max_acceleration_*`
    /// (`x y z e extruding retracting travel`), `machine_max_jerk_*`,
    /// `machine_max_junction_deviation` (Orca; 0 = use jerk), `machine_min_extruding_rate`,
    /// `machine_min_travel_rate`; and the [`Allowances`] keys (`machine_*_time`,
    /// `filament_(un)load_time`).
    pub fn apply_config_comment(&mut self, comment: &str) -> bool {
        if Allowances::is_config_key(comment) {
            return self.allowances.apply_config_comment(comment);
        }
        let Some(rest) = comment.strip_prefix("machine_") else {
            return false;
        };
        let Some((key, value)) = rest.split_once('=') else {
            return false;
        };
        let key = key.trim();
        let first = value.split([',', ';']).next().unwrap_or("").trim();
        let Some(v) = first
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
        else {
            return false;
        };
        let axis = |s: &str| match s {
            "x" => Some(X),
            "y" => Some(Y),
            "z" => Some(Z),
            "e" => Some(E),
            _ => None,
        };
        let nonzero = v > 0.0;
        if let Some(a) = key
            .strip_prefix("max_feedrate_")
            .or(key.strip_prefix("max_speed_"))
            .and_then(axis)
        {
            if nonzero {
                self.max_feed[a] = v;
            }
        } else if let Some(k) = key.strip_prefix("max_acceleration_") {
            if !nonzero {
                return true;
            }
            match (axis(k), k) {
                (Some(a), _) => self.max_accel[a] = v,
                // As PrusaSlicer's estimator: the cap is also the starting value.
                (None, "extruding") => {
                    self.accel_caps[0] = v;
                    self.print_accel = v;
                }
                (None, "retracting") => {
                    self.accel_caps[1] = v;
                    self.retract_accel = v;
                }
                (None, "travel") => {
                    self.accel_caps[2] = v;
                    self.travel_accel = v;
                }
                _ => return false,
            }
        } else if let Some(a) = key.strip_prefix("max_jerk_").and_then(axis) {
            // Keys come sorted, so a non-zero `max_junction_deviation` (Orca) read after the
            // jerk values still wins; 0 there means "use jerk".
            self.jerk_mut()[a] = v;
        } else if key == "max_junction_deviation" {
            if nonzero {
                self.corner = Corner::Deviation(v);
            }
        } else if key == "min_extruding_rate" {
            self.min_feed = v;
        } else if key == "min_travel_rate" {
            self.min_travel_feed = v;
        } else {
            return false;
        }
        true
    }

    /// Reads the configuration comments of a block of G-code text (e.g. a file's last
    /// 256 KiB, where PrusaSlicer and SuperSlicer put their configuration): machine limits
    /// and firmware-retraction settings.
    pub fn apply_config_text(&mut self, text: &[u8]) {
        for line in text.split(|&b| b == b'\n') {
            let Some(rest) = line.strip_prefix(b";") else {
                continue;
            };
            if let Ok(s) = std::str::from_utf8(rest) {
                let s = s.trim();
                if !self.apply_config_comment(s) && Retraction::is_config_key(s) {
                    self.retraction.apply_config_comment(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcode::parse_line;

    #[test]
    fn commands_set_limits() {
        let mut l = Limits::default();
        for c in [
            "M201 X2500 Y2500 Z400 E5000",
            "M203 X180 Y180 Z12 E80",
            "M204 P1250 R1200 T2500",
            "M205 X8.00 Y8.00 Z2.00 E10.00 S0 T0 B20000",
        ] {
            assert!(l.apply_command(&parse_line(c.as_bytes())), "{c}");
        }
        assert_eq!(l.max_accel, [2500.0, 2500.0, 400.0, 5000.0]);
        assert_eq!(l.max_feed, [180.0, 180.0, 12.0, 80.0]);
        assert_eq!(
            (l.print_accel, l.retract_accel, l.travel_accel),
            (1250.0, 1200.0, 2500.0)
        );
        assert_eq!(l.corner, Corner::Jerk([8.0, 8.0, 2.0, 10.0]));
        assert!((l.min_segment_s - 0.02).abs() < 1e-12);
        l.apply_command(&parse_line(b"M204 S500"));
        assert_eq!((l.print_accel, l.travel_accel), (500.0, 500.0));
        l.apply_command(&parse_line(b"M205 J0.02"));
        assert_eq!(l.corner, Corner::Deviation(0.02));
    }

    #[test]
    fn klipper_macro_and_config_comments() {
        let mut l = Limits::default();
        assert!(l.apply_macro(
            "SET_VELOCITY_LIMIT",
            "VELOCITY=300 ACCEL=7000 ACCEL_TO_DECEL=3500 SQUARE_CORNER_VELOCITY=5"
        ));
        assert_eq!(l.print_accel, 7000.0);
        assert_eq!(l.accel_to_decel, Some(3500.0));
        assert_eq!(l.corner, Corner::SquareCorner(5.0));
        assert_eq!(l.max_feed[X], 300.0);

        let mut c = Limits::default();
        c.apply_config_text(
            b"; machine_max_acceleration_x = 9000,1000\n; machine_max_feedrate_z = 12,12\n\
              ; machine_max_speed_e = 30,30\n; machine_max_jerk_x = 10,10\n\
              ; machine_max_acceleration_extruding = 1500,1250\n; other = 1\n",
        );
        assert_eq!(c.max_accel[X], 9000.0);
        assert_eq!(c.max_feed[Z], 12.0);
        assert_eq!(c.max_feed[E], 30.0);
        assert!(matches!(c.corner, Corner::Jerk(j) if j[X] == 10.0));
        assert_eq!(c.accel_for(0), 1500.0);
        c.print_accel = 5000.0;
        assert_eq!(c.accel_for(0), 1500.0);
    }
}

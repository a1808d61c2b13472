//! Firmware retraction (`G10` / `G11`): how much filament the firmware pulls back and pushes
//! again, and how fast.
//!
//! The file does not say how long a `G10` retraction is: the firmware's settings do. They come,
//! in increasing priority, from [`Retraction::default`] (Marlin's `FWRETRACT` defaults) or a
//! firmware profile; the slicer's configuration comments (`; retract_length = 0.8`,
//! PrusaSlicer / SuperSlicer, whose estimator also models `G10` with them; `; retraction_length`,
//! OrcaSlicer / Bambu Studio); and the file's own commands: Marlin `M207` / `M208`, Klipper
//! `SET_RETRACTION`. As with motion limits, once a command is seen the comments are ignored.
//!
//! Lengths are physical filament, mm; Marlin divides a firmware retraction by the flow factor
//! so that `M221` does not change it.

use super::limits::macro_params;
use super::line::Line;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retraction {
    /// `G10` length, mm (`M207 S`, Klipper `RETRACT_LENGTH`).
    pub length_mm: f64,
    /// `G10` speed, mm/s (`M207 F`, mm/min in the command; Klipper `RETRACT_SPEED`).
    pub speed_mm_s: f64,
    /// Z lift while retracted, mm (`M207 Z`).
    pub lift_mm: f64,
    /// `G10 S1` (tool-swap) length, mm (`M207 W`).
    pub swap_length_mm: f64,
    /// Extra length `G11` pushes beyond the retraction, mm (`M208 S`, Klipper
    /// `UNRETRACT_EXTRA_LENGTH`); it is consumed filament.
    pub extra_mm: f64,
    /// Extra after a swap retraction, mm (`M208 W`).
    pub swap_extra_mm: f64,
    /// `G11` speed, mm/s (`M208 F`, Klipper `UNRETRACT_SPEED`).
    pub recover_speed_mm_s: f64,
}

impl Default for Retraction {
    /// Marlin 2 `Configuration_adv.h` `FWRETRACT` defaults.
    fn default() -> Self {
        Self {
            length_mm: 3.0,
            speed_mm_s: 45.0,
            lift_mm: 0.0,
            swap_length_mm: 13.0,
            extra_mm: 0.0,
            swap_extra_mm: 0.0,
            recover_speed_mm_s: 8.0,
        }
    }
}

/// Lengths: finite, ≥ 0 and below a metre (a hostile `M207 S1e300` must not become a move).
fn length(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && (0.0..1000.0).contains(v))
}

fn speed(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite() && *v > 0.0)
}

impl Retraction {
    /// Applies `M207` or `M208`; returns whether the line was one of them.
    pub fn apply_command(&mut self, l: &Line<'_>) -> bool {
        if l.letter != Some(b'M') || l.sub.is_some() {
            return false;
        }
        match l.number {
            Some(207) => {
                if let Some(s) = length(l.get('S')) {
                    self.length_mm = s;
                }
                if let Some(f) = speed(l.get('F')) {
                    self.speed_mm_s = f / 60.0;
                }
                if let Some(z) = length(l.get('Z')) {
                    self.lift_mm = z;
                }
                if let Some(w) = length(l.get('W')) {
                    self.swap_length_mm = w;
                }
            }
            Some(208) => {
                if let Some(s) = length(l.get('S')) {
                    self.extra_mm = s;
                }
                if let Some(f) = speed(l.get('F')) {
                    self.recover_speed_mm_s = f / 60.0;
                }
                if let Some(w) = length(l.get('W')) {
                    self.swap_extra_mm = w;
                }
            }
            _ => return false,
        }
        true
    }

    /// Applies Klipper's `SET_RETRACTION RETRACT_LENGTH= RETRACT_SPEED= UNRETRACT_EXTRA_LENGTH=
    /// UNRETRACT_SPEED=` given the macro name and its argument text.
    pub fn apply_macro(&mut self, name: &str, args: &str) -> bool {
        if !name.eq_ignore_ascii_case("SET_RETRACTION") {
            return false;
        }
        for (k, v) in macro_params(args) {
            match k.as_str() {
                "RETRACT_LENGTH" => self.length_mm = length(v).unwrap_or(self.length_mm),
                "RETRACT_SPEED" => self.speed_mm_s = speed(v).unwrap_or(self.speed_mm_s),
                "UNRETRACT_EXTRA_LENGTH" => self.extra_mm = length(v).unwrap_or(self.extra_mm),
                "UNRETRACT_SPEED" => {
                    self.recover_speed_mm_s = speed(v).unwrap_or(self.recover_speed_mm_s);
                }
                _ => {}
            }
        }
        true
    }

    /// Applies one slicer configuration comment (text after `;`): PrusaSlicer / SuperSlicer
    /// `retract_length`, `retract_speed`, `deretract_speed` (0 = the retract speed),
    /// `retract_restart_extra`, `retract_lift`; OrcaSlicer / Bambu Studio `retraction_length`,
    /// `retraction_speed`, `deretraction_speed`, `z_hop`. Per-extruder lists: the first value.
    /// Returns whether it was one of them.
    pub fn apply_config_comment(&mut self, comment: &str) -> bool {
        let Some((key, value)) = comment.split_once('=') else {
            return false;
        };
        let first = value.split([',', ';']).next().unwrap_or("").trim();
        let Ok(v) = first.parse::<f64>() else {
            return false;
        };
        match key.trim() {
            "retract_length" | "retraction_length" => {
                self.length_mm = length(Some(v)).unwrap_or(self.length_mm);
            }
            "retract_speed" | "retraction_speed" => {
                self.speed_mm_s = speed(Some(v)).unwrap_or(self.speed_mm_s);
            }
            "deretract_speed" | "deretraction_speed" => {
                // 0 means "as fast as the retraction", which may be read later: keep order-free
                // by resolving it in `recover_speed`.
                self.recover_speed_mm_s = if v == 0.0 {
                    0.0
                } else {
                    speed(Some(v)).unwrap_or(self.recover_speed_mm_s)
                };
            }
            "retract_restart_extra" => self.extra_mm = length(Some(v)).unwrap_or(self.extra_mm),
            "retract_lift" | "z_hop" => self.lift_mm = length(Some(v)).unwrap_or(self.lift_mm),
            _ => return false,
        }
        true
    }

    /// `G11` speed, mm/s: a slicer's "0 = same as retraction" resolved.
    pub fn recover_speed(&self) -> f64 {
        if self.recover_speed_mm_s > 0.0 {
            self.recover_speed_mm_s
        } else {
            self.speed_mm_s
        }
    }

    /// Is this comment possibly a retraction setting (cheap prefix test for the hot path)?
    pub fn is_config_key(comment: &str) -> bool {
        comment.starts_with("retract")
            || comment.starts_with("deretract")
            || comment.starts_with("z_hop")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcode::parse_line;

    #[test]
    fn marlin_commands_klipper_macro_and_slicer_comments() {
        let mut r = Retraction::default();
        assert!(r.apply_command(&parse_line(b"M207 S4.5 F3000 Z0.4 W10")));
        assert!(r.apply_command(&parse_line(b"M208 S0.2 F1200")));
        assert_eq!(
            (r.length_mm, r.speed_mm_s, r.lift_mm, r.swap_length_mm),
            (4.5, 50.0, 0.4, 10.0)
        );
        assert_eq!((r.extra_mm, r.recover_speed()), (0.2, 20.0));
        r.apply_command(&parse_line(b"M207 S1e300"));
        assert_eq!(r.length_mm, 4.5, "an absurd length is ignored");

        let mut k = Retraction::default();
        assert!(k.apply_macro(
            "SET_RETRACTION",
            "RETRACT_LENGTH=0.5 RETRACT_SPEED=30 UNRETRACT_EXTRA_LENGTH=0.1 UNRETRACT_SPEED=nan"
        ));
        assert_eq!((k.length_mm, k.speed_mm_s, k.extra_mm), (0.5, 30.0, 0.1));
        assert_eq!(k.recover_speed(), 8.0, "a NaN speed is ignored");

        let mut c = Retraction::default();
        for s in [
            "retract_length = 0.8,0.8",
            "deretract_speed = 0",
            "retract_speed = 35",
        ] {
            assert!(c.apply_config_comment(s), "{s}");
        }
        assert!(!c.apply_config_comment("retract_before_travel = 2"));
        assert_eq!((c.length_mm, c.recover_speed()), (0.8, 35.0));
    }
}

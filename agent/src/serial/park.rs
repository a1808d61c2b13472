//! Where the head is, from the acknowledged lines, and the profile's pause / resume / cancel
//! scripts with their placeholders filled (pure).
//!
//! A host-side pause first lets every line in flight be acknowledged, so the position the
//! printer was last commanded to is the one the acknowledged lines leave behind: no `M114`
//! round trip is needed. Coordinates are the job's own (logical, after `G92`), which is what
//! the resume script's `G1 X{x} Y{y}` needs to come back to.

use farm_protocol::gcode::Line;

/// The commanded position and modes after the lines seen so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Position {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub e: f64,
    /// mm/min.
    pub f: f64,
    pub relative_xyz: bool,
    pub relative_e: bool,
}

impl Default for Position {
    fn default() -> Self {
        Position {
            x: 0.0,
            y: 0.0,
            z: 0.0,
            e: 0.0,
            f: 1500.0,
            relative_xyz: false,
            relative_e: false,
        }
    }
}

impl Position {
    /// Applies one acknowledged line.
    pub fn step(&mut self, l: &Line<'_>) {
        let (Some(letter), Some(n)) = (l.letter, l.number) else {
            return;
        };
        match (letter, n) {
            (b'G', 0..=3) => {
                let rel = self.relative_xyz;
                for (axis, v) in [('X', &mut self.x), ('Y', &mut self.y), ('Z', &mut self.z)] {
                    if let Some(p) = l.get(axis) {
                        *v = if rel { *v + p } else { p };
                    }
                }
                if let Some(p) = l.get('E') {
                    self.e = if self.relative_e { self.e + p } else { p };
                }
                if let Some(f) = l.get('F').filter(|f| *f > 0.0) {
                    self.f = f;
                }
            }
            (b'G', 28) => {
                // Bare letters (`G28 Z`) carry no value the parser keeps, so they read as a
                // plain `G28`: harmless, homing comes before the moves a pause returns to.
                let none = !['X', 'Y', 'Z'].iter().any(|c| l.has(*c));
                if none || l.has('X') {
                    self.x = 0.0;
                }
                if none || l.has('Y') {
                    self.y = 0.0;
                }
                if none || l.has('Z') {
                    self.z = 0.0;
                }
            }
            (b'G', 90) => {
                self.relative_xyz = false;
                self.relative_e = false;
            }
            (b'G', 91) => {
                self.relative_xyz = true;
                self.relative_e = true;
            }
            (b'G', 92) => {
                let none = l.no_params();
                for (axis, v) in [
                    ('X', &mut self.x),
                    ('Y', &mut self.y),
                    ('Z', &mut self.z),
                    ('E', &mut self.e),
                ] {
                    if let Some(p) = l.get(axis) {
                        *v = p;
                    } else if none {
                        *v = 0.0;
                    }
                }
            }
            (b'M', 82) => self.relative_e = false,
            (b'M', 83) => self.relative_e = true,
            _ => {}
        }
    }

    /// One script line with `{x} {y} {z} {e} {f} {extrusion_mode}` filled in.
    #[must_use]
    pub fn fill(&self, template: &str) -> String {
        let mode = if self.relative_e { "M83" } else { "M82" };
        template
            .replace("{x}", &num(self.x))
            .replace("{y}", &num(self.y))
            .replace("{z}", &num(self.z))
            .replace("{e}", &num(self.e))
            .replace("{f}", &num(self.f))
            .replace("{extrusion_mode}", mode)
    }
}

/// Three decimals without trailing zeros (`10`, `10.5`, `0.125`).
fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use farm_protocol::gcode::parse_line;

    fn run(lines: &[&str]) -> Position {
        let mut p = Position::default();
        for l in lines {
            p.step(&parse_line(l.as_bytes()));
        }
        p
    }

    #[test]
    fn follows_absolute_relative_homing_and_g92() {
        let p = run(&["G28", "G90", "M83", "G1 X10 Y20 Z0.2 F3000", "G1 X15 E1.5"]);
        assert_eq!((p.x, p.y, p.z, p.e, p.f), (15.0, 20.0, 0.2, 1.5, 3000.0));
        assert!(p.relative_e && !p.relative_xyz);
        let p = run(&[
            "G1 X10 Y10",
            "G91",
            "G1 X1 Y-2 Z3",
            "G90",
            "G92 E0",
            "G1 E4",
        ]);
        assert_eq!((p.x, p.y, p.z, p.e), (11.0, 8.0, 3.0, 4.0));
        let p = run(&["G1 X5 Y5 Z5", "G28 Z0", "G92 X100"]);
        assert_eq!((p.x, p.y, p.z), (100.0, 5.0, 0.0));
        // Comments and unknown words change nothing.
        assert_eq!(run(&["; G1 X9", "M117 hi"]), Position::default());
    }

    #[test]
    fn fills_the_profile_scripts() {
        let p = run(&["M82", "G1 X12.5 Y-3 Z0.3 E7.25 F1800"]);
        assert_eq!(p.fill("G1 X{x} Y{y} F6000"), "G1 X12.5 Y-3 F6000");
        assert_eq!(p.fill("G1 Z{z} F600"), "G1 Z0.3 F600");
        assert_eq!(p.fill("{extrusion_mode}"), "M82");
        assert_eq!(p.fill("G92 E{e}"), "G92 E7.25");
        assert_eq!(p.fill("G1 F{f}"), "G1 F1800");
        assert_eq!(run(&["M83"]).fill("{extrusion_mode}"), "M83");
    }
}

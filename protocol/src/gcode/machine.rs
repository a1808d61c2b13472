//! The printer's coordinate state, advanced one line at a time.
//!
//! Pure: a [`Machine`] turns each [`Line`] into a [`Step`] (how long it takes, how much
//! filament it consumes, which heater it asks for). The simulated printer paces itself with
//! it; the analyzer sums it over a file.

use super::line::Line;

/// A heater target the line asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Heat {
    /// `M104`/`M109` (tool `T` or the current one), `wait` for `M109`.
    Tool {
        tool: usize,
        target: f64,
        wait: bool,
    },
    /// `M140`/`M190`.
    Bed { target: f64, wait: bool },
}

/// What one line does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// Motion and dwell time, s (heat-up waits are not included: they depend on the heater).
    pub duration_s: f64,
    /// Filament newly consumed on [`Step::tool`] by this line, mm (high-water increase).
    pub consumed_mm: f64,
    pub tool: usize,
    pub heat: Option<Heat>,
    /// The line extruded at a new, higher Z: a layer started.
    pub new_layer: bool,
}

#[derive(Debug, Clone, Default)]
struct Extruder {
    /// Current E position in file units (for absolute mode).
    pos: f64,
    /// Net physical filament pushed, mm.
    net: f64,
    /// Highest `net` seen: what has been consumed.
    high_water: f64,
}

/// Limits used for move time. Issue-level motion planning (acceleration, junctions) builds on this.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_xy_mm_s: f64,
    pub max_z_mm_s: f64,
    pub max_e_mm_s: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_xy_mm_s: 300.0,
            max_z_mm_s: 12.0,
            max_e_mm_s: 60.0,
        }
    }
}

/// Bounding box of extruding moves, mm.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bounds {
    pub min: [f64; 3],
    pub max: [f64; 3],
}

#[derive(Debug, Clone)]
pub struct Machine {
    limits: Limits,
    xyz: [f64; 3],
    relative_xyz: bool,
    relative_e: bool,
    inches: bool,
    feed_mm_s: f64,
    flow: f64,
    tool: usize,
    extruders: Vec<Extruder>,
    last_extrude_z: Option<f64>,
    layers: u32,
    bounds: Option<Bounds>,
}

/// Tool numbers above this are treated as junk, not as a reason to allocate.
const MAX_TOOLS: usize = 64;

impl Default for Machine {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

impl Machine {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            xyz: [0.0; 3],
            relative_xyz: false,
            relative_e: false,
            inches: false,
            feed_mm_s: 25.0,
            flow: 1.0,
            tool: 0,
            extruders: vec![Extruder::default()],
            last_extrude_z: None,
            layers: 0,
            bounds: None,
        }
    }

    /// Filament consumed so far per tool, mm (index = tool number).
    pub fn consumed_mm(&self) -> Vec<f64> {
        self.extruders.iter().map(|e| e.high_water).collect()
    }

    pub fn layers(&self) -> u32 {
        self.layers
    }

    pub fn bounds(&self) -> Option<Bounds> {
        self.bounds
    }

    pub fn tool(&self) -> usize {
        self.tool
    }

    fn units(&self, v: f64) -> f64 {
        if self.inches { v * 25.4 } else { v }
    }

    fn extruder(&mut self, t: usize) -> &mut Extruder {
        if self.extruders.len() <= t {
            self.extruders.resize(t + 1, Extruder::default());
        }
        &mut self.extruders[t]
    }

    /// Applies one line and says what it did.
    pub fn step(&mut self, l: &Line<'_>) -> Step {
        let mut step = Step {
            tool: self.tool,
            ..Step::default()
        };
        let (Some(letter), Some(n)) = (l.letter, l.number) else {
            return step;
        };
        match (letter, n) {
            (b'G', 0..=3) => self.motion(l, n, &mut step),
            (b'G', 4) => {
                // P in ms, S in s.
                step.duration_s = l
                    .get('P')
                    .map(|p| p / 1000.0)
                    .or(l.get('S'))
                    .unwrap_or(0.0)
                    .clamp(0.0, 86_400.0);
            }
            (b'G', 20) => self.inches = true,
            (b'G', 21) => self.inches = false,
            (b'G', 90) => self.relative_xyz = false,
            (b'G', 91) => self.relative_xyz = true,
            (b'G', 92) => {
                let none = l.no_params();
                for (i, c) in ['X', 'Y', 'Z'].into_iter().enumerate() {
                    if let Some(v) = l.get(c) {
                        self.xyz[i] = self.units(v);
                    } else if none {
                        self.xyz[i] = 0.0;
                    }
                }
                let e = l.get('E').map(|v| self.units(v)).or(none.then_some(0.0));
                if let Some(e) = e {
                    let t = self.tool;
                    self.extruder(t).pos = e;
                }
            }
            (b'M', 82) => self.relative_e = false,
            (b'M', 83) => self.relative_e = true,
            (b'M', 221) => {
                if let Some(s) = l.get('S').filter(|s| *s > 0.0 && *s < 1000.0) {
                    self.flow = s / 100.0;
                }
            }
            (b'M', 104 | 109) => {
                let tool = l
                    .get('T')
                    .map_or(self.tool, |t| (t.max(0.0) as usize).min(MAX_TOOLS - 1));
                if let Some(target) = l.get('S').or(l.get('R')) {
                    step.heat = Some(Heat::Tool {
                        tool,
                        target,
                        wait: n == 109,
                    });
                }
            }
            (b'M', 140 | 190) => {
                if let Some(target) = l.get('S').or(l.get('R')) {
                    step.heat = Some(Heat::Bed {
                        target,
                        wait: n == 190,
                    });
                }
            }
            (b'T', t) if (t as usize) < MAX_TOOLS => {
                self.tool = t as usize;
                self.extruder(t as usize);
                step.tool = self.tool;
            }
            _ => {}
        }
        step
    }

    fn motion(&mut self, l: &Line<'_>, g: u32, step: &mut Step) {
        if let Some(f) = l.get('F').filter(|f| *f > 0.0) {
            self.feed_mm_s = self.units(f) / 60.0;
        }
        let start = self.xyz;
        let mut end = start;
        for (i, c) in ['X', 'Y', 'Z'].into_iter().enumerate() {
            if let Some(v) = l.get(c) {
                let v = self.units(v);
                end[i] = if self.relative_xyz { start[i] + v } else { v };
            }
        }
        let dx = end[0] - start[0];
        let dy = end[1] - start[1];
        let dz = end[2] - start[2];
        let mut xy_len = (dx * dx + dy * dy).sqrt();
        if g == 2 || g == 3 {
            xy_len = arc_length(l, start, end, g == 2, self.inches).unwrap_or(xy_len);
        }
        self.xyz = end;

        let mut de = 0.0;
        if let Some(e) = l.get('E') {
            let e = self.units(e);
            let relative = self.relative_e || self.relative_xyz;
            let t = self.tool;
            let flow = self.flow;
            let ex = self.extruder(t);
            de = if relative { e } else { e - ex.pos };
            ex.pos += de;
            ex.net += de * flow;
            if ex.net > ex.high_water {
                step.consumed_mm = ex.net - ex.high_water;
                ex.high_water = ex.net;
            }
        }

        let len = (xy_len * xy_len + dz * dz).sqrt();
        let mut speed = self.feed_mm_s.min(if xy_len > 0.0 {
            self.limits.max_xy_mm_s
        } else {
            self.limits.max_z_mm_s
        });
        if len == 0.0 {
            speed = self.feed_mm_s.min(self.limits.max_e_mm_s);
        }
        let dist = if len > 0.0 { len } else { de.abs() };
        if speed > 0.0 && dist.is_finite() {
            step.duration_s = dist / speed;
        }

        if de > 0.0 && xy_len > 0.0 {
            let z = end[2];
            if self.last_extrude_z.is_none_or(|lz| z > lz + 1e-6) {
                self.layers += 1;
                step.new_layer = true;
                self.last_extrude_z = Some(z);
            }
            let b = self.bounds.get_or_insert(Bounds {
                min: start,
                max: start,
            });
            for p in [start, end] {
                for ((lo, hi), v) in b.min.iter_mut().zip(b.max.iter_mut()).zip(p) {
                    *lo = lo.min(v);
                    *hi = hi.max(v);
                }
            }
        }
    }
}

/// XY length of a G2 (clockwise) / G3 arc given by I/J (centre offset) or R (radius).
fn arc_length(
    l: &Line<'_>,
    start: [f64; 3],
    end: [f64; 3],
    clockwise: bool,
    inches: bool,
) -> Option<f64> {
    let k = if inches { 25.4 } else { 1.0 };
    let (cx, cy, r) = if l.has('I') || l.has('J') {
        let cx = start[0] + l.get('I').unwrap_or(0.0) * k;
        let cy = start[1] + l.get('J').unwrap_or(0.0) * k;
        (
            cx,
            cy,
            ((start[0] - cx).powi(2) + (start[1] - cy).powi(2)).sqrt(),
        )
    } else {
        let r = l.get('R')? * k;
        let (dx, dy) = (end[0] - start[0], end[1] - start[1]);
        let d = (dx * dx + dy * dy).sqrt();
        if d == 0.0 || d > 2.0 * r.abs() {
            return None;
        }
        let h = (r * r - d * d / 4.0).sqrt();
        let (mx, my) = (start[0] + dx / 2.0, start[1] + dy / 2.0);
        // Positive R takes the short arc; the side of the centre follows the direction.
        let s = if clockwise == (r > 0.0) { 1.0 } else { -1.0 };
        (mx + s * h * dy / d, my - s * h * dx / d, r.abs())
    };
    let a0 = (start[1] - cy).atan2(start[0] - cx);
    let a1 = (end[1] - cy).atan2(end[0] - cx);
    let mut sweep = if clockwise { a0 - a1 } else { a1 - a0 };
    if sweep <= 1e-9 {
        sweep += std::f64::consts::TAU;
    }
    Some(r * sweep)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcode::parse_line;

    fn run(lines: &[&str]) -> Machine {
        let mut m = Machine::default();
        for l in lines {
            m.step(&parse_line(l.as_bytes()));
        }
        m
    }

    #[test]
    fn absolute_extrusion_with_retract_pairs_costs_nothing_extra() {
        let m = run(&[
            "M82",
            "G92 E0",
            "G1 X10 E5",
            "G1 E4",
            "G1 E5",
            "G1 X20 E10",
            "G1 E9",
        ]);
        assert!(
            (m.consumed_mm()[0] - 10.0).abs() < 1e-9,
            "{:?}",
            m.consumed_mm()
        );
    }

    #[test]
    fn relative_extrusion_and_g92_resets() {
        let m = run(&[
            "M83", "G1 X1 E2", "G1 E-1", "G1 E1", "G1 X2 E3", "G92 E0", "G1 X3 E1",
        ]);
        assert!((m.consumed_mm()[0] - 6.0).abs() < 1e-9);
        let a = run(&["M82", "G1 X1 E10", "G92 E0", "G1 X2 E5"]);
        assert!((a.consumed_mm()[0] - 15.0).abs() < 1e-9);
    }

    #[test]
    fn g91_makes_e_relative_and_tools_count_separately() {
        let m = run(&[
            "M82", "G91", "G1 X1 E2", "G1 X1 E2", "G90", "T1", "G92 E0", "G1 X5 E3",
        ]);
        assert_eq!(m.consumed_mm(), vec![4.0, 3.0]);
    }

    #[test]
    fn flow_override_scales_physical_filament() {
        let m = run(&["M83", "M221 S50", "G1 X1 E10"]);
        assert!((m.consumed_mm()[0] - 5.0).abs() < 1e-9);
    }

    #[test]
    fn move_time_is_distance_over_feed() {
        let mut m = Machine::default();
        let s = m.step(&parse_line(b"G1 X30 F1800"));
        assert!((s.duration_s - 1.0).abs() < 1e-9, "{}", s.duration_s);
        let d = m.step(&parse_line(b"G4 P500"));
        assert!((d.duration_s - 0.5).abs() < 1e-9);
    }

    #[test]
    fn arcs_have_their_real_length() {
        let mut m = run(&["G1 X10 Y0 F600"]);
        // Half circle of radius 10 around the origin, counter-clockwise.
        let s = m.step(&parse_line(b"G3 X-10 Y0 I-10 J0"));
        assert!(
            (s.duration_s - std::f64::consts::PI * 10.0 / 10.0).abs() < 1e-6,
            "{}",
            s.duration_s
        );
    }

    #[test]
    fn layers_and_bounds_follow_extruding_moves() {
        let m = run(&[
            "G1 Z0.2",
            "G1 X10 Y10 E1",
            "G1 Z0.4",
            "G1 X0 Y0",
            "G1 X20 Y5 E2",
            "G1 Z10 X100",
        ]);
        assert_eq!(m.layers(), 2);
        let b = m.bounds().expect("bounds");
        assert_eq!(b.max[0], 20.0);
        assert_eq!(b.max[2], 0.4);
    }

    #[test]
    fn heaters() {
        let mut m = Machine::default();
        let s = m.step(&parse_line(b"M109 S215"));
        assert_eq!(
            s.heat,
            Some(Heat::Tool {
                tool: 0,
                target: 215.0,
                wait: true
            })
        );
        let b = m.step(&parse_line(b"M140 S60"));
        assert_eq!(
            b.heat,
            Some(Heat::Bed {
                target: 60.0,
                wait: false
            })
        );
    }
}

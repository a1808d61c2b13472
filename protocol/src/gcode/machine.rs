//! The printer's coordinate state, advanced one line at a time.
//!
//! Pure: a [`Machine`] turns each [`Line`] into a [`Step`] (how long it takes, how much
//! filament it consumes, which heater it asks for). The simulated printer paces itself with
//! it; the analyzer sums it over a file.

use super::line::Line;
use super::planner::{Kind, Move, Planner};

pub use super::limits::Limits;

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
    /// Motion and dwell time that became final with this line, s (from the look-ahead planner,
    /// so it lags the line a little; see [`Machine::step`]). Heat-up waits are not included:
    /// they depend on the heater.
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

/// Bounding box of extruding moves, mm.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Bounds {
    pub min: [f64; 3],
    pub max: [f64; 3],
}

/// Planned time, split by layer. Tag 0 = before the first layer (start G-code).
#[derive(Debug, Clone, Default)]
struct Times {
    total_s: f64,
    start_s: f64,
    layers_s: Vec<f64>,
}

/// Layers beyond this share the last slot (a hostile file must not grow memory unbounded).
const MAX_LAYERS: usize = 100_000;

impl Times {
    fn add(&mut self, tag: u32, t: f64) {
        self.total_s += t;
        if tag == 0 {
            self.start_s += t;
            return;
        }
        let i = (tag as usize - 1).min(MAX_LAYERS - 1);
        if self.layers_s.len() <= i {
            self.layers_s.resize(i + 1, 0.0);
        }
        self.layers_s[i] += t;
    }
}

/// A heater's simple thermal model: linear ramp from `from` at time `since` towards `target`.
#[derive(Debug, Clone, Copy)]
struct Heater {
    from: f64,
    target: f64,
    since: f64,
}

/// Room temperature, °C.
const AMBIENT_C: f64 = 25.0;
/// Default heating / cooling rates, °C/s: a typical 40 W hotend and a 220 V-less bed.
const TOOL_RATE: (f64, f64) = (2.0, 1.0);
const BED_RATE: (f64, f64) = (0.4, 0.1);

impl Default for Heater {
    fn default() -> Self {
        Self {
            from: AMBIENT_C,
            target: AMBIENT_C,
            since: 0.0,
        }
    }
}

impl Heater {
    fn temp_at(&self, t: f64, (up, down): (f64, f64)) -> f64 {
        let dt = (t - self.since).max(0.0);
        if self.target >= self.from {
            (self.from + up * dt).min(self.target)
        } else {
            (self.from - down * dt).max(self.target)
        }
    }

    /// Sets a new target at time `now`; returns how long a wait for it takes (M109/M190).
    fn set(&mut self, target: f64, now: f64, rate: (f64, f64), wait_cooling: bool) -> f64 {
        let cur = self.temp_at(now, rate);
        // Off (0) or below room temperature means "cool to room temperature".
        let target = target.clamp(AMBIENT_C, 500.0);
        *self = Heater {
            from: cur,
            target,
            since: now,
        };
        if target > cur {
            (target - cur) / rate.0
        } else if wait_cooling && target < cur {
            (cur - target) / rate.1
        } else {
            0.0
        }
    }
}

#[derive(Debug, Clone)]
pub struct Machine {
    limits: Limits,
    /// A limit command (`M201`…`M205`, `SET_VELOCITY_LIMIT`) was seen: from then on the
    /// slicer's configuration comments are ignored (commands win).
    limit_commands: bool,
    planner: Planner,
    times: Times,
    xyz: [f64; 3],
    relative_xyz: bool,
    relative_e: bool,
    inches: bool,
    feed_mm_s: f64,
    /// `M220` feed override, factor.
    feed_override: f64,
    flow: f64,
    tool: usize,
    extruders: Vec<Extruder>,
    last_extrude_z: Option<f64>,
    layers: u32,
    /// Layer-change comments seen (`;LAYER_CHANGE`, `; CHANGE_LAYER`, `;LAYER:n`, …).
    marked_layers: u32,
    /// Where layer times come from: `None` until decided, `Some(true)` the slicer's layer
    /// comments, `Some(false)` extrusion at a new Z.
    layers_by_comment: Option<bool>,
    bounds: Option<Bounds>,
    /// Filament consumed before the first layer (start G-code purge), per tool.
    start_consumed: Option<Vec<f64>>,
    tool_heaters: Vec<Heater>,
    bed: Heater,
    heat_s: f64,
}

/// Tool numbers above this are treated as junk, not as a reason to allocate.
const MAX_TOOLS: usize = 64;

impl Default for Machine {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

/// Is this comment a slicer's layer-change marker?
fn is_layer_marker(c: &str) -> bool {
    let b = c.as_bytes();
    match b.first() {
        // PrusaSlicer / SuperSlicer / Orca `;LAYER_CHANGE`; Cura, ideaMaker `;LAYER:3`;
        // Simplify3D `; layer 3, Z = 0.6`.
        Some(b'L' | b'l') => {
            c == "LAYER_CHANGE"
                || c.starts_with("LAYER:")
                || (c.starts_with("layer ") && b.get(6).is_some_and(u8::is_ascii_digit))
        }
        // OrcaSlicer / Bambu Studio `; CHANGE_LAYER`.
        Some(b'C') => c == "CHANGE_LAYER",
        _ => false,
    }
}

impl Machine {
    /// A machine at rest at the origin, with these motion limits (commands in the file may
    /// change them).
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            limit_commands: false,
            planner: Planner::default(),
            times: Times::default(),
            xyz: [0.0; 3],
            relative_xyz: false,
            relative_e: false,
            inches: false,
            feed_mm_s: 25.0,
            feed_override: 1.0,
            flow: 1.0,
            tool: 0,
            extruders: vec![Extruder::default()],
            last_extrude_z: None,
            layers: 0,
            marked_layers: 0,
            layers_by_comment: None,
            bounds: None,
            start_consumed: None,
            tool_heaters: vec![Heater::default()],
            bed: Heater::default(),
            heat_s: 0.0,
        }
    }

    /// Filament consumed so far per tool, mm (index = tool number).
    pub fn consumed_mm(&self) -> Vec<f64> {
        self.extruders.iter().map(|e| e.high_water).collect()
    }

    /// Layers started, counted by extrusion at a new, higher Z.
    pub fn layers(&self) -> u32 {
        self.layers
    }

    pub fn bounds(&self) -> Option<Bounds> {
        self.bounds
    }

    pub fn tool(&self) -> usize {
        self.tool
    }

    /// The motion limits in force now.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Planned motion and dwell time reported so far (the sum of every `Step::duration_s` and
    /// [`Machine::finish`]), s.
    pub fn elapsed_s(&self) -> f64 {
        self.times.total_s
    }

    /// Planned time per layer so far, s. Layers follow the slicer's layer-change comments when
    /// the file has them, else extrusion at a new Z (as [`Machine::layers`]).
    pub fn layer_times_s(&self) -> &[f64] {
        &self.times.layers_s
    }

    /// Planned time before the first layer (start G-code: homing, purge lines), s.
    pub fn start_s(&self) -> f64 {
        self.times.start_s
    }

    /// Filament consumed before the first layer started (start G-code: purge and prime lines),
    /// per tool, mm; all of it while no layer has started. Slicers' own filament figures
    /// usually leave this out.
    pub fn start_consumed_mm(&self) -> Vec<f64> {
        self.start_consumed
            .clone()
            .unwrap_or_else(|| self.consumed_mm())
    }

    /// Records what the start G-code consumed, when the first layer begins. `this_line` is
    /// what the current line (already counted) consumed: it belongs to the layer.
    fn mark_start(&mut self, this_line: f64) {
        if self.start_consumed.is_none() && self.time_layer() > 0 {
            let mut c = self.consumed_mm();
            c[self.tool] -= this_line;
            self.start_consumed = Some(c);
        }
    }

    /// Estimated heat-up waits (`M109`/`M190`, and `M104`/`M140` heat in the background) with
    /// a default heater model, s. Not part of any duration.
    pub fn heat_s(&self) -> f64 {
        self.heat_s
    }

    /// Ends the file: plans and reports the moves still held for look-ahead; returns their
    /// time, s. Call once after the last line (more calls return 0).
    pub fn finish(&mut self) -> f64 {
        self.flush()
    }

    /// Commits every buffered move (the machine comes to rest); returns their time.
    fn flush(&mut self) -> f64 {
        let mut got = 0.0;
        let times = &mut self.times;
        self.planner.flush(&self.limits, &mut |tag, t| {
            got += t;
            times.add(tag, t);
        });
        got
    }

    /// The tag the planner attributes time to: the current layer (0 = before the first).
    fn time_layer(&self) -> u32 {
        if self.layers_by_comment == Some(true) {
            self.marked_layers
        } else {
            self.layers
        }
    }

    /// A layer-change comment. The first one decides: if at most a couple of Z layers were
    /// seen before it (a purge line in the start G-code looks like a layer), the comments are
    /// the layers and what came before is the start; otherwise comments are ignored.
    fn layer_comment(&mut self) {
        match self.layers_by_comment {
            Some(true) => self.marked_layers = self.marked_layers.saturating_add(1),
            Some(false) => {}
            None if self.layers <= 2 => {
                self.layers_by_comment = Some(true);
                self.marked_layers = 1;
                // Reclassify the purge "layers" as start time and start filament.
                let t: f64 = self.times.layers_s.drain(..).sum();
                self.times.start_s += t;
                self.planner.retag(1..=u32::MAX, 0);
                self.start_consumed = Some(self.consumed_mm());
            }
            None => self.layers_by_comment = Some(false),
        }
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

    /// Applies one line and says what it did. Motion time comes from the planner, which holds
    /// up to [`planner::CAPACITY`](super::planner::CAPACITY) moves for look-ahead: a line's
    /// `duration_s` is the time of the moves that became final with it (often 0, sometimes a
    /// batch). Over a file, the durations plus [`Machine::finish`] sum to the planned total.
    pub fn step(&mut self, l: &Line<'_>) -> Step {
        let mut step = Step {
            tool: self.tool,
            ..Step::default()
        };
        let (Some(letter), Some(n)) = (l.letter, l.number) else {
            self.comment_or_macro(l);
            return step;
        };
        match (letter, n) {
            (b'G', 0..=3) if l.sub.is_none() => self.motion(l, n, &mut step),
            (b'G', 4) => {
                // P in ms, S in s. The machine stops first.
                let dwell = l
                    .get('P')
                    .map(|p| p / 1000.0)
                    .or(l.get('S'))
                    .unwrap_or(0.0)
                    .clamp(0.0, 86_400.0);
                step.duration_s = self.flush() + dwell;
                self.times.add(self.time_layer(), dwell);
            }
            (b'G', 20) => self.inches = true,
            (b'G', 21) => self.inches = false,
            (b'G', 28) if l.sub.is_none() => self.home(l, &mut step),
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
            (b'M', 201 | 203 | 204 | 205) if self.limits.apply_command(l) => {
                self.limit_commands = true;
            }
            (b'M', 220) if l.sub.is_none() => {
                if let Some(s) = l.get('S').filter(|s| *s > 0.0 && *s < 1000.0) {
                    self.feed_override = s / 100.0;
                }
            }
            (b'M', 221) => {
                if let Some(s) = l.get('S').filter(|s| *s > 0.0 && *s < 1000.0) {
                    self.flow = s / 100.0;
                }
            }
            (b'M', 400) if l.sub.is_none() => {
                // Wait for moves to finish; Bambu firmware also dwells with S (s) / P (ms).
                let dwell = l
                    .get('S')
                    .or(l.get('P').map(|p| p / 1000.0))
                    .unwrap_or(0.0)
                    .clamp(0.0, 86_400.0);
                step.duration_s = self.flush() + dwell;
                self.times.add(self.time_layer(), dwell);
            }
            (b'M', 104 | 109) => {
                let tool = l
                    .get('T')
                    .map_or(self.tool, |t| (t.max(0.0) as usize).min(MAX_TOOLS - 1));
                if let Some(target) = l.get('S').or(l.get('R')) {
                    let wait = n == 109;
                    step.heat = Some(Heat::Tool { tool, target, wait });
                    if wait {
                        step.duration_s = self.flush();
                    }
                    let now = self.times.total_s + self.heat_s;
                    if self.tool_heaters.len() <= tool {
                        self.tool_heaters.resize(tool + 1, Heater::default());
                    }
                    let w = self.tool_heaters[tool].set(target, now, TOOL_RATE, l.has('R'));
                    if wait {
                        self.heat_s += w;
                    }
                }
            }
            (b'M', 140 | 190) => {
                if let Some(target) = l.get('S').or(l.get('R')) {
                    let wait = n == 190;
                    step.heat = Some(Heat::Bed { target, wait });
                    if wait {
                        step.duration_s = self.flush();
                    }
                    let now = self.times.total_s + self.heat_s;
                    let w = self.bed.set(target, now, BED_RATE, l.has('R'));
                    if wait {
                        self.heat_s += w;
                    }
                }
            }
            (b'T', t) if (t as usize) < MAX_TOOLS => {
                if t as usize != self.tool {
                    // Firmware-internal swap time (unload, load) the slicer config states.
                    let swap: f64 = self.limits.tool_change_s.iter().sum();
                    if swap > 0.0 {
                        step.duration_s += self.flush() + swap;
                        self.times.add(self.time_layer(), swap);
                    }
                }
                self.tool = t as usize;
                self.extruder(t as usize);
                step.tool = self.tool;
            }
            _ => {}
        }
        step
    }

    /// Layer markers, slicer configuration comments, Klipper `SET_VELOCITY_LIMIT`.
    fn comment_or_macro(&mut self, l: &Line<'_>) {
        if let Some(c) = l.comment {
            if is_layer_marker(c) {
                self.layer_comment();
            } else if !self.limit_commands && c.starts_with("machine_") {
                self.limits.apply_config_comment(c);
            }
        } else if let Some(name) = l.macro_name
            && self
                .limits
                .apply_macro(name, l.macro_args.unwrap_or_default())
        {
            self.limit_commands = true;
        }
    }

    /// `G28`: modelled as PrusaSlicer's estimator does, a move of the named axes (all if none)
    /// to 0 at the current feed rate.
    fn home(&mut self, l: &Line<'_>, step: &mut Step) {
        let all = !(l.has('X') || l.has('Y') || l.has('Z'));
        let mut end = self.xyz;
        for (i, c) in ['X', 'Y', 'Z'].into_iter().enumerate() {
            if all || l.has(c) {
                end[i] = 0.0;
            }
        }
        let d = [
            end[0] - self.xyz[0],
            end[1] - self.xyz[1],
            end[2] - self.xyz[2],
            0.0,
        ];
        self.xyz = end;
        let mv = Move::line(d, self.feed_mm_s * self.feed_override, self.time_layer());
        step.duration_s += self.plan(&mv);
    }

    /// Hands a move to the planner; returns the time that became final.
    fn plan(&mut self, mv: &Move) -> f64 {
        let mut got = 0.0;
        let times = &mut self.times;
        self.planner.push(mv, &self.limits, &mut |tag, t| {
            got += t;
            times.add(tag, t);
        });
        got
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
        // XY unit tangents at the start and the end (equal for a line).
        let chord = if xy_len > 0.0 {
            [dx / xy_len, dy / xy_len]
        } else {
            [0.0, 0.0]
        };
        let (mut t0, mut t1) = (chord, chord);
        if (g == 2 || g == 3)
            && let Some(arc) = arc(l, start, end, g == 2, self.inches)
        {
            xy_len = arc.length;
            (t0, t1) = (arc.start_tangent, arc.end_tangent);
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
        let feed = self.feed_mm_s * self.feed_override;
        let tag = self.time_layer();
        let mv = if len > 0.0 {
            let k = xy_len / len;
            let (z, e) = (dz / len, de * self.flow / len);
            Move {
                len,
                start: [t0[0] * k, t0[1] * k, z, e],
                end: [t1[0] * k, t1[1] * k, z, e],
                feed,
                kind: if de == 0.0 { Kind::Travel } else { Kind::Print },
                tag,
            }
        } else {
            Move::line([0.0, 0.0, 0.0, de * self.flow], feed, tag)
        };
        if mv.len.is_finite() && mv.len > 0.0 {
            step.duration_s += self.plan(&mv);
        }

        if de > 0.0 && xy_len > 0.0 {
            let z = end[2];
            if self.last_extrude_z.is_none_or(|lz| z > lz + 1e-6) {
                self.layers += 1;
                step.new_layer = true;
                self.last_extrude_z = Some(z);
                if self.layers_by_comment != Some(true) {
                    self.mark_start(step.consumed_mm);
                }
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

/// An arc's XY length and unit tangents.
struct Arc {
    length: f64,
    start_tangent: [f64; 2],
    end_tangent: [f64; 2],
}

/// XY geometry of a G2 (clockwise) / G3 arc given by I/J (centre offset) or R (radius).
fn arc(l: &Line<'_>, start: [f64; 3], end: [f64; 3], clockwise: bool, inches: bool) -> Option<Arc> {
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
    if !(r > 0.0 && r.is_finite()) {
        return None;
    }
    let a0 = (start[1] - cy).atan2(start[0] - cx);
    let a1 = (end[1] - cy).atan2(end[0] - cx);
    let mut sweep = if clockwise { a0 - a1 } else { a1 - a0 };
    if sweep <= 1e-9 {
        sweep += std::f64::consts::TAU;
    }
    // Tangent of a counter-clockwise circle at angle a is (-sin a, cos a); clockwise, the opposite.
    let s = if clockwise { -1.0 } else { 1.0 };
    let tangent = |a: f64| [-s * a.sin(), s * a.cos()];
    Some(Arc {
        length: r * sweep,
        start_tangent: tangent(a0),
        end_tangent: tangent(a1),
    })
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

    /// Limits without acceleration effects: time is distance / feed again.
    fn instant() -> Limits {
        Limits {
            max_accel: [1e12; 4],
            print_accel: 1e12,
            travel_accel: 1e12,
            retract_accel: 1e12,
            ..Limits::default()
        }
    }

    #[test]
    fn move_time_is_planned_and_flushed() {
        let mut m = Machine::new(instant());
        let s = m.step(&parse_line(b"G1 X30 F1800"));
        // Held for look-ahead; a dwell stops the machine, so the move is final then.
        assert_eq!(s.duration_s, 0.0);
        let d = m.step(&parse_line(b"G4 P500"));
        assert!((d.duration_s - 1.5).abs() < 1e-6, "{}", d.duration_s);
        m.step(&parse_line(b"G1 X60"));
        assert!((m.finish() - 1.0).abs() < 1e-6);
        assert_eq!(m.finish(), 0.0);
        assert!((m.elapsed_s() - 2.5).abs() < 1e-6);
        // With acceleration the same move takes longer.
        let mut a = Machine::default();
        a.step(&parse_line(b"G1 X30 F1800"));
        assert!(a.finish() > 1.02);
    }

    #[test]
    fn arcs_have_their_real_length() {
        let mut m = Machine::new(instant());
        m.step(&parse_line(b"G1 X10 Y0 F600"));
        let before = m.finish();
        assert!((before - 1.0).abs() < 1e-6);
        // Half circle of radius 10 around the origin, counter-clockwise.
        m.step(&parse_line(b"G3 X-10 Y0 I-10 J0"));
        let s = m.finish();
        assert!((s - std::f64::consts::PI * 10.0 / 10.0).abs() < 1e-6, "{s}");
    }

    #[test]
    fn layer_times_heat_and_limits_from_the_file() {
        let g = [
            "M140 S60",
            "M104 S200",
            "M190 S60",
            "M109 S200",
            "G1 Z0.2 F600",
            ";LAYER_CHANGE",
            "G1 X10 Y10 E1 F1200",
            ";LAYER_CHANGE",
            "G1 Z0.4",
            "G1 X0 Y0 E2",
            "G1 X10 Y0 E2",
        ];
        let mut m = Machine::default();
        let mut sum = 0.0;
        for l in g {
            sum += m.step(&parse_line(l.as_bytes())).duration_s;
        }
        sum += m.finish();
        assert_eq!(m.layer_times_s().len(), 2);
        let layers: f64 = m.layer_times_s().iter().sum();
        assert!((layers + m.start_s() - sum).abs() < 1e-9);
        assert!((m.elapsed_s() - sum).abs() < 1e-9);
        assert!(m.start_s() > 0.0 && m.layer_times_s()[1] > m.layer_times_s()[0]);
        // Bed 25 → 60 °C at 0.4 °C/s; the hotend heated meanwhile and is done.
        assert!((m.heat_s() - 35.0 / 0.4).abs() < 1e-6, "{}", m.heat_s());

        let mut k = Machine::default();
        k.step(&parse_line(
            b"SET_VELOCITY_LIMIT ACCEL=7000 SQUARE_CORNER_VELOCITY=5",
        ));
        k.step(&parse_line(b"; machine_max_acceleration_x = 100"));
        assert_eq!(k.limits().print_accel, 7000.0);
        assert_eq!(
            k.limits().max_accel[0],
            7000.0,
            "comments do not undo commands"
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

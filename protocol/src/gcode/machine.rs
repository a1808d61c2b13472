//! The printer's coordinate state, advanced one line at a time.
//!
//! Pure: a [`Machine`] turns each [`Line`] into a [`Step`] (how long it takes, how much
//! filament it consumes, which heater it asks for). The simulated printer paces itself with
//! it; the analyzer sums it over a file.

use super::allowances::{Allowances, SlicerState};
use super::arcs::arc;
use super::heaters::Heater;
use super::line::Line;
use super::planner::{Kind, Move, Planner};
use super::times::Times;

pub use super::limits::Limits;
use super::retraction::Retraction;

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
    /// so it lags the line a little; see [`Machine::step`]), with the time the slicer's estimator
    /// adds for it (tool change, levelling: [`allowances`](super::allowances)). Heat-up waits are
    /// not included: they depend on the heater.
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
    /// Firmware-retracted (`G10`) by this many mm, with this extra to push on `G11`.
    retracted: Option<(f64, f64)>,
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
    /// A limit command (`M201`…`M205`, `SET_VELOCITY_LIMIT`) was seen: from then on the
    /// slicer's configuration comments are ignored (commands win).
    limit_commands: bool,
    /// Likewise for firmware retraction (`M207`, `M208`, `SET_RETRACTION`).
    retraction_commands: bool,
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
    /// What the slicer's estimator tracks for its allowances (filament loaded, Bambu blocks).
    slicer: SlicerState,
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
            retraction_commands: false,
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
            slicer: SlicerState::default(),
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

    /// The layer the machine is in now (0 = start G-code, before the first), counted as
    /// [`Machine::layer_times_s`] counts them: the slicer's layer-change comments when the file
    /// has them, else extrusion at a new Z.
    pub fn layer(&self) -> u32 {
        self.time_layer()
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

    /// Marks this point of the file: from now on the machine watches for the look-ahead planner
    /// to commit the moves the lines so far produced. See [`Machine::marked_elapsed_s`].
    pub fn mark(&mut self) {
        self.times.mark(self.planner.pending());
    }

    /// The planned time of everything up to the last [`Machine::mark`], s, once it is final
    /// (the planner has committed those moves: up to a batch of moves later, or after
    /// [`Machine::finish`]). It equals what a whole-file pass spends on those lines, so the
    /// whole file's time minus it is the time remaining from that point.
    pub fn marked_elapsed_s(&self) -> Option<f64> {
        self.times.marked_s()
    }

    /// Moves held in the look-ahead buffer (what a clone of the machine costs beyond its
    /// fixed size: [`planner::BLOCK_BYTES`](super::planner::BLOCK_BYTES) each).
    pub fn pending_moves(&self) -> usize {
        self.planner.pending()
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
            times.add_move(tag, t);
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
            self.comment_or_macro(l, &mut step);
            return step;
        };
        match (letter, n) {
            (b'G', 0..=3) if l.sub.is_none() => self.motion(l, n, &mut step),
            (b'G', 4 | 29) | (b'M', 191 | 400 | 622 | 623 | 702 | 1020) | (b'T', _) => {
                self.timed_command(letter, n, l, &mut step);
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
            (b'M', 207 | 208) if self.limits.retraction.apply_command(l) => {
                self.retraction_commands = true;
            }
            // RepRapFirmware's `G10 P… / L…` set tool offsets and temperatures, not a retraction.
            (b'G', 10) if l.sub.is_none() && !l.has('P') && !l.has('L') => {
                self.fw_retract(l.get('S') == Some(1.0), &mut step);
            }
            (b'G', 11) if l.sub.is_none() => self.fw_unretract(&mut step),
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
                    let w = self.tool_heaters[tool].set(
                        target,
                        now,
                        self.limits.heating.tool(),
                        l.has('R'),
                    );
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
                    let w = self
                        .bed
                        .set(target, now, self.limits.heating.bed(), l.has('R'));
                    if wait {
                        self.heat_s += w;
                    }
                }
            }
            _ => {}
        }
        step
    }

    /// Layer markers, slicer configuration comments, Klipper `SET_VELOCITY_LIMIT`, Bambu
    /// `SYNC T<s>` (a wait Bambu Studio 2.x times, `process_SYNC`).
    fn comment_or_macro(&mut self, l: &Line<'_>, step: &mut Step) {
        if let Some(c) = l.comment {
            if is_layer_marker(c) {
                self.layer_comment();
            } else if Allowances::is_config_key(c) {
                self.limits.allowances.apply_config_comment(c);
            } else if Allowances::is_header_comment(c) {
                self.limits.allowances.apply_header_comment(c);
            } else if !self.limit_commands && c.starts_with("machine_") {
                self.limits.apply_config_comment(c);
            } else if !self.retraction_commands && Retraction::is_config_key(c) {
                self.limits.retraction.apply_config_comment(c);
            }
        } else if let Some(name) = l.macro_name {
            let args = l.macro_args.unwrap_or_default();
            if name.eq_ignore_ascii_case("SYNC") {
                let t = args.split_ascii_whitespace().find_map(|w| {
                    w.strip_prefix(['T', 't'])
                        .and_then(|v| v.parse::<f64>().ok())
                });
                if let Some(t) = t.filter(|t| t.is_finite()) {
                    self.wait(t, step);
                }
            } else if self.limits.apply_macro(name, args) {
                self.limit_commands = true;
            } else if self.limits.retraction.apply_macro(name, args) {
                self.retraction_commands = true;
            }
        }
    }

    /// Hands a move to the planner; returns the time that became final.
    fn plan(&mut self, mv: &Move) -> f64 {
        let mut got = 0.0;
        let times = &mut self.times;
        self.planner.push(mv, &self.limits, &mut |tag, t| {
            got += t;
            times.add_move(tag, t);
        });
        got
    }

    /// Adds `physical` mm (negative = retract) to the current tool's filament, high-water rule.
    fn push_filament(&mut self, physical: f64, step: &mut Step) {
        let t = self.tool;
        let ex = self.extruder(t);
        ex.net += physical;
        if ex.net > ex.high_water {
            step.consumed_mm += ex.net - ex.high_water;
            ex.high_water = ex.net;
        }
    }

    /// An extruder-only (and optional Z-lift) move of the firmware's own making.
    fn fw_move(&mut self, d: [f64; 4], feed: f64, step: &mut Step) {
        let mv = Move::line(d, feed, self.time_layer());
        step.duration_s += self.plan(&mv);
    }

    /// `G10` (`swap`: `G10 S1`): the firmware retracts its configured length (Marlin ignores a
    /// second `G10`). The logical E position does not change.
    fn fw_retract(&mut self, swap: bool, step: &mut Step) {
        let r = self.limits.retraction;
        let t = self.tool;
        if self.extruder(t).retracted.is_some() {
            return;
        }
        let (len, extra) = if swap {
            (r.swap_length_mm, r.swap_extra_mm)
        } else {
            (r.length_mm, r.extra_mm)
        };
        self.extruder(t).retracted = Some((len, extra));
        self.push_filament(-len, step);
        self.fw_move([0.0, 0.0, 0.0, -len], r.speed_mm_s, step);
        if r.lift_mm > 0.0 {
            self.fw_move([0.0, 0.0, r.lift_mm, 0.0], self.limits.max_feed[2], step);
        }
    }

    /// `G11`: pushes back what `G10` retracted plus the configured extra (which is consumed).
    fn fw_unretract(&mut self, step: &mut Step) {
        let r = self.limits.retraction;
        let t = self.tool;
        let Some((len, extra)) = self.extruder(t).retracted.take() else {
            return;
        };
        if r.lift_mm > 0.0 {
            self.fw_move([0.0, 0.0, -r.lift_mm, 0.0], self.limits.max_feed[2], step);
        }
        self.push_filament(len + extra, step);
        self.fw_move([0.0, 0.0, 0.0, len + extra], r.recover_speed(), step);
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

mod timed;

#[cfg(test)]
mod tests;

//! Commands whose time is a wait rather than a move, timed as the slicer's estimator times them
//! (see [`allowances`](super::super::allowances)): dwells, levelling, chamber, tool changes;
//! and `G28`, which the estimators plan as a `G1`.

use super::super::allowances::Estimator;
use super::super::line::Line;
use super::super::planner::Move;
use super::{MAX_TOOLS, Machine, Step};

impl Machine {
    /// `G4`, `G29`, `M191`, `M400`, `M622`, `M623`, `M702`, `M1020`, `T<n>`.
    pub(super) fn timed_command(&mut self, letter: u8, n: u32, l: &Line<'_>, step: &mut Step) {
        match (letter, n) {
            // S in s (wins, as in Marlin and Orca/Bambu `process_G4`), else P in ms. The
            // machine stops first. PrusaSlicer's estimator ignores `G4`.
            (b'G', 4) if self.limits.allowances.times_dwells() => {
                let dwell = l.get('S').or(l.get('P').map(|p| p / 1000.0)).unwrap_or(0.0);
                self.wait(dwell, step);
            }
            // Wait for moves to finish; Bambu firmware also dwells with S (s) / P (ms). A bare
            // `M400` is not timed by any estimator (Orca/Bambu `process_M400` only act on S/P).
            (b'M', 400)
                if l.sub.is_none()
                    && (l.has('S') || l.has('P'))
                    && self.limits.allowances.times_dwells() =>
            {
                let dwell = l.get('S').or(l.get('P').map(|p| p / 1000.0)).unwrap_or(0.0);
                self.wait(dwell, step);
            }
            // Bed levelling: the allowance the Orca/Bambu estimators add (PrusaSlicer: none).
            (b'G', 29) if l.sub.is_none() => {
                let t = self.slicer.levelling(&self.limits.allowances);
                if t > 0.0 {
                    self.wait(t, step);
                }
            }
            (b'M', 191) if l.sub.is_none() => {
                let t = self.limits.allowances.chamber_s(l.get('S').unwrap_or(0.0));
                if t > 0.0 {
                    self.wait(t, step);
                }
            }
            // MMU `M702 C`: the filament goes back to the unit.
            (b'M', 702) if l.sub.is_none() && l.names('C') => {
                let t = self.slicer.unload(&self.limits.allowances, self.tool);
                self.wait(t, step);
            }
            (b'M', 622) if l.sub.is_none() => self.slicer.condition(l.get('J')),
            (b'M', 623) if l.sub.is_none() => self.slicer.condition(None),
            (b'T', t) if (t as usize) < MAX_TOOLS => self.select_tool(t as usize, step),
            // Bambu Studio 2.x selects a filament with `M1020 S<n>` too (`process_M1020`).
            (b'M', 1020) if self.limits.allowances.estimator == Estimator::BambuStudio => {
                if let Some(t) = l.get('S').filter(|t| *t >= 0.0 && *t < MAX_TOOLS as f64) {
                    self.select_tool(t as usize, step);
                }
            }
            _ => {}
        }
    }

    /// `T<t>`: the unload/load time the slicer config states, by the slicer's rule.
    fn select_tool(&mut self, t: usize, step: &mut Step) {
        let swap = self.slicer.select(&self.limits.allowances, self.tool, t);
        if swap > 0.0 {
            self.wait(swap, step);
        }
        self.tool = t;
        self.extruder(t);
        step.tool = t;
    }

    /// The machine stops, then waits `dwell_s` (clamped to a day): the slicers'
    /// `simulate_st_synchronize(time)`.
    pub(super) fn wait(&mut self, dwell_s: f64, step: &mut Step) {
        let dwell = dwell_s.clamp(0.0, 86_400.0);
        step.duration_s += self.flush() + dwell;
        self.times.add(self.time_layer(), dwell);
    }

    /// `G28`: modelled as the slicers' estimators do (PrusaSlicer, Orca and Bambu Studio
    /// `process_G28`): a `G1` of the named axes (all if none; a bare `G28 X` names X) to 0 at the
    /// current feed rate. Being a `G1 X0`, it moves nothing in relative mode (`G91`), as there.
    pub(super) fn home(&mut self, l: &Line<'_>, step: &mut Step) {
        if self.relative_xyz {
            return;
        }
        let all = !(l.names('X') || l.names('Y') || l.names('Z'));
        let mut end = self.xyz;
        for (i, c) in ['X', 'Y', 'Z'].into_iter().enumerate() {
            if all || l.names(c) {
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
}

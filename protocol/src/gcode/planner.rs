//! Motion planner: how long a sequence of moves really takes on a printer.
//!
//! `distance / feedrate` ignores that the head must accelerate, and slow down for corners;
//! on real prints that undercounts by 20-40 %. This module does what a firmware planner (and
//! the estimators of PrusaSlicer, OrcaSlicer and Bambu Studio, which copy it) does:
//!
//! * every move becomes a *block* with a trapezoidal speed profile: accelerate from the entry
//!   speed to the cruise speed, cruise, decelerate to the exit speed (a triangle when the move is
//!   too short to reach cruise);
//! * the cruise speed is the requested feed rate, capped so that no axis exceeds its maximum
//!   feed rate; the acceleration is the one `M204` selects for the kind of move (print, retract,
//!   travel), capped so that no axis exceeds its maximum acceleration;
//! * the speed at the junction of two moves is limited by the corner model
//!   ([`Corner`]: classic jerk, junction deviation, or Klipper's square-corner velocity);
//! * a bounded look-ahead buffer is re-planned with a backward pass (every block must be able to
//!   slow down to what the next one allows, the last block to a standstill-safe speed) and a
//!   forward pass (every block can only reach what it can accelerate to from its entry).
//!
//! Blocks leave the buffer in batches: when it holds [`CAPACITY`] blocks, all are planned and the
//! oldest `CAPACITY - LOOKAHEAD` are committed (their time is final and reported through the
//! caller's sink, with the caller's tag); the newest [`LOOKAHEAD`] stay so that later moves can
//! still raise their speeds. [`Planner::flush`] commits everything and leaves the machine at
//! rest (end of file, dwell, heater wait). Memory is fixed; there is no allocation per move.
//!
//! Pure: no I/O, no clocks. Units are mm, s.

use super::limits::{Corner, E, Limits};

/// Blocks held at most.
pub const CAPACITY: usize = 192;
/// Blocks kept after a batch commit: every committed block saw at least this many moves ahead.
/// PrusaSlicer's estimator looks 64 moves ahead; firmware usually 16.
pub const LOOKAHEAD: usize = 64;

/// Which `M204` acceleration a move uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Moves the head and extrudes (or retracts while moving, e.g. a wipe).
    Print = 0,
    /// Moves only the extruder.
    Retract = 1,
    /// Moves the head without extruding.
    Travel = 2,
}

/// One move, as the machine hands it to the planner.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Move {
    /// Path length, mm: XYZ length, or |ΔE| for an extruder-only move.
    pub len: f64,
    /// Direction at the start: axis displacement per mm of path (X, Y, Z unit tangent; E = ΔE/len).
    pub start: [f64; 4],
    /// Direction at the end (differs from `start` only for arcs).
    pub end: [f64; 4],
    /// Requested speed along the path, mm/s (feed rate with overrides applied).
    pub feed: f64,
    pub kind: Kind,
    /// Caller's label, handed back with the move's time (e.g. the layer it belongs to).
    pub tag: u32,
}

impl Move {
    /// A straight move by `d` (X, Y, Z, E mm).
    pub fn line(d: [f64; 4], feed: f64, tag: u32) -> Self {
        let xyz = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        let (len, kind) = if xyz > 0.0 {
            (
                xyz,
                if d[E] == 0.0 {
                    Kind::Travel
                } else {
                    Kind::Print
                },
            )
        } else {
            (d[E].abs(), Kind::Retract)
        };
        let dir = if len > 0.0 {
            d.map(|v| v / len)
        } else {
            [0.0; 4]
        };
        Self {
            len,
            start: dir,
            end: dir,
            feed,
            kind,
            tag,
        }
    }
}

/// Memory one buffered move takes (what cloning a planner costs per pending move).
pub const BLOCK_BYTES: usize = size_of::<Block>();

#[derive(Debug, Clone, Copy, Default)]
struct Block {
    len: f64,
    accel: f64,
    /// Cruise speed, mm/s.
    nominal: f64,
    /// Junction limit on the entry speed, squared.
    max_entry_sq: f64,
    /// Planned entry speed, squared.
    entry_sq: f64,
    /// Speed from which this block can stop (or to which it may end) without violating the
    /// corner model, squared: the exit speed assumed when nothing follows.
    safe_exit_sq: f64,
    tag: u32,
}

/// What the junction computation needs to know about the previous move.
#[derive(Debug, Clone, Copy)]
struct Prev {
    /// Axis velocities at cruise speed at the end of the move, mm/s.
    v_end: [f64; 4],
    /// Unit direction (X, Y, Z, E) at the end of the move.
    unit_end: [f64; 4],
    nominal: f64,
    safe_exit: f64,
}

/// The look-ahead planner. See the module documentation.
#[derive(Debug, Clone)]
pub struct Planner {
    buf: Vec<Block>,
    /// The first buffered block continues a committed one: its entry speed is fixed.
    first_fixed: bool,
    prev: Option<Prev>,
}

impl Default for Planner {
    fn default() -> Self {
        Self {
            buf: Vec::with_capacity(CAPACITY),
            first_fixed: false,
            prev: None,
        }
    }
}

fn dot(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2] + a[3] * b[3]
}

fn unit(v: &[f64; 4]) -> [f64; 4] {
    let n = dot(v, v).sqrt();
    if n > 0.0 { v.map(|c| c / n) } else { [0.0; 4] }
}

/// Marlin's safe speed: the largest speed (≤ nominal) at which the move may start from, or
/// end at, a standstill without any axis jumping by more than its jerk. `v` = axis velocities
/// at nominal speed.
fn jerk_safe_speed(nominal: f64, v: &[f64; 4], jerk: &[f64; 4]) -> f64 {
    let mut safe = nominal;
    let mut limited = false;
    for (va, &j) in v.iter().zip(jerk) {
        let s = va.abs();
        if s > j {
            if limited {
                // Scale for the second limiting axis relative to what the first one left.
                if s * safe > j * nominal {
                    safe = j * nominal / s;
                }
            } else {
                limited = true;
                safe = j.min(safe);
            }
        }
    }
    safe
}

/// Classic-jerk junction speed (Marlin 1.1 / PrusaSlicer estimator): the largest common speed
/// at which the per-axis velocity change between the two moves stays within the jerk limits.
fn jerk_junction(prev: &Prev, nominal: f64, v_start: &[f64; 4], safe: f64, jerk: &[f64; 4]) -> f64 {
    let prev_larger = prev.nominal > nominal;
    let smaller_factor = if prev_larger {
        nominal / prev.nominal
    } else {
        prev.nominal / nominal
    };
    // Higher speed than either nominal is never reached at the junction.
    let mut vmax = if prev_larger { nominal } else { prev.nominal };
    let mut factor = 1.0;
    let mut limited = false;
    for a in 0..4 {
        let mut v_exit = prev.v_end[a];
        let mut v_entry = v_start[a];
        if prev_larger {
            v_exit *= smaller_factor;
        } else {
            v_entry *= smaller_factor;
        }
        if limited {
            v_exit *= factor;
            v_entry *= factor;
        }
        // Coasting in the same direction only jumps by the difference; a reversal by the sum.
        let j = if v_exit > v_entry {
            if v_entry > 0.0 || v_exit < 0.0 {
                v_exit - v_entry
            } else {
                v_exit.max(-v_entry)
            }
        } else if v_entry < 0.0 || v_exit > 0.0 {
            v_entry - v_exit
        } else {
            (-v_exit).max(v_entry)
        };
        if j > jerk[a] {
            factor *= jerk[a] / j;
            limited = true;
        }
    }
    if limited {
        vmax *= factor;
    }
    // If both moves could start from rest faster than the junction allows, stopping is faster.
    let threshold = vmax * 0.99;
    if prev.safe_exit > threshold && safe > threshold {
        vmax = safe;
    }
    vmax
}

/// Junction-deviation junction speed squared (Marlin 2; Klipper with `centripetal`), for unit
/// directions `u0` (end of previous move) and `u1` (start of this one).
fn deviation_junction_sq(u0: &[f64; 4], u1: &[f64; 4], jd: f64, accel: f64) -> f64 {
    let cos = -dot(u0, u1);
    if cos > 0.999_999 {
        return 0.0; // full reversal
    }
    let cos = cos.max(-0.999_999);
    let sin_half = (0.5 * (1.0 - cos)).sqrt();
    accel * jd * sin_half / (1.0 - sin_half)
}

/// Duration of a block with entry/exit speeds `v0`, `v1` (and their squares).
fn block_time(
    b: &Block,
    (v0, v0_sq): (f64, f64),
    (v1, v1_sq): (f64, f64),
    atd: Option<f64>,
) -> f64 {
    let vc_sq = b.nominal * b.nominal;
    let a = b.accel;
    if a <= 0.0 || !a.is_finite() {
        return b.len / b.nominal;
    }
    // Highest speed reachable: where acceleration from v0 meets deceleration to v1.
    let mut peak_sq = vc_sq.min(a * b.len + 0.5 * (v0_sq + v1_sq));
    if let Some(atd) = atd {
        // Klipper's smoothed look-ahead: short moves peak lower than the plain triangle.
        peak_sq = peak_sq.min(atd * b.len + 0.5 * (v0_sq + v1_sq));
    }
    if peak_sq < v0_sq.max(v1_sq) {
        // The plan asked for a speed change the move is too short for (only possible at a
        // batch boundary): assume a uniform change.
        return 2.0 * b.len / (v0 + v1).max(f64::MIN_POSITIVE);
    }
    let vp = if peak_sq >= vc_sq {
        b.nominal
    } else {
        peak_sq.sqrt()
    };
    let accel_d = (peak_sq - v0_sq) / (2.0 * a);
    let decel_d = (peak_sq - v1_sq) / (2.0 * a);
    let cruise_d = (b.len - accel_d - decel_d).max(0.0);
    (vp - v0) / a + (vp - v1) / a + cruise_d / vp
}

impl Planner {
    /// Moves waiting in the look-ahead buffer.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Relabels the moves still buffered: every tag in `from` becomes `to`.
    pub fn retag(&mut self, from: std::ops::RangeInclusive<u32>, to: u32) {
        for b in &mut self.buf {
            if from.contains(&b.tag) {
                b.tag = to;
            }
        }
    }

    /// Adds a move; `sink(tag, seconds)` receives the time of every block this commits.
    pub fn push(&mut self, mv: &Move, limits: &Limits, sink: &mut impl FnMut(u32, f64)) {
        if !(mv.len > 1e-9 && mv.len.is_finite() && mv.feed > 0.0 && mv.feed.is_finite()) {
            return;
        }
        // Cruise speed and acceleration, capped per axis.
        let min_feed = if mv.kind == Kind::Travel {
            limits.min_travel_feed
        } else {
            limits.min_feed
        };
        let mut nominal = mv.feed.max(min_feed);
        let mut accel = limits.accel_for(mv.kind as usize);
        for a in 0..4 {
            let c = mv.start[a].abs().max(mv.end[a].abs());
            // Divide only when the cap binds (divisions dominate this loop otherwise).
            if nominal * c > limits.max_feed[a] {
                nominal = limits.max_feed[a] / c;
            }
            if accel * c > limits.max_accel[a] {
                accel = limits.max_accel[a] / c;
            }
        }
        if limits.min_segment_s > 0.0 {
            nominal = nominal.min(mv.len / limits.min_segment_s);
        }
        if nominal.is_nan() || nominal <= 0.0 {
            return;
        }
        let straight = mv.start == mv.end;
        let v_start = mv.start.map(|c| c * nominal);
        let v_end = if straight {
            v_start
        } else {
            mv.end.map(|c| c * nominal)
        };
        // Unit XYZE directions are only needed by the deviation models.
        let (unit_start, unit_end) = match limits.corner {
            Corner::Jerk(_) => ([0.0; 4], [0.0; 4]),
            _ if straight => {
                let u = unit(&mv.start);
                (u, u)
            }
            _ => (unit(&mv.start), unit(&mv.end)),
        };

        let (safe_entry, safe_exit) = match limits.corner {
            Corner::Jerk(j) => {
                let entry = jerk_safe_speed(nominal, &v_start, &j);
                let exit = if straight {
                    entry
                } else {
                    jerk_safe_speed(nominal, &v_end, &j)
                };
                (entry, exit)
            }
            _ => (0.0, 0.0),
        };
        let max_entry_sq = match &self.prev {
            None => safe_entry * safe_entry,
            Some(p) => {
                let v_sq = match limits.corner {
                    Corner::Jerk(j) => jerk_junction(p, nominal, &v_start, safe_entry, &j).powi(2),
                    Corner::Deviation(jd) => {
                        deviation_junction_sq(&p.unit_end, &unit_start, jd, accel)
                    }
                    Corner::SquareCorner(scv) => {
                        // Klipper: deviation from the square-corner velocity at the configured
                        // acceleration, and a centripetal cap so that short segments
                        // approximating a curve are not taken faster than the curve.
                        let max_accel = limits.print_accel.max(1.0);
                        let jd = scv * scv * (std::f64::consts::SQRT_2 - 1.0) / max_accel;
                        let cos = -dot(&p.unit_end, &unit_start);
                        let jd_sq = deviation_junction_sq(&p.unit_end, &unit_start, jd, accel);
                        let cos_half = (0.5 * (1.0 + cos.clamp(-1.0, 1.0))).sqrt();
                        if cos_half > 1e-9 {
                            let tan_half = (0.5 * (1.0 - cos.clamp(-1.0, 1.0))).sqrt() / cos_half;
                            jd_sq.min(0.5 * mv.len * tan_half * accel)
                        } else {
                            jd_sq
                        }
                    }
                };
                v_sq.min(nominal * nominal).min(p.nominal * p.nominal)
            }
        };
        let block = Block {
            len: mv.len,
            accel,
            nominal,
            max_entry_sq,
            entry_sq: max_entry_sq,
            safe_exit_sq: safe_exit * safe_exit,
            tag: mv.tag,
        };
        self.prev = Some(Prev {
            v_end,
            unit_end,
            nominal,
            safe_exit,
        });
        self.buf.push(block);
        if self.buf.len() >= CAPACITY {
            self.commit(CAPACITY - LOOKAHEAD, limits, sink);
        }
    }

    /// Commits every buffered block, ending at rest (end of file, dwell, `M400`, heater wait).
    pub fn flush(&mut self, limits: &Limits, sink: &mut impl FnMut(u32, f64)) {
        self.commit(self.buf.len(), limits, sink);
        self.prev = None;
        self.first_fixed = false;
    }

    /// Plans the whole buffer and reports the oldest `n` blocks.
    fn commit(&mut self, n: usize, limits: &Limits, sink: &mut impl FnMut(u32, f64)) {
        let len = self.buf.len();
        if len == 0 {
            return;
        }
        let b = &mut self.buf[..];
        // Backward pass: each block must be able to slow down to the next block's entry; the
        // newest one to its safe exit speed (nothing is known after it).
        let mut next_entry_sq = b[len - 1].safe_exit_sq;
        for i in (0..len).rev() {
            let blk = &mut b[i];
            if !(i == 0 && self.first_fixed) {
                blk.entry_sq = blk
                    .max_entry_sq
                    .min(next_entry_sq + 2.0 * blk.accel * blk.len);
            }
            next_entry_sq = blk.entry_sq;
        }
        // Forward pass: each block can only reach what it can accelerate to.
        for i in 0..len - 1 {
            let reach = b[i].entry_sq + 2.0 * b[i].accel * b[i].len;
            if b[i + 1].entry_sq > reach {
                b[i + 1].entry_sq = reach;
            }
        }
        let n = n.min(len);
        // Speeds are clamped to the block's cruise speed; each exit is the next entry, so
        // every square root is taken once.
        let speed = |sq: f64, nominal: f64| {
            let sq = sq.clamp(0.0, nominal * nominal);
            (sq.sqrt(), sq)
        };
        let mut entry = speed(b[0].entry_sq, b[0].nominal);
        for i in 0..n {
            let exit_sq = if i + 1 < len {
                b[i + 1].entry_sq
            } else {
                b[i].safe_exit_sq
            };
            let exit = speed(exit_sq, b[i].nominal);
            let t = block_time(&b[i], entry, exit, limits.accel_to_decel);
            if i + 1 < len {
                entry = if b[i + 1].nominal >= b[i].nominal {
                    exit
                } else {
                    speed(exit_sq, b[i + 1].nominal)
                };
            }
            // Every block is reported (callers count them), a degenerate one as 0 s.
            sink(b[i].tag, if t.is_finite() { t } else { 0.0 });
        }
        self.buf.drain(..n);
        self.first_fixed = !self.buf.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plans `moves` (X, Y, Z, E deltas at `feed` mm/s) and returns the total time.
    fn plan(limits: &Limits, moves: &[[f64; 4]], feed: f64) -> f64 {
        let mut p = Planner::default();
        let mut total = 0.0;
        let mut sink = |_: u32, t: f64| total += t;
        for d in moves {
            p.push(&Move::line(*d, feed, 0), limits, &mut sink);
        }
        p.flush(limits, &mut sink);
        total
    }

    fn simple(accel: f64) -> Limits {
        Limits {
            print_accel: accel,
            travel_accel: accel,
            retract_accel: accel,
            max_accel: [1e6; 4],
            corner: Corner::Deviation(0.013),
            ..Limits::default()
        }
    }

    #[test]
    fn long_move_reaches_cruise_and_matches_the_trapezoid() {
        // 100 mm at 50 mm/s, 500 mm/s², from and to rest: 2 × 0.1 s ramps over 2.5 mm each,
        // 95 mm cruise = 1.9 s; total 2.1 s.
        let t = plan(&simple(500.0), &[[100.0, 0.0, 0.0, 0.0]], 50.0);
        assert!((t - 2.1).abs() < 1e-9, "{t}");
    }

    #[test]
    fn short_move_is_a_triangle() {
        // 1 mm at 100 mm/s, 500 mm/s²: never cruises; peak √(a·d) = 22.36 mm/s,
        // t = 2·√(d/a) = 0.0894 s (well above d/v = 0.01 s).
        let t = plan(&simple(500.0), &[[1.0, 0.0, 0.0, 0.0]], 100.0);
        assert!((t - 2.0 * (1.0_f64 / 500.0).sqrt()).abs() < 1e-9, "{t}");
        assert!(t > 0.01 * 5.0);
    }

    #[test]
    fn corners_cost_time_straight_lines_do_not() {
        let l = simple(1000.0);
        let straight = plan(&l, &[[10.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]], 100.0);
        let corner = plan(&l, &[[10.0, 0.0, 0.0, 0.0], [0.0, 10.0, 0.0, 0.0]], 100.0);
        let one = plan(&l, &[[20.0, 0.0, 0.0, 0.0]], 100.0);
        assert!((straight - one).abs() < 1e-9, "{straight} vs {one}");
        assert!(corner > straight + 0.01, "{corner} vs {straight}");
        // Same with classic jerk.
        let j = Limits {
            corner: Corner::Jerk([8.0, 8.0, 0.4, 5.0]),
            ..l
        };
        let straight = plan(&j, &[[10.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0]], 100.0);
        let corner = plan(&j, &[[10.0, 0.0, 0.0, 0.0], [0.0, 10.0, 0.0, 0.0]], 100.0);
        assert!(corner > straight + 0.01, "{corner} vs {straight}");
    }

    #[test]
    fn limits_change_the_time_in_the_right_direction() {
        let moves: Vec<[f64; 4]> = (0..400)
            .map(|i| {
                let a = i as f64 * 0.7;
                [5.0 * a.cos(), 5.0 * a.sin(), 0.0, 0.2]
            })
            .collect();
        let base = simple(1000.0);
        let t0 = plan(&base, &moves, 150.0);
        // M204: more acceleration, less time.
        let fast = plan(
            &Limits {
                print_accel: 4000.0,
                ..base
            },
            &moves,
            150.0,
        );
        assert!(fast < t0 * 0.9, "{fast} vs {t0}");
        // M201: a per-axis cap below M204 slows it down.
        let capped = plan(
            &Limits {
                max_accel: [300.0, 300.0, 100.0, 1e6],
                ..base
            },
            &moves,
            150.0,
        );
        assert!(capped > t0 * 1.1, "{capped} vs {t0}");
        // M203: a lower maximum feed rate slows long moves down.
        let long = [[200.0, 0.0, 0.0, 0.0]];
        let slow = plan(
            &Limits {
                max_feed: [50.0, 50.0, 12.0, 120.0],
                ..base
            },
            &long,
            150.0,
        );
        assert!(slow > plan(&base, &long, 150.0) * 2.0);
        // An extruder-only move is limited by the E feed rate.
        let e = plan(&base, &[[0.0, 0.0, 0.0, 120.0]], 1000.0);
        assert!(e >= 1.0, "{e}");
    }

    #[test]
    fn batches_lose_nothing_and_match_one_big_plan() {
        // More moves than the buffer holds: committed in batches; the total is what a plan
        // of a straight line of the same length takes.
        let l = simple(1000.0);
        let moves = vec![[1.0, 0.0, 0.0, 0.0]; CAPACITY * 3 + 7];
        let t = plan(&l, &moves, 50.0);
        let one = plan(&l, &[[(CAPACITY * 3 + 7) as f64, 0.0, 0.0, 0.0]], 50.0);
        assert!((t - one).abs() < 1e-6, "{t} vs {one}");
    }
}

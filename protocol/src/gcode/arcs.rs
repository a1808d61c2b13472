//! Arc geometry (`G2`/`G3`): the XY length the move really travels and its tangents, which the
//! planner needs for the junction speeds at both ends.

use super::line::Line;

/// An arc's XY length and unit tangents.
pub struct Arc {
    pub length: f64,
    pub start_tangent: [f64; 2],
    pub end_tangent: [f64; 2],
}

/// XY geometry of a G2 (clockwise) / G3 arc given by I/J (centre offset) or R (radius).
pub fn arc(
    l: &Line<'_>,
    start: [f64; 3],
    end: [f64; 3],
    clockwise: bool,
    inches: bool,
) -> Option<Arc> {
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

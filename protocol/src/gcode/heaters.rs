//! Heat-up waits: a linear thermal model per heater, with rates from the printer's profile.
//!
//! `M109` / `M190` wait until the heater reaches its target; how long that takes depends on the
//! printer (a 40 W hotend, a 24 V or mains bed), so the rates are part of [`Limits`](super::Limits)
//! ([`Heating`]), which a firmware profile may set. `M104` / `M140` start heating in the
//! background; a later wait only pays for what is left.

/// Heating and cooling rates, °C/s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heating {
    pub tool_up: f64,
    pub tool_down: f64,
    pub bed_up: f64,
    pub bed_down: f64,
}

impl Default for Heating {
    /// A typical 40 W hotend and a 24 V bed.
    fn default() -> Self {
        Self {
            tool_up: 2.0,
            tool_down: 1.0,
            bed_up: 0.4,
            bed_down: 0.1,
        }
    }
}

impl Heating {
    pub fn tool(&self) -> (f64, f64) {
        (self.tool_up, self.tool_down)
    }

    pub fn bed(&self) -> (f64, f64) {
        (self.bed_up, self.bed_down)
    }

    /// All rates finite and > 0 (a profile with a 0 rate would make every wait infinite).
    pub fn is_valid(&self) -> bool {
        [self.tool_up, self.tool_down, self.bed_up, self.bed_down]
            .iter()
            .all(|r| r.is_finite() && *r > 0.0)
    }
}

/// Room temperature, °C.
pub const AMBIENT_C: f64 = 25.0;

/// One heater: linear ramp from `from` at time `since` towards `target`.
#[derive(Debug, Clone, Copy)]
pub struct Heater {
    from: f64,
    target: f64,
    since: f64,
}

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
    /// `rate` is (heating, cooling) in °C/s; a rate that is not > 0 counts as no wait.
    pub fn set(&mut self, target: f64, now: f64, rate: (f64, f64), wait_cooling: bool) -> f64 {
        let cur = self.temp_at(now, rate);
        // Off (0) or below room temperature means "cool to room temperature".
        let target = if target.is_nan() {
            AMBIENT_C
        } else {
            target.clamp(AMBIENT_C, 500.0)
        };
        *self = Heater {
            from: cur,
            target,
            since: now,
        };
        let wait = if target > cur {
            (target - cur) / rate.0
        } else if wait_cooling && target < cur {
            (cur - target) / rate.1
        } else {
            0.0
        };
        if wait.is_finite() { wait.max(0.0) } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_follow_the_rates_and_background_heating_counts() {
        let r = Heating::default();
        let mut h = Heater::default();
        assert_eq!(h.set(225.0, 0.0, r.tool(), false), 100.0);
        // Set at t=0 without waiting, then wait at t=50: half the ramp is done.
        let mut b = Heater::default();
        b.set(225.0, 0.0, r.tool(), false);
        assert_eq!(b.set(225.0, 50.0, r.tool(), false), 50.0);
        // A faster heater waits less.
        let fast = Heating { tool_up: 4.0, ..r };
        assert_eq!(Heater::default().set(225.0, 0.0, fast.tool(), false), 50.0);
        // Cooling is only waited for with R; a 0 rate never makes an infinite wait.
        assert_eq!(h.set(0.0, 100.0, r.tool(), false), 0.0);
        let broken = Heating { tool_up: 0.0, ..r };
        assert_eq!(Heater::default().set(225.0, 0.0, broken.tool(), false), 0.0);
        assert!(!broken.is_valid() && r.is_valid());
    }
}

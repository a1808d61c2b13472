//! The one retry schedule every reconnect loop and retry queue uses: a first delay, doubling
//! up to a cap, each delay spread by ± a jitter fraction so many clients that failed together
//! do not retry together.
//!
//! Pure: the caller counts nothing but failures and draws the random spread itself
//! (`rand::random_range(-1.0..=1.0)`), so a delay is a function of (schedule, failures in a
//! row, spread) and a persisted schedule (webhook deliveries) is recomputed from its attempt
//! count alone.
//!
//! Not a crate: `exponential-backoff` clamps the jittered delay into `[min, max]` (the first
//! delay never jitters down, a capped one never up, so clients stuck at the cap retry in
//! lockstep) and has no delay-for-attempt-n; `backon`'s jitter only adds up to the minimum
//! delay; neither takes the random number from the caller.

use std::time::Duration;

/// A retry schedule and how many failures in a row it has seen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    jitter: f64,
    failures: u32,
}

impl Backoff {
    /// `first` after the first failure, doubling up to `max`; no jitter.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            jitter: 0.0,
            failures: 0,
        }
    }

    /// The same delay after every failure.
    pub const fn fixed(delay: Duration) -> Self {
        Self::new(delay, delay)
    }

    /// Spreads each delay by ±`fraction` of it (0.25: from 75 % to 125 %), clamped to [0, 1].
    pub const fn with_jitter(mut self, fraction: f64) -> Self {
        self.jitter = fraction.clamp(0.0, 1.0);
        self
    }

    /// The delay after `failures` failures in a row (1 = the first retry): `first · 2^(failures-1)`
    /// capped at `max`, then moved by `spread · jitter` of itself. `spread` is where in the
    /// jitter band this delay falls, in [-1, 1] (clamped; 0 = no jitter). Pure.
    pub fn delay_after(&self, failures: u32, spread: f64) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let base = self
            .first
            .saturating_mul(1 << doublings)
            .min(self.max.max(self.first));
        let spread = if spread.is_nan() {
            0.0
        } else {
            spread.clamp(-1.0, 1.0)
        };
        // At most doubles a finite delay; past `Duration::MAX` the unjittered delay stands.
        Duration::try_from_secs_f64(base.as_secs_f64() * (1.0 + self.jitter * spread))
            .unwrap_or(base)
    }

    /// Counts one more failure and returns the delay before the next try.
    pub fn next(&mut self, spread: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.delay_after(self.failures, spread)
    }

    /// A success: the next failure waits `first` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row since the last [`reset`](Self::reset).
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_from_the_first_delay_to_the_cap() {
        let b = Backoff::new(MS(500), MS(30_000));
        let d: Vec<u64> = (1..=9)
            .map(|n| b.delay_after(n, 0.0).as_millis() as u64)
            .collect();
        assert_eq!(
            d,
            [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(b.delay_after(u32::MAX, 0.0), MS(30_000), "no overflow");
        assert_eq!(b.delay_after(0, 0.0), MS(500), "0 failures reads as 1");
    }

    #[test]
    fn jitter_spreads_both_ways_even_at_the_cap() {
        let b = Backoff::new(MS(500), MS(30_000)).with_jitter(0.25);
        assert_eq!(b.delay_after(1, -1.0), MS(375));
        assert_eq!(b.delay_after(1, 1.0), MS(625));
        assert_eq!(b.delay_after(20, -1.0), MS(22_500));
        assert_eq!(b.delay_after(20, 1.0), MS(37_500));
        assert_eq!(b.delay_after(1, 7.0), MS(625), "spread is clamped");
        assert_eq!(b.delay_after(1, f64::NAN), MS(500));
        let none = Backoff::new(MS(500), MS(30_000));
        assert_eq!(none.delay_after(1, 1.0), MS(500), "no jitter, no spread");
    }

    #[test]
    fn next_counts_failures_and_reset_starts_over() {
        let mut b = Backoff::new(MS(200), MS(10_000));
        assert_eq!(
            (b.next(0.0), b.next(0.0), b.next(0.0)),
            (MS(200), MS(400), MS(800))
        );
        assert_eq!(b.failures(), 3);
        b.reset();
        assert_eq!((b.failures(), b.next(0.0)), (0, MS(200)));
    }

    #[test]
    fn a_fixed_schedule_never_grows() {
        let mut b = Backoff::fixed(MS(2000));
        assert!((0..10).all(|_| b.next(0.0) == MS(2000)));
    }

    #[test]
    fn a_cap_below_the_first_delay_keeps_the_first() {
        assert_eq!(
            Backoff::new(MS(5000), MS(1000)).delay_after(3, 0.0),
            MS(5000)
        );
    }
}

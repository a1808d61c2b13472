//! Telling a stalled printer from a busy one (pure; time is passed in).
//!
//! A printer that works through a long command (`M109`, `G28`, `G29`, `M400`) sends no `ok`
//! for minutes, but it is not silent: Marlin prints `busy: processing` every couple of
//! seconds (`HOST_KEEPALIVE_FEATURE`) and temperatures every second while heating, and
//! auto-reports (`M155`) keep coming. A stalled printer (firmware crashed, cable pulled
//! without the port closing) says nothing at all. So the watchdog runs on *silence*:
//!
//! * any line from the printer resets the clock ([`Watchdog::heard`]);
//! * while something is in flight, silence longer than the allowance is a timeout: the
//!   allowance is the communication timeout, or — when the oldest line in flight is a
//!   blocking command — the profile's allowance for it (`timeouts.long_commands`; 0 = wait
//!   without limit, e.g. `M0` waits for a person);
//! * a timeout asks the caller to poke the printer (an unnumbered `M105`: its answer proves
//!   life and, if an `ok` was lost on the wire, frees the stuck slot); after `max_timeouts`
//!   pokes in a row without an `ok`, the printer is declared dead.

use std::time::{Duration, Instant};

/// What the caller should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Fine,
    /// Silent for the allowance: send a poke.
    Poke,
    /// Silent through every poke: the link is dead; `silent` is how long nothing came.
    Dead {
        silent: Duration,
    },
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Watchdog {
    /// Silence allowed for an ordinary command.
    pub timeout: Duration,
    /// Pokes before giving up.
    pub max_pokes: u32,
    last_heard: Instant,
    /// Start of the current silence (not moved by pokes).
    silent_since: Instant,
    pokes: u32,
}

impl Watchdog {
    #[must_use]
    pub fn new(timeout: Duration, max_pokes: u32, now: Instant) -> Watchdog {
        Watchdog {
            timeout,
            max_pokes,
            last_heard: now,
            silent_since: now,
            pokes: 0,
        }
    }

    /// A line arrived. `ok` says whether it was an acknowledgement (which ends a poke
    /// sequence; a temperature line only proves the printer alive).
    pub fn heard(&mut self, now: Instant, ok: bool) {
        self.last_heard = now;
        self.silent_since = now;
        if ok {
            self.pokes = 0;
        }
    }

    /// Nothing is in flight: no one waits for an answer, so no silence counts.
    pub fn idle(&mut self, now: Instant) {
        self.heard(now, true);
    }

    /// Checks the silence. `allowance`: `None` for an ordinary command, `Some(ZERO)` for one
    /// that may block without limit, `Some(d)` for a long command.
    pub fn check(&mut self, now: Instant, allowance: Option<Duration>) -> Verdict {
        let limit = match allowance {
            Some(d) if d.is_zero() => return Verdict::Fine,
            Some(d) => d.max(self.timeout),
            None => self.timeout,
        };
        if now.saturating_duration_since(self.last_heard) < limit {
            return Verdict::Fine;
        }
        if self.pokes >= self.max_pokes {
            return Verdict::Dead {
                silent: now.saturating_duration_since(self.silent_since),
            };
        }
        self.pokes += 1;
        // The next poke waits a full timeout again.
        self.last_heard = now;
        Verdict::Poke
    }

    /// When the next check can change the verdict (for the caller's timer).
    #[must_use]
    pub fn next_deadline(&self, allowance: Option<Duration>) -> Option<Instant> {
        match allowance {
            Some(d) if d.is_zero() => None,
            Some(d) => Some(self.last_heard + d.max(self.timeout)),
            None => Some(self.last_heard + self.timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn silence_pokes_then_dies_and_an_ok_starts_over() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(10 * S, 2, t0);
        assert_eq!(w.check(t0 + 9 * S, None), Verdict::Fine);
        assert_eq!(w.check(t0 + 10 * S, None), Verdict::Poke);
        // A poke restarts the wait; a second silence pokes again, the third is death.
        assert_eq!(w.check(t0 + 15 * S, None), Verdict::Fine);
        assert_eq!(w.check(t0 + 20 * S, None), Verdict::Poke);
        assert_eq!(
            w.check(t0 + 30 * S, None),
            Verdict::Dead { silent: 30 * S },
            "silence is measured from the last line heard, not from the last poke"
        );
        // An ok brings it back.
        w.heard(t0 + 31 * S, true);
        assert_eq!(w.check(t0 + 40 * S, None), Verdict::Fine);
        assert_eq!(w.check(t0 + 41 * S, None), Verdict::Poke);
    }

    #[test]
    fn keepalives_hold_off_timeouts_but_do_not_forgive_pokes() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(3 * S, 1, t0);
        // busy: processing every 2 s through a 60 s G28: never a timeout.
        for i in 1..30 {
            w.heard(t0 + 2 * i * S, false);
            assert_eq!(w.check(t0 + (2 * i + 1) * S, None), Verdict::Fine);
        }
        // Silent after a poke: a temperature line proves life but is no ok, so one more
        // silence is fatal.
        let t1 = t0 + 100 * S;
        w.heard(t1, false);
        assert_eq!(w.check(t1 + 3 * S, None), Verdict::Poke);
        w.heard(t1 + 4 * S, false);
        assert!(matches!(w.check(t1 + 7 * S, None), Verdict::Dead { .. }));
    }

    #[test]
    fn long_commands_get_their_allowance_and_zero_means_no_limit() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(3 * S, 0, t0);
        // A silent M109 (firmware without keep-alives) may take its 900 s.
        assert_eq!(w.check(t0 + 899 * S, Some(900 * S)), Verdict::Fine);
        assert!(matches!(
            w.check(t0 + 900 * S, Some(900 * S)),
            Verdict::Dead { .. }
        ));
        // M0 waits for a person: never a timeout.
        let mut w = Watchdog::new(3 * S, 0, t0);
        assert_eq!(
            w.check(t0 + 86_400 * S, Some(Duration::ZERO)),
            Verdict::Fine
        );
        assert_eq!(w.next_deadline(Some(Duration::ZERO)), None);
        // An allowance shorter than the plain timeout never shortens it.
        assert_eq!(w.check(t0 + 2 * S, Some(S)), Verdict::Fine);
        assert_eq!(w.next_deadline(None), Some(t0 + 3 * S));
    }

    #[test]
    fn idle_links_never_time_out() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(3 * S, 0, t0);
        w.idle(t0 + 100 * S);
        assert_eq!(w.check(t0 + 102 * S, None), Verdict::Fine);
    }
}

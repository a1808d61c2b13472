//! The send-ahead window and the resend rewind: the pure heart of the serial streamer.
//!
//! [`Streamer`] numbers and frames every line the host sends (`N<n> cmd*cs`), remembers what
//! is in flight (sent, not yet acknowledged) and decides whether the next line may go:
//!
//! * **Send-ahead.** At most [`Window::max_lines`] unacknowledged lines, and their framed bytes
//!   never more than [`Window::rx_bytes`] (the firmware's receive ring minus a margin): bytes
//!   beyond it would be dropped silently by Marlin. When the firmware answers in the
//!   `ADVANCED_OK` form (`ok N<n> P<p> B<b>`) its free command slots `B` limit the window too.
//!   One line may always be in flight, so `max_lines = 1` is strict ping-pong.
//! * **Acknowledgement.** Every `ok` acknowledges the oldest line in flight ([`Streamer::on_ok`]).
//! * **Resend.** `Resend: n` means the firmware accepted every line before `n` and none from
//!   `n` on. The streamer rewinds to exactly `n` and resends `n, n+1, …` with the same numbers
//!   ([`Streamer::poll_resend`]) before any new line. Lines that were in flight from `n` on are
//!   marked *rejected*: the firmware still answers each of them (OctoPrint's Virtual Printer:
//!   `Error` + `Resend:n` + `ok` per line; Marlin: at most one `ok`, then it flushes its
//!   receive buffer), so they keep their place in the window until that answer comes — the
//!   window can never over-fill the firmware. Further `Resend: n` for the same `n` while
//!   rejected lines are still out are echoes of those lines, not new requests, and are
//!   ignored. Rejected lines a firmware never answers (it flushed them) are dropped by
//!   [`Streamer::on_quiet`] once the link has been quiet for a moment.
//! * **Re-sync.** When more than one line was rejected, `N<n-1> M110 N<n-1>` goes out before
//!   the resent lines: OctoPrint's Virtual Printer lets its checksum counter drift on every
//!   out-of-order line it refuses and would otherwise skip lines on the next error; `M110`
//!   lines are exempt from Marlin's order check, so it costs one round trip there.
//! * **Loops.** The same line rewound [`PING_PONG_AFTER`] times in a row shrinks the window to
//!   one line for the connection; [`GIVE_UP_AFTER`] times is a broken link
//!   ([`Streamer::resend_loop`]).
//!
//! Nothing is ever lost or doubled by this rewinding: the firmware itself refuses any line
//! whose number is not the one it expects, so a line is executed once, in order, and the host
//! only has to resend from where it is asked. Material is counted from [`Ack::Line`]s, which
//! name each accepted line once (a line re-acknowledged after a late resend request has a
//! number at or below [`Streamer::acked`] and is not new).

use super::framing::{frame_into, line_number_reset};
use super::profile::Buffers;
use std::collections::VecDeque;

/// Acknowledged lines kept beyond the ones in flight, for late resend requests (OctoPrint
/// keeps 50).
pub const HISTORY: usize = 64;

/// Rewinds to the same line in a row before the window falls back to ping-pong.
pub const PING_PONG_AFTER: u32 = 3;
/// Rewinds to the same line in a row before the link counts as broken (OctoPrint: 10).
pub const GIVE_UP_AFTER: u32 = 10;

/// Bytes of the receive ring kept free, for the odd unnumbered line (poke, e-stop).
pub const RX_MARGIN: usize = 8;

/// How much may be unacknowledged at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Lines in flight (1 = ping-pong).
    pub max_lines: usize,
    /// Framed bytes in flight (the firmware's receive ring minus [`RX_MARGIN`]).
    pub rx_bytes: usize,
    /// Let `ok N P B` (ADVANCED_OK) limit the window by the firmware's free command slots.
    pub advanced_ok: bool,
}

impl Window {
    /// The window a firmware profile allows: `max_in_flight` lines (or `lines` from the
    /// config, clamped to 1..=max_in_flight) within its receive ring.
    #[must_use]
    pub fn from_profile(b: &Buffers, lines: Option<u32>) -> Window {
        let max = b.max_in_flight.max(1);
        let lines = lines.unwrap_or(max).clamp(1, max);
        Window {
            max_lines: lines as usize,
            rx_bytes: b.rx_bytes.saturating_sub(RX_MARGIN).max(1),
            advanced_ok: b.advanced_ok,
        }
    }
}

/// What an `ok` acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Line `n` was accepted. If `n` is at or below an earlier `Line`, it was accepted before.
    Line(u64),
    /// The answer to a rejected line (the `ok` after a resend request): nothing accepted.
    Rejected(u64),
    /// The answer to a re-synchronising `M110` sent before a resend.
    Resync,
    /// Nothing was in flight: the `ok` of an unnumbered line (a poke), or a stray one.
    Unsolicited,
}

/// What a `Resend: n` request means for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Rewound: lines from `n` on will be sent again.
    Rewind(u64),
    /// An echo of an earlier request for the same line (the firmware answering a line that
    /// was already rejected): nothing changes.
    Duplicate,
    /// A request for a line not sent yet (the firmware is ahead of nothing): ignored.
    Ahead,
    /// Line `n` is older than the history: it cannot be sent again. The link is broken.
    Unavailable(u64),
}

#[derive(Debug, Clone)]
struct Sent {
    n: u64,
    framed: String,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    n: u64,
    bytes: usize,
    rejected: bool,
    /// An `N<n> M110 N<n>` re-synchronisation, not a line of the stream.
    resync: bool,
}

/// Counters for logs, tests and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Lines framed for the first time.
    pub sent: u64,
    /// Lines sent again after a resend request.
    pub resent: u64,
    /// Resend requests that rewound the stream.
    pub rewinds: u64,
    /// Resend requests ignored as echoes or as ahead of the stream.
    pub ignored_resends: u64,
    /// Rejected lines given up on because the firmware never answered them.
    pub dropped_rejected: u64,
    /// `M110` re-synchronisations sent before a resend.
    pub resyncs: u64,
    /// The same line failed [`PING_PONG_AFTER`] times in a row: the window shrank to 1.
    pub fell_back_to_ping_pong: bool,
    pub oks: u64,
    pub unsolicited_oks: u64,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Streamer {
    window: Window,
    /// The number the next new line gets.
    next_new: u64,
    /// The next number to send again, while rewound.
    resend_next: Option<u64>,
    /// The number of the last rewind, for recognising echoes.
    rewound_to: Option<u64>,
    /// A request was ignored as an echo since the last rewind (see [`Streamer::on_quiet`]).
    echoed: bool,
    /// An `M110` re-synchronisation goes out before the next resent line.
    resync_pending: bool,
    /// The line of the last rewind and how many rewinds to it came in a row.
    repeat: (u64, u32),
    /// Highest number acknowledged.
    acked: u64,
    history: VecDeque<Sent>,
    in_flight: VecDeque<Flight>,
    in_flight_bytes: usize,
    /// Last `ok N<n> … B<b>`: free command slots `b` after line `n`.
    advanced: Option<(u64, u32)>,
    scratch: String,
    stats: Stats,
}

impl Streamer {
    /// A streamer after `M110 N0`: the next line is 1.
    #[must_use]
    pub fn new(window: Window) -> Streamer {
        Streamer {
            window,
            next_new: 1,
            resend_next: None,
            rewound_to: None,
            echoed: false,
            resync_pending: false,
            repeat: (0, 0),
            acked: 0,
            history: VecDeque::with_capacity(HISTORY + 8),
            in_flight: VecDeque::with_capacity(8),
            in_flight_bytes: 0,
            advanced: None,
            scratch: String::with_capacity(128),
            stats: Stats::default(),
        }
    }

    /// After the firmware's counter was set to `n` (`M110 N<n>`): forget everything in
    /// flight; the next line is `n + 1`.
    pub fn reset(&mut self, n: u64) {
        let window = self.window;
        let stats = self.stats;
        *self = Streamer::new(window);
        self.stats = stats;
        self.next_new = n + 1;
        self.acked = n;
    }

    #[must_use]
    pub fn window(&self) -> Window {
        self.window
    }

    pub fn set_window(&mut self, window: Window) {
        self.window = window;
    }

    #[must_use]
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Highest line number acknowledged so far.
    #[must_use]
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The number the next new line will get.
    #[must_use]
    pub fn next_number(&self) -> u64 {
        self.next_new
    }

    /// Lines in flight, rejected ones included.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The oldest line in flight that still counts (not rejected), for timeouts.
    #[must_use]
    pub fn oldest_pending(&self) -> Option<u64> {
        self.in_flight.iter().find(|f| !f.rejected).map(|f| f.n)
    }

    /// Rejected lines still waiting for the firmware's answer.
    #[must_use]
    pub fn has_rejected(&self) -> bool {
        self.in_flight.iter().any(|f| f.rejected)
    }

    /// Whether lines must be sent again before any new one.
    #[must_use]
    pub fn resending(&self) -> bool {
        self.resend_next.is_some()
    }

    /// Nothing in flight and nothing to resend.
    #[must_use]
    pub fn is_idle(&self) -> bool {
        self.in_flight.is_empty() && self.resend_next.is_none()
    }

    /// Whether a framed line of `bytes` may go now (window rules in the module docs).
    #[must_use]
    pub fn fits(&self, bytes: usize) -> bool {
        if self.in_flight.is_empty() {
            return true;
        }
        if self.in_flight.len() >= self.window.max_lines {
            return false;
        }
        if self.window.advanced_ok
            && let Some((after, free)) = self.advanced
        {
            let newer = self
                .in_flight
                .iter()
                .filter(|f| !f.rejected && f.n > after)
                .count();
            if newer >= free as usize {
                return false;
            }
        }
        self.in_flight_bytes + bytes <= self.window.rx_bytes
    }

    /// The framed length `cmd` will have as the next new line.
    #[must_use]
    pub fn framed_len(&self, cmd: &str) -> usize {
        // "N" + digits + " " + cmd + "*" + up to 3 digits + "\n"
        let digits = self.next_new.checked_ilog10().unwrap_or(0) as usize + 1;
        1 + digits + 1 + cmd.len() + 1 + 3 + 1
    }

    /// Whether the new line `cmd` may go now: nothing to resend and it fits.
    #[must_use]
    pub fn can_send(&self, cmd: &str) -> bool {
        self.resend_next.is_none() && self.fits(self.framed_len(cmd))
    }

    /// Frames `cmd` (already cleaned, see `framing::clean_line`) as the next new line, puts
    /// it in flight and returns its number and the bytes to write. Call only when
    /// [`Streamer::can_send`] (the window is the caller's promise to the firmware).
    pub fn push(&mut self, cmd: &str) -> (u64, &str) {
        debug_assert!(self.resend_next.is_none(), "push while resending");
        let n = self.next_new;
        self.next_new += 1;
        self.scratch.clear();
        frame_into(n, cmd, &mut self.scratch);
        let bytes = self.scratch.len();
        // Reuse the oldest history slot's allocation once the history is full.
        let mut framed = if self.history.len() >= HISTORY
            && self.history.front().is_some_and(|s| s.n <= self.acked)
        {
            self.history
                .pop_front()
                .map(|s| s.framed)
                .unwrap_or_default()
        } else {
            String::with_capacity(bytes)
        };
        framed.clear();
        framed.push_str(&self.scratch);
        self.history.push_back(Sent { n, framed });
        self.in_flight.push_back(Flight {
            n,
            bytes,
            rejected: false,
            resync: false,
        });
        self.in_flight_bytes += bytes;
        self.stats.sent += 1;
        (n, &self.scratch)
    }

    /// The next line to send again while rewound, if the window allows it now: puts it in
    /// flight and returns its number and bytes.
    pub fn poll_resend(&mut self) -> Option<(u64, &str)> {
        let n = self.resend_next?;
        if self.resync_pending {
            let line = line_number_reset(n - 1);
            if !self.fits(line.len()) {
                return None;
            }
            self.resync_pending = false;
            self.in_flight.push_back(Flight {
                n: n - 1,
                bytes: line.len(),
                rejected: false,
                resync: true,
            });
            self.in_flight_bytes += line.len();
            self.stats.resyncs += 1;
            self.scratch = line;
            return Some((n - 1, &self.scratch));
        }
        let idx = self.index_of(n)?;
        let bytes = self.history[idx].framed.len();
        if !self.fits(bytes) {
            return None;
        }
        self.resend_next = (n + 1 < self.next_new).then_some(n + 1);
        self.in_flight.push_back(Flight {
            n,
            bytes,
            rejected: false,
            resync: false,
        });
        self.in_flight_bytes += bytes;
        self.stats.resent += 1;
        Some((n, &self.history[idx].framed))
    }

    /// The command (without `N`, checksum and line break) of a line still kept.
    #[must_use]
    pub fn command_of(&self, n: u64) -> Option<&str> {
        let framed = &self.history[self.index_of(n)?].framed;
        let body = framed.split('*').next()?;
        Some(body.split_once(' ').map_or("", |(_, cmd)| cmd))
    }

    fn index_of(&self, n: u64) -> Option<usize> {
        let first = self.history.front()?.n;
        let idx = usize::try_from(n.checked_sub(first)?).ok()?;
        (idx < self.history.len()).then_some(idx)
    }

    /// An `ok` arrived. `line`/`buffer_free` are its ADVANCED_OK `N` and `B`, when present.
    pub fn on_ok(&mut self, line: Option<u64>, buffer_free: Option<u32>) -> Ack {
        self.stats.oks += 1;
        if let (Some(n), Some(b)) = (line, buffer_free) {
            self.advanced = Some((n, b));
        }
        let Some(f) = self.in_flight.pop_front() else {
            self.stats.unsolicited_oks += 1;
            return Ack::Unsolicited;
        };
        self.in_flight_bytes -= f.bytes;
        if f.rejected {
            return Ack::Rejected(f.n);
        }
        if f.resync {
            return Ack::Resync;
        }
        self.acked = self.acked.max(f.n);
        if f.n >= self.repeat.0 {
            self.repeat = (0, 0);
        }
        self.trim_history();
        Ack::Line(f.n)
    }

    /// `Resend: n` arrived (see the module docs for the rules).
    pub fn on_resend(&mut self, n: u64) -> Resend {
        if n >= self.next_new {
            self.stats.ignored_resends += 1;
            return Resend::Ahead;
        }
        if self.rewound_to == Some(n) && self.has_rejected() {
            self.stats.ignored_resends += 1;
            self.echoed = true;
            return Resend::Duplicate;
        }
        if self.index_of(n).is_none() {
            return Resend::Unavailable(n);
        }
        self.rewind(n);
        Resend::Rewind(n)
    }

    /// `Some((n, times))` when the firmware asked for line `n` [`GIVE_UP_AFTER`] times in a
    /// row without getting past it: the link is broken (or the firmware loops).
    #[must_use]
    pub fn resend_loop(&self) -> Option<(u64, u32)> {
        (self.repeat.1 >= GIVE_UP_AFTER).then_some(self.repeat)
    }

    fn rewind(&mut self, n: u64) {
        if self.repeat.0 == n {
            self.repeat.1 += 1;
        } else {
            self.repeat = (n, 1);
        }
        if self.repeat.1 >= PING_PONG_AFTER && self.window.max_lines > 1 {
            // The same line fails again and again with lines in flight behind it: fall back
            // to one line at a time for this connection (no out-of-order lines, no re-sync).
            self.window.max_lines = 1;
            self.stats.fell_back_to_ping_pong = true;
        }
        let mut rejected = 0;
        for f in &mut self.in_flight {
            if f.n >= n && !f.resync {
                f.rejected = true;
                rejected += 1;
            }
        }
        // Lines sent after the bad one reach the firmware too and are refused as out of
        // order. OctoPrint's Virtual Printer counts each of those in its checksum counter
        // but not in its line counter, so its next resend request would name a line too far
        // on and skip lines. `N<n-1> M110 N<n-1>` first sets both counters back; on Marlin
        // it is harmless (`M110` lines are exempt from the order check).
        self.resync_pending = rejected > 1 && n > 0;
        self.resend_next = Some(n);
        self.rewound_to = Some(n);
        self.echoed = false;
        self.stats.rewinds += 1;
    }

    /// The link has been quiet while rejected lines were out: the firmware flushed them and
    /// will not answer. Forgets them and returns how many. If a request was ignored as an
    /// echo meanwhile, it may have been a real one (a resent line failed again on a firmware
    /// that flushes): the rewind is repeated, which is always safe because the firmware
    /// refuses every line but the one it expects.
    pub fn on_quiet(&mut self) -> usize {
        let before = self.in_flight.len();
        self.in_flight.retain(|f| !f.rejected);
        self.in_flight_bytes = self.in_flight.iter().map(|f| f.bytes).sum();
        let dropped = before - self.in_flight.len();
        self.stats.dropped_rejected += dropped as u64;
        if std::mem::take(&mut self.echoed)
            && let Some(n) = self.rewound_to
            && n < self.next_new
            && self.index_of(n).is_some()
        {
            self.rewind(n);
        }
        dropped
    }

    fn trim_history(&mut self) {
        while self.history.len() > HISTORY
            && self.history.front().is_some_and(|s| s.n <= self.acked)
        {
            self.history.pop_front();
        }
    }
}

#[cfg(test)]
mod tests;

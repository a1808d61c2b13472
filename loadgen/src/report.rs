//! The run's figures, as JSON (`--json`) and as the text the binary prints.

use crate::stream::Seen;
use serde::Serialize;
use std::fmt;

#[derive(Clone, Debug, Default, Serialize)]
pub struct ProcessFigures {
    /// Mean CPU over the measured window, % of one core.
    pub cpu_percent: f64,
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Events {
    pub created: u64,
    /// Handed to the broker, resends included.
    pub published: u64,
    pub resent: u64,
    pub acked: u64,
    /// Not acked when the run ended (after `--drain`).
    pub unacked: i64,
    pub renumbered: u64,
    /// Acks per second over the measured window.
    pub acks_per_s: f64,
    pub commands_answered: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub printers: usize,
    pub flapping: usize,
    pub window_s: f64,
    pub enrol_s: f64,
    /// From the first connect until every live printer had its CONNACK.
    pub connect_all_s: Option<f64>,
    pub connect_failures: u64,
    /// Live printers' connections closed by the other side.
    pub live_disconnects: u64,
    pub statuses_sent: u64,
    /// Statuses sent that never showed on the stream.
    pub statuses_missing: i64,
    pub mean_status_bytes: u64,
    pub stream: Seen,
    /// Live printers shown online and fresh on the stream after the window (and `--settle`).
    pub online_at_end: usize,
    pub events: Events,
    pub flap_cycles: u64,
    pub flap_failures: u64,
    pub controller: Option<ProcessFigures>,
    pub loadgen: ProcessFigures,
    pub nproc: usize,
    /// /proc/loadavg at the start and the end.
    pub loadavg: (String, String),
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stream;
        writeln!(
            f,
            "printers: {} live + {} flapping; window {:.0} s; nproc {}; load average {} → {}",
            self.printers, self.flapping, self.window_s, self.nproc, self.loadavg.0, self.loadavg.1
        )?;
        writeln!(
            f,
            "connect: all live in {}; {} connect failures; {} live connections dropped by the broker; enrolment {:.1} s",
            self.connect_all_s
                .map_or("— (not all connected)".into(), |t| format!("{t:.1} s")),
            self.connect_failures,
            self.live_disconnects,
            self.enrol_s
        )?;
        for (name, l) in [
            ("while connecting", &s.connecting),
            ("steady", &s.steady),
            ("storm", &s.storm),
        ] {
            if l.samples > 0 {
                writeln!(
                    f,
                    "publish → stream ({name}, {} samples): p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
                    l.samples, l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
                )?;
            }
        }
        writeln!(
            f,
            "statuses: {} sent ({} B mean), {} seen on the stream, {} missing, {} unmatched, {} lagged snapshots",
            self.statuses_sent,
            self.mean_status_bytes,
            s.statuses_seen,
            self.statuses_missing,
            s.unmatched,
            s.lagged_snapshots
        )?;
        if let Some(t) = s.storm_recovered_s {
            writeln!(
                f,
                "reconnect storm: all live printers online and fresh after {t:.1} s"
            )?;
        }
        writeln!(
            f,
            "online and fresh at the end: {} of {}",
            self.online_at_end, self.printers
        )?;
        let e = &self.events;
        writeln!(
            f,
            "events: {} created, {} published ({} resent), {} acked, {} unacked, {} renumbered; {:.0} acks/s; {} commands answered",
            e.created,
            e.published,
            e.resent,
            e.acked,
            e.unacked,
            e.renumbered,
            e.acks_per_s,
            e.commands_answered
        )?;
        if self.flapping > 0 {
            writeln!(
                f,
                "flapping: {} cycles, {} failed, {} diffs on the stream",
                self.flap_cycles, self.flap_failures, s.flapping_diffs
            )?;
        }
        if let Some(c) = &self.controller {
            writeln!(
                f,
                "controller: CPU {:.0} % of a core, RSS {:.0} MB (peak {:.0} MB)",
                c.cpu_percent, c.rss_mb, c.peak_rss_mb
            )?;
        }
        write!(
            f,
            "loadgen:    CPU {:.0} % of a core, RSS {:.0} MB (peak {:.0} MB)",
            self.loadgen.cpu_percent, self.loadgen.rss_mb, self.loadgen.peak_rss_mb
        )
    }
}

//! The run's figures, as JSON (`--json`) and as the text the binary prints.

use crate::dashboards::DashboardFigures;
use crate::fanout::FanoutFigures;
use crate::orders::OrderFigures;
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
    /// Acks below one the same printer already had: an acknowledged event forgotten.
    pub ack_regressions: u64,
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
    pub orders: Option<OrderFigures>,
    pub dashboards: Option<DashboardFigures>,
    pub fanout: Option<FanoutFigures>,
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
        if e.ack_regressions > 0 || s.reopened > 0 {
            writeln!(
                f,
                "acks below an earlier ack: {}; live stream opened again {} times",
                e.ack_regressions, s.reopened
            )?;
        }
        if let Some(o) = &self.orders {
            let l = &o.latency;
            writeln!(
                f,
                "orders: {:.0}/s offered, {} sent, {} created ({:.0}/s), {} failed, {} unanswered; latency p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
                o.offered_per_s,
                o.sent,
                o.created,
                o.achieved_per_s,
                o.failed,
                o.unanswered,
                l.p50_ms,
                l.p99_ms,
                l.p999_ms,
                l.max_ms
            )?;
        }
        if let Some(d) = &self.dashboards {
            writeln!(
                f,
                "dashboards: {} streams ({} failed), {:.0} B/s each (min {:.0}, max {:.0}), snapshot {} B, {} lagged snapshots; slowest stream p50 {:.1} / p99 {:.1} / max {:.1} ms ({} samples), median p99 {:.1} ms",
                d.streams,
                d.failed,
                d.bytes_per_s_mean,
                d.bytes_per_s_min,
                d.bytes_per_s_max,
                d.snapshot_bytes,
                d.lagged_snapshots,
                d.slowest.p50_ms,
                d.slowest.p99_ms,
                d.slowest.max_ms,
                d.slowest.samples,
                d.median_p99_ms
            )?;
        }
        if let Some(x) = &self.fanout {
            let opt = |v: Option<f64>| v.map_or("never".to_string(), |t| format!("{t:.1} s"));
            writeln!(
                f,
                "fan-out: {} jobs of {:.1} MB (upload {:.1} s); all fetched after {}, all printing after {}; {} fetched, {} failed, {} resumed; {:.0} MB/s aggregate; one fetch p50 {:.1} s, max {:.1} s",
                x.jobs,
                x.file_mb,
                x.upload_s,
                opt(x.all_fetched_s),
                opt(x.all_printing_s),
                x.fetched,
                x.failed,
                x.resumed,
                x.aggregate_mb_s,
                x.fetch_p50_s,
                x.fetch_max_s
            )?;
        }
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

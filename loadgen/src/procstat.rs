//! CPU time and memory of a process from `/proc/<pid>` (Linux).

use std::path::PathBuf;
use std::time::Instant;

/// Linux reports CPU times in USER_HZ ticks, which is 100 on every architecture's ABI.
const TICKS_PER_S: f64 = 100.0;

/// One reading of a process.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    at: Instant,
    /// utime + stime, in ticks.
    cpu_ticks: u64,
    pub rss_kb: u64,
    pub peak_rss_kb: u64,
}

/// `/proc/self` or `/proc/<pid>`.
#[derive(Clone, Debug)]
pub struct Process(PathBuf);

impl Process {
    pub fn me() -> Self {
        Self(PathBuf::from("/proc/self"))
    }

    pub fn pid(pid: u32) -> Self {
        Self(PathBuf::from(format!("/proc/{pid}")))
    }

    /// `None` when the process is gone or /proc is not there.
    pub fn sample(&self) -> Option<Sample> {
        let stat = std::fs::read_to_string(self.0.join("stat")).ok()?;
        // Fields after the command name (which may hold spaces) in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_ascii_whitespace().collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
        let cpu_ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
        let status = std::fs::read_to_string(self.0.join("status")).ok()?;
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_ascii_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Some(Sample {
            at: Instant::now(),
            cpu_ticks,
            rss_kb: kb("VmRSS:"),
            peak_rss_kb: kb("VmHWM:"),
        })
    }
}

/// CPU use between two samples, in % of one core.
pub fn cpu_percent(a: &Sample, b: &Sample) -> f64 {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    if secs <= 0.0 {
        return 0.0;
    }
    b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / TICKS_PER_S / secs * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_read() {
        let p = Process::me();
        let a = p.sample().expect("/proc/self");
        // Spin until the kernel has billed us a tick (10 ms of CPU), however busy the machine.
        let t = Instant::now();
        let b = loop {
            std::hint::black_box((0..10_000u64).sum::<u64>());
            let b = p.sample().expect("/proc/self");
            if b.cpu_ticks > a.cpu_ticks || t.elapsed().as_secs() > 20 {
                break b;
            }
        };
        assert!(b.rss_kb > 0 && b.peak_rss_kb >= b.rss_kb, "{b:?}");
        assert!(cpu_percent(&a, &b) > 0.0);
    }
}

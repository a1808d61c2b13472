//! The command line: what to simulate, against what, for how long.

use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Parses `250ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration like 500ms, 10s or 2m"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("{s:?}: the unit must be ms, s or m")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

/// Which durable event each printer sends at `--event-every`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EventKind {
    /// `material` (cumulative mm) for a job the controller does not know: verified, committed
    /// with its seq mark and acked, but booked to no spool (counted as refused in /metrics).
    Material,
    /// `printer_ready`: committed and acked, no other effect and no log line.
    PrinterReady,
    /// `firmware_message`: committed, logged at info and shown on the printer (a stream diff).
    FirmwareMessage,
}

#[derive(Parser, Clone, Debug)]
#[command(
    name = "farm-loadgen",
    version,
    about = "Simulates many printers on one farm controller and measures it from outside",
    long_about = "Simulates many printers on one farm controller and measures it from outside.\n\n\
Each simulated printer has its own MQTT connection, credentials and secret and speaks the farm \
contract as a real agent does: presence with a signed last will, a signed ~560-byte status at \
every --status-interval (phases spread evenly over the interval), durable events with a gap-free \
seq kept until the controller acks them (resent after a reconnect), and an answer to every command. \
Printers are enrolled through the API with an admin token, or loaded from --enrolment.\n\n\
The live stream (/api/v1/stream) is read at the same time: each printer diff is matched to the \
publish time of the status that caused it (its agent.uptime_s is the status number), giving \
publish → stream latency. The report adds drops (statuses sent but never seen), connect \
failures, dropped live connections, events sent and acked, the reconnect storm's time until \
every printer is online and fresh again, the controller's CPU and RSS (--controller-pid) and \
this process's own CPU (it must not be the bottleneck).\n\n\
Example: farm-loadgen --controller http://127.0.0.1:8080 --broker 127.0.0.1:1883 \
--admin-token-file farm-state/admin-token --printers 1000 --duration 60s --storm-at 30s \
--enrolment /tmp/lg-1000.json"
)]
pub struct Settings {
    /// Controller base URL (API and live stream).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "FARM_CONTROLLER_URL"
    )]
    pub controller: String,

    /// MQTT broker the printers connect to, host:port (an IP address).
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker: String,

    /// Admin token for enrolment and the stream.
    #[arg(long, env = "FARM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// File holding the admin token (the controller writes `<state_dir>/admin-token`).
    #[arg(long, conflicts_with = "admin_token")]
    pub admin_token_file: Option<PathBuf>,

    /// Live printers: connected all run, status and events.
    #[arg(long, default_value_t = 100)]
    pub printers: usize,

    /// Flapping printers beside the live ones: each connects, says online, publishes one
    /// status and drops the connection (its last will says offline), every --flap-period.
    #[arg(long, default_value_t = 0)]
    pub flapping: usize,

    /// How often each flapping printer connects and drops.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub flap_period: Duration,

    /// Length of the measured run, from the moment every live printer is connected.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Status interval of every printer.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub status_interval: Duration,

    /// Each live printer emits one durable event this often (phases spread); 0 for none.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub event_every: Duration,

    /// Which event kind to send.
    #[arg(long, value_enum, default_value_t = EventKind::Material)]
    pub event_kind: EventKind,

    /// Reconnect storm at this offset into the run: every live printer drops its connection
    /// at once (no DISCONNECT, as when the controller restarts) and reconnects after the
    /// agent's first backoff (0.5 s ± 25 %). The report gives the time until all are online
    /// and fresh on the stream.
    #[arg(long, value_parser = parse_duration)]
    pub storm_at: Option<Duration>,

    /// Enrolment file (JSON: id, secret, token per printer). Used when it exists and covers
    /// the printers asked for; otherwise the missing printers are enrolled and it is written.
    #[arg(long)]
    pub enrolment: Option<PathBuf>,

    /// Printer ids are `<prefix>-00001`, `<prefix>-f00001` (flapping), …
    #[arg(long, default_value = "lg")]
    pub id_prefix: String,

    /// MQTT topic root, as the controller's `topic_root`.
    #[arg(long, default_value = "farm")]
    pub topic_root: String,

    /// The controller's process id: its CPU % and RSS are read from /proc/<pid>.
    #[arg(long)]
    pub controller_pid: Option<u32>,

    /// Spread connections over this many loopback source addresses (127.0.0.1, .2, …) so
    /// source ports never run out; 0 = decide from the number of printers. Used only when the
    /// broker is on a loopback address.
    #[arg(long, default_value_t = 0)]
    pub source_ips: u8,

    /// At most this many MQTT handshakes in flight while connecting.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,

    /// A CONNACK must arrive within this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Concurrent enrolment requests.
    #[arg(long, default_value_t = 16)]
    pub enrol_concurrency: usize,

    /// After the run, wait at most this long for the controller to ack every event.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub drain: Duration,

    /// After the run, wait at most this long for every live printer to show online and
    /// fresh on the stream (a storm late in the run); 0 = count them as they are.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub settle: Duration,

    /// Only enrol the printers (writing --enrolment) and exit: e.g. to give an external
    /// broker (Mosquitto) their logins before the run.
    #[arg(long, requires = "enrolment")]
    pub enrol_only: bool,

    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Shop orders per second posted during the window (`POST /api/v1/orders`, each with its
    /// own Idempotency-Key; open loop, latency from each order's due time). Needs a shop token.
    #[arg(long, default_value_t = 0.0)]
    pub orders_per_s: f64,

    /// At most this many order requests in flight.
    #[arg(long, default_value_t = 64)]
    pub order_concurrency: usize,

    /// Shop token for the orders (`farm-controller token add --role shop`, with `serve` stopped).
    #[arg(long, env = "FARM_SHOP_TOKEN", hide_env_values = true)]
    pub shop_token: Option<String>,

    /// File holding the shop token.
    #[arg(long, conflicts_with = "shop_token")]
    pub shop_token_file: Option<PathBuf>,

    /// More clients of the live stream during the window, as dashboards (snapshot, then
    /// diffs): the report gives their bytes/s and the latency of the slowest.
    #[arg(long, default_value_t = 0)]
    pub dashboards: usize,

    /// Printers report idle and take jobs as the agent does: accept, fetch the file with their
    /// own token (`Range` resume, sha256 checked; hashed, not written to disk), start.
    #[arg(long)]
    pub accept_jobs: bool,

    /// Dispatch fan-out: at the window's start, upload a generated job file of this many MB
    /// as one job per live printer (admin token); the report gives the time until every
    /// printer has it and until all print, and the aggregate MB/s. Implies --accept-jobs.
    #[arg(long)]
    pub fanout_mb: Option<f64>,
}

impl Settings {
    /// The admin token from --admin-token or --admin-token-file.
    pub fn token(&self) -> anyhow::Result<String> {
        read_token(
            &self.admin_token,
            &self.admin_token_file,
            "no admin token: pass --admin-token, FARM_ADMIN_TOKEN or --admin-token-file <state_dir>/admin-token",
            "admin",
        )
    }

    /// The shop token from --shop-token or --shop-token-file.
    pub fn shop(&self) -> anyhow::Result<String> {
        read_token(
            &self.shop_token,
            &self.shop_token_file,
            "--orders-per-s needs a shop token: create one with `farm-controller token add --role shop --name loadgen` (serve stopped) and pass --shop-token or --shop-token-file",
            "shop",
        )
    }
}

/// A token given on the command line, or read from a file.
fn read_token(
    given: &Option<String>,
    file: &Option<PathBuf>,
    missing: &str,
    which: &str,
) -> anyhow::Result<String> {
    if let Some(t) = given {
        return Ok(t.clone());
    }
    let Some(f) = file else {
        anyhow::bail!("{missing}");
    };
    let t = std::fs::read_to_string(f)
        .map_err(|e| anyhow::anyhow!("cannot read the {which} token from {}: {e}", f.display()))?;
    Ok(t.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn the_help_parses() {
        use clap::CommandFactory;
        Settings::command().debug_assert();
    }
}

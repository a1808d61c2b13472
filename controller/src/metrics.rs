//! Counters for `/metrics` (Prometheus text format 0.0.4).
//!
//! Hand-rolled on atomics: a handful of counters does not justify a global recorder.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A counter split by one label value.
#[derive(Default)]
pub struct Labelled(Mutex<BTreeMap<&'static str, u64>>);

impl Labelled {
    pub fn inc(&self, label: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(label).or_default() += 1;
        }
    }

    pub fn get(&self, label: &str) -> u64 {
        self.0
            .lock()
            .map(|m| m.get(label).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn snapshot(&self) -> Vec<(&'static str, u64)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (*k, *v)).collect())
            .unwrap_or_default()
    }
}

#[derive(Default)]
pub struct Metrics {
    /// MQTT messages received from agents, by channel.
    pub mqtt_received: Labelled,
    /// MQTT messages dropped, by reason (bad signature, unknown printer, …).
    pub mqtt_dropped: Labelled,
    /// Times the MQTT link waited for a full ingest lane to take an event or presence message.
    pub ingest_waits: AtomicU64,
    pub events_applied: AtomicU64,
    /// Events whose seq was already applied (redelivery after reconnect or restart).
    pub events_replayed: AtomicU64,
    /// Events that arrived ahead of a missing seq; resent later by the agent.
    pub events_out_of_order: AtomicU64,
    /// Applied events that did not fit the job's state (recorded, no effect).
    pub events_refused: AtomicU64,
    /// Commands sent to agents, by kind.
    pub commands_sent: Labelled,
    /// Messages that could not be queued for the broker (resent by the sweep where it matters).
    pub publish_failed: AtomicU64,
    /// Uploads refused, by reason.
    pub uploads_rejected: Labelled,
    pub http_requests: Labelled,
}

/// Point-in-time gauges the farm computes at scrape time.
pub struct Gauges {
    pub printers_by_state: Vec<(&'static str, u64)>,
    pub jobs_by_state: Vec<(&'static str, u64)>,
    pub sse_clients: u64,
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    rows: &[(&'static str, u64)],
    kind: &str,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (l, v) in rows {
        let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {v}");
    }
}

impl Metrics {
    pub fn render(&self, g: &Gauges) -> String {
        let mut o = String::with_capacity(4096);
        labelled(
            &mut o,
            "farm_mqtt_received_total",
            "MQTT messages received from agents",
            "channel",
            &self.mqtt_received.snapshot(),
            "counter",
        );
        labelled(
            &mut o,
            "farm_mqtt_dropped_total",
            "MQTT messages dropped, by reason",
            "reason",
            &self.mqtt_dropped.snapshot(),
            "counter",
        );
        counter(
            &mut o,
            "farm_mqtt_ingest_waits_total",
            "Times the MQTT link stopped reading to wait for a full ingest lane (events, presence)",
            self.ingest_waits.load(Relaxed),
        );
        counter(
            &mut o,
            "farm_events_applied_total",
            "Agent events applied (exactly once)",
            self.events_applied.load(Relaxed),
        );
        counter(
            &mut o,
            "farm_events_replayed_total",
            "Agent events recognised as already applied",
            self.events_replayed.load(Relaxed),
        );
        counter(
            &mut o,
            "farm_events_out_of_order_total",
            "Agent events ahead of a missing seq, left for resend",
            self.events_out_of_order.load(Relaxed),
        );
        counter(
            &mut o,
            "farm_events_refused_total",
            "Applied events that did not fit the job state",
            self.events_refused.load(Relaxed),
        );
        labelled(
            &mut o,
            "farm_commands_sent_total",
            "Commands sent to agents",
            "kind",
            &self.commands_sent.snapshot(),
            "counter",
        );
        counter(
            &mut o,
            "farm_publish_failed_total",
            "Messages that could not be queued for the broker",
            self.publish_failed.load(Relaxed),
        );
        labelled(
            &mut o,
            "farm_uploads_rejected_total",
            "Uploads refused, by reason",
            "reason",
            &self.uploads_rejected.snapshot(),
            "counter",
        );
        labelled(
            &mut o,
            "farm_http_requests_total",
            "HTTP requests by status class",
            "class",
            &self.http_requests.snapshot(),
            "counter",
        );
        labelled(
            &mut o,
            "farm_printers",
            "Printers by farm state",
            "state",
            &g.printers_by_state,
            "gauge",
        );
        labelled(
            &mut o,
            "farm_jobs",
            "Jobs by state",
            "state",
            &g.jobs_by_state,
            "gauge",
        );
        let _ = writeln!(
            o,
            "# HELP farm_stream_clients Live stream (SSE) clients\n# TYPE farm_stream_clients gauge\nfarm_stream_clients {}",
            g.sse_clients
        );
        o
    }
}

/// Filament stock per material + colour: remaining grams and a low-stock flag (gauges).
pub fn render_stock(levels: &[crate::inventory::forecast::StockLevel]) -> String {
    // Label values are operator text: escape as the text format requires.
    fn esc(s: &str) -> String {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    }
    let mut o = String::from(
        "# HELP farm_filament_remaining_grams Filament left per material and colour, g\n# TYPE farm_filament_remaining_grams gauge\n",
    );
    for l in levels {
        let _ = writeln!(
            o,
            "farm_filament_remaining_grams{{material=\"{}\",colour=\"{}\"}} {:.2}",
            esc(&l.material),
            esc(&l.colour),
            l.remaining_g
        );
    }
    o += "# HELP farm_filament_low 1 when a material and colour is below its low-stock threshold\n# TYPE farm_filament_low gauge\n";
    for l in levels {
        let _ = writeln!(
            o,
            "farm_filament_low{{material=\"{}\",colour=\"{}\"}} {}",
            esc(&l.material),
            esc(&l.colour),
            u8::from(l.low)
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_stock_gauges_with_escaped_labels() {
        let l = crate::inventory::forecast::StockLevel {
            material: "PLA".into(),
            colour: "sky \"blue\"".into(),
            remaining_g: 12.345,
            spools: 1,
            threshold_g: 100.0,
            low: true,
        };
        let text = render_stock(&[l]);
        assert!(
            text.contains("farm_filament_remaining_grams{material=\"PLA\",colour=\"sky \\\"blue\\\"\"} 12.35\n"),
            "{text}"
        );
        assert!(
            text.contains("farm_filament_low{material=\"PLA\",colour=\"sky \\\"blue\\\"\"} 1\n")
        );
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.mqtt_dropped.inc("bad_signature");
        m.mqtt_dropped.inc("bad_signature");
        m.events_applied.fetch_add(3, Relaxed);
        let g = Gauges {
            printers_by_state: vec![("idle", 2)],
            jobs_by_state: vec![("queued", 1)],
            sse_clients: 0,
        };
        let text = m.render(&g);
        assert!(
            text.contains("farm_mqtt_dropped_total{reason=\"bad_signature\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("farm_events_applied_total 3\n"));
        assert!(text.contains("farm_printers{state=\"idle\"} 2\n"));
        assert_eq!(m.mqtt_dropped.get("bad_signature"), 2);
    }
}

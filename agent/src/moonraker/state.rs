//! The functional core of the Moonraker back end: the merged printer objects, Klippy's state,
//! and the one rule that maps them to the farm's [`Activity`]. No I/O.
//!
//! Moonraker sends the full subscribed status once (the `printer.objects.subscribe` answer)
//! and afterwards only the fields that changed (`notify_status_update [diff, eventtime]`).
//! [`Objects::merge`] applies a diff two levels deep (object → field), which is how Moonraker
//! builds them: a changed field is sent whole (e.g. `print_stats.info` as a whole object).

use farm_protocol::messages::{Activity, Heater};
use serde_json::{Map, Value};

/// Klippy's state as Moonraker reports it (`server.info.klippy_state`, `webhooks.state`,
/// `notify_klippy_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Klippy {
    /// Moonraker has no connection to Klippy (not started, restarting, crashed).
    Disconnected,
    /// Klippy is connected and still starting.
    Startup,
    Ready,
    /// Klippy halted: an emergency stop or a fault (heater, MCU). Needs `FIRMWARE_RESTART`.
    Shutdown,
    /// Klippy could not start (usually an error in printer.cfg).
    Error,
}

impl Klippy {
    /// `server.info.klippy_state` / `webhooks.state`; unknown words count as disconnected.
    pub fn parse(s: &str) -> Klippy {
        match s {
            "ready" => Klippy::Ready,
            "startup" => Klippy::Startup,
            "shutdown" => Klippy::Shutdown,
            "error" => Klippy::Error,
            _ => Klippy::Disconnected,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Klippy::Disconnected => "disconnected",
            Klippy::Startup => "startup",
            Klippy::Ready => "ready",
            Klippy::Shutdown => "shutdown",
            Klippy::Error => "error",
        }
    }
}

/// The subscribed printer objects, merged from the initial status and every diff since.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Objects(Map<String, Value>);

impl Objects {
    /// Starts over from a full status (the subscribe answer's `status`).
    pub fn replace(&mut self, status: &Value) {
        self.0.clear();
        self.merge(status);
    }

    /// Applies a diff: `{object: {field: value}}`.
    pub fn merge(&mut self, diff: &Value) {
        let Some(diff) = diff.as_object() else { return };
        for (name, fields) in diff {
            match (self.0.get_mut(name), fields) {
                (Some(Value::Object(have)), Value::Object(new)) => {
                    for (k, v) in new {
                        have.insert(k.clone(), v.clone());
                    }
                }
                _ => {
                    self.0.insert(name.clone(), fields.clone());
                }
            }
        }
    }

    pub fn get(&self, object: &str, field: &str) -> Option<&Value> {
        self.0.get(object)?.get(field)
    }

    pub fn str(&self, object: &str, field: &str) -> Option<&str> {
        self.get(object, field)?.as_str()
    }

    pub fn f64(&self, object: &str, field: &str) -> Option<f64> {
        self.get(object, field)?.as_f64()
    }

    /// `print_stats.state`: standby, printing, paused, complete, cancelled, error.
    pub fn print_state(&self) -> Option<&str> {
        self.str("print_stats", "state")
    }

    /// The heaters as the farm names them: `extruder` → `tool0`, `extruderN` → `toolN`,
    /// `heater_bed` → `bed`; tools in number order, bed last.
    pub fn heaters(&self) -> Vec<Heater> {
        let mut tools: Vec<(usize, Heater)> = self
            .0
            .keys()
            .filter_map(|k| Some((tool_number(k)?, k)))
            .map(|(n, k)| (n, self.heater(k, format!("tool{n}"))))
            .collect();
        tools.sort_by_key(|(n, _)| *n);
        let mut out: Vec<Heater> = tools.into_iter().map(|(_, h)| h).collect();
        if self.0.contains_key("heater_bed") {
            out.push(self.heater("heater_bed", "bed".into()));
        }
        out
    }

    fn heater(&self, object: &str, name: String) -> Heater {
        Heater {
            name,
            // A sensor that reads nothing is NaN, which the wire carries as null.
            actual: self.f64(object, "temperature").unwrap_or(f64::NAN),
            target: self.f64(object, "target").unwrap_or(0.0),
        }
    }
}

/// `extruder` → 0, `extruder3` → 3; anything else (`extruder_stepper x`) → `None`.
pub fn tool_number(object: &str) -> Option<usize> {
    let rest = object.strip_prefix("extruder")?;
    if rest.is_empty() {
        return Some(0);
    }
    rest.parse().ok().filter(|n| *n > 0)
}

/// The objects to subscribe to, given `printer.objects.list`: the fixed set plus every
/// extruder the printer has (`extruder`, `extruder1`, …).
pub fn subscription(listed: &[String]) -> Value {
    let mut objects = Map::new();
    let fields: &[(&str, &[&str])] = &[
        (
            "print_stats",
            &[
                "state",
                "filename",
                "print_duration",
                "total_duration",
                "filament_used",
                "message",
                "info",
            ],
        ),
        (
            "virtual_sdcard",
            &["file_position", "file_size", "progress", "is_active"],
        ),
        ("display_status", &["progress", "message"]),
        ("webhooks", &["state", "state_message"]),
        ("toolhead", &["extruder", "homed_axes"]),
        ("heater_bed", &["temperature", "target"]),
        ("pause_resume", &["is_paused"]),
    ];
    for (name, f) in fields {
        objects.insert((*name).into(), f.iter().map(|s| Value::from(*s)).collect());
    }
    let mut extruders: Vec<&String> = listed.iter().filter(|o| tool_number(o).is_some()).collect();
    if extruders.is_empty() {
        // A printer always has `extruder`; an empty list means we could not ask.
        objects.insert(
            "extruder".into(),
            Value::from(vec!["temperature", "target"]),
        );
    }
    extruders.sort();
    for e in extruders {
        objects.insert(e.clone(), Value::from(vec!["temperature", "target"]));
    }
    serde_json::json!({ "objects": objects })
}

/// What the websocket link is doing.
#[derive(Clone, Debug, PartialEq)]
pub enum Link {
    /// Connected and identified (authorised for calls).
    Up,
    /// Not connected; why, in words an operator can act on.
    Down(String),
}

/// The farm's view of the printer from the link, Klippy's state and `print_stats`.
///
/// | condition | farm activity |
/// |---|---|
/// | link down, Klippy `disconnected` or `startup` | `disconnected` |
/// | Klippy `shutdown` or `error` | `error` (needs `FIRMWARE_RESTART` / a config fix) |
/// | `print_stats.state` `printing` / `paused` | `printing` / `paused` |
/// | `standby`, or the last job's `complete` / `cancelled` / `error` | `idle` |
///
/// `print_stats.state` stays `complete`/`cancelled`/`error` after a job until the next one
/// starts: that is the last job's result, not the printer's state. A heater fault leaves it
/// `paused` (fixture d); Klippy's `shutdown` wins over it.
pub fn activity(link: &Link, klippy: Klippy, print_state: Option<&str>) -> Activity {
    if matches!(link, Link::Down(_)) {
        return Activity::Disconnected;
    }
    match klippy {
        Klippy::Disconnected | Klippy::Startup => Activity::Disconnected,
        Klippy::Shutdown | Klippy::Error => Activity::Error,
        Klippy::Ready => match print_state {
            Some("printing") => Activity::Printing,
            Some("paused") => Activity::Paused,
            _ => Activity::Idle,
        },
    }
}

/// The text shown beside a non-working state.
pub fn state_message(link: &Link, klippy: Klippy, klippy_message: &str) -> Option<String> {
    if let Link::Down(why) = link {
        return Some(why.clone());
    }
    let first = first_line(klippy_message);
    match klippy {
        Klippy::Ready => None,
        Klippy::Disconnected => Some(
            "Moonraker runs but Klippy is not connected to it; check that Klipper is running \
             (klippy.log) and the printer is powered"
                .into(),
        ),
        Klippy::Startup => Some("Klippy is starting".into()),
        Klippy::Shutdown => Some(format!(
            "Klipper is shut down: {}; fix the cause, then send FIRMWARE_RESTART (or M999)",
            if first.is_empty() {
                "no reason given"
            } else {
                first
            }
        )),
        Klippy::Error => Some(format!(
            "Klipper could not start: {}; fix printer.cfg, then send RESTART",
            if first.is_empty() {
                "no reason given"
            } else {
                first
            }
        )),
    }
}

/// The first non-empty line of a Klippy message (they are several lines of advice).
pub fn first_line(s: &str) -> &str {
    s.lines()
        .map(|l| l.trim().trim_start_matches("!! ").trim_start_matches("// "))
        .find(|l| !l.is_empty())
        .unwrap_or("")
}

#[cfg(test)]
mod tests;

//! The printer's reports (pure, no I/O): incoming MQTT messages, the merged `print` state and
//! what the farm reads from it.
//!
//! The P1 and A1 series push only the fields that changed; the X1 pushes everything every
//! time. [`Report::merge`] folds each `push_status` into the last full one (`pushall`), so both
//! kinds give the same [`Report`]. Objects merge key by key; lists of objects that carry an
//! `id` (AMS units, their trays, H2D extruders) merge element by element by that id; any other
//! value (including the `hms` list, which is always sent whole) replaces the old one.

use farm_protocol::messages::{Activity, Heater, Tray};
use serde_json::{Map, Value};

use super::hms::{self, Hms};

/// `print.fun` bit set while the firmware wants signed commands (Developer Mode off on
/// firmware with Authorization Control); pybambu `const.py Print_Fun_Values`.
const FUN_SIGNATURE_REQUIRED: u64 = 0x2000_0000;

/// One MQTT message from `device/<serial>/report`.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// A `push_status`: the `print` object (whole or a delta).
    Status(Value),
    /// The answer to one of our requests (`pause`, `project_file`, `gcode_line`, …).
    Reply(Reply),
    /// `get_version`: the main firmware (`ota` module) version.
    Version(String),
    /// Anything else (`mc_print` log lines, camera, upgrade); ignored.
    Other,
}

/// A printer's answer to a request, matched by `sequence_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub command: String,
    pub sequence_id: String,
    /// `result` is "success" (compared case-insensitively) or absent.
    pub ok: bool,
    pub reason: Option<String>,
    pub err_code: Option<u64>,
}

impl Incoming {
    /// Reads one payload; `None` when it is not JSON (the caller logs it once).
    pub fn parse(payload: &[u8]) -> Option<Incoming> {
        let v: Value = serde_json::from_slice(payload).ok()?;
        if let Some(info) = v.get("info") {
            return Some(version(info).map_or(Incoming::Other, Incoming::Version));
        }
        let Some(print) = v.get("print") else {
            return Some(Incoming::Other);
        };
        let command = print["command"].as_str().unwrap_or("");
        if command == "push_status" {
            return Some(Incoming::Status(print.clone()));
        }
        let result = print["result"].as_str();
        let err_code = print["err_code"]
            .as_u64()
            .or_else(|| print["err_code"].as_str().and_then(|s| s.parse().ok()))
            .filter(|c| *c != 0);
        Some(Incoming::Reply(Reply {
            command: command.to_string(),
            sequence_id: match &print["sequence_id"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            },
            ok: err_code.is_none() && result.is_none_or(|r| r.eq_ignore_ascii_case("success")),
            reason: print["reason"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(str::to_string),
            err_code,
        }))
    }
}

/// The `ota` module's `sw_ver` from a `get_version` body.
pub fn version(info: &Value) -> Option<String> {
    info["module"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == "ota")
        .and_then(|m| m["sw_ver"].as_str())
        .map(str::to_string)
}

/// The merged `print` state of one printer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    print: Map<String, Value>,
    /// A report has arrived since connecting (the answer to our `pushall` is the first).
    pub complete: bool,
}

impl Report {
    /// Folds one `push_status` body into the state.
    pub fn merge(&mut self, delta: &Value) {
        if let Value::Object(d) = delta {
            merge_map(&mut self.print, d);
            self.complete = true;
        }
    }

    /// Forgets everything (a new connection starts from a fresh `pushall`).
    pub fn clear(&mut self) {
        *self = Report::default();
    }

    pub fn get(&self, key: &str) -> &Value {
        self.print.get(key).unwrap_or(&Value::Null)
    }

    pub fn gcode_state(&self) -> Option<&str> {
        self.get("gcode_state").as_str()
    }

    /// The farm's activity. `FINISH` and `FAILED` stay after a job until the next one, so
    /// they are idle; a fatal HMS error is an error whatever the job state.
    pub fn activity(&self) -> Activity {
        if self.hms().iter().any(Hms::is_fatal) {
            return Activity::Error;
        }
        activity_of(self.gcode_state().unwrap_or(""))
    }

    /// Nozzles, bed and chamber. The packed `device.*.temp` fields (low 16 bits current, high
    /// 16 bits target) of newer firmware win over the legacy `*_temper` floats.
    pub fn temps(&self) -> Vec<Heater> {
        let device = self.get("device");
        let packed = |v: &Value| {
            v.as_u64()
                .map(|t| ((t & 0xFFFF) as f64, ((t >> 16) & 0xFFFF) as f64))
        };
        let heater = |name: String, (actual, target): (f64, f64)| Heater {
            name,
            actual,
            target,
        };
        let mut out = vec![];
        let nozzles: Vec<_> = device["extruder"]["info"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| Some((e["id"].as_u64()?, packed(&e["temp"])?)))
                    .collect()
            })
            .unwrap_or_default();
        if nozzles.is_empty() {
            if let Some(t) = self.get("nozzle_temper").as_f64() {
                let target = self.get("nozzle_target_temper").as_f64().unwrap_or(0.0);
                out.push(heater("tool0".into(), (t, target)));
            }
        } else {
            for (id, t) in nozzles {
                out.push(heater(format!("tool{id}"), t));
            }
        }
        if let Some(t) = packed(&device["bed"]["info"]["temp"]) {
            out.push(heater("bed".into(), t));
        } else if let Some(t) = self.get("bed_temper").as_f64() {
            let target = self.get("bed_target_temper").as_f64().unwrap_or(0.0);
            out.push(heater("bed".into(), (t, target)));
        }
        if let Some(t) = packed(&device["ctc"]["info"]["temp"]) {
            out.push(heater("chamber".into(), t));
        } else if let Some(t) = self.get("chamber_temper").as_f64() {
            out.push(heater("chamber".into(), (t, 0.0)));
        }
        out
    }

    /// `mc_percent` as 0..=1.
    pub fn progress(&self) -> Option<f64> {
        self.get("mc_percent")
            .as_f64()
            .map(|p| (p / 100.0).clamp(0.0, 1.0))
    }

    /// (`layer_num`, `total_layer_num`).
    pub fn layer(&self) -> (Option<u32>, Option<u32>) {
        let n = |k| self.get(k).as_u64().and_then(|v| u32::try_from(v).ok());
        (n("layer_num"), n("total_layer_num"))
    }

    /// `mc_remaining_time` is in minutes; seconds here.
    pub fn remaining_s(&self) -> Option<f64> {
        self.get("mc_remaining_time").as_f64().map(|m| m * 60.0)
    }

    pub fn print_error(&self) -> u32 {
        self.get("print_error")
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    }

    /// The HMS list as the printer sent it last.
    pub fn hms(&self) -> Vec<Hms> {
        self.get("hms")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| {
                        Some(Hms {
                            attr: u32::try_from(h["attr"].as_u64()?).ok()?,
                            code: u32::try_from(h["code"].as_u64()?).ok()?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What is wrong now, for the status message: HMS entries and a non-zero `print_error`.
    pub fn problems(&self) -> Option<String> {
        let mut texts: Vec<String> = self.hms().iter().map(Hms::text).collect();
        if self.print_error() != 0 {
            texts.push(hms::print_error_text(self.print_error()));
        }
        (!texts.is_empty()).then(|| texts.join("; "))
    }

    /// The firmware wants signed commands: Developer Mode is off on firmware with
    /// Authorization Control. Not reliable alone (ha-bambulab #2135: an A1 mini misreports
    /// it), so a refused command is the other sign.
    pub fn signature_required(&self) -> bool {
        self.get("fun")
            .as_str()
            .and_then(|f| u64::from_str_radix(f, 16).ok())
            .is_some_and(|f| f & FUN_SIGNATURE_REQUIRED != 0)
    }

    /// Every slot of the AMS units and the external spool holders, empty ones included, in
    /// the report's order. A tray id is absolute, as `ams_mapping` and `tray_now` take it:
    /// `unit * 4 + slot`, an AMS HT unit's own id (128..; one slot), the holder's own id for
    /// an external spool. The active one is `tray_now`'s (a dual-nozzle printer's second
    /// nozzle, `device.extruder.info[].snow`, is not read).
    pub fn trays(&self) -> Vec<Tray> {
        let ams = self.get("ams");
        // 255 = nothing loaded (pybambu); it is also a newer external holder's id, which
        // therefore never shows as feeding.
        let now = id_of(&ams["tray_now"]).filter(|n| *n != 255);
        let mut out = vec![];
        for unit in ams["ams"].as_array().into_iter().flatten() {
            let Some(unit_id) = id_of(&unit["id"]) else {
                continue;
            };
            for tray in unit["tray"].as_array().into_iter().flatten() {
                let Some(slot) = id_of(&tray["id"]) else {
                    continue;
                };
                let id = if unit_id >= 128 {
                    unit_id
                } else {
                    unit_id * 4 + slot
                };
                out.push(tray_of(tray, id, now));
            }
        }
        // Dual-nozzle models (H2D) list two external holders in `vir_slot`; others have one
        // `vt_tray`. Their id is the report's own (254, or 255 on newer firmware), 254 if none.
        let external: Vec<&Value> = match self.get("vir_slot").as_array() {
            Some(v) if !v.is_empty() => v.iter().collect(),
            _ => Some(self.get("vt_tray"))
                .filter(|v| v.is_object())
                .into_iter()
                .collect(),
        };
        for v in external {
            out.push(tray_of(v, id_of(&v["id"]).unwrap_or(254), now));
        }
        out
    }
}

/// The farm's activity for a `gcode_state`.
pub fn activity_of(gcode_state: &str) -> Activity {
    match gcode_state {
        "PREPARE" | "SLICING" | "INIT" | "RUNNING" => Activity::Printing,
        "PAUSE" => Activity::Paused,
        _ => Activity::Idle,
    }
}

/// One slot; a tray with no `tray_type` (only its `id`, as the AMS reports an empty slot)
/// is empty.
fn tray_of(tray: &Value, id: u32, now: Option<u32>) -> Tray {
    let material = tray["tray_type"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let colour = tray["tray_color"]
        .as_str()
        .and_then(farm_protocol::materials::parse_hex_colour)
        .map(|[r, g, b]| format!("#{r:02X}{g:02X}{b:02X}"));
    Tray {
        slot: id,
        material: material.map(str::to_string),
        colour: material.and(colour),
        remain_pct: material.and(
            tray["remain"]
                .as_i64()
                .filter(|r| (0..=100).contains(r))
                .map(|r| r as u8),
        ),
        preset: material.and(
            tray["tray_info_idx"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        ),
        active: now == Some(id),
    }
}

/// Ids come as strings ("0", "128") in the reports, sometimes as numbers.
fn id_of(v: &Value) -> Option<u32> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
        _ => None,
    }
}

fn merge_map(into: &mut Map<String, Value>, delta: &Map<String, Value>) {
    for (k, v) in delta {
        match (into.get_mut(k), v) {
            (Some(Value::Object(old)), Value::Object(new)) => merge_map(old, new),
            (Some(Value::Array(old)), Value::Array(new)) if by_id(new) && by_id(old) => {
                for item in new {
                    let id = &item["id"];
                    match old.iter_mut().find(|o| &o["id"] == id) {
                        Some(Value::Object(o)) => {
                            if let Value::Object(n) = item {
                                merge_map(o, n)
                            }
                        }
                        _ => old.push(item.clone()),
                    }
                }
            }
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// A list whose elements are all objects with an `id` (merged element by element).
fn by_id(list: &[Value]) -> bool {
    !list.is_empty() && list.iter().all(|v| v.get("id").is_some())
}

//! PrusaLink's JSON, as PrusaLink's OpenAPI document (`Prusa-Link-Web` `spec/openapi.yaml`)
//! describes it, turned into the farm's terms. Pure and lenient: every field but
//! `printer.state` is optional in the spec, so a missing one is `None`, never an error, and an
//! unknown state is kept by name.

use farm_protocol::messages::Heater;
use serde::Deserialize;

/// `printer.state` of `GET /api/v1/status`.
#[derive(Clone, Debug, PartialEq)]
pub enum PrinterState {
    Idle,
    Busy,
    Printing,
    Paused,
    Finished,
    Stopped,
    Error,
    Attention,
    Ready,
    Other(String),
}

impl PrinterState {
    pub fn parse(s: &str) -> Self {
        match s {
            "IDLE" => Self::Idle,
            "BUSY" => Self::Busy,
            "PRINTING" => Self::Printing,
            "PAUSED" => Self::Paused,
            "FINISHED" => Self::Finished,
            "STOPPED" => Self::Stopped,
            "ERROR" => Self::Error,
            "ATTENTION" => Self::Attention,
            "READY" => Self::Ready,
            other => Self::Other(other.to_string()),
        }
    }

    /// A print is on the printer (running, paused, or held for a person).
    pub fn has_print(&self) -> bool {
        matches!(self, Self::Printing | Self::Paused | Self::Attention)
    }

    /// The print that was on the printer has ended, or none is there: a new one may start.
    pub fn ready(&self) -> bool {
        matches!(
            self,
            Self::Idle | Self::Ready | Self::Finished | Self::Stopped
        )
    }
}

/// `job` of `GET /api/v1/status` (`StatusJob`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
pub struct StatusJob {
    pub id: Option<u64>,
    /// Percent, 0–100.
    pub progress: Option<f64>,
    /// Seconds.
    pub time_remaining: Option<f64>,
    pub time_printing: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct Flag {
    ok: Option<bool>,
    message: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct StatusPrinter {
    state: String,
    temp_nozzle: Option<f64>,
    target_nozzle: Option<f64>,
    temp_bed: Option<f64>,
    target_bed: Option<f64>,
    status_printer: Option<Flag>,
}

#[derive(Clone, Debug, Deserialize)]
struct StatusJson {
    printer: StatusPrinter,
    job: Option<StatusJob>,
}

/// One reading of `GET /api/v1/status`.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub state: PrinterState,
    pub temps: Vec<Heater>,
    pub job: Option<StatusJob>,
    /// What the printer says about itself when it is not fine (`status_printer.message`
    /// with `ok: false`).
    pub message: Option<String>,
}

/// Parses `GET /api/v1/status`.
pub fn parse_status(body: &[u8]) -> Result<Observation, serde_json::Error> {
    let s: StatusJson = serde_json::from_slice(body)?;
    let p = s.printer;
    let heater = |name: &str, actual: Option<f64>, target: Option<f64>| {
        actual.map(|a| Heater {
            name: name.into(),
            actual: a,
            target: target.unwrap_or(0.0),
        })
    };
    let temps = [
        heater("tool0", p.temp_nozzle, p.target_nozzle),
        heater("bed", p.temp_bed, p.target_bed),
    ]
    .into_iter()
    .flatten()
    .collect();
    let message = p
        .status_printer
        .filter(|f| f.ok == Some(false))
        .and_then(|f| f.message)
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty());
    Ok(Observation {
        state: PrinterState::parse(&p.state),
        temps,
        job: s.job,
        message,
    })
}

/// `GET /api/version` (`Version`): the text shown in logs.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Version {
    pub api: Option<String>,
    pub text: Option<String>,
    pub firmware: Option<String>,
    pub capabilities: Option<serde_json::Value>,
}

impl Version {
    /// `PrusaLink 0.7.0 (API 1.0.0, firmware 6.2.0)`.
    pub fn describe(&self) -> String {
        format!(
            "{} (API {}, firmware {})",
            self.text.as_deref().unwrap_or("PrusaLink"),
            self.api.as_deref().unwrap_or("?"),
            self.firmware.as_deref().unwrap_or("?")
        )
    }

    /// `capabilities.upload-by-put` is false: this PrusaLink only takes the legacy upload.
    pub fn refuses_put_upload(&self) -> bool {
        self.capabilities
            .as_ref()
            .and_then(|c| c.get("upload-by-put"))
            .and_then(serde_json::Value::as_bool)
            == Some(false)
    }
}

/// One entry of `GET /api/v1/storage` (`Storage`).
#[derive(Clone, Debug, Deserialize)]
pub struct Storage {
    pub path: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub available: bool,
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Deserialize)]
struct StorageList {
    #[serde(default)]
    storage_list: Vec<Storage>,
}

/// Parses `GET /api/v1/storage`.
pub fn parse_storage(body: &[u8]) -> Result<Vec<Storage>, serde_json::Error> {
    serde_json::from_slice::<StorageList>(body).map(|l| l.storage_list)
}

/// The storage a job goes to: the named one, else the first available writable one (USB
/// before local before anything else; a Pi's `sdcard` is read through the printer's serial
/// line and is not a place to upload to). The name comes without slashes (`usb`).
pub fn choose_storage(list: &[Storage], wanted: Option<&str>) -> Result<String, String> {
    let name = |s: &Storage| s.path.trim_matches('/').to_string();
    let listed = || {
        list.iter()
            .map(|s| format!("{} ({})", name(s), s.kind))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(w) = wanted {
        let w = w.trim_matches('/');
        return match list.iter().find(|s| name(s) == w) {
            Some(s) if !s.available => Err(format!(
                "storage {w} is not available now (no USB stick in the printer?)"
            )),
            Some(s) if s.read_only => Err(format!("storage {w} is read-only")),
            Some(_) => Ok(w.to_string()),
            None => Err(format!(
                "PrusaLink has no storage {w:?} (it lists: {}); fix printer.prusalink.storage",
                listed()
            )),
        };
    }
    let rank = |s: &Storage| match s.kind.as_str() {
        "USB" => 0,
        "LOCAL" => 1,
        "SDCARD" => 3,
        _ => 2,
    };
    list.iter()
        .filter(|s| s.available && !s.read_only && s.kind != "SDCARD")
        .min_by_key(|s| rank(s))
        .map(name)
        .ok_or_else(|| {
            format!(
                "PrusaLink lists no writable storage to upload to (it lists: {}); put a USB \
                 stick in the printer",
                if list.is_empty() {
                    "nothing".to_string()
                } else {
                    listed()
                }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_in_the_specs_shape_becomes_an_observation() {
        let body = br#"{"job":{"id":420,"progress":42.0,"time_remaining":520,"time_printing":526},
            "printer":{"state":"PRINTING","temp_nozzle":214.9,"target_nozzle":215.0,
            "temp_bed":59.5,"target_bed":60.0,"axis_z":0.5,"flow":95,"speed":100,
            "fan_hotend":420,"fan_print":420,"status_printer":{"ok":true,"message":"OK"}},
            "storage":{"name":"USB","path":"/usb/","read_only":false}}"#;
        let o = parse_status(body).expect("parse");
        assert_eq!(o.state, PrinterState::Printing);
        assert_eq!(o.temps.len(), 2);
        assert_eq!((o.temps[0].actual, o.temps[0].target), (214.9, 215.0));
        let j = o.job.expect("job");
        assert_eq!(
            (j.id, j.progress, j.time_remaining),
            (Some(420), Some(42.0), Some(520.0))
        );
        assert_eq!(o.message, None, "an ok printer has nothing to say");

        let o = parse_status(br#"{"printer":{"state":"ATTENTION","status_printer":{"ok":false,"message":"Filament runout"}}}"#)
            .expect("parse");
        assert_eq!(o.state, PrinterState::Attention);
        assert_eq!(o.message.as_deref(), Some("Filament runout"));
        assert!(o.temps.is_empty() && o.job.is_none());
        let o = parse_status(br#"{"printer":{"state":"WARMING_UP"}}"#).expect("lenient");
        assert_eq!(o.state, PrinterState::Other("WARMING_UP".into()));
        assert!(
            parse_status(br#"{"job":{}}"#).is_err(),
            "printer is required"
        );
    }

    #[test]
    fn storage_is_the_named_one_or_the_first_writable_usb_or_local() {
        let list = parse_storage(
            br#"{"storage_list":[
              {"path":"/sdcard","type":"SDCARD","available":true,"read_only":true},
              {"path":"/local","type":"LOCAL","available":true,"read_only":false},
              {"path":"/usb","type":"USB","available":true,"read_only":false}]}"#,
        )
        .expect("parse");
        assert_eq!(choose_storage(&list, None), Ok("usb".into()));
        assert_eq!(choose_storage(&list, Some("/local")), Ok("local".into()));
        let e = choose_storage(&list, Some("sdcard")).expect_err("read-only");
        assert!(e.contains("read-only"), "{e}");
        let e = choose_storage(&list, Some("ftp")).expect_err("unknown");
        assert!(
            e.contains("usb (USB)") && e.contains("printer.prusalink.storage"),
            "{e}"
        );
        let e = choose_storage(&list[..1], None).expect_err("nothing writable");
        assert!(e.contains("USB stick"), "{e}");
    }
}

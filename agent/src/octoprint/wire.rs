//! OctoPrint's JSON as 1.11.8 sends it, reduced to what the farm needs. Pure: text in, plain
//! data out; the shapes are those captured in `agent/tests/data/octoprint/`.
//!
//! Two inputs meet here: push frames (`current`, `history`, `event`, …) and the REST answers of
//! `/api/printer` + `/api/job` used while the push channel is down. Both become one
//! [`Observation`]; push events become [`OpEvent`]s.
//!
//! Parsing is lenient on purpose: OctoPrint turns numbers into `null` after a cancel, changes
//! `job.filament`'s shape, and plugins add keys. A field we cannot read is treated as absent;
//! only a frame that is not JSON at all is an error.

use farm_protocol::messages::Heater;
use serde::Deserialize;
use serde_json::{Map, Value};

/// `state.flags` (every one defaults to false).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Flags {
    pub operational: bool,
    pub printing: bool,
    pub cancelling: bool,
    pub pausing: bool,
    pub resuming: bool,
    pub finishing: bool,
    #[serde(rename = "closedOrError")]
    pub closed_or_error: bool,
    pub error: bool,
    pub paused: bool,
    pub ready: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct StateJson {
    text: String,
    flags: Flags,
    error: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct ProgressJson {
    completion: Option<f64>,
    filepos: Option<f64>,
    #[serde(rename = "printTimeLeft")]
    print_time_left: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct FileJson {
    path: Option<String>,
    origin: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct JobJson {
    file: FileJson,
}

/// The `current` and `history` frames share this shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CurrentJson {
    state: StateJson,
    job: Option<JobJson>,
    progress: Option<ProgressJson>,
    temps: Vec<Map<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct EventJson {
    #[serde(rename = "type")]
    kind: String,
    payload: Option<Value>,
}

/// One push frame: exactly one top-level key; unknown keys are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FrameJson {
    current: Option<CurrentJson>,
    history: Option<CurrentJson>,
    event: Option<EventJson>,
    #[serde(rename = "reauthRequired")]
    reauth_required: Option<Value>,
}

/// Where OctoPrint stands with its printer, decided on flags (plugins may change the text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not connected to the printer (`Offline`, `Closed`).
    Offline,
    /// Opening the serial port, detecting, connecting.
    Connecting,
    /// `Error`, or `Offline after error` (flags say only `closedOrError`, with an error text).
    Error,
    Idle,
    /// Operational but not ready (e.g. streaming a file to the SD card).
    Busy,
    /// Printing, including starting and heat-up.
    Printing,
    Pausing,
    Paused,
    Resuming,
    Cancelling,
    Finishing,
}

impl Phase {
    pub fn from_flags(f: &Flags, error: Option<&str>) -> Phase {
        let has_error = error.is_some_and(|e| !e.is_empty());
        if f.error || (f.closed_or_error && has_error) {
            Phase::Error
        } else if f.closed_or_error {
            Phase::Offline
        } else if f.cancelling {
            Phase::Cancelling
        } else if f.pausing {
            Phase::Pausing
        } else if f.paused {
            Phase::Paused
        } else if f.resuming {
            Phase::Resuming
        } else if f.finishing {
            Phase::Finishing
        } else if f.printing {
            Phase::Printing
        } else if f.operational && f.ready {
            Phase::Idle
        } else if f.operational {
            Phase::Busy
        } else {
            Phase::Connecting
        }
    }

    /// A print is under way (in any of its stages).
    pub fn has_print(self) -> bool {
        matches!(
            self,
            Phase::Printing
                | Phase::Pausing
                | Phase::Paused
                | Phase::Resuming
                | Phase::Cancelling
                | Phase::Finishing
        )
    }

    /// OctoPrint is talking to the printer.
    pub fn operational(self) -> bool {
        !matches!(self, Phase::Offline | Phase::Connecting | Phase::Error)
    }
}

/// OctoPrint's view of the printer at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub phase: Phase,
    /// `state.text`, for messages.
    pub text: String,
    /// The error text, when OctoPrint has one.
    pub error: Option<String>,
    /// The selected file's path in local storage (`None` for SD files and when nothing is selected).
    pub file: Option<String>,
    /// Bytes of the file OctoPrint has read (sent to the printer), when printing.
    pub filepos: Option<u64>,
    /// Percent 0–100 (not 0–1), bytes-based.
    pub completion: Option<f64>,
    pub time_left_s: Option<f64>,
    /// Empty when this observation carries no temperatures (push frames often carry none).
    pub temps: Vec<Heater>,
}

/// The OctoPrint events the farm acts on; `path` is the file's path in local storage.
#[derive(Clone, Debug, PartialEq)]
pub enum OpEvent {
    PrintStarted {
        path: String,
    },
    PrintPaused {
        path: String,
        filepos: Option<u64>,
    },
    PrintResumed {
        path: String,
    },
    PrintDone {
        path: String,
    },
    PrintCancelled {
        path: String,
        filepos: Option<u64>,
    },
    /// Also sent after `PrintCancelled`, with `reason: "cancelled"`.
    PrintFailed {
        path: String,
        reason: String,
        error: Option<String>,
        filepos: Option<u64>,
    },
    /// A firmware or communication error (`reason`, `consequence` are folded into `error`).
    Error {
        error: String,
    },
    Disconnected,
    Other(String),
}

/// One push frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `current` (every 0.5 s × throttle) or `history` (once, right after auth).
    Status {
        observation: Observation,
        history: bool,
    },
    Event(OpEvent),
    /// The session went stale: log in again.
    ReauthRequired,
    /// `connected`, `timelapse`, `plugin`, … nothing the farm needs.
    Other,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

/// `{"tool0": {"actual": …, "target": …}, "bed": …, "time": …}` → heaters, tools first.
/// Heaters that read nothing (`actual: null`, e.g. a chamber the printer lacks) are left out.
fn heaters(map: &Map<String, Value>) -> Vec<Heater> {
    let mut out: Vec<Heater> = map
        .iter()
        .filter_map(|(name, v)| {
            let actual = v.get("actual")?.as_f64()?;
            let target = v.get("target").and_then(Value::as_f64).unwrap_or(0.0);
            Some(Heater {
                name: name.clone(),
                actual,
                target,
            })
        })
        .collect();
    let rank = |n: &str| match n {
        _ if n.starts_with("tool") => 0,
        "bed" => 1,
        "chamber" => 2,
        _ => 3,
    };
    out.sort_by(|a, b| (rank(&a.name), &a.name).cmp(&(rank(&b.name), &b.name)));
    out
}

fn local_path(file: &FileJson) -> Option<String> {
    match file.origin.as_deref() {
        Some("local") | None => non_empty(file.path.clone()),
        Some(_) => None,
    }
}

fn observation(
    state: StateJson,
    job: Option<JobJson>,
    progress: Option<ProgressJson>,
) -> Observation {
    let error = non_empty(state.error);
    let progress = progress.unwrap_or_default();
    Observation {
        phase: Phase::from_flags(&state.flags, error.as_deref()),
        text: state.text,
        error,
        file: job.as_ref().and_then(|j| local_path(&j.file)),
        filepos: finite(progress.filepos)
            .filter(|p| *p >= 0.0)
            .map(|p| p as u64),
        completion: finite(progress.completion),
        time_left_s: finite(progress.print_time_left),
        temps: vec![],
    }
}

fn payload_str(p: &Value, key: &str) -> Option<String> {
    non_empty(p.get(key).and_then(Value::as_str).map(str::to_string))
}

/// The file position an event reports: `fileposition` when present; else `progress` when it
/// is a fraction (a JSON float in 0..=1, as `PrintFailed(error)` sends it) times `size`.
/// `PrintCancelled` sends `progress` as an integer percent, which is too coarse to use.
fn event_filepos(p: &Value) -> Option<u64> {
    if let Some(pos) = p.get("fileposition").and_then(Value::as_u64) {
        return Some(pos);
    }
    let progress = p.get("progress").filter(|v| v.is_f64())?.as_f64()?;
    let size = p.get("size").and_then(Value::as_u64)?;
    (0.0..=1.0)
        .contains(&progress)
        .then(|| (progress * size as f64).round() as u64)
}

fn event(e: EventJson) -> OpEvent {
    let p = e.payload.unwrap_or(Value::Null);
    // Only prints of local files are the farm's (SD prints have no path we uploaded).
    let local = payload_str(&p, "origin").is_none_or(|o| o == "local");
    let path = payload_str(&p, "path").filter(|_| local);
    match (e.kind.as_str(), path) {
        ("PrintStarted", Some(path)) => OpEvent::PrintStarted { path },
        ("PrintPaused", Some(path)) => OpEvent::PrintPaused {
            path,
            filepos: event_filepos(&p),
        },
        ("PrintResumed", Some(path)) => OpEvent::PrintResumed { path },
        ("PrintDone", Some(path)) => OpEvent::PrintDone { path },
        ("PrintCancelled", Some(path)) => OpEvent::PrintCancelled {
            path,
            filepos: event_filepos(&p),
        },
        ("PrintFailed", Some(path)) => OpEvent::PrintFailed {
            path,
            reason: payload_str(&p, "reason").unwrap_or_else(|| "error".into()),
            error: payload_str(&p, "error"),
            filepos: event_filepos(&p),
        },
        ("Error", _) => {
            let error = payload_str(&p, "error").unwrap_or_else(|| "unknown error".into());
            OpEvent::Error {
                error: match payload_str(&p, "reason") {
                    Some(r) => format!("{error} (OctoPrint: {r} error)"),
                    None => error,
                },
            }
        }
        ("Disconnected", _) => OpEvent::Disconnected,
        (other, _) => OpEvent::Other(other.to_string()),
    }
}

/// Parses one push frame.
pub fn parse_frame(text: &str) -> Result<Frame, serde_json::Error> {
    let f: FrameJson = serde_json::from_str(text)?;
    let status = |c: CurrentJson, history: bool| {
        let mut observation = observation(c.state, c.job, c.progress);
        if let Some(last) = c.temps.last() {
            observation.temps = heaters(last);
        }
        Frame::Status {
            observation,
            history,
        }
    };
    Ok(if let Some(c) = f.current {
        status(c, false)
    } else if let Some(c) = f.history {
        status(c, true)
    } else if let Some(e) = f.event {
        Frame::Event(event(e))
    } else if f.reauth_required.is_some() {
        Frame::ReauthRequired
    } else {
        Frame::Other
    })
}

/// `GET /api/printer` (200).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PrinterJson {
    state: StateJson,
    temperature: Map<String, Value>,
}

/// `GET /api/job`: here `state` is only the text, and `error` sits at the top.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct JobStatusJson {
    job: Option<JobJson>,
    progress: Option<ProgressJson>,
    state: String,
    error: Option<String>,
}

/// The REST poll's view: `/api/printer` (`None` when it answered 409, not operational) and
/// `/api/job`.
pub fn observation_from_rest(printer: Option<PrinterJson>, job: JobStatusJson) -> Observation {
    let (state, temps) = match printer {
        Some(p) => (p.state, heaters(&p.temperature)),
        None => (
            StateJson {
                text: job.state.clone(),
                flags: Flags {
                    closed_or_error: true,
                    ..Flags::default()
                },
                error: job.error.clone(),
            },
            vec![],
        ),
    };
    let mut o = observation(state, job.job, job.progress);
    o.temps = temps;
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_decide_the_phase_even_after_an_error_that_only_says_closed() {
        let f = |json: &str| serde_json::from_str::<Flags>(json).unwrap_or_default();
        let closed = f(r#"{"closedOrError": true}"#);
        assert_eq!(Phase::from_flags(&closed, None), Phase::Offline);
        assert_eq!(
            Phase::from_flags(&closed, Some("Printer halted. kill() called!")),
            Phase::Error
        );
        assert_eq!(Phase::from_flags(&f("{}"), None), Phase::Connecting);
        let idle = f(r#"{"operational": true, "ready": true, "sdReady": true}"#);
        assert_eq!(Phase::from_flags(&idle, None), Phase::Idle);
        let cancelling = f(r#"{"operational":true,"printing":true,"cancelling":true}"#);
        assert_eq!(Phase::from_flags(&cancelling, None), Phase::Cancelling);
    }

    #[test]
    fn a_current_frame_gives_state_file_position_and_the_last_temperatures() {
        let text = r#"{"current":{"state":{"text":"Printing","flags":{"operational":true,"printing":true},"error":""},
            "job":{"file":{"path":"j-1-abc.gcode","origin":"local","size":410}},
            "progress":{"completion":36.09,"filepos":148,"printTime":0,"printTimeLeft":null},
            "temps":[{"time":1,"tool0":{"actual":20.0,"target":0.0}},
                     {"time":2,"tool0":{"actual":119.14,"target":210.0},"bed":{"actual":60.0,"target":60.0},
                      "chamber":{"actual":null,"target":null}}],
            "logs":[],"markings":[]}}"#;
        let Ok(Frame::Status {
            observation: o,
            history: false,
        }) = parse_frame(text)
        else {
            panic!("not a status frame");
        };
        assert_eq!(o.phase, Phase::Printing);
        assert_eq!(o.error, None);
        assert_eq!(o.file.as_deref(), Some("j-1-abc.gcode"));
        assert_eq!(
            (o.filepos, o.completion, o.time_left_s),
            (Some(148), Some(36.09), None)
        );
        let names: Vec<_> = o.temps.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["tool0", "bed"]);
        assert_eq!(o.temps[0].target, 210.0);
    }

    #[test]
    fn events_carry_the_exact_position_where_octoprint_gives_one() {
        let ev = |t: &str| match parse_frame(t) {
            Ok(Frame::Event(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            ev(
                r#"{"event":{"type":"PrintCancelled","payload":{"path":"a.gcode","origin":"local","size":7686,"fileposition":565,"progress":7}}}"#
            ),
            OpEvent::PrintCancelled {
                path: "a.gcode".into(),
                filepos: Some(565)
            }
        );
        // PrintFailed(error) sends a fraction: 0.0798855… × 7686 = 614.
        assert_eq!(
            ev(
                r#"{"event":{"type":"PrintFailed","payload":{"path":"a.gcode","origin":"local","size":7686,"reason":"error","error":"halted","progress":0.07988550611501431}}}"#
            ),
            OpEvent::PrintFailed {
                path: "a.gcode".into(),
                reason: "error".into(),
                error: Some("halted".into()),
                filepos: Some(614)
            }
        );
        // An integer percent is not a position.
        assert_eq!(
            ev(
                r#"{"event":{"type":"PrintPaused","payload":{"path":"a.gcode","size":100,"progress":1}}}"#
            ),
            OpEvent::PrintPaused {
                path: "a.gcode".into(),
                filepos: None
            }
        );
        // SD prints are not ours.
        assert_eq!(
            ev(r#"{"event":{"type":"PrintDone","payload":{"path":"a.gcode","origin":"sdcard"}}}"#),
            OpEvent::Other("PrintDone".into())
        );
        assert_eq!(
            parse_frame(r#"{"reauthRequired":{"reason":"stale"}}"#).ok(),
            Some(Frame::ReauthRequired)
        );
        assert_eq!(
            parse_frame(r#"{"timelapse":null}"#).ok(),
            Some(Frame::Other)
        );
        assert!(parse_frame("not json").is_err());
    }

    #[test]
    fn a_409_printer_and_the_job_text_make_an_offline_or_error_observation() {
        let job: JobStatusJson = serde_json::from_str(
            r#"{"error":"Thermal Runaway","job":{"file":{"path":null}},"progress":{"completion":null,"filepos":null},"state":"Offline after error"}"#,
        )
        .unwrap_or_default();
        let o = observation_from_rest(None, job);
        assert_eq!(o.phase, Phase::Error);
        assert_eq!(o.error.as_deref(), Some("Thermal Runaway"));
        let job: JobStatusJson = serde_json::from_str(r#"{"state":"Offline"}"#).unwrap_or_default();
        assert_eq!(observation_from_rest(None, job).phase, Phase::Offline);
        let printer: PrinterJson = serde_json::from_str(
            r#"{"state":{"text":"Operational","flags":{"operational":true,"ready":true},"error":""},
                "temperature":{"bed":{"actual":21.3,"offset":0,"target":0.0},"tool0":{"actual":21.3,"offset":0,"target":null}}}"#,
        )
        .unwrap_or_default();
        let o = observation_from_rest(Some(printer), JobStatusJson::default());
        assert_eq!(o.phase, Phase::Idle);
        assert_eq!(o.temps.len(), 2);
        assert_eq!(
            (o.temps[0].name.as_str(), o.temps[0].target),
            ("tool0", 0.0)
        );
    }
}

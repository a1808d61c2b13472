//! Every message kind of contract v1, as typed bodies.
//!
//! On the wire each body sits in an [`Envelope`](crate::Envelope) as
//! `"kind": "<snake_case name>", "body": {...}`. Unknown kinds are refused, not ignored,
//! so a newer agent talking to an older controller is visible in its metrics.

use serde::{Deserialize, Serialize};

/// Which header field a channel's envelopes must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Nothing,
    /// Events: `seq` ≥ 1.
    Seq,
    /// Commands: a non-empty `command_id`.
    CommandId,
}

/// A message body that belongs to one channel. `KINDS` lists the `kind` strings it accepts.
pub trait Body: Serialize + for<'de> Deserialize<'de> {
    const KINDS: &'static [&'static str];
    const NEEDS: Needs = Needs::Nothing;
}

/// Reads a temperature that a sender wrote as `null` (JSON has no NaN: a broken thermistor
/// serialises as `null`) without refusing the whole message.
fn number_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What the printer is doing, as its agent sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activity {
    /// Connected, nothing to do.
    Idle,
    /// Fetching and verifying a job's file.
    Transferring,
    /// Printing, including heat-up.
    Printing,
    Paused,
    /// The printer (firmware or host) reported an error; it needs a person.
    Error,
    /// The agent runs but cannot reach its printer.
    Disconnected,
}

/// One heater's temperatures in °C.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heater {
    /// `tool0`, `tool1`, …, `bed`, `chamber`.
    pub name: String,
    /// `null` on the wire when the sensor reads nothing (NaN).
    #[serde(deserialize_with = "number_or_nan")]
    pub actual: f64,
    #[serde(deserialize_with = "number_or_nan")]
    pub target: f64,
}

/// Progress of the job on the printer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobProgress {
    pub job_id: String,
    /// 0.0 ..= 1.0, by file position.
    pub progress: f64,
    /// Bytes of the file the printer has consumed.
    pub file_pos: u64,
    pub file_size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_count: Option<u32>,
    pub elapsed_s: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_s: Option<f64>,
    /// Cumulative filament consumed per tool (index = tool number), mm.
    pub extruded_mm: Vec<f64>,
}

/// The agent's own health, carried in every status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentHealth {
    pub version: String,
    /// `sim`, `serial`, `octoprint`, `moonraker`.
    pub backend: String,
    pub uptime_s: u64,
    /// Events written to the outbox and not yet acknowledged by the controller.
    pub outbox_pending: u64,
}

/// `status` channel: the latest snapshot, retained, QoS 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub state: Activity,
    pub temps: Vec<Heater>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobProgress>,
    /// The printer's or agent's last error text while `state` is `error` or `disconnected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub agent: AgentHealth,
    /// The status interval in force, ms.
    pub interval_ms: u32,
    /// What a filament changer holds (Bambu Lab's AMS units and external spool), one entry per
    /// slot the printer reports, empty slots included. Absent (empty) for printers without
    /// one. Added within v1: older receivers ignore it, older senders leave it out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trays: Vec<Tray>,
}

/// One slot of a filament changer, as the printer reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tray {
    /// The printer's own id for the slot. Bambu: the absolute tray id its `ams_mapping`
    /// takes: `unit * 4 + slot` (AMS, AMS 2, AMS lite), the unit's id for an AMS HT (128..),
    /// 254 for the external spool.
    pub slot: u32,
    /// Material type as the printer names it (`PLA`, `PETG`, `PA-GF`); absent: empty slot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<String>,
    /// `#RRGGBB`, upper case; absent when the printer gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<String>,
    /// Filament left, per cent, as the printer estimates it (coarse; unknown for spools
    /// without a tag, so absent). Shown, never billed: grams come from the job file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remain_pct: Option<u8>,
    /// The printer's filament preset id (Bambu `tray_info_idx`, e.g. `GFA00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// This slot feeds the nozzle now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub active: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum StatusMessage {
    Status(Status),
}

impl Body for StatusMessage {
    const KINDS: &'static [&'static str] = &["status"];
}

/// `online` channel: presence, retained; the agent's last will says `online: false`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum OnlineMessage {
    Online { online: bool },
}

impl Body for OnlineMessage {
    const KINDS: &'static [&'static str] = &["online"];
}

/// How a job ended on the printer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Failed,
    Cancelled,
}

/// `events` channel: durable, ordered by `seq`, QoS 1. Each is applied exactly once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Event {
    /// The agent took the job and is fetching its file.
    JobAccepted {
        job_id: String,
    },
    /// The file is verified and on the printer; printing (with heat-up) has begun.
    JobStarted {
        job_id: String,
        /// For a printer with a filament changer: per tool (index = tool number, as in
        /// `extruded_mm`), the changer slot ([`Tray::slot`]) the printer was told to feed it
        /// from, `null` for a tool no slot feeds. Bambu: the `ams_mapping` of the started
        /// plate. The controller books each tool's filament to the spool in that slot.
        /// Empty (left out) for every other printer: each tool's own spool is billed. Added
        /// within v1: older receivers ignore it, older senders leave it out.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_trays: Vec<Option<u32>>,
    },
    JobPaused {
        job_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    JobResumed {
        job_id: String,
    },
    /// Cumulative filament consumed so far per tool (mm). Monotonic per job and tool,
    /// so the controller applies `new − already_applied` and replays cost nothing.
    Material {
        job_id: String,
        extruded_mm: Vec<f64>,
    },
    /// The job ended. `extruded_mm` is the final cumulative use per tool.
    JobFinished {
        job_id: String,
        outcome: Outcome,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        extruded_mm: Vec<f64>,
        /// Seconds from start to end as the agent measured them.
        duration_s: f64,
    },
    /// The result of a command, by its id. Sent once per command id.
    CommandResult {
        command_id: String,
        ok: bool,
        message: String,
    },
    /// The printer entered an error state (firmware halt, lost connection, …).
    PrinterError {
        message: String,
    },
    /// The printer recovered from an error, or reconnected.
    PrinterReady {},
    /// Anything the firmware or host said that an operator may want to read.
    FirmwareMessage {
        message: String,
    },
    /// The agent process started (after a restart, `seq` continues).
    AgentStarted {
        version: String,
        backend: String,
    },
}

impl Body for Event {
    const NEEDS: Needs = Needs::Seq;
    const KINDS: &'static [&'static str] = &[
        "job_accepted",
        "job_started",
        "job_paused",
        "job_resumed",
        "material",
        "job_finished",
        "command_result",
        "printer_error",
        "printer_ready",
        "firmware_message",
        "agent_started",
    ];
}

impl Event {
    /// `job_started` for a printer without a filament changer (no `tool_trays`).
    pub fn job_started(job_id: impl Into<String>) -> Event {
        Event::JobStarted {
            job_id: job_id.into(),
            tool_trays: vec![],
        }
    }

    /// The job the event is about, if any.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Event::JobAccepted { job_id }
            | Event::JobStarted { job_id, .. }
            | Event::JobPaused { job_id, .. }
            | Event::JobResumed { job_id }
            | Event::Material { job_id, .. }
            | Event::JobFinished { job_id, .. } => Some(job_id),
            _ => None,
        }
    }
}

/// What the agent needs to fetch and print a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobAssignment {
    pub job_id: String,
    /// Human name of the file, for the printer's display.
    pub name: String,
    /// Where to fetch the file (HTTP GET with the agent's token; supports `Range`).
    pub url: String,
    /// Lower-case hex sha256 of the file; the agent refuses a file that does not match.
    pub sha256: String,
    pub size: u64,
    /// The job's material and colour as the farm names them, for back ends that choose the
    /// feed themselves (Bambu's AMS mapping); absent when the job names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colour: Option<String>,
    /// The printer's changer slots ([`Tray::slot`]) the controller found holding that
    /// material and colour, best first (its inventory knows names the printer does not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trays: Vec<u32>,
    /// For a `.gcode.3mf` (Bambu Studio / OrcaSlicer sliced plates): the plate to print, N of
    /// `Metadata/plate_<N>.gcode`. Absent for plain G-code and `.bgcode`, and from controllers
    /// older than plates, so older agents and controllers still understand each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<u32>,
}

/// `commands` channel: controller → agent, QoS 1, each with a unique `command_id`
/// that the agent executes at most once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum Command {
    AssignJob(JobAssignment),
    Pause {
        job_id: String,
    },
    Resume {
        job_id: String,
    },
    Cancel {
        job_id: String,
    },
    /// Stop everything now (firmware `M112` or the back end's equivalent).
    EmergencyStop {},
    /// Status interval in ms (clamped by the agent to 100 ..= 60 000).
    SetTelemetry {
        interval_ms: u32,
    },
    /// Admin only: lines of G-code sent as they are.
    RawGcode {
        lines: Vec<String>,
    },
    /// Re-read the agent's configuration file.
    ReloadConfig {},
}

impl Body for Command {
    const NEEDS: Needs = Needs::CommandId;
    const KINDS: &'static [&'static str] = &[
        "assign_job",
        "pause",
        "resume",
        "cancel",
        "emergency_stop",
        "set_telemetry",
        "raw_gcode",
        "reload_config",
    ];
}

/// `acks` channel: controller → agent, QoS 0. "Every event with `seq <= applied_seq` is
/// applied": the agent may delete them from its outbox. Cumulative, so a lost ack costs
/// only a resend, which the controller recognises and ignores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum AckMessage {
    Ack { applied_seq: u64 },
}

impl Body for AckMessage {
    const KINDS: &'static [&'static str] = &["ack"];
}

#[cfg(test)]
mod plate_tests {
    use super::*;

    /// An assignment without a plate reads as before, and one without a plate is written
    /// without the key, so agents and controllers from before plates understand both ways.
    #[test]
    fn the_plate_is_optional_on_the_wire() {
        let old =
            r#"{"job_id":"job-1","name":"a.gcode","url":"http://c/f","sha256":"ab","size":3}"#;
        let a: JobAssignment = serde_json::from_str(old).expect("old assignment");
        assert_eq!(a.plate, None);
        assert_eq!(serde_json::to_string(&a).expect("json"), old);
        let with = JobAssignment {
            plate: Some(2),
            ..a
        };
        let json = serde_json::to_string(&with).expect("json");
        assert!(json.ends_with(r#""size":3,"plate":2}"#), "{json}");
        assert_eq!(
            serde_json::from_str::<JobAssignment>(&json).expect("back"),
            with
        );
    }
}

#[cfg(test)]
mod tool_tray_tests {
    use super::*;

    /// `job_started` without trays reads and writes as before; with them, a `null` marks a
    /// tool no tray feeds, and an older receiver's view (no such field) still parses it.
    #[test]
    fn tool_trays_are_optional_on_the_wire() {
        let old = r#"{"kind":"job_started","body":{"job_id":"j"}}"#;
        let e: Event = serde_json::from_str(old).expect("old job_started");
        assert_eq!(e, Event::job_started("j"));
        assert_eq!(serde_json::to_string(&e).expect("json"), old);
        let with = Event::JobStarted {
            job_id: "j".into(),
            tool_trays: vec![Some(0), None, None, Some(1)],
        };
        let json = serde_json::to_string(&with).expect("json");
        assert_eq!(
            json,
            r#"{"kind":"job_started","body":{"job_id":"j","tool_trays":[0,null,null,1]}}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).expect("back"), with);
        #[derive(Deserialize)]
        #[serde(tag = "kind", content = "body", rename_all = "snake_case")]
        enum Older {
            JobStarted { job_id: String },
        }
        let Older::JobStarted { job_id } = serde_json::from_str(&json).expect("older reader");
        assert_eq!(job_id, "j");
    }
}

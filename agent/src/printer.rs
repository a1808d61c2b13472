//! The printer back-end interface: what every back end (sim, serial, OctoPrint, Moonraker)
//! offers the rest of the agent.
//!
//! A back end is a task. It takes [`PrinterCommand`]s (each answered on a oneshot), keeps a
//! [`Snapshot`] of the printer current in a `watch` channel, and emits job-lifecycle and
//! printer events as contract [`Event`]s (`job_started`, `job_paused`, `job_resumed`,
//! `job_finished`, `printer_error`, `printer_ready`, `firmware_message`) on an unbounded
//! channel. Unbounded on purpose: the runner may be waiting for a command reply while the back
//! end reports an event, and a bounded channel could deadlock the two; these events are few
//! (lifecycle changes, not telemetry).
//!
//! The back end owns the truth about the job on the printer: the runner never guesses a job's
//! end, it waits for `job_finished`. `Snapshot::job.extruded_mm` must be the exact cumulative
//! filament per tool (monotonic), because material is billed from it.

use crate::config::PrinterConfig;
use farm_protocol::messages::{Activity, Event, Heater, JobProgress, Tray};
use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// What the printer is doing now: the back end's part of a `Status`.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `Idle`, `Printing`, `Paused`, `Error` or `Disconnected` (never `Transferring`: that is
    /// the agent's state while it fetches a file).
    pub state: Activity,
    pub temps: Vec<Heater>,
    pub job: Option<JobProgress>,
    /// The error text while `state` is `Error` or `Disconnected`.
    pub message: Option<String>,
    /// A filament changer's slots (Bambu's AMS); empty for printers without one.
    pub trays: Vec<Tray>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            state: Activity::Disconnected,
            temps: vec![],
            job: None,
            message: Some("back end starting".into()),
            trays: vec![],
        }
    }
}

/// A job's material and colour as the farm names them, and the changer slots the controller
/// found holding them (best first); all empty when the job names none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filament {
    pub material: Option<String>,
    pub colour: Option<String>,
    pub trays: Vec<u32>,
}

/// What the agent asks of a printer.
#[derive(Clone, Debug, PartialEq)]
pub enum PrinterCommand {
    /// Print a verified local file. Refused unless the printer is idle.
    Start {
        job_id: String,
        name: String,
        path: PathBuf,
        /// What the job asks to be printed in, for back ends that choose the feed
        /// (Bambu's AMS mapping).
        filament: Filament,
        /// For a `.gcode.3mf`: the plate to print. Only a back end that prints 3MF archives
        /// (Bambu) sees one; for the others the runner extracts the plate's G-code first.
        plate: Option<u32>,
    },
    Pause,
    Resume,
    Cancel,
    /// Stop now, heaters off; the printer enters `Error` ("emergency stop").
    EmergencyStop,
    /// Lines of G-code sent as they are.
    Gcode(Vec<String>),
    /// New settings from a reloaded config; a back end applies what it can.
    Reconfigure(PrinterConfig),
}

/// `Ok(message)` or `Err(reason)`; both texts end up in a `command_result`.
pub type Reply = Result<String, String>;

/// One command with the place to answer it.
pub type Envelope = (PrinterCommand, oneshot::Sender<Reply>);

/// The back end's side of the channels.
pub struct Port {
    pub commands: mpsc::Receiver<Envelope>,
    pub snapshot: watch::Sender<Snapshot>,
    pub events: mpsc::UnboundedSender<Event>,
}

/// A printer back end. `run` returns when `port.commands` closes (the agent is stopping).
pub trait Backend: Send + 'static {
    /// `sim`, `octoprint`, `moonraker`, `serial`, `prusalink`: reported in `agent_started` and status.
    fn name(&self) -> &'static str;
    fn run(self, port: Port) -> impl Future<Output = ()> + Send;
}

/// How long a back end may take to answer a command before the agent gives up on it.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's side of a running back end.
pub struct Printer {
    commands: mpsc::Sender<Envelope>,
    pub snapshot: watch::Receiver<Snapshot>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub backend: &'static str,
    task: tokio::task::JoinHandle<()>,
}

impl Printer {
    /// Starts a back end task.
    pub fn spawn<B: Backend>(backend: B) -> Printer {
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let (snap_tx, snap_rx) = watch::channel(Snapshot::default());
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let name = backend.name();
        let task = tokio::spawn(backend.run(Port {
            commands: cmd_rx,
            snapshot: snap_tx,
            events: ev_tx,
        }));
        Printer {
            commands: cmd_tx,
            snapshot: snap_rx,
            events: ev_rx,
            backend: name,
            task,
        }
    }

    /// Starts the back end the config names.
    pub fn from_config(config: &PrinterConfig) -> Printer {
        // Config validation guarantees the section of the chosen back end is present.
        match config.backend.as_str() {
            "serial" => match &config.serial {
                Some(c) => return Printer::spawn(crate::serial::Serial::new(c.clone())),
                None => debug_assert!(false, "validated config without [printer.serial]"),
            },
            "octoprint" => match &config.octoprint {
                Some(c) => return Printer::spawn(crate::octoprint::OctoPrint::new(c.clone())),
                None => debug_assert!(false, "validated config without [printer.octoprint]"),
            },
            "prusalink" => match &config.prusalink {
                Some(c) => return Printer::spawn(crate::prusalink::PrusaLink::new((**c).clone())),
                None => debug_assert!(false, "validated config without [printer.prusalink]"),
            },
            "moonraker" => match &config.moonraker {
                Some(c) => return Printer::spawn(crate::moonraker::Moonraker::new(c.clone())),
                None => debug_assert!(false, "validated config without [printer.moonraker]"),
            },
            "bambu" => match &config.bambu {
                Some(c) => return Printer::spawn(crate::bambu::Bambu::new((**c).clone())),
                None => debug_assert!(false, "validated config without [printer.bambu]"),
            },
            _ => {}
        }
        Printer::spawn(crate::sim::Sim::new(config.sim.clone()))
    }

    /// Sends a command and waits for its answer.
    pub async fn send(&self, command: PrinterCommand) -> Reply {
        let (tx, rx) = oneshot::channel();
        if self.commands.send((command, tx)).await.is_err() {
            return Err("the printer back end has stopped; restart the agent".into());
        }
        match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err("the printer back end stopped before answering".into()),
            Err(_) => Err(format!(
                "the printer did not answer within {} s",
                REPLY_TIMEOUT.as_secs()
            )),
        }
    }

    /// Stops the back end and waits for its task to end.
    pub async fn stop(self) {
        drop(self.commands);
        let _ = self.task.await;
    }
}

//! Connecting: open the port, let the board boot, agree on line numbers, learn the firmware.
//!
//! 1. Opening a USB serial port toggles DTR, which resets most boards: wait for their `start`
//!    banner, at most the profile's `wait_for_start_s`.
//! 2. Send the hello (`N0 M110 N0*125`) until an `ok` answers; a `start` meanwhile means the
//!    board (re)booted under us, so the hello starts over (OctoPrint does the same).
//! 3. `N1 M115`: the `FIRMWARE_NAME` line and `Cap:` lines pick the profile ([`detect`]),
//!    unless the config names one. No answer means the `marlin2` fallback, with a warning.

use super::backend::SerialConfig;
use super::framing::line_number_reset;
use super::port::{self, Port};
use super::profile::{FirmwareProfile, ProfileSet, load_override};
use super::reply::{FirmwareInfo, Reply, parse_reply};
use super::stream::{Streamer, Window};
use std::path::Path;
use std::time::Duration;
use tokio::time::{Instant, timeout_at};

/// Hello attempts before giving up on this connection.
const HELLO_TRIES: u32 = 5;
/// How long each hello waits for its `ok`.
const HELLO_WAIT: Duration = Duration::from_secs(2);
/// How long `M115` may take.
const INFO_WAIT: Duration = Duration::from_secs(5);

/// A port that answered the handshake.
pub struct Link {
    pub port: Port,
    pub streamer: Streamer,
    pub info: FirmwareInfo,
    pub profile: FirmwareProfile,
    /// Why the profile was chosen, for the log and the snapshot.
    pub profile_note: String,
}

/// The profile the config names: a built-in name or a path to a TOML file.
pub fn configured_profile(name: &str) -> Result<FirmwareProfile, String> {
    let set = ProfileSet::builtin();
    if let Some(p) = set.get(name) {
        return Ok(p.clone());
    }
    let path = Path::new(name);
    if path.extension().is_some_and(|e| e == "toml") {
        let dir = path.parent().unwrap_or(Path::new("."));
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let set = load_override(dir).map_err(|e| e.to_string())?;
        if let Some(p) = set.get(stem) {
            return Ok(p.clone());
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read firmware profile {}: {e}", path.display()))?;
        return FirmwareProfile::from_toml(&text, path).map_err(|e| e.to_string());
    }
    Err(format!(
        "unknown firmware profile {name:?}: use one of marlin2, prusa, reprapfirmware3, klipper, \
         or the path of a .toml profile"
    ))
}

/// Opens the port and runs the handshake.
pub async fn connect(cfg: &SerialConfig) -> Result<Link, String> {
    let forced = match &cfg.profile {
        Some(name) => Some(configured_profile(name)?),
        None => None,
    };
    let port = port::open(&cfg.port, cfg.baud).map_err(|e| e.to_string())?;
    let builtin = ProfileSet::builtin();
    let boot = forced
        .as_ref()
        .or(builtin.get(super::profile::FALLBACK))
        .map_or(2.0, |p| p.framing.wait_for_start_s);
    let mut link = Link {
        port,
        streamer: Streamer::new(Window {
            max_lines: 1,
            rx_bytes: 64,
            advanced_ok: false,
        }),
        info: FirmwareInfo::default(),
        profile: forced
            .clone()
            .unwrap_or_else(|| builtin.profiles()[0].clone()),
        profile_note: String::new(),
    };

    // 1. The boot banner, if the board resets on open.
    if boot > 0.0 {
        let until = Instant::now() + Duration::from_secs_f64(boot.min(30.0));
        while let Some(line) = next_line(&mut link.port, until).await? {
            if matches!(parse_reply(&line), Reply::Start) {
                break;
            }
        }
    }

    // 2. Hello until ok.
    let hello = line_number_reset(0);
    let mut answered = false;
    'tries: for _ in 0..HELLO_TRIES {
        link.port.write_all(hello.as_bytes()).await?;
        let until = Instant::now() + HELLO_WAIT;
        while let Some(line) = next_line(&mut link.port, until).await? {
            match parse_reply(&line) {
                Reply::Ok { .. } => {
                    answered = true;
                    break 'tries;
                }
                // Rebooted under us: its counter is 0 again, say hello again.
                Reply::Start => continue 'tries,
                _ => {}
            }
        }
    }
    if !answered {
        return Err(format!(
            "the printer on {} does not answer (no ok to M110 after {HELLO_TRIES} tries): check the \
             baud rate ({}), that the printer is on, and that no other program (OctoPrint, a \
             slicer) holds the port",
            cfg.port.display(),
            cfg.baud
        ));
    }
    // Answers to a repeated hello may still be on their way; they are oks without a line.
    link.streamer.reset(0);

    // 3. Firmware info.
    let (_, m115) = link.streamer.push("M115");
    let m115 = m115.to_string();
    link.port.write_all(m115.as_bytes()).await?;
    let until = Instant::now() + INFO_WAIT;
    let mut info: Option<FirmwareInfo> = None;
    while let Some(line) = next_line(&mut link.port, until).await? {
        match parse_reply(&line) {
            Reply::Firmware(i) => info = Some(*i),
            Reply::Capability { name, enabled } => {
                if let Some(i) = info.as_mut() {
                    i.set_capability(name, enabled);
                }
            }
            Reply::Ok {
                payload: super::reply::OkPayload::Firmware(i),
                ..
            } => {
                info = Some(*i);
                link.streamer.on_ok(None, None);
                break;
            }
            Reply::Ok {
                line, buffer_free, ..
            } => {
                link.streamer.on_ok(line, buffer_free);
                if link.streamer.in_flight() == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    if link.streamer.in_flight() > 0 {
        // No ok for M115: start over on a clean counter rather than guess.
        link.port.write_all(line_number_reset(0).as_bytes()).await?;
        link.streamer.reset(0);
    }
    let info = info.unwrap_or_default();
    let (profile, note) = match forced {
        Some(p) => {
            let note = format!("profile {} (from the config)", p.name);
            (p, note)
        }
        None => {
            let d = builtin.detect(&info);
            let note = if d.fallback {
                tracing::warn!(
                    firmware = %info.name,
                    "no firmware profile matches this printer; using marlin2 (set [printer.serial] profile to choose one)"
                );
                format!(
                    "profile {} (fallback: nothing matched {:?})",
                    d.profile.name, info.name
                )
            } else {
                format!("profile {} (detected from {:?})", d.profile.name, info.name)
            };
            (d.profile.clone(), note)
        }
    };
    link.streamer
        .set_window(Window::from_profile(&profile.buffers, cfg.max_in_flight));
    link.info = info;
    link.profile = profile;
    link.profile_note = note;
    Ok(link)
}

/// The next line before `until`; `None` when the time is up; an error when the port closed.
async fn next_line(port: &mut Port, until: Instant) -> Result<Option<String>, String> {
    let mut line = String::new();
    match timeout_at(until, port.next_line(&mut line)).await {
        Err(_) => Ok(None),
        Ok(r) => r.map(|()| Some(line)),
    }
}

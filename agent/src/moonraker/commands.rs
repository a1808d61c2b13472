//! Helpers for the agent's commands: which raw G-code bypasses Klipper's script queue, and
//! calls answered beside the back end's loop.

use super::rpc::Rpc;
use crate::printer::Reply;
use serde_json::Value;
use std::time::Duration;

/// `printer.print.start` opens the file in Klippy; `pause` answers when the reader stopped.
pub(super) const PRINT_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Calls that only wait for Moonraker's "ok" run beside the loop, so status keeps flowing
/// while Klipper takes its time (a pause answers only when the reader stopped, fixture c).
pub(super) fn spawn_call(
    rpc: &Rpc,
    method: &'static str,
    params: Value,
    done: String,
    reply: tokio::sync::oneshot::Sender<Reply>,
) {
    let rpc = rpc.clone();
    tokio::spawn(async move {
        let r = rpc.call_within(method, params, PRINT_CALL_TIMEOUT).await;
        let _ = reply.send(r.map(|_| done).map_err(|e| e.peer_message()));
    });
}

/// Raw G-code that Moonraker handles outside `printer.gcode.script`: in `shutdown` only
/// `FIRMWARE_RESTART` gets through, and `M112` through the script queue would wait behind
/// other G-code. `Ok(None)`: an ordinary script.
pub(super) fn special(lines: &[String]) -> Result<Option<(&'static str, &'static str)>, String> {
    let word = |l: &String| {
        l.split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase()
    };
    let which = |w: &str| match w {
        "M112" => Some(("printer.emergency_stop", "emergency stop: Klipper halted")),
        "M999" | "FIRMWARE_RESTART" => Some((
            "printer.firmware_restart",
            "firmware restart requested; Klipper reconnects in a few seconds",
        )),
        "RESTART" => Some(("printer.restart", "Klipper host restart requested")),
        _ => None,
    };
    let specials: Vec<_> = lines.iter().filter_map(|l| which(&word(l))).collect();
    match (specials.len(), lines.len()) {
        (0, _) => Ok(None),
        (1, 1) => Ok(specials.first().copied()),
        _ => Err("send M112, M999, FIRMWARE_RESTART or RESTART as a command of its own".into()),
    }
}

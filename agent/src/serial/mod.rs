//! The serial (USB G-code) back end: a functional core (framing, reply grammar, profiles,
//! the send-ahead/resend state machine, the watchdog) inside an imperative shell (the port,
//! the session task, the reconnect loop).
//!
//! | module | what it holds |
//! |---|---|
//! | [`framing`] | host → firmware: `N<n> <cmd>*<xor>` lines, comment stripping, `M110` resets |
//! | [`reply`] | firmware → host: [`parse_reply`] classifies every received line (ok, resend, busy, errors, temperatures, host actions, `M115`/`Cap:` …) |
//! | [`readings`] | the values in temperature and position reports (`T:… /… B:…`, `X:… Y:… Z:… E:…`) |
//! | [`profile`] | [`FirmwareProfile`]: per-family facts (buffers, timeouts, e-stop, scripts, motion limits) from `firmware-profiles/*.toml`, detection from `M115` |
//! | [`stream`] | [`stream::Streamer`]: send-ahead window (lines, RX bytes, ADVANCED_OK) and resend rewind — pure |
//! | [`watchdog`] | stalled printer vs. long `M109`/`G28`: silence, allowances, pokes — pure |
//! | [`park`] | the commanded position from acknowledged lines; pause/resume/cancel scripts filled — pure |
//! | [`job`] | one streamed file: reading, the ledger of unacknowledged lines, exact material |
//! | [`port`] | the device: open (8N1, raw, registered for readability only), bounded lines from its read buffer, writes |
//! | `handshake` | open → `start` → `M110` hello → `M115` → profile |
//! | `session` (+ `control.rs`) | the imperative shell of one connection: reads the port itself, timers; agent commands and host actions |
//! | [`backend`] | `[printer.serial]` config and the reconnect loop ([`Serial`]) |
//! | [`cli`] | the hidden `farm-agent stream` command: one file through the same back end (benchmark, tests) |
//!
//! How they fit together in the streamer:
//!
//! ```text
//!  job line ─clean_line─▶ frame(n, cmd) ─▶ port ─▶ firmware
//!                                                     │
//!  state machine ◀── Reply ◀── parse_reply(line) ◀────┘
//!        ▲
//!        └── FirmwareProfile (detect(M115 + Cap:) or the config override)
//! ```
//!
//! Reference: `protocols.md` §3 (grammar, flow control, resends, host actions); the tests
//! replay real Virtual Printer transcripts from `agent/tests/data/serial/`.

pub mod backend;
pub mod cli;
pub mod framing;
mod handshake;
pub mod job;
pub mod park;
pub mod port;
pub mod profile;
pub mod readings;
pub mod reply;
mod session;
pub mod stream;
pub mod watchdog;

pub use backend::{Serial, SerialConfig};
pub use framing::{checksum, clean_line, frame, frame_into, line_number_reset, parse_framed};
pub use profile::{
    Detection, FirmwareProfile, ProfileError, ProfileSet, builtin, detect, load_override,
};
pub use reply::{FirmwareInfo, HostAction, Reply, Temps, parse_reply};

#[cfg(test)]
mod transcript_tests;

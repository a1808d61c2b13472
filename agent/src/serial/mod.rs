//! Pure building blocks of the serial (USB G-code) back end: no ports, no tasks, no I/O.
//! The streaming back end (a later task) owns the port and uses these on every line.
//!
//! | module | what it holds |
//! |---|---|
//! | [`framing`] | host → firmware: `N<n> <cmd>*<xor>` lines, comment stripping, `M110` resets |
//! | [`reply`] | firmware → host: [`parse_reply`] classifies every received line (ok, resend, busy, errors, temperatures, host actions, `M115`/`Cap:` …) |
//! | [`profile`] | [`FirmwareProfile`]: per-family facts (buffers, timeouts, e-stop, scripts, motion limits) from `firmware-profiles/*.toml`, detection from `M115` |
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
pub mod framing;
pub mod profile;
pub mod reply;

pub use backend::{Serial, SerialConfig};
pub use framing::{checksum, clean_line, frame, frame_into, line_number_reset, parse_framed};
pub use profile::{
    Detection, FirmwareProfile, ProfileError, ProfileSet, builtin, detect, load_override,
};
pub use reply::{FirmwareInfo, HostAction, Reply, Temps, parse_reply};

#[cfg(test)]
mod transcript_tests;

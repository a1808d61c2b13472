//! # farm-protocol
//!
//! The wire contract between a farm **agent** (beside each printer) and the farm
//! **controller**, plus the G-code model both sides use. Nothing here does I/O:
//! it is plain data and pure functions, so both binaries and outside tools can
//! rely on the same definitions.
//!
//! | module | what it holds |
//! |---|---|
//! | [`ids`] | validated printer ids (`[a-z0-9-]{1,64}`) |
//! | [`topics`] | MQTT topic builders and parsers (`{root}/v1/printers/{id}/{channel}`) |
//! | [`messages`] | every message kind as a typed struct: status, events, commands, acks, presence |
//! | [`envelope`] | the envelope (`v`, `printer`, `ts`, `kind`, `seq`/`command_id`, `body`), HMAC-SHA256 sealing and opening, size bounds |
//! | [`bgcode`] | Prusa binary G-code (`.bgcode`): a streaming decoder to the G-code text the analyzer reads, and binary ↔ text offsets for the extrusion index |
//! | [`broker_url`] | `mqtt://` / `mqtts://` broker URLs (IPv6 literals, default ports, user and password) |
//! | [`backoff`] | the retry schedule (first delay, doubling to a cap, ± jitter) every retry loop uses |
//! | [`materials`] | the filament density table (g/cm³ per material type) |
//! | [`gcode`] | a streaming G-code line parser and machine model: extrusion per tool, move time, layers, bounds |
//! | [`threemf`] | Bambu Studio / OrcaSlicer `.gcode.3mf`: plates, the slicer's per-plate figures and previews, a plate's G-code streamed from the zip; zip bombs and path tricks refused |
//!
//! The contract is written up for outsiders in `protocol/README.md`.

pub mod backoff;
pub mod bgcode;
pub mod broker_url;
pub mod envelope;
pub mod gcode;
pub mod ids;
pub mod materials;
pub mod messages;
pub mod threemf;
pub mod topics;

pub use backoff::Backoff;
pub use broker_url::{BrokerUrl, BrokerUrlError};
pub use envelope::{DecodeError, Envelope, MAX_PAYLOAD_BYTES, PROTOCOL_VERSION, open, seal};
pub use ids::PrinterId;
pub use topics::{Channel, Topics};

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
//! | [`broker_url`] | `mqtt://` / `mqtts://` broker URLs (IPv6 literals, default ports, user and password) |
//! | [`backoff`] | the retry schedule (first delay, doubling to a cap, ± jitter) every retry loop uses |
//! | [`materials`] | the filament density table (g/cm³ per material type) |
//! | [`gcode`] | a streaming G-code line parser and machine model: extrusion per tool, move time, layers, bounds |
//!
//! The contract is written up for outsiders in `protocol/README.md`.

pub mod backoff;
pub mod broker_url;
pub mod envelope;
pub mod gcode;
pub mod ids;
pub mod materials;
pub mod messages;
pub mod topics;

pub use backoff::Backoff;
pub use broker_url::{BrokerUrl, BrokerUrlError};
pub use envelope::{DecodeError, Envelope, MAX_PAYLOAD_BYTES, PROTOCOL_VERSION, open, seal};
pub use ids::PrinterId;
pub use topics::{Channel, Topics};

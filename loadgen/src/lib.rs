//! `farm-loadgen`: many simulated printers on one farm controller, measured from outside.
//!
//! Each printer is one tokio task with its own MQTT connection, credentials and secret, and
//! speaks the contract of `farm-protocol` as `farm-agent` does. The live stream is read at the
//! same time, so every status's way from publish to the controller's `/api/v1/stream` is timed.
//!
//! | module | what |
//! |---|---|
//! | [`settings`] | the command line (`--help` explains every option), durations like `10s` |
//! | [`orders`] | shop orders at a fixed rate beside the printers (`--orders-per-s`): created/s and latency |
//! | [`dashboards`] | more clients of the live stream (`--dashboards`): bytes/s and the slowest one's latency |
//! | [`fanout`] | dispatch fan-out (`--fanout-mb`, `--accept-jobs`): printers fetch their job file as the agent does |
//! | [`enrol`] | mass enrolment through `POST /api/v1/printers`; the enrolment file big runs reuse |
//! | [`mqtt`] | a minimal MQTT 3.1.1 client (rumqttc's packet codec, our connection): cheap enough for 10,000 in one process |
//! | [`printer`] | one live printer (status at its phase, events kept until acked, commands answered, storms) and one flapping printer |
//! | [`stats`] | what printers and the reader share, lock-free: publish times by status number, counters; percentiles |
//! | [`stream`] | the SSE reader: diffs matched to publishes (latency, drops), presence and freshness (storm recovery, census) |
//! | [`procstat`] | CPU % and RSS of the controller and of the load generator itself, from `/proc` |
//! | [`run`] | one run: enrol, stream, connect, window with the storm, drain, [`Report`] |
//! | [`report`] | the figures, as text and JSON |

pub mod dashboards;
pub mod enrol;
pub mod fanout;
pub mod mqtt;
pub mod orders;
pub mod printer;
pub mod procstat;
pub mod report;
pub mod run;
pub mod settings;
pub mod stats;
pub mod stream;

pub use report::Report;
pub use run::{run, run_with};
pub use settings::Settings;
pub use stats::Shared;

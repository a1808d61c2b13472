//! The Bambu Lab back end in LAN mode (`backend = "bambu"`): the printer's own MQTT broker
//! over TLS (port 8883, user `bblp`, password = the LAN access code) for reports and commands,
//! FTPS (implicit TLS, port 990) for job files.
//!
//! | file | what |
//! |---|---|
//! | `report.rs` | pure: incoming messages, reports merged into one state (P1/A1 send deltas), temperatures, progress, layer, HMS, AMS trays, Developer Mode detection |
//! | `hms.rs` | pure: HMS entries and `print_error` codes as texts, the Developer Mode hint |
//! | `commands.rs` | pure: request payloads (`pushall`, `project_file`, `gcode_file`, pause/resume/stop, `gcode_line`) with sequence ids |
//! | `job.rs` | pure: following our job through the reports (fresh news only), billing by layer |
//!
//! Protocol facts come from OpenBambuAPI (`Doridian/OpenBambuAPI` @ cc383a2) and ha-bambulab's
//! pybambu (`greghesp/ha-bambulab` @ 809391e), and from real reports captured by ha-bambulab
//! (`tests/data/bambu/`: P1P, H2D, A1 firmware 01.05.00.00, P1P 01.08.02.00, an X1C with
//! several AMS on 01.09.00.01). No real Bambu printer ran in this project's tests.
//!
//! Since 2025, firmware with Bambu's Authorization Control accepts control commands over LAN
//! only in "LAN Only Mode" with "Developer Mode" on; status reads work regardless. The back end
//! reads the `fun` bit and refused replies and tells the operator exactly that
//! ([`hms::DEVELOPER_MODE_HINT`]).

pub mod commands;
pub mod hms;
pub mod job;
pub mod report;

#[cfg(test)]
mod report_tests;

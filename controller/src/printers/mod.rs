//! Printers: the fleet's records and live state, what agents report, enrolment.
//!
//! | file | concern |
//! |---|---|
//! | [`fleet`] | printer records, live state, the printer-state rule, diffs for the stream (pure) |
//! | [`agents`] | farm writes from agents: status, presence, events (exactly once, in order), acks |
//! | [`enrol`] | the agent config printed when a printer is enrolled |
//! | [`registry`] | farm writes: registry facts an operator declares (model, tools, power, …) |
//! | [`http`] | `/api/v1/printers`: list, show, enrol, commands, bed clear, profile |

pub mod agents;
pub mod enrol;
pub mod fleet;
pub mod http;
pub mod registry;

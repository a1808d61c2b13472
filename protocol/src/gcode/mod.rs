//! G-code model shared by agent and controller.
//!
//! | module | what it does |
//! |---|---|
//! | [`lines`] | splits a byte stream into lines with bounded memory: the one set of line rules |
//! | [`line`] | splits one line into command, parameters and comment (no allocation) |
//! | [`machine`] | the printer's coordinate state: G90/G91, M82/M83, G92, tools, feed/flow; turns each line into time and filament |
//! | [`analysis`] | streams a whole file through the machine: filament per tool, time, layers, bounds |
//!
//! Filament is counted with the high-water rule (as OctoPrint and Moonraker do): a retraction
//! followed by its un-retraction costs nothing, and a final retraction is not subtracted.

pub mod analysis;
pub mod line;
pub mod lines;
pub mod machine;

pub use analysis::{Analysis, analyze};
pub use line::{Line, parse_line};
pub use lines::{Content, LineSplitter};
pub use machine::{Machine, Step};

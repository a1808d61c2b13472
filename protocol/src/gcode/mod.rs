//! G-code model shared by agent and controller.
//!
//! | module | what it does |
//! |---|---|
//! | [`lines`] | splits a byte stream into lines with bounded memory: the one set of line rules |
//! | [`line`] | splits one line into command, parameters and comment (no allocation) |
//! | [`machine`] | the printer's coordinate state: G90/G91, M82/M83, G92, tools, feed/flow; turns each line into time and filament |
//! | [`limits`] | machine motion limits (`M201`/`M203`/`M204`/`M205`, `SET_VELOCITY_LIMIT`, slicer config comments) |
//! | [`retraction`] | firmware retraction `G10`/`G11` settings (`M207`/`M208`, `SET_RETRACTION`, slicer comments) |
//! | [`heaters`] | heat-up waits: a linear model per heater, rates from the profile |
//! | [`planner`] | look-ahead motion planner: trapezoids, junction speeds, per-axis limits → real move time |
//! | [`analysis`] | streams a whole file through the machine: filament per tool, time, layers, bounds |
//! | [`metadata`] | what the slicer states: name/version, time and filament estimates, materials, temperatures, objects (streaming, bounded) |
//! | [`thumbnails`] | embedded preview images (PNG/JPG/QOI), decoded and checked, bounded |
//! | [`index`] | checkpoints over a file: exact filament consumed up to any byte offset (OctoPrint `filepos`, Moonraker `file_position`) |
//!
//! Filament is counted with the high-water rule (as OctoPrint and Moonraker do): a retraction
//! followed by its un-retraction costs nothing, and a final retraction is not subtracted.

pub mod allowances;
pub mod analysis;
mod arcs;
pub mod heaters;
pub mod index;
pub mod limits;
pub mod line;
pub mod lines;
pub mod machine;
pub mod metadata;
pub mod planner;
pub mod retraction;
pub mod thumbnails;
mod times;

pub use allowances::{Allowances, Estimator};
pub use analysis::{
    Analysis, analyze, analyze_seekable, analyze_seekable_with, analyze_with, filament_grams,
    limits_from_tail, limits_from_tail_with,
};
pub use heaters::Heating;
pub use index::{ExtrusionIndex, ExtrusionIndexBuilder};
pub use limits::{Corner, Limits};
pub use line::{Line, parse_line};
pub use lines::{Content, LineSplitter, for_each_line};
pub use machine::{Machine, Step};
pub use metadata::{Metadata, MetadataReader, parse_duration, read_metadata};
pub use retraction::Retraction;
pub use thumbnails::{Thumbnail, ThumbnailFormat};

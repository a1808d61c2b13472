//! Arbitrary bytes through the G-code analyzer, extrusion index, metadata and thumbnail
//! readers. The checks are in `../check.rs` (shared with the corpus regression test).
#![no_main]

#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check_gcode(data));

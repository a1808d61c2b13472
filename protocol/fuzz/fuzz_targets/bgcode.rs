//! Arbitrary bytes through the `.bgcode` decoder, the analyzer on its text, the extrusion
//! index by binary offset and the metadata reader. The checks are in `../check.rs`
//! (shared with the corpus regression test).
#![no_main]

// The G-code checks in the same file are the `gcode` target's.
#[allow(dead_code)]
#[path = "../check.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check_bgcode(data));

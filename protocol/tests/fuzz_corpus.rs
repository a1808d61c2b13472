//! Replays the fuzz corpora (`protocol/fuzz/corpus/gcode` and `bgcode`) through the same checks the fuzz
//! target makes (`protocol/fuzz/check.rs`), so every input the fuzzer ever found interesting —
//! and any crash it found, once added to the corpus — stays checked in the normal test suite.

#[path = "../fuzz/check.rs"]
mod check;

use std::path::Path;

/// Every input of `fuzz/corpus/<name>` (at least `min`) through `check`, without a panic.
fn replay(name: &str, min: usize, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(name);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= min,
        "corpus has only {} inputs",
        inputs.len()
    );
    for path in inputs {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "fuzz check failed on {}", path.display());
    }
}

#[test]
fn every_corpus_input_passes_the_fuzz_checks() {
    replay("gcode", 30, check::check_gcode);
}

#[test]
fn every_bgcode_corpus_input_passes_the_fuzz_checks() {
    replay("bgcode", 6, check::check_bgcode);
}

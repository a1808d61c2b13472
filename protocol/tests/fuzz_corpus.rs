//! Replays the fuzz corpora (`protocol/fuzz/corpus/gcode` and `bgcode`) through the same checks the fuzz
//! target makes (`protocol/fuzz/check.rs`), so every input the fuzzer ever found interesting —
//! and any crash it found, once added to the corpus — stays checked in the normal test suite.

#[path = "../fuzz/check.rs"]
mod check;

use std::path::Path;

#[test]
fn every_corpus_input_passes_the_fuzz_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/gcode");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    inputs.sort();
    assert!(
        inputs.len() >= 30,
        "corpus has only {} inputs",
        inputs.len()
    );
    for path in inputs {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check::check_gcode(&data));
        assert!(outcome.is_ok(), "fuzz check failed on {}", path.display());
    }
}

#[test]
fn every_bgcode_corpus_input_passes_the_fuzz_checks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/bgcode");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 6, "corpus has only {} inputs", inputs.len());
    for path in inputs {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check::check_bgcode(&data));
        assert!(outcome.is_ok(), "fuzz check failed on {}", path.display());
    }
}

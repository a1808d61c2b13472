//! Real Bambu Studio 2.x / OrcaSlicer output (issue 15): `.gcode.3mf` plates read in place and a
//! plate G-code extracted by its owner, added after the analyzer's rules were written
//! (`tests/data/slicers/MANIFEST.md`, "Set B"). Each is compared with the slicer's own total
//! estimate and filament figure. They were held out until they showed that Bambu Studio 2.x
//! charges the first filament selection (`allowances::BambuFirst`, read in Bambu Studio's source
//! history, no constant taken from these files); BENCHMARKS.md has the figures before and after.
//!
//! The time bounds below are regression guards (the error measured, plus one percentage point),
//! not targets. Run with `-- --nocapture` for the table.

mod common;

use farm_protocol::gcode::{Analysis, analyze_seekable};
use farm_protocol::threemf::ThreeMf;
use std::io::{Cursor, Read};
use std::path::PathBuf;

struct Plate {
    file: &'static str,
    /// The slicer's "total estimated time" from the G-code header, s.
    total_s: f64,
    /// The plate's `prediction` in `Metadata/slice_info.config` (3MF only), s.
    prediction_s: Option<f64>,
    /// The header's "total filament length [mm]" per used filament, with the tool it is and
    /// whether our like-for-like figure is held to 0.5 % of it (see BENCHMARKS.md for the one
    /// that is reported only).
    filament_mm: &'static [(usize, f64, bool)],
    /// |time error| measured with the current rules, %: the guard is this + 1.
    measured_err: f64,
}

const PLATES: &[Plate] = &[
    Plate {
        file: "bambustudio-02.05.00.66-p1s-single.gcode.3mf",
        total_s: 1958.0, // 32m 38s
        prediction_s: Some(1958.0),
        filament_mm: &[(2, 3387.07, true)],
        measured_err: 1.34,
    },
    Plate {
        file: "bambustudio-02.05.00.66-p1s-two-colour.gcode.3mf",
        total_s: 7745.0, // 2h 9m 5s
        prediction_s: Some(7745.0),
        filament_mm: &[(0, 7854.52, false), (3, 2915.81, true)],
        measured_err: 0.07,
    },
    Plate {
        file: "orcaslicer-2.3.1-p1s-cube.gcode.3mf",
        total_s: 686.0, // 11m 26s
        prediction_s: Some(686.0),
        filament_mm: &[],
        measured_err: 0.22,
    },
    Plate {
        file: "bambustudio-02.01.01.52-a1mini-m83.gcode.gz",
        total_s: 858.0, // 14m 18s
        prediction_s: None,
        filament_mm: &[(0, 264.76, true)],
        measured_err: 0.65,
    },
];

fn path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/slicers")
        .join(file)
}

/// The analysis of the file (plate 1 of a 3MF, read from the zip in place), for a 3MF the
/// slicer's per-plate prediction, and the G-code text.
fn analyze(file: &str) -> (Analysis, Option<f64>, Vec<u8>) {
    let bytes = std::fs::read(path(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    if file.ends_with(".3mf") {
        let mut zip = ThreeMf::open(Cursor::new(bytes)).expect("open 3MF");
        let n = zip.choose_plate(None).expect("one plate");
        let facts = zip.plate_facts(n).expect("plate facts");
        let prediction = facts.slice.and_then(|s| s.prediction_s);
        let plate = std::io::BufReader::new(zip.plate(n).expect("plate G-code"));
        let a = analyze_seekable(plate).expect("analyze");
        let mut text = vec![];
        zip.plate(n)
            .expect("plate G-code")
            .read_to_end(&mut text)
            .expect("inflate");
        (a, prediction, text)
    } else {
        let mut text = vec![];
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut text)
            .expect("gunzip");
        let a = analyze_seekable(Cursor::new(&text)).expect("analyze");
        (a, None, text)
    }
}

#[test]
fn held_out_bambu_and_orca_plates_against_the_slicers_estimates() {
    let mut errs = vec![];
    for p in PLATES {
        let (a, prediction, text) = analyze(p.file);
        assert_eq!(
            prediction, p.prediction_s,
            "{}: slice_info prediction",
            p.file
        );
        let err = (a.estimated_s - p.total_s) / p.total_s * 100.0;
        println!(
            "{:<52} slicer {:>6.0} s  ours {:>7.1} s  {:>+6.2} %  (start G-code {:.0} s)",
            p.file, p.total_s, a.estimated_s, err, a.start_s
        );
        assert!(
            err.abs() <= p.measured_err + 1.0,
            "{}: time error {err:+.2} % grew past {:.2} %",
            p.file,
            p.measured_err + 1.0
        );
        errs.push(err.abs());
        for &(tool, slicer_mm, held) in p.filament_mm {
            // Bambu Studio's processor counts the start G-code's extruding moves that move the
            // head (the prime line) but not its extruder-only purges (`G1 E50 F200`), as Orca's
            // does: compare like with like.
            let start = a.start_filament_mm.get(tool).copied().unwrap_or(0.0);
            let xy = if start > 0.0 {
                common::start_xy_extrusion(&text)
            } else {
                0.0
            };
            let ours = a.filament_mm[tool] - start + xy;
            let e = (ours - slicer_mm) / slicer_mm * 100.0;
            println!(
                "    tool {tool}: slicer {slicer_mm:.2} mm, ours {:.2} mm, compared {ours:.2} mm (start {start:.2} mm, of it head-moving {xy:.2} mm) {e:+.2} %",
                a.filament_mm[tool]
            );
            assert!(
                !held || e.abs() <= 0.5,
                "{} tool {tool}: filament {e:+.2} %",
                p.file
            );
        }
    }
    errs.sort_by(f64::total_cmp);
    let median = (errs[(errs.len() - 1) / 2] + errs[errs.len() / 2]) / 2.0;
    println!(
        "median |error| {median:.2} %, worst {:.2} % over {} files",
        errs[errs.len() - 1],
        errs.len()
    );
}

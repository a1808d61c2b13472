//! The analyzer against real slicer output (`tests/data/slicers`, see MANIFEST.md there):
//! print time against the estimators that model the firmware (PrusaSlicer family, OrcaSlicer,
//! Bambu Studio), filament against every slicer's own figure.
//!
//! Run with `-- --nocapture` to see the tables.

mod common;

use farm_protocol::gcode::{Analysis, analyze_seekable};
use std::io::Cursor;

/// Which of the slicer's time figures we compare with.
#[derive(Clone, Copy, PartialEq)]
enum Figure {
    /// The whole file: PrusaSlicer / SuperSlicer "estimated printing time (normal mode)", Orca /
    /// Bambu "total estimated time" (moves, dwells and the allowances of
    /// `farm_protocol::gcode::allowances`: filament changes, levelling; heat-up is not modelled
    /// by these slicers). Orca / Bambu's "model printing time" leaves out the start G-code.
    Total,
}

struct Fixture {
    name: &'static str,
    /// Slicer's time, s, and whether its estimator models acceleration (asserted) or not
    /// (reported only).
    time: Option<(f64, Figure, bool)>,
    /// PrusaSlicer's "estimated first layer printing time (normal mode)", s: start G-code
    /// included (it matches `start_s + layer_times_s[0]`, our `first_layer_s`).
    first_layer_s: Option<f64>,
    /// Filament per tool, mm, as the slicer states it (empty: not given).
    filament_mm: &'static [f64],
    /// Grams stated by the slicer with the density (g/cm³) and diameter it used.
    grams: Option<(f64, f64, f64)>,
    /// How the slicer's filament figure relates to what the printer consumes (see [`Counts`]).
    counts: Counts,
}

/// What a slicer's "filament used" covers, so that we compare like with like. Our own total is
/// always everything the printer pushes (start G-code included, `M221` applied).
#[derive(Clone, Copy)]
struct Counts {
    /// The figure includes the start G-code's purge/prime lines: PrusaSlicer (2.4+) and
    /// SuperSlicer compute it with their G-code processor over the whole output. Cura, Orca,
    /// Bambu, Slic3r 1.x and legacy Cura count only the sliced paths.
    start_gcode: bool,
    /// The file sets a flow override (`M221`) the slicer does not apply to its figure.
    flow: f64,
    /// Start-G-code extrusion on T0 that our layer detection cannot separate (no layer
    /// comments, purge at first-layer height), mm, read from the file by hand.
    unmarked_start_mm: f64,
    /// The figure counts the start G-code's extruding moves that move the head, but not its
    /// extruder-only primes (OrcaSlicer's G-code processor); computed by [`common::start_xy_extrusion`].
    start_xy_moves: bool,
}

const ALL: Counts = Counts {
    start_gcode: true,
    flow: 1.0,
    unmarked_start_mm: 0.0,
    start_xy_moves: false,
};
const PATHS: Counts = Counts {
    start_gcode: false,
    ..ALL
};

const FIXTURES: &[Fixture] = &[
    Fixture {
        name: "prusaslicer-2.6.1-benchy-m83",
        time: Some((2323.0, Figure::Total, true)),
        first_layer_s: Some(52.0),
        filament_mm: &[4282.06],
        grams: Some((12.77, 1.24, 1.75)),
        counts: Counts {
            // The start G-code ends with `M221 S95 ; set flow to compensate for slic3r
            // overextruding?`: the printer pushes 95 % of the E the slicer counts after it.
            flow: 0.95,
            ..ALL
        },
    },
    Fixture {
        name: "prusaslicer-2.8.1-mini-cube-m83",
        time: Some((221.0, Figure::Total, true)),
        first_layer_s: Some(20.0),
        filament_mm: &[252.22],
        grams: Some((0.75, 1.24, 1.75)),
        counts: ALL,
    },
    Fixture {
        name: "prusaslicer-2.9.2-xyz-cube-m82",
        time: Some((1120.0, Figure::Total, true)),
        first_layer_s: Some(80.0),
        filament_mm: &[1389.54],
        grams: None, // density 0 in the file: the slicer gave no weight
        counts: ALL,
    },
    // Held out: added after the analyzer was tuned (issue 15), not used to build it.
    Fixture {
        name: "prusaslicer-2.7.4-plant-sign-ender3v2-m83",
        time: Some((1634.0, Figure::Total, true)),
        first_layer_s: Some(405.0),
        filament_mm: &[1645.00],
        grams: Some((4.91, 1.24, 1.75)),
        counts: ALL,
    },
    Fixture {
        name: "prusaslicer-2.7.4-screw-ender3v2-m83",
        time: Some((1863.0, Figure::Total, true)),
        first_layer_s: Some(108.0),
        filament_mm: &[1706.22],
        grams: Some((5.09, 1.24, 1.75)),
        counts: ALL,
    },
    Fixture {
        name: "prusaslicer-2.7.4-vase-ender3v2-m83",
        time: Some((4000.0, Figure::Total, true)),
        first_layer_s: Some(276.0),
        filament_mm: &[2996.07],
        grams: Some((8.94, 1.24, 1.75)),
        counts: ALL,
    },
    Fixture {
        name: "superslicer-2.3.55-benchy-klipper-m83",
        time: Some((678.0, Figure::Total, true)),
        first_layer_s: None,
        filament_mm: &[3517.22],
        grams: Some((10.49, 1.24, 1.75)),
        counts: ALL,
    },
    Fixture {
        name: "orcaslicer-2.3.1-gridfinity-m83",
        // Total estimated time 2h 5m 25s (model printing time 7141 s).
        time: Some((7525.0, Figure::Total, true)),
        first_layer_s: None,
        filament_mm: &[4757.68],
        grams: None,
        counts: Counts {
            // 8 + 10 mm calibration lines (`G0 X128 E8`, …) in the start G-code are counted,
            // the 50 mm primes (`G1 E50`) are not.
            start_xy_moves: true,
            ..PATHS
        },
    },
    Fixture {
        name: "bambustudio-01.08.04-eline-4filament-m83",
        // Total estimated time 1h 6m 2s (model printing time 3601 s): 3 AMS changes, G29.
        time: Some((3962.0, Figure::Total, true)),
        first_layer_s: None,
        filament_mm: &[],
        grams: None,
        counts: PATHS,
    },
    Fixture {
        name: "cura-5.9.0-benchy-ender3-m82",
        time: Some((1958.0, Figure::Total, false)),
        first_layer_s: None,
        filament_mm: &[992.736],
        grams: None,
        counts: PATHS,
    },
    Fixture {
        name: "cura-4.11.0-benchy-ender3-m82",
        time: Some((5462.0, Figure::Total, false)),
        first_layer_s: None,
        filament_mm: &[4092.64],
        grams: None,
        counts: PATHS,
    },
    Fixture {
        name: "cura-2.3.1-puzzle-m82",
        time: Some((3485.0, Figure::Total, false)),
        first_layer_s: None,
        filament_mm: &[],
        grams: None,
        counts: PATHS,
    },
    Fixture {
        name: "simplify3d-3.1.1-xyz-cube-m82",
        time: Some((1560.0, Figure::Total, false)),
        first_layer_s: None,
        filament_mm: &[1656.3],
        grams: Some((4.98, 1.25, 1.75)),
        counts: PATHS,
    },
    Fixture {
        name: "ideamaker-4.2.2-benchy-absolute-e",
        time: Some((1283.0, Figure::Total, false)),
        // Absolute E without M82: the machine's default (absolute) applies. Tool 2 unused.
        first_layer_s: None,
        filament_mm: &[3479.8],
        grams: None,
        counts: PATHS,
    },
    Fixture {
        name: "slic3r-1.2.9-benchy-4extruder-m83",
        time: None,
        first_layer_s: None,
        filament_mm: &[3487.6, 318.6, 315.1, 859.7],
        grams: None,
        counts: Counts {
            // Lines 37-38, `G1 X60.0 E9.0` and `G1 X100.0 E12.5 ; intro line`: at first-layer
            // height, and Slic3r 1.2.9 writes no layer comments.
            unmarked_start_mm: 21.5,
            ..PATHS
        },
    },
    Fixture {
        name: "cura-legacy-15.x-cable-chain-ends-absolute-e",
        time: Some((1980.0, Figure::Total, false)),
        first_layer_s: None,
        filament_mm: &[2880.0],
        // 8.0 g is stated but not the density it used (1.24 would give 8.6 g): not checked.
        grams: None,
        counts: PATHS,
    },
    Fixture {
        name: "slic3r-1.2.9-cube-3mm-filament-m82",
        time: None,
        first_layer_s: None,
        filament_mm: &[679.0],
        grams: None,
        counts: PATHS,
    },
];

fn load(name: &str) -> Vec<u8> {
    common::slicer_fixture(name)
}

fn analyze_fixture(name: &str) -> Analysis {
    analyze_seekable(Cursor::new(load(name))).expect("analyze")
}

/// Our figure comparable with the slicer's.
fn ours(a: &Analysis, f: Figure) -> f64 {
    match f {
        Figure::Total => a.estimated_s,
    }
}

#[test]
fn print_time_matches_firmware_modelling_estimators() {
    let mut errors = vec![];
    println!(
        "{:<46} {:>9} {:>9} {:>7} {:>9} {:>7} {:>8}",
        "file", "slicer s", "ours s", "err %", "naive s", "err %", "1st lay"
    );
    for fx in FIXTURES {
        let Some((slicer, figure, asserted)) = fx.time else {
            continue;
        };
        let a = analyze_fixture(fx.name);
        let ours = ours(&a, figure);
        let err = (ours - slicer) / slicer * 100.0;
        // The same file without acceleration (what the analyzer did before the planner).
        let naive = naive_time(fx.name, figure);
        let naive_err = (naive - slicer) / slicer * 100.0;
        println!(
            "{:<46} {:>9.0} {:>9.0} {:>+7.2} {:>9.0} {:>+7.2} {:>8.1}{}",
            fx.name,
            slicer,
            ours,
            err,
            naive,
            naive_err,
            a.first_layer_s,
            if asserted { "" } else { "  (report only)" }
        );
        println!(
            "    total {:.0} s, start G-code {:.1} s, heat-up {:.0} s, {} layers",
            a.estimated_s,
            a.start_s,
            a.heat_s,
            a.layer_times_s.len()
        );
        if let Some(first) = fx.first_layer_s {
            let e = (a.first_layer_s - first).abs();
            println!(
                "    first layer: slicer {first:.0} s, ours {:.1} s",
                a.first_layer_s
            );
            assert!(
                e <= (first * 0.05).max(1.0),
                "{}: first layer {:.1} s vs {first} s",
                fx.name,
                a.first_layer_s
            );
        }
        let parts = a.start_s + a.layer_times_s.iter().sum::<f64>();
        assert!(
            (parts - a.estimated_s).abs() < 1e-6 * a.estimated_s,
            "{}: layers do not add up",
            fx.name
        );
        if asserted {
            errors.push((fx.name, err.abs()));
        }
    }
    let mut abs: Vec<f64> = errors.iter().map(|e| e.1).collect();
    abs.sort_by(f64::total_cmp);
    let median = (abs[(abs.len() - 1) / 2] + abs[abs.len() / 2]) / 2.0;
    let worst = abs[abs.len() - 1];
    println!(
        "median |error| {median:.2} %, worst {worst:.2} % over {} files",
        abs.len()
    );
    // The issue asks for ≤ 3 % / ≤ 8 %; what the planner achieves (0.40 % / 0.54 % when
    // written) is held with some margin. distance / feed alone is 5-65 % off on these files.
    assert!(median <= 1.0, "median {median:.2} % > 1 %: {errors:?}");
    assert!(worst <= 1.5, "worst {worst:.2} % > 1.5 %: {errors:?}");
}

/// distance / feed for comparison: the planner with (practically) unlimited acceleration.
fn naive_time(name: &str, figure: Figure) -> f64 {
    use farm_protocol::gcode::{Corner, Limits, analyze_with};
    let inf = Limits {
        max_accel: [1e12; 4],
        max_feed: [1e12; 4],
        print_accel: 1e12,
        retract_accel: 1e12,
        travel_accel: 1e12,
        corner: Corner::Deviation(1e6),
        ..Limits::default()
    };
    // The file's M201/M204 would bring acceleration back: strip them.
    let text = load(name);
    let filtered: Vec<u8> = text
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| {
            !(l.starts_with(b"M20") && l.len() > 4 && matches!(l[3], b'1' | b'3' | b'4' | b'5'))
        })
        .flatten()
        .copied()
        .collect();
    let a = analyze_with(&filtered[..], inf).expect("analyze");
    ours(&a, figure)
}

#[test]
fn filament_matches_every_slicer_within_half_a_percent() {
    println!(
        "{:<46} {:>10} {:>10} {:>8} {:>10} {:>8}",
        "file / tool", "slicer mm", "ours mm", "start mm", "compared", "err %"
    );
    let mut failures = vec![];
    for fx in FIXTURES {
        if fx.filament_mm.is_empty() {
            continue;
        }
        let a = analyze_fixture(fx.name);
        for (t, &want) in fx.filament_mm.iter().enumerate() {
            let total = a.filament_mm.get(t).copied().unwrap_or(0.0);
            let start = a.start_filament_mm.get(t).copied().unwrap_or(0.0);
            let c = fx.counts;
            let mut got = total;
            if !c.start_gcode {
                got -= start;
                if t == 0 {
                    got -= c.unmarked_start_mm;
                    if c.start_xy_moves {
                        got += common::start_xy_extrusion(&load(fx.name));
                    }
                }
            }
            // The flow override comes at the end of the start G-code (after the purge).
            got = if c.start_gcode {
                start + (got - start) / c.flow
            } else {
                got / c.flow
            };
            let err = (got - want) / want * 100.0;
            println!(
                "{:<46} {want:>10.2} {total:>10.2} {start:>8.2} {got:>10.2} {err:>+8.3}",
                format!("{} T{t}", fx.name)
            );
            // The slicer rounds to 0.01 mm (0.1 mm for S3D and ideaMaker).
            if (got - want).abs() > (want * 0.005).max(0.05) {
                failures.push(format!(
                    "{} T{t}: {got:.2} vs {want:.2} ({err:+.3} %)",
                    fx.name
                ));
            }
        }
        // No phantom tools beyond those the slicer lists (ideaMaker's unused tool 2 is 0 mm).
        for (t, &got) in a.filament_mm.iter().enumerate().skip(fx.filament_mm.len()) {
            assert!(
                got < 0.05,
                "{} T{t}: {got} mm on a tool the slicer does not list",
                fx.name
            );
        }
        if let Some((grams, density, dia)) = fx.grams {
            // The slicer's grams follow its own length; ours are what we compared above.
            let (total, start) = (
                a.filament_mm.iter().sum::<f64>(),
                a.start_filament_mm.iter().sum::<f64>(),
            );
            let mm = if fx.counts.start_gcode {
                start + (total - start) / fx.counts.flow
            } else {
                (total - start) / fx.counts.flow
            };
            let g = mm * std::f64::consts::PI * (dia / 2.0f64).powi(2) / 1000.0 * density;
            let err = (g - grams) / grams * 100.0;
            println!(
                "{:<46} {grams:>10.2} {:>10} {:>8} {g:>10.3} {err:>+8.3}",
                format!("{} grams", fx.name),
                "",
                ""
            );
            // Grams are printed with 2 decimals: allow half a unit of that rounding.
            if (g - grams).abs() > (grams * 0.005).max(0.005) {
                failures.push(format!("{} grams: {g:.3} vs {grams}", fx.name));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Throughput of the analyzer (planner included), single core. Run in release:
/// `cargo test --release -p farm-protocol --test slicers -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run in release"]
fn throughput() {
    for name in [
        "bambustudio-01.08.04-eline-4filament-m83",
        "prusaslicer-2.6.1-benchy-m83",
        "cura-4.11.0-benchy-ender3-m82",
    ] {
        let data = load(name);
        let rounds = 10;
        let t = std::time::Instant::now();
        let mut s = 0.0;
        for _ in 0..rounds {
            s += farm_protocol::gcode::analyze(&data[..])
                .expect("analyze")
                .estimated_s;
        }
        let secs = t.elapsed().as_secs_f64();
        let mbs = (data.len() * rounds) as f64 / secs / 1e6;
        println!(
            "{name}: {:.1} MB, {mbs:.0} MB/s ({:.0} s planned)",
            data.len() as f64 / 1e6,
            s / rounds as f64
        );
    }
}

//! Unit tests of the back end's helpers.

use super::super::billing::{consumed, remaining};
use super::super::commands::special;
use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/moonraker")
        .join(name)
}

#[test]
fn the_line_in_flight_is_billed_as_klipper_counts_it() {
    let path = fixture("fixture-long.gcode");
    let f = std::fs::File::open(&path).expect("fixture");
    let index = ExtrusionIndex::build(std::io::BufReader::new(f), 64 * 1024).expect("index");
    // (position Klipper reported while printing, its own filament_used at that poll)
    for (pos, klipper) in [(154, 4.0), (178, 5.0), (225, 7.0), (295, 10.0)] {
        let mut w = JobWatch::new("fixture-long.gcode", index.bytes);
        w.max_pos = pos;
        w.reading = true;
        let mm = consumed(&index, &path, &w, &[]);
        assert!(
            (mm[0] - klipper).abs() < 1e-9,
            "at {pos}: {mm:?} vs {klipper}"
        );
        // Paused: the reader finished its line; the position is exact.
        w.reading = false;
        let exact = consumed(&index, &path, &w, &[]);
        assert!(
            (exact[0] - (klipper - 1.0)).abs() < 1e-9,
            "at {pos}: {exact:?}"
        );
    }
    // Never below what was already reported.
    let w = JobWatch::new("fixture-long.gcode", index.bytes);
    assert_eq!(consumed(&index, &path, &w, &[3.0]), vec![3.0]);
}

#[test]
fn the_eta_is_the_planned_time_left_from_klippers_position() {
    let path = fixture("fixture-long.gcode");
    let f = std::fs::File::open(&path).expect("fixture");
    let index = ExtrusionIndex::build_seekable(
        std::io::BufReader::new(f),
        farm_protocol::gcode::Limits::default(),
        64 * 1024,
    )
    .expect("index");
    let all = remaining(&index, &path, 0).expect("readable");
    assert_eq!(all, index.total_s);
    assert!(all > 0.0);
    let mut last = all;
    for pos in [154, 178, 225, 295] {
        let left = remaining(&index, &path, pos).expect("readable");
        assert!(left < last, "at {pos}: {left} after {last}");
        last = left;
    }
    assert_eq!(remaining(&index, &path, index.bytes), Some(0.0));
    assert_eq!(
        remaining(&index, Path::new("/nonexistent/job.gcode"), 10),
        None
    );
}

#[test]
fn recovery_and_stop_commands_bypass_the_gcode_queue() {
    let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        special(&l(&["M999"])).ok().flatten().map(|s| s.0),
        Some("printer.firmware_restart")
    );
    assert_eq!(
        special(&l(&["firmware_restart"]))
            .ok()
            .flatten()
            .map(|s| s.0),
        Some("printer.firmware_restart")
    );
    assert_eq!(
        special(&l(&["M112"])).ok().flatten().map(|s| s.0),
        Some("printer.emergency_stop")
    );
    assert_eq!(special(&l(&["G28", "M104 S200"])), Ok(None));
    assert!(special(&l(&["G28", "M112"])).is_err());
}

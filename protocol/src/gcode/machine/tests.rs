//! Unit tests of the machine state (`machine.rs`).
use super::*;
use crate::gcode::parse_line;

fn run(lines: &[&str]) -> Machine {
    let mut m = Machine::default();
    for l in lines {
        m.step(&parse_line(l.as_bytes()));
    }
    m
}

#[test]
fn absolute_extrusion_with_retract_pairs_costs_nothing_extra() {
    let m = run(&[
        "M82",
        "G92 E0",
        "G1 X10 E5",
        "G1 E4",
        "G1 E5",
        "G1 X20 E10",
        "G1 E9",
    ]);
    assert!(
        (m.consumed_mm()[0] - 10.0).abs() < 1e-9,
        "{:?}",
        m.consumed_mm()
    );
}

#[test]
fn relative_extrusion_and_g92_resets() {
    let m = run(&[
        "M83", "G1 X1 E2", "G1 E-1", "G1 E1", "G1 X2 E3", "G92 E0", "G1 X3 E1",
    ]);
    assert!((m.consumed_mm()[0] - 6.0).abs() < 1e-9);
    let a = run(&["M82", "G1 X1 E10", "G92 E0", "G1 X2 E5"]);
    assert!((a.consumed_mm()[0] - 15.0).abs() < 1e-9);
}

#[test]
fn g91_makes_e_relative_and_tools_count_separately() {
    let m = run(&[
        "M82", "G91", "G1 X1 E2", "G1 X1 E2", "G90", "T1", "G92 E0", "G1 X5 E3",
    ]);
    assert_eq!(m.consumed_mm(), vec![4.0, 3.0]);
}

#[test]
fn flow_override_scales_physical_filament() {
    let m = run(&["M83", "M221 S50", "G1 X1 E10"]);
    assert!((m.consumed_mm()[0] - 5.0).abs() < 1e-9);
}

/// Limits without acceleration effects: time is distance / feed again.
fn instant() -> Limits {
    Limits {
        max_accel: [1e12; 4],
        print_accel: 1e12,
        travel_accel: 1e12,
        retract_accel: 1e12,
        ..Limits::default()
    }
}

#[test]
fn move_time_is_planned_and_flushed() {
    let mut m = Machine::new(instant());
    let s = m.step(&parse_line(b"G1 X30 F1800"));
    // Held for look-ahead; a dwell stops the machine, so the move is final then.
    assert_eq!(s.duration_s, 0.0);
    let d = m.step(&parse_line(b"G4 P500"));
    assert!((d.duration_s - 1.5).abs() < 1e-6, "{}", d.duration_s);
    m.step(&parse_line(b"G1 X60"));
    assert!((m.finish() - 1.0).abs() < 1e-6);
    assert_eq!(m.finish(), 0.0);
    assert!((m.elapsed_s() - 2.5).abs() < 1e-6);
    // With acceleration the same move takes longer.
    let mut a = Machine::default();
    a.step(&parse_line(b"G1 X30 F1800"));
    assert!(a.finish() > 1.02);
}

#[test]
fn arcs_have_their_real_length() {
    let mut m = Machine::new(instant());
    m.step(&parse_line(b"G1 X10 Y0 F600"));
    let before = m.finish();
    assert!((before - 1.0).abs() < 1e-6);
    // Half circle of radius 10 around the origin, counter-clockwise.
    m.step(&parse_line(b"G3 X-10 Y0 I-10 J0"));
    let s = m.finish();
    assert!((s - std::f64::consts::PI * 10.0 / 10.0).abs() < 1e-6, "{s}");
}

#[test]
fn layer_times_heat_and_limits_from_the_file() {
    let g = [
        "M140 S60",
        "M104 S200",
        "M190 S60",
        "M109 S200",
        "G1 Z0.2 F600",
        ";LAYER_CHANGE",
        "G1 X10 Y10 E1 F1200",
        ";LAYER_CHANGE",
        "G1 Z0.4",
        "G1 X0 Y0 E2",
        "G1 X10 Y0 E2",
    ];
    let mut m = Machine::default();
    let mut sum = 0.0;
    for l in g {
        sum += m.step(&parse_line(l.as_bytes())).duration_s;
    }
    sum += m.finish();
    assert_eq!(m.layer_times_s().len(), 2);
    let layers: f64 = m.layer_times_s().iter().sum();
    assert!((layers + m.start_s() - sum).abs() < 1e-9);
    assert!((m.elapsed_s() - sum).abs() < 1e-9);
    assert!(m.start_s() > 0.0 && m.layer_times_s()[1] > m.layer_times_s()[0]);
    // Bed 25 → 60 °C at 0.4 °C/s; the hotend heated meanwhile and is done.
    assert!((m.heat_s() - 35.0 / 0.4).abs() < 1e-6, "{}", m.heat_s());

    let mut k = Machine::default();
    k.step(&parse_line(
        b"SET_VELOCITY_LIMIT ACCEL=7000 SQUARE_CORNER_VELOCITY=5",
    ));
    k.step(&parse_line(b"; machine_max_acceleration_x = 100"));
    assert_eq!(k.limits().print_accel, 7000.0);
    assert_eq!(
        k.limits().max_accel[0],
        7000.0,
        "comments do not undo commands"
    );
}

#[test]
fn layers_and_bounds_follow_extruding_moves() {
    let m = run(&[
        "G1 Z0.2",
        "G1 X10 Y10 E1",
        "G1 Z0.4",
        "G1 X0 Y0",
        "G1 X20 Y5 E2",
        "G1 Z10 X100",
    ]);
    assert_eq!(m.layers(), 2);
    let b = m.bounds().expect("bounds");
    assert_eq!(b.max[0], 20.0);
    assert_eq!(b.max[2], 0.4);
}

#[test]
fn heaters() {
    let mut m = Machine::default();
    let s = m.step(&parse_line(b"M109 S215"));
    assert_eq!(
        s.heat,
        Some(Heat::Tool {
            tool: 0,
            target: 215.0,
            wait: true
        })
    );
    let b = m.step(&parse_line(b"M140 S60"));
    assert_eq!(
        b.heat,
        Some(Heat::Bed {
            target: 60.0,
            wait: false
        })
    );
}

#[test]
fn firmware_retraction_costs_time_and_only_its_extra_in_filament() {
    // A G10/G11 pair: no filament under the high-water rule, but two E moves of time.
    let plain = ["M83", "G1 X10 E5 F1200", "G1 X20 F6000", "G1 X30 E5 F1200"];
    let fw = [
        "M83",
        "G1 X10 E5 F1200",
        "G10",
        "G10",
        "G1 X20 F6000",
        "G11",
        "G11",
        "G1 X30 E5 F1200",
    ];
    let time = |lines: &[&str], limits: Limits| {
        let mut m = Machine::new(limits);
        for l in lines {
            m.step(&parse_line(l.as_bytes()));
        }
        m.finish();
        (m.elapsed_s(), m.consumed_mm()[0])
    };
    let (t0, f0) = time(&plain, instant());
    let (t1, f1) = time(&fw, instant());
    assert_eq!((f0, f1), (10.0, 10.0));
    // Marlin defaults: 3 mm at 45 mm/s out, 3 mm at 8 mm/s back (a second G10/G11 is ignored).
    let want = 3.0 / 45.0 + 3.0 / 8.0;
    assert!((t1 - t0 - want).abs() < 1e-9, "{} vs {want}", t1 - t0);

    // M207/M208 in the file: length, speeds, and an extra that is consumed.
    let mut with_cmds = vec!["M207 S1 F600", "M208 S0.5 F300"];
    with_cmds.extend_from_slice(&fw);
    let (t2, f2) = time(&with_cmds, instant());
    assert_eq!(f2, 10.5);
    let want = 1.0 / 10.0 + 1.5 / 5.0;
    assert!((t2 - t0 - want).abs() < 1e-9, "{} vs {want}", t2 - t0);

    // The profile's settings (Limits) apply when the file has no M207; the slicer's comment
    // applies unless a command came first; RepRapFirmware's `G10 P0 S200` is not a retraction.
    let profile = Limits {
        retraction: crate::gcode::Retraction {
            length_mm: 2.0,
            speed_mm_s: 20.0,
            recover_speed_mm_s: 20.0,
            ..Default::default()
        },
        ..instant()
    };
    let (t3, _) = time(&fw, profile);
    assert!((t3 - t0 - 0.2).abs() < 1e-9, "{}", t3 - t0);
    let mut commented = vec!["; retract_length = 4", "G10 P0 S200 R180"];
    commented.extend_from_slice(&fw);
    let (t4, f4) = time(&commented, profile);
    assert!((t4 - t0 - 0.4).abs() < 1e-9, "{}", t4 - t0);
    assert_eq!(f4, 10.0);
}

#[test]
fn heat_up_rates_come_from_the_limits() {
    let waits = |heating: crate::gcode::Heating| {
        let mut m = Machine::new(Limits {
            heating,
            ..Limits::default()
        });
        m.step(&parse_line(b"M190 S65"));
        m.step(&parse_line(b"M109 S225"));
        m.heat_s()
    };
    let default = crate::gcode::Heating::default();
    // Bed 25 → 65 at 0.4 °C/s = 100 s; meanwhile the hotend stayed off, 25 → 225 at 2 = 100 s.
    assert!((waits(default) - 200.0).abs() < 1e-9);
    let fast = crate::gcode::Heating {
        tool_up: 4.0,
        bed_up: 1.0,
        ..default
    };
    assert!((waits(fast) - 90.0).abs() < 1e-9, "{}", waits(fast));
}

//! Test helper: a small but realistic G-code file (heat-up, layers, retractions, two tools).

/// `layers` layers of a 40 mm square; each layer is about 3.3 s of machine time.
pub fn sample(layers: u32) -> String {
    let mut g = String::from(
        "; generated test print\nM140 S60\nM104 S210\nM190 S60\nM109 S210\nG21\nG90\nM83\nG28\nG92 E0\n",
    );
    for l in 1..=layers {
        let z = 0.2 * f64::from(l);
        g.push_str(&format!("G1 Z{z:.2} F600\n"));
        if l == layers / 2 {
            // A tool change half way, so two tools report material.
            g.push_str("T1\nM109 S215\n");
        }
        for (x, y) in [(40.0, 0.0), (40.0, 40.0), (0.0, 40.0), (0.0, 0.0)] {
            g.push_str(&format!("G1 X{x:.1} Y{y:.1} E1.6632 F3000\n"));
        }
        // Retract and un-retract: costs nothing under the high-water rule.
        g.push_str("G1 E-0.8 F2400\nG1 E0.8 F2400\n");
    }
    g.push_str("M104 S0\nM140 S0\nG1 E-1 F2400\n; end\n");
    g
}

//! ETA accuracy from learning: replays a synthetic history of prints and compares the error of
//! the analyzer's raw estimate with the estimate corrected by `learning::Corrections`.
//!
//! `cargo run --release -p farm-controller --example eta_replay`
//! 20 printers, each with its own true speed (0.8×–1.5× the estimate) and a slowdown for
//! PETG/TPU; every print's real duration carries ±10 % noise. Each print's prediction is made
//! before its outcome is learnt (no peeking).

use farm_controller::jobs::learning::Corrections;

fn main() {
    let mut rng = Lcg(42);
    let printers: Vec<(String, f64)> = (0..20)
        .map(|i| (format!("p-{i}"), 0.8 + 0.7 * rng.next()))
        .collect();
    let materials = [("PLA", 1.0), ("PETG", 1.15), ("TPU", 1.6), ("ABS", 1.05)];
    let mut c = Corrections::default();
    let (mut raw_err, mut learnt_err, mut n) = (0.0, 0.0, 0u32);
    let (mut raw_late, mut learnt_late) = (0.0, 0.0);
    let total = 5000;
    for k in 0..total {
        let (p, speed) = &printers[(rng.next() * printers.len() as f64) as usize % printers.len()];
        let (m, slow) = materials[(rng.next() * 4.0) as usize % 4];
        let estimate = 600.0 + rng.next() * 20_000.0;
        let actual = estimate * speed * slow * (0.9 + 0.2 * rng.next());
        let predicted = estimate * c.factor(p, m);
        let e_raw = (estimate - actual).abs() / actual;
        let e_learnt = (predicted - actual).abs() / actual;
        raw_err += e_raw;
        learnt_err += e_learnt;
        n += 1;
        if k >= total / 2 {
            raw_late += e_raw;
            learnt_late += e_learnt;
        }
        c.observe(p, m, estimate, actual);
    }
    let half = f64::from(total / 2);
    println!(
        "ETA mean absolute error over {n} replayed prints: analyzer estimate {:.1} %, learnt correction {:.1} % (second half: {:.1} % vs {:.1} %)",
        100.0 * raw_err / f64::from(n),
        100.0 * learnt_err / f64::from(n),
        100.0 * raw_late / half,
        100.0 * learnt_late / half,
    );
}

/// A small deterministic generator, so the figure is reproducible.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

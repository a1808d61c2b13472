//! Learning print times from history (pure).
//!
//! The analyzer's estimate is a model of the firmware's motion planner; a real printer is
//! slower or faster (its own limits, the slicer's assumptions, a material printed slowly). For
//! every finished print we know `actual / estimate`; [`Corrections`] keeps an exponentially
//! weighted moving average of that ratio per (printer, material), per printer and per
//! material, and [`Corrections::factor`] picks the most specific one that has seen work. The
//! scheduler multiplies estimates by it for the timeline and the ETAs it promises.

use std::borrow::Cow;
use std::collections::HashMap;

/// Weight of the newest observation.
pub const ALPHA: f64 = 0.3;
/// Ratios outside this range are not learnt from (a paused print, a clock jump, a bad file).
pub const RATIO_RANGE: (f64, f64) = (0.2, 5.0);

#[derive(Debug, Clone, Copy, PartialEq)]
struct Ewma {
    value: f64,
    n: u32,
}

impl Ewma {
    fn add(slot: &mut Option<Ewma>, ratio: f64) {
        *slot = Some(match *slot {
            None => Ewma { value: ratio, n: 1 },
            Some(e) => Ewma {
                value: e.value + ALPHA * (ratio - e.value),
                n: e.n.saturating_add(1),
            },
        });
    }
}

/// Learnt time corrections (1.0 where nothing is known).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Corrections {
    /// Printer → material → ratio: nested, so a lookup borrows its keys (the scheduler looks
    /// one up for every job it places).
    by_printer_material: HashMap<String, HashMap<String, Ewma>>,
    by_printer: HashMap<String, Ewma>,
    by_material: HashMap<String, Ewma>,
}

/// A material's key: trimmed and lower case, borrowed when it already is.
fn key(material: &str) -> Cow<'_, str> {
    let t = material.trim();
    if t.chars().any(char::is_uppercase) {
        Cow::Owned(t.to_lowercase())
    } else {
        Cow::Borrowed(t)
    }
}

impl Corrections {
    /// Learns from one finished print. Returns false when the observation was ignored.
    pub fn observe(
        &mut self,
        printer: &str,
        material: &str,
        estimate_s: f64,
        actual_s: f64,
    ) -> bool {
        if !(estimate_s > 1.0 && actual_s.is_finite()) {
            return false;
        }
        let ratio = actual_s / estimate_s;
        if !(RATIO_RANGE.0..=RATIO_RANGE.1).contains(&ratio) {
            return false;
        }
        let m = key(material);
        let mut slot = self.by_printer.get(printer).copied();
        Ewma::add(&mut slot, ratio);
        self.by_printer.insert(
            printer.to_string(),
            slot.unwrap_or(Ewma { value: 1.0, n: 0 }),
        );
        if !m.is_empty() {
            let materials = self
                .by_printer_material
                .entry(printer.to_string())
                .or_default();
            let mut slot = materials.get(&*m).copied();
            Ewma::add(&mut slot, ratio);
            if let Some(s) = slot {
                materials.insert(m.to_string(), s);
            }
            let mut slot = self.by_material.get(&*m).copied();
            Ewma::add(&mut slot, ratio);
            if let Some(s) = slot {
                self.by_material.insert(m.into_owned(), s);
            }
        }
        true
    }

    /// Multiplier for the analyzer's estimate of a print of `material` on `printer`.
    pub fn factor(&self, printer: &str, material: &str) -> f64 {
        if self.by_printer.is_empty() {
            return 1.0;
        }
        let m = key(material);
        if !m.is_empty()
            && let Some(e) = self
                .by_printer_material
                .get(printer)
                .and_then(|by_material| by_material.get(&*m))
        {
            return e.value;
        }
        if let Some(e) = self.by_printer.get(printer) {
            return e.value;
        }
        if let Some(e) = self.by_material.get(&*m) {
            return e.value;
        }
        1.0
    }

    /// How many prints taught `printer` (for the API).
    pub fn observations(&self, printer: &str) -> u32 {
        self.by_printer.get(printer).map_or(0, |e| e.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_learnt_means_the_estimate_stands() {
        assert_eq!(Corrections::default().factor("p", "PLA"), 1.0);
    }

    #[test]
    fn converges_on_the_printers_real_speed_and_prefers_the_specific_figure() {
        let mut c = Corrections::default();
        for _ in 0..30 {
            assert!(c.observe("slow", "PLA", 1000.0, 1500.0));
            assert!(c.observe("slow", "PETG", 1000.0, 2000.0));
        }
        assert!((c.factor("slow", "pla") - 1.5).abs() < 1e-3);
        assert!((c.factor("slow", "PETG") - 2.0).abs() < 1e-3);
        // A material this printer never printed: the printer-wide figure.
        let f = c.factor("slow", "ASA");
        assert!((1.5..=2.0).contains(&f), "{f}");
        // A printer with no history: what the material does elsewhere.
        assert!((c.factor("new", "PETG") - 2.0).abs() < 1e-3);
        assert_eq!(c.observations("slow"), 60);
    }

    #[test]
    fn absurd_observations_are_ignored() {
        let mut c = Corrections::default();
        assert!(!c.observe("p", "PLA", 1000.0, 100_000.0));
        assert!(!c.observe("p", "PLA", 0.0, 10.0));
        assert!(!c.observe("p", "PLA", 1000.0, f64::NAN));
        assert_eq!(c.factor("p", "PLA"), 1.0);
    }
}

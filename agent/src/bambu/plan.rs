//! The job file's plan as the Bambu back end needs it: filament per tool when each layer
//! begins (billing by layer, see [`super::job`]), the analyzer's totals, and the planned time
//! when each layer begins (the time left when the printer reports none). Read once at the
//! start, on a blocking thread: of the file, or of one plate of a `.gcode.3mf` read in place.
//!
//! The analysis starts from the printer model's limits and allowances (`[printer.bambu]
//! model`, a profile of `firmware-profiles/printers/`), as the serial back end starts from its
//! firmware profile; the slicer's configuration in the file and its commands still win.

use farm_protocol::gcode::{Limits, analyze_with, layer_starts_mm, limits_from_tail_with};
use farm_protocol::threemf::{ThreeMf, ThreeMfError};
use std::io::{BufRead, BufReader, Seek};
use std::path::Path;

/// What the analyzer makes of the G-code the printer will run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobPlan {
    /// Filament per tool when each layer begins, mm (element `k`: layer `k + 1`).
    pub layer_starts: Vec<Vec<f64>>,
    /// The whole file's filament per tool, mm.
    pub total: Vec<f64>,
    /// Bytes of G-code (the plate's, for a 3MF).
    pub size: u64,
    /// The analyzer's planned time, s (heat-up not included).
    pub estimated_s: f64,
    /// Planned time when each layer begins, s (element `k`: layer `k + 1`).
    pub layer_start_s: Vec<f64>,
}

impl JobPlan {
    /// Reads G-code `r` (seekable: a slicer's configuration may sit at its end) with the
    /// printer's limits `base` under the file's own.
    pub fn read<R: BufRead + Seek>(mut r: R, base: Limits) -> std::io::Result<JobPlan> {
        let start = r.stream_position()?;
        let limits = limits_from_tail_with(&mut r, base)?;
        let layer_starts = layer_starts_mm(&mut r, limits)?;
        r.seek(std::io::SeekFrom::Start(start))?;
        let a = analyze_with(r, limits)?;
        let mut at = a.start_s;
        let layer_start_s = a
            .layer_times_s
            .iter()
            .map(|t| {
                let begins = at;
                at += t;
                begins
            })
            .collect();
        Ok(JobPlan {
            layer_starts,
            total: a.filament_mm,
            size: a.bytes,
            estimated_s: a.estimated_s,
            layer_start_s,
        })
    }

    /// The plan of the file at `path`, or of its plate `plate` when it is a `.gcode.3mf`.
    pub fn of_file(path: &Path, plate: Option<u32>, base: Limits) -> std::io::Result<JobPlan> {
        let file = std::fs::File::open(path)?;
        let Some(n) = plate else {
            return JobPlan::read(BufReader::with_capacity(64 * 1024, file), base);
        };
        let refused = |e: ThreeMfError| std::io::Error::other(e.to_string());
        let archive = ThreeMf::open(BufReader::with_capacity(64 * 1024, file)).map_err(refused)?;
        let gcode = archive.into_plate(n).map_err(refused)?;
        JobPlan::read(BufReader::with_capacity(64 * 1024, gcode), base)
    }

    /// Planned time left while layer `layer` (1-based, as the printer counts) prints: from
    /// the layer's start, so it is exact at each boundary; the whole plan before the first.
    pub fn left_at_layer(&self, layer: Option<u32>) -> f64 {
        let begun = layer
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| self.layer_start_s.get(i as usize))
            .copied()
            .unwrap_or(0.0);
        (self.estimated_s - begun).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(text: &str) -> std::io::Cursor<Vec<u8>> {
        std::io::Cursor::new(text.as_bytes().to_vec())
    }
    use crate::model_profile;
    use farm_protocol::gcode::analyze_seekable_with;

    /// Long moves (the motion limits count), a filament change (the allowances count), two
    /// layers, and no slicer configuration that would override the printer's profile.
    const FILE: &str = "G28\nM83\nT0\n;LAYER_CHANGE\nG1 Z0.2 F600\nG1 X200 Y200 E20 F30000\nG1 X0 Y0 E20\nT1\n;LAYER_CHANGE\nG1 Z0.4\nG1 X200 Y0 E10 F30000\nG1 X0 Y200 E10\n";

    #[test]
    fn the_printer_models_limits_and_allowances_are_what_the_plan_uses() {
        let x1 = model_profile::find("bambu-x1").expect("profile").limits();
        let plan = JobPlan::read(cursor(FILE), x1).expect("plan");
        let with_profile = analyze_seekable_with(cursor(FILE), x1).expect("analysis");
        assert_eq!(plan.estimated_s, with_profile.estimated_s);
        assert_eq!(plan.total, with_profile.filament_mm);
        let defaults = JobPlan::read(cursor(FILE), Limits::default()).expect("plan");
        assert_ne!(
            plan.estimated_s, defaults.estimated_s,
            "the model's limits change the time"
        );
        assert_eq!(plan.total, defaults.total, "but never the filament");
        // Its filament-change allowances are in the time: without them the one change costs
        // nothing, with them at least the profile's shorter per-change time.
        let p = model_profile::find("bambu-x1").expect("profile");
        let mut bare = x1;
        bare.allowances = Limits::default().allowances;
        let without = JobPlan::read(cursor(FILE), bare).expect("plan");
        let change = p
            .allowances
            .load_filament_s
            .min(p.allowances.unload_filament_s);
        assert!(
            change > 0.0 && plan.estimated_s - without.estimated_s >= change - 1e-9,
            "{} s with the allowances, {} s without; one change is {change} s",
            plan.estimated_s,
            without.estimated_s
        );
    }

    #[test]
    fn time_left_counts_from_the_layer_being_printed() {
        let plan = JobPlan::read(cursor(FILE), Limits::default()).expect("plan");
        assert_eq!(plan.layer_start_s.len(), 2);
        assert_eq!(plan.left_at_layer(None), plan.estimated_s);
        assert_eq!(
            plan.left_at_layer(Some(1)),
            plan.estimated_s - plan.layer_start_s[0]
        );
        assert_eq!(
            plan.left_at_layer(Some(2)),
            plan.estimated_s - plan.layer_start_s[1]
        );
        assert!(plan.left_at_layer(Some(2)) < plan.left_at_layer(Some(1)));
        // Past the last layer the plan knows: from the start (never more than the plan).
        assert!(plan.left_at_layer(Some(9)) <= plan.estimated_s);
        assert_eq!(plan.layer_starts.len(), 2);
    }

    #[test]
    fn a_3mf_plate_is_planned_in_place() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../protocol/tests/data/slicers/bambustudio-02.05.00.66-p1s-two-colour.gcode.3mf",
        );
        let p1 = model_profile::find("bambu-p1").expect("profile").limits();
        let plan = JobPlan::of_file(&path, Some(1), p1).expect("plan");
        assert!(plan.total.len() == 4 && plan.total[0] > 0.0 && plan.total[3] > 0.0);
        assert!(plan.estimated_s > 0.0 && !plan.layer_start_s.is_empty());
        assert!(JobPlan::of_file(&path, Some(2), p1).is_err(), "no plate 2");
    }
}

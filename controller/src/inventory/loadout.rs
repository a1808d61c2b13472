//! What each printer has loaded, as the scheduler sees it — the one seam with the inventory.
//!
//! Per tool, a spool the inventory has loaded there wins (material, colour and the remaining
//! grams from its ledger, so the scheduler checks the job fits on it); otherwise what the
//! operator declared in the printer registry (`PrinterRecord::tools`, remaining weight
//! unknown: no quantity check). A printer with a due blocking maintenance task, or switched to
//! maintenance, is blocked. Filament length → mass for jobs is here too, in one place.

use crate::inventory::LoadedSpool;
use crate::jobs::scheduler::{Loaded, Tool};
use crate::printers::fleet::PrinterRecord;
use farm_protocol::materials::density_or_default;

/// Filament diameter assumed when turning the analyzer's millimetres into grams, mm.
pub const DIAMETER_MM: f64 = 1.75;

/// Grams of `length_mm` of `material` at [`DIAMETER_MM`], at its density in the shared table
/// (PLA's for a type not in it).
pub fn grams(length_mm: f64, material: &str) -> f64 {
    farm_protocol::gcode::filament_grams(
        length_mm.max(0.0),
        DIAMETER_MM,
        density_or_default(material),
    )
}

/// The scheduler's view of a printer's tools: the inventory's loaded spools (index = tool)
/// over what the operator declared.
pub fn tools(rec: &PrinterRecord, spools: &[Option<LoadedSpool>]) -> Vec<Tool> {
    let n = rec.tools.len().max(spools.len());
    (0..n)
        .map(|i| {
            let declared = rec.tools.get(i);
            let loaded = match spools.get(i).and_then(Option::as_ref) {
                Some(s) => Some(Loaded {
                    material: s.material.clone(),
                    colour: s.colour.clone(),
                    remaining_g: Some(s.remaining_g),
                }),
                None => declared.and_then(|t| {
                    t.material.as_ref().map(|m| Loaded {
                        material: m.clone(),
                        colour: t.colour.clone().unwrap_or_default(),
                        remaining_g: None,
                    })
                }),
            };
            Tool {
                nozzle_mm: declared.and_then(|t| t.nozzle_mm),
                loaded,
            }
        })
        .collect()
}

/// Out of scheduling: the operator's maintenance switch (which `fleet::derive_state` also
/// shows), or a blocking maintenance task due (`due_blocking`, from the maintenance schedule).
pub fn blocked(rec: &PrinterRecord, due_blocking: bool) -> bool {
    rec.maintenance || due_blocking
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printers::fleet::ToolSlot;

    #[test]
    fn a_metre_of_pla_weighs_about_three_grams() {
        let g = grams(1000.0, "pla");
        assert!((g - 2.98).abs() < 0.01, "{g}");
        assert!(grams(1000.0, "PETG") > g);
        assert_eq!(grams(1000.0, "unobtainium"), g);
        assert_eq!(grams(-5.0, "PLA"), 0.0);
    }

    #[test]
    fn declared_tools_become_loaded_spools_of_unknown_weight() {
        let mut r = crate::printers::fleet::sample("p");
        r.tools = vec![
            ToolSlot {
                nozzle_mm: Some(0.4),
                material: Some("PLA".into()),
                colour: Some("black".into()),
            },
            ToolSlot::default(),
        ];
        let t = tools(&r, &[]);
        assert_eq!(
            t[0].loaded.as_ref().map(|l| l.colour.as_str()),
            Some("black")
        );
        assert_eq!(t[0].loaded.as_ref().and_then(|l| l.remaining_g), None);
        assert_eq!(t[1].loaded, None);
    }

    #[test]
    fn a_loaded_spool_wins_over_the_declaration_and_brings_its_weight() {
        let mut r = crate::printers::fleet::sample("p");
        r.tools = vec![ToolSlot {
            nozzle_mm: Some(0.6),
            material: Some("PLA".into()),
            colour: Some("black".into()),
        }];
        let spool = |m: &str, c: &str, g: f64| {
            Some(LoadedSpool {
                spool_id: "s-1".into(),
                material: m.into(),
                colour: c.into(),
                remaining_g: g,
            })
        };
        let t = tools(
            &r,
            &[spool("PETG", "blue", 412.0), spool("PLA", "red", 80.0)],
        );
        assert_eq!(
            t.len(),
            2,
            "a spool on a tool the registry does not list still counts"
        );
        let l = t[0].loaded.as_ref().expect("tool 0");
        assert_eq!((l.material.as_str(), l.colour.as_str()), ("PETG", "blue"));
        assert_eq!(l.remaining_g, Some(412.0));
        assert_eq!(t[0].nozzle_mm, Some(0.6), "the nozzle is the registry's");
        assert_eq!(t[1].nozzle_mm, None);
        assert!(blocked(&r, true) && !blocked(&r, false));
    }
}

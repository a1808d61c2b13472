//! What each printer has loaded, as the scheduler sees it — the one seam with the inventory.
//!
//! Per tool, a spool the inventory has loaded there wins (material, colour and the remaining
//! grams from its ledger, so the scheduler checks the job fits on it); otherwise what the
//! operator declared in the printer registry (`PrinterRecord::tools`, remaining weight
//! unknown: no quantity check). A printer with a due blocking maintenance task, or switched to
//! maintenance, is blocked. Filament length → mass for jobs is here too, in one place.
//!
//! A printer with a filament changer (Bambu's AMS) reports its trays in its status, and those
//! are what is physically loaded: [`changer`] turns them into the scheduler's changer slots,
//! any of which may feed any of a job's filaments. A tray is matched to an inventory spool
//! mounted on that printer (any tool number; the one numbered like the tray first) of the same
//! material whose colour matches the tray's (`farm_protocol::materials::same_colour`: a basic
//! name like "black" or the same hex); a matched tray routes by the spool's material, colour
//! name and grams. An unmatched tray still routes by its own material and colour, grams
//! unknown (no quantity check). The printer's `remain` per cent is shown on the printer, never
//! billed: it is coarse, and absent for spools without Bambu's tag. Grams are billed as for
//! every printer, from the job file's extrusion index, to the spool mounted on the tool.

use crate::inventory::LoadedSpool;
use crate::jobs::scheduler::{ChangerSlot, Loaded, Tool};
use crate::printers::fleet::PrinterRecord;
use farm_protocol::materials::density_or_default;
use farm_protocol::materials::{same_colour, same_material};
use farm_protocol::messages::Tray;

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

/// The loaded trays of a printer's changer as the scheduler's slots, each matched to at most
/// one of the spools mounted on the printer (index = tool), each spool to at most one tray.
pub fn changer(reported: &[Tray], spools: &[Option<LoadedSpool>]) -> Vec<ChangerSlot> {
    let mut taken = vec![false; spools.len()];
    reported
        .iter()
        .filter_map(|t| {
            let material = t.material.as_deref()?;
            let fits = |i: usize| {
                let s = spools.get(i)?.as_ref()?;
                (!taken[i]
                    && same_material(&s.material, material)
                    && t.colour
                        .as_deref()
                        .is_none_or(|c| same_colour(&s.colour, c)))
                .then_some(i)
            };
            let spool = fits(t.slot as usize).or_else(|| (0..spools.len()).find_map(fits));
            let loaded = match spool.and_then(|i| {
                taken[i] = true;
                spools[i].as_ref()
            }) {
                Some(s) => Loaded {
                    material: s.material.clone(),
                    colour: s.colour.clone(),
                    remaining_g: Some(s.remaining_g),
                },
                None => Loaded {
                    material: material.to_string(),
                    colour: t.colour.clone().unwrap_or_default(),
                    remaining_g: None,
                },
            };
            Some(ChangerSlot {
                slot: t.slot,
                loaded,
                reported_colour: t.colour.clone(),
            })
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

    fn tray(slot: u32, material: Option<&str>, colour: &str) -> Tray {
        Tray {
            slot,
            material: material.map(str::to_string),
            colour: material.map(|_| colour.to_string()),
            remain_pct: Some(50),
            preset: None,
            active: false,
        }
    }

    #[test]
    fn ams_trays_are_what_is_loaded_and_take_a_matching_spools_name_and_weight() {
        let spool = |id: &str, m: &str, c: &str, g: f64| {
            Some(LoadedSpool {
                spool_id: id.into(),
                material: m.into(),
                colour: c.into(),
                remaining_g: g,
            })
        };
        // The operator mounted two spools on tools 0 and 1; the AMS holds four trays.
        let spools = [
            spool("s-1", "PETG", "black", 640.0),
            spool("s-2", "PLA", "Galaxy Black", 300.0),
        ];
        let slots = changer(
            &[
                tray(0, Some("PLA"), "#FFFFFF"),
                tray(1, None, ""),
                tray(2, Some("PETG"), "#000000"),
                tray(3, Some("PETG"), "#000000"),
                tray(254, Some("PLA"), "#101010"),
            ],
            &spools,
        );
        let ids: Vec<u32> = slots.iter().map(|s| s.slot).collect();
        assert_eq!(ids, [0, 2, 3, 254], "the empty tray is not loaded");
        // White PLA: no spool of that colour; routes by the tray's own colour, grams unknown.
        assert_eq!(
            (slots[0].loaded.colour.as_str(), slots[0].loaded.remaining_g),
            ("#FFFFFF", None)
        );
        // Black PETG: the first such tray is the spool's (its name and grams), once.
        assert_eq!(
            (slots[1].loaded.colour.as_str(), slots[1].loaded.remaining_g),
            ("black", Some(640.0))
        );
        assert_eq!(slots[2].loaded.remaining_g, None, "one spool, one tray");
        // "Galaxy Black" is no basic name: not matched to a hex colour.
        assert_eq!(slots[3].loaded.remaining_g, None);
        assert_eq!(slots[3].reported_colour.as_deref(), Some("#101010"));
    }
}

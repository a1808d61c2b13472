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
//! every printer, from the job file's extrusion index; on a changer, to the spool in the tray
//! that fed each tool ([`feeding`], by the same matching), else to the spool on the tool.

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

/// The loaded trays of a printer's changer, each with the spool in it: the index (= tool) of
/// the spool mounted on the printer that [`changer`] and [`feeding`] both take for it. Each
/// tray gets at most one spool and each spool at most one tray, in the order reported: the
/// spool mounted under the tray's own number first, then any other of the tray's material and
/// colour.
pub fn tray_spools<'a>(
    reported: &'a [Tray],
    spools: &[Option<LoadedSpool>],
) -> Vec<(&'a Tray, Option<usize>)> {
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
            if let Some(i) = spool {
                taken[i] = true;
            }
            Some((t, spool))
        })
        .collect()
}

/// Which mounted spool (index = its tool) a job's `tool` drew from, and through which changer
/// tray, for booking its grams. `tool_trays` is what the agent said feeds each tool
/// (`job_started`); `reported` the trays in the printer's status now.
///
/// - No tray map (every printer without a changer, and Bambu plain G-code): the spool on that
///   tool.
/// - The tool's tray is reported: the spool [`tray_spools`] puts in it (none if no mounted
///   spool matches the tray's material and colour: the mm are recorded, no spool is charged).
/// - The status reports no trays at all (none arrived yet after a restart): the spool mounted
///   under the tray's number, the operator's way of saying what is in it.
/// - Trays are reported but not this one (an AMS unit that is not there): none; the spool
///   under its number may sit in a reported tray, and must not be charged twice.
/// - A tool the map gives no tray: none (never the spool numbered like the tool, which sits in
///   another tray).
pub fn feeding(
    tool: u32,
    tool_trays: &[Option<u32>],
    reported: &[Tray],
    spools: &[Option<LoadedSpool>],
) -> (Option<usize>, Option<u32>) {
    let mounted = |i: usize| spools.get(i).and_then(Option::as_ref).map(|_| i);
    if tool_trays.is_empty() {
        return (mounted(tool as usize), None);
    }
    let Some(tray) = tool_trays.get(tool as usize).copied().flatten() else {
        return (None, None);
    };
    let spool = match tray_spools(reported, spools)
        .into_iter()
        .find(|(t, _)| t.slot == tray)
    {
        Some((_, spool)) => spool,
        None if reported.is_empty() => mounted(tray as usize),
        None => None,
    };
    (spool, Some(tray))
}

/// The loaded trays of a printer's changer as the scheduler's slots, each matched to at most
/// one of the spools mounted on the printer (index = tool), each spool to at most one tray
/// ([`tray_spools`]).
pub fn changer(reported: &[Tray], spools: &[Option<LoadedSpool>]) -> Vec<ChangerSlot> {
    tray_spools(reported, spools)
        .into_iter()
        .map(|(t, spool)| {
            let material = t.material.as_deref().unwrap_or_default();
            let loaded = match spool.and_then(|i| spools[i].as_ref()) {
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
            ChangerSlot {
                slot: t.slot,
                loaded,
                reported_colour: t.colour.clone(),
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

    fn pla(id: &str, colour: &str) -> Option<LoadedSpool> {
        Some(LoadedSpool {
            spool_id: id.into(),
            material: "PLA".into(),
            colour: colour.into(),
            remaining_g: 500.0,
        })
    }

    /// The real two-colour plate on an AMS: filament 1 (tool 0) from tray 0, filament 4
    /// (tool 3) from tray 1. The spools sit on tools 0 to 3 like their trays.
    #[test]
    fn each_tool_draws_from_the_spool_in_the_tray_that_fed_it() {
        let trays = [
            tray(0, Some("PLA"), "#FFFFFF"),
            tray(1, Some("PLA"), "#161616"),
            tray(2, Some("PETG"), "#161616"),
            tray(3, Some("PLA"), "#C12E1F"),
        ];
        let spools = [
            pla("s-white", "white"),
            pla("s-black", "black"),
            Some(LoadedSpool {
                material: "PETG".into(),
                ..pla("s-petg", "black").expect("spool")
            }),
            pla("s-red", "red"),
        ];
        let map = [Some(0), None, None, Some(1)];
        assert_eq!(feeding(0, &map, &trays, &spools), (Some(0), Some(0)));
        // Tool 3's filament came from tray 1: the black spool, not the red one on tool 3.
        assert_eq!(feeding(3, &map, &trays, &spools), (Some(1), Some(1)));
        // Tools the plate does not use draw from nothing.
        assert_eq!(feeding(1, &map, &trays, &spools), (None, None));
        assert_eq!(feeding(7, &map, &trays, &spools), (None, None));
        // Without a map (plain G-code, other printers): the spool on the tool.
        assert_eq!(feeding(3, &[], &trays, &spools), (Some(3), None));
        assert_eq!(feeding(5, &[], &trays, &spools), (None, None));
    }

    #[test]
    fn a_tray_no_spool_matches_charges_nothing_and_an_unreported_one_its_numbered_spool() {
        let spools = [pla("s-white", "white"), pla("s-black", "black")];
        // Tray 1 reports red PLA: neither spool is red, so nothing is charged (the mm stay on
        // the job's booking), though a black spool sits on tool 1.
        let red = [
            tray(0, Some("PLA"), "#FFFFFF"),
            tray(1, Some("PLA"), "#C12E1F"),
        ];
        assert_eq!(feeding(0, &[Some(1)], &red, &spools), (None, Some(1)));
        // An empty tray fed nothing either.
        let empty = [tray(0, Some("PLA"), "#FFFFFF"), tray(1, None, "")];
        assert_eq!(feeding(0, &[Some(1)], &empty, &spools), (None, Some(1)));
        // No status yet (a controller restarted): the spool mounted under the tray's number.
        assert_eq!(feeding(0, &[Some(1)], &[], &spools), (Some(1), Some(1)));
        // The spool on the tray's number is taken when it matches, else another that does.
        let swapped = [pla("s-black", "black"), pla("s-white", "white")];
        let trays = [
            tray(0, Some("PLA"), "#FFFFFF"),
            tray(1, Some("PLA"), "#000000"),
        ];
        assert_eq!(feeding(0, &[Some(0)], &trays, &swapped), (Some(1), Some(0)));
        assert_eq!(feeding(0, &[Some(1)], &trays, &swapped), (Some(0), Some(1)));
    }

    mod booking_through_trays {
        use super::*;
        use crate::inventory::ledger::{JobBooking, OnTool, book};
        use proptest::prelude::*;

        const COLOURS: [&str; 3] = ["#FFFFFF", "#000000", "#C12E1F"];
        const NAMES: [&str; 3] = ["white", "black", "red"];
        const MATERIALS: [&str; 2] = ["PLA", "PETG"];

        proptest! {
            /// Whatever the AMS holds, whichever spools are mounted where and whatever the
            /// agent's tray map says, each tool's mm go only to the spool `tray_spools` puts in
            /// that tool's tray (none if it has none), never to a spool in another tray; and the
            /// cumulative reports are still booked exactly once (booked mm = the largest report).
            #[test]
            fn each_tools_grams_land_only_on_the_spool_in_its_tray(
                trays in prop::collection::vec((0usize..2, 0usize..3, any::<bool>()), 4),
                spools in prop::collection::vec(prop::option::of((0usize..2, 0usize..3)), 0..6),
                map in prop::collection::vec(prop::option::of(0u32..5), 1..5),
                reports in prop::collection::vec(prop::collection::vec(0.0f64..100.0, 4), 1..8),
                order in prop::collection::vec(0usize..8, 1..16),
            ) {
                let reported: Vec<Tray> = trays
                    .iter()
                    .enumerate()
                    .map(|(i, (m, c, loaded))| {
                        let material = loaded.then_some(MATERIALS[*m]);
                        tray(i as u32, material, COLOURS[*c])
                    })
                    .collect();
                let mounted: Vec<Option<LoadedSpool>> = spools
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        s.map(|(m, c)| LoadedSpool {
                            spool_id: format!("s-{i}"),
                            material: MATERIALS[m].into(),
                            colour: NAMES[c].into(),
                            remaining_g: 1000.0,
                        })
                    })
                    .collect();
                // Cumulative per tool: running maxima of the random figures.
                let mut cumulative = vec![];
                let mut high = [0.0f64; 4];
                for r in &reports {
                    for (h, v) in high.iter_mut().zip(r) {
                        *h += v;
                    }
                    cumulative.push(high.to_vec());
                }
                let in_tray: Vec<(u32, Option<usize>)> = tray_spools(&reported, &mounted)
                    .into_iter()
                    .map(|(t, s)| (t.slot, s))
                    .collect();
                let mut booking = JobBooking::new("job-1", 1, "bambu");
                let mut most = [0.0f64; 4];
                for i in &order {
                    let r = &cumulative[i % cumulative.len()];
                    let drafts = book(&mut booking, r, |tool| {
                        let (i, tray) = feeding(tool, &map, &reported, &mounted);
                        let s = mounted.get(i?)?.as_ref()?;
                        Some(OnTool {
                            spool_id: s.spool_id.clone(),
                            tray,
                            material_id: s.material.clone(),
                            grams_per_mm: 0.003,
                            cost_per_kg: 20.0,
                        })
                    });
                    for (m, v) in most.iter_mut().zip(r) {
                        *m = m.max(*v);
                    }
                    for d in drafts {
                        let tray = map[d.tool as usize];
                        prop_assert_eq!(d.tray, tray, "the row names the tool's tray");
                        let tray = tray.expect("a draft has a tray");
                        let spool: usize = d.spool_id[2..].parse().expect("id");
                        match in_tray.iter().find(|(t, _)| *t == tray) {
                            // A reported tray: only its matched spool.
                            Some((_, s)) => prop_assert_eq!(*s, Some(spool)),
                            // Not reported while others are: no spool, so no draft.
                            None => prop_assert!(false, "tray {tray} is not reported"),
                        }
                        // That spool is in no other tray.
                        prop_assert!(in_tray.iter().all(|(t, s)| *t == tray || *s != Some(spool)));
                    }
                }
                for (t, m) in most.iter().enumerate() {
                    let booked = booking.tools.get(t).map_or(0.0, |b| b.booked_mm);
                    prop_assert!((booked - m).abs() < 1e-9, "tool {t}: {booked} mm of {m}");
                }
            }
        }
    }
}

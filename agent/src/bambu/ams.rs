//! The AMS mapping of a plate: which tray feeds each of the plate's filament slots, chosen
//! from what the printer reports it holds (pure, apart from [`plate_filaments`] reading the
//! 3MF).
//!
//! What each slot needs comes from the plate's own metadata (`slice_info.config`: the type and
//! colour the slicer planned per filament) when the file has it, else from the job (the
//! farm's material and colour, and the trays the controller found holding them). A slot is
//! fed by a tray of the same material whose colour matches
//! ([`farm_protocol::materials::same_colour`]): the controller's trays first, then the tray
//! feeding now, then the lowest id. A one-filament plate's colour in the file is only the
//! slicer's preset, so there the colour counts only when the job names one; on a
//! multi-colour plate every filament's colour is the design and must be loaded. A slot no tray can feed refuses the start, before
//! anything is uploaded or sent.
//!
//! The mapping's form is the slicer's own (BambuStudio/OrcaSlicer's print dialog,
//! `SelectMachineDialog::get_ams_mapping_result`): one entry per filament of the project,
//! index = filament id − 1, the absolute tray id, or −1 for a filament the plate does not use.
//! OpenBambuAPI describes a padded form instead; no real printer checked either here.

use crate::printer::Filament;
use farm_protocol::materials::{same_colour, same_material};
use farm_protocol::messages::Tray;
use farm_protocol::threemf::{PlateFilament, ThreeMf};
use std::path::Path;

/// What one filament slot of the plate needs.
#[derive(Clone, Debug, PartialEq)]
pub struct SlotNeed {
    /// 1-based filament id in the slicer's list.
    pub id: u32,
    pub material: Option<String>,
    pub colour: Option<String>,
    /// Trays the controller matched for the job (its inventory knows colour names the printer
    /// does not report), best first; empty when this need is the slicer's.
    pub trays: Vec<u32>,
}

/// The plate's filaments as the slicer wrote them (`slice_info.config`); empty when the file
/// has none for this plate. Blocking: reads the zip's directory and one small entry.
pub fn plate_filaments(path: &Path, plate: u32) -> Result<Vec<PlateFilament>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read the job file: {e}"))?;
    let mut mf = ThreeMf::open(std::io::BufReader::new(file)).map_err(|e| e.to_string())?;
    let facts = mf.plate_facts(plate).map_err(|e| e.to_string())?;
    Ok(facts.slice.map(|s| s.filaments).unwrap_or_default())
}

/// What each slot needs: the slicer's per-filament type and colour when it wrote them (for a
/// one-filament plate, its type and the job's colour, if any), else one slot (filament 1)
/// with the job's material and colour; none when neither says anything.
pub fn needs(plate: &[PlateFilament], job: &Filament) -> Vec<SlotNeed> {
    let from_slicer: Vec<SlotNeed> = plate
        .iter()
        .filter(|f| f.id >= 1 && (f.material.is_some() || f.color.is_some()))
        .map(|f| SlotNeed {
            id: f.id,
            material: f.material.clone(),
            colour: f.color.clone(),
            trays: vec![],
        })
        .collect();
    if let [only] = from_slicer.as_slice() {
        // One filament: its colour in the file is usually just the slicer's preset (Bambu PLA
        // Basic's orange by default) and tells no part from another, so any tray of its
        // material feeds it, unless the job itself names a colour. Several filaments: the
        // colours are the design, and each must be loaded as planned.
        return vec![SlotNeed {
            colour: job.colour.clone(),
            trays: job.trays.clone(),
            ..only.clone()
        }];
    }
    if !from_slicer.is_empty() {
        return from_slicer;
    }
    if job.material.is_none() && job.colour.is_none() && job.trays.is_empty() {
        return vec![];
    }
    vec![SlotNeed {
        id: 1,
        material: job.material.clone(),
        colour: job.colour.clone(),
        trays: job.trays.clone(),
    }]
}

fn describe(material: Option<&str>, colour: Option<&str>) -> String {
    match (material, colour) {
        (Some(m), Some(c)) => format!("{m} {c}"),
        (Some(m), None) => format!("{m}, any colour"),
        (None, Some(c)) => format!("any material in {c}"),
        (None, None) => "any filament".into(),
    }
}

/// The printer's trays in one line, for a refusal.
pub fn holding(trays: &[Tray]) -> String {
    if trays.is_empty() {
        return "no AMS or external spool reported".into();
    }
    trays
        .iter()
        .map(|t| match &t.material {
            Some(m) => format!(
                "{} {m} {}{}",
                t.slot,
                t.colour.as_deref().unwrap_or("(no colour)"),
                t.remain_pct.map(|p| format!(" {p} %")).unwrap_or_default()
            ),
            None => format!("{} empty", t.slot),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The tray that feeds `need`, if any holds it.
fn tray_for(need: &SlotNeed, trays: &[Tray]) -> Option<u32> {
    let loaded = |t: &&Tray| t.material.is_some();
    let material_ok = |t: &Tray| {
        need.material.as_deref().is_none_or(|m| {
            t.material
                .as_deref()
                .is_some_and(|have| same_material(m, have))
        })
    };
    // The controller's choice, if the tray still holds that material.
    for id in &need.trays {
        if let Some(t) = trays.iter().filter(loaded).find(|t| t.slot == *id)
            && material_ok(t)
        {
            return Some(t.slot);
        }
    }
    let mut fit: Vec<&Tray> = trays
        .iter()
        .filter(loaded)
        .filter(|t| material_ok(t))
        .filter(|t| {
            need.colour
                .as_deref()
                .is_none_or(|c| t.colour.as_deref().is_some_and(|have| same_colour(c, have)))
        })
        .collect();
    fit.sort_by_key(|t| (!t.active, t.slot));
    fit.first().map(|t| t.slot)
}

/// The `ams_mapping` for a plate whose slots need `needs`, from the printer's `trays`.
/// `configured` (`[printer.bambu] ams_mapping`) is used only when nothing says what the plate
/// needs; then, without it, the tray feeding now takes filament 1, or no AMS at all.
pub fn choose(needs: &[SlotNeed], trays: &[Tray], configured: &[u32]) -> Result<Vec<i32>, String> {
    if needs.is_empty() {
        if !configured.is_empty() {
            return Ok(configured.iter().map(|t| *t as i32).collect());
        }
        return Ok(trays
            .iter()
            .find(|t| t.active && t.material.is_some())
            .map(|t| vec![t.slot as i32])
            .unwrap_or_default());
    }
    let len = needs.iter().map(|n| n.id).max().unwrap_or(0) as usize;
    let mut mapping = vec![-1; len];
    let mut missing = vec![];
    for n in needs {
        match tray_for(n, trays) {
            Some(t) => mapping[n.id as usize - 1] = t as i32,
            None => missing.push(format!(
                "filament {} ({})",
                n.id,
                describe(n.material.as_deref(), n.colour.as_deref())
            )),
        }
    }
    if !missing.is_empty() {
        return Err(format!(
            "no AMS tray holds {}; the printer holds: {}. Load it into the AMS (or the external spool holder) and the job will be placed again",
            missing.join(" and "),
            holding(trays)
        ));
    }
    Ok(mapping)
}

/// What the farm is told fed each tool (`job_started`'s `tool_trays`): the plate's G-code
/// selects filament N with `T<N-1>`, so tool `t` is fed by `mapping[t]`; −1 (unused) is `None`.
/// The controller books each tool's filament to the spool in that tray.
pub fn tool_trays(mapping: &[i32]) -> Vec<Option<u32>> {
    mapping.iter().map(|t| u32::try_from(*t).ok()).collect()
}

/// The mapping for plate `plate` of the 3MF at `path` printed as `job` on a printer holding
/// `trays`: [`plate_filaments`], [`needs`], [`choose`]. Blocking (reads the file).
pub fn mapping_for_plate(
    path: &Path,
    plate: u32,
    job: &Filament,
    trays: &[Tray],
    configured: &[u32],
) -> Result<Vec<i32>, String> {
    let plate = plate_filaments(path, plate)?;
    choose(&needs(&plate, job), trays, configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tray(slot: u32, material: Option<&str>, colour: &str, active: bool) -> Tray {
        Tray {
            slot,
            material: material.map(str::to_string),
            colour: material.map(|_| colour.to_string()),
            remain_pct: None,
            preset: None,
            active,
        }
    }

    fn slicer(id: u32, material: &str, color: &str) -> PlateFilament {
        PlateFilament {
            id,
            material: Some(material.into()),
            color: Some(color.into()),
            ..PlateFilament::default()
        }
    }

    fn trays() -> Vec<Tray> {
        vec![
            tray(0, Some("PLA"), "#FFFFFF", true),
            tray(1, Some("PETG"), "#000000", false),
            tray(2, None, "", false),
            tray(3, Some("PLA"), "#C12E1F", false),
            tray(254, Some("PLA"), "#000000", false),
        ]
    }

    #[test]
    fn each_slicer_slot_takes_the_tray_with_its_material_and_colour() {
        let plate = [slicer(1, "PLA", "#C12E1F"), slicer(3, "PETG", "#000000")];
        let n = needs(&plate, &Filament::default());
        assert_eq!(choose(&n, &trays(), &[]), Ok(vec![3, -1, 1]));
        // The slicer's metadata wins over the job's.
        let job = Filament {
            material: Some("ABS".into()),
            ..Filament::default()
        };
        assert_eq!(needs(&plate, &job), n);
    }

    #[test]
    fn a_one_filament_plate_takes_any_tray_of_its_material_unless_the_job_names_a_colour() {
        let plate = [slicer(1, "PLA", "#FF6A13")];
        let n = needs(&plate, &Filament::default());
        assert_eq!(
            choose(&n, &trays(), &[]),
            Ok(vec![0]),
            "the feeding PLA tray"
        );
        let red = Filament {
            colour: Some("#C12E1F".into()),
            ..Filament::default()
        };
        assert_eq!(choose(&needs(&plate, &red), &trays(), &[]), Ok(vec![3]));
        let petg = [slicer(1, "PETG", "#FF6A13")];
        assert_eq!(
            choose(&needs(&petg, &Filament::default()), &trays(), &[]),
            Ok(vec![1]),
            "the material still counts"
        );
        let abs = [slicer(1, "ABS", "#FF6A13")];
        assert!(choose(&needs(&abs, &Filament::default()), &trays(), &[]).is_err());
    }

    #[test]
    fn without_metadata_the_job_decides_and_the_controllers_tray_comes_first() {
        let job = Filament {
            material: Some("PLA".into()),
            colour: Some("black".into()),
            trays: vec![],
        };
        // Two black PLA: the AMS tray is not there, the external spool is.
        assert_eq!(choose(&needs(&[], &job), &trays(), &[]), Ok(vec![254]));
        let hinted = Filament {
            material: Some("PLA".into()),
            colour: Some("Galaxy Black".into()),
            trays: vec![2, 3],
        };
        // Tray 2 is empty now, tray 3 holds PLA: the inventory's name is trusted.
        assert_eq!(choose(&needs(&[], &hinted), &trays(), &[]), Ok(vec![3]));
        // Nothing said at all: the configured mapping, else the tray feeding now.
        assert_eq!(choose(&[], &trays(), &[1, 3]), Ok(vec![1, 3]));
        assert_eq!(choose(&[], &trays(), &[]), Ok(vec![0]));
        assert_eq!(choose(&[], &[], &[]), Ok(vec![]));
    }

    #[test]
    fn a_slot_no_tray_holds_refuses_with_what_is_loaded() {
        let plate = [slicer(1, "PLA", "#FFFFFF"), slicer(2, "PETG", "#FF0000")];
        let e =
            choose(&needs(&plate, &Filament::default()), &trays(), &[]).expect_err("no red PETG");
        assert!(e.contains("filament 2 (PETG #FF0000)"), "{e}");
        assert!(e.contains("1 PETG #000000") && e.contains("2 empty"), "{e}");
        assert!(!e.contains("filament 1"), "{e}");
    }

    #[test]
    fn each_tool_is_fed_by_its_filaments_tray() {
        assert_eq!(
            tool_trays(&[0, -1, -1, 2]),
            vec![Some(0), None, None, Some(2)]
        );
        assert_eq!(tool_trays(&[254]), vec![Some(254)]);
        assert_eq!(tool_trays(&[]), Vec::<Option<u32>>::new());
    }

    /// A real Bambu Studio 02.05 two-colour plate (`protocol/tests/data/slicers/`, README
    /// there): filaments 1 (white PLA) and 4 (#161616 PLA) of the project.
    #[test]
    fn a_real_two_colour_plate_maps_its_filaments_by_id() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "../protocol/tests/data/slicers/bambustudio-02.05.00.66-p1s-two-colour.gcode.3mf",
        );
        let trays = [
            tray(0, Some("PLA"), "#FFFFFF", false),
            tray(1, Some("PETG"), "#161616", false),
            tray(2, Some("PLA"), "#161616", true),
        ];
        assert_eq!(
            mapping_for_plate(&path, 1, &Filament::default(), &trays, &[]),
            Ok(vec![0, -1, -1, 2])
        );
        let e = mapping_for_plate(&path, 1, &Filament::default(), &trays[..2], &[])
            .expect_err("no black PLA");
        assert!(e.contains("filament 4 (PLA #161616)"), "{e}");
        assert!(mapping_for_plate(&path, 9, &Filament::default(), &trays, &[]).is_err());
    }
}

//! What each printer has loaded, as the scheduler sees it — the one seam with the inventory.
//!
//! Today the operator declares per tool what is loaded (`PrinterRecord::tools`), and the
//! remaining weight is unknown (no quantity check). The inventory (part B of the production
//! core) will replace [`tools`] with its loaded spools, remaining grams included; nothing else
//! in the scheduler changes. Filament length → mass is here too, in one place.

use crate::fleet::PrinterRecord;
use crate::scheduler::{Loaded, Tool};

/// Filament diameter assumed when turning the analyzer's millimetres into grams, mm.
pub const DIAMETER_MM: f64 = 1.75;

/// Density by material type, g/cm³ (common datasheet values); PLA's for anything unknown.
pub fn density(material: &str) -> f64 {
    match material.trim().to_ascii_uppercase().as_str() {
        "PETG" | "PET" => 1.27,
        "ABS" => 1.04,
        "ASA" => 1.07,
        "TPU" | "FLEX" => 1.21,
        "PC" => 1.20,
        "NYLON" | "PA" | "PA6" | "PA12" => 1.14,
        "PVA" => 1.23,
        "HIPS" => 1.04,
        _ => 1.24,
    }
}

/// Grams of `length_mm` of `material` at [`DIAMETER_MM`].
pub fn grams(length_mm: f64, material: &str) -> f64 {
    farm_protocol::gcode::filament_grams(length_mm.max(0.0), DIAMETER_MM, density(material))
}

/// The scheduler's view of a printer's tools, from what the operator declared.
pub fn tools(rec: &PrinterRecord) -> Vec<Tool> {
    rec.tools
        .iter()
        .map(|t| Tool {
            nozzle_mm: t.nozzle_mm,
            loaded: t.material.as_ref().map(|m| Loaded {
                material: m.clone(),
                colour: t.colour.clone().unwrap_or_default(),
                remaining_g: None,
            }),
        })
        .collect()
}

/// Blocking maintenance due. Part B's maintenance schedule feeds this; today it is the
/// operator's maintenance switch, which `fleet::derive_state` already turns into a state.
pub fn blocked(rec: &PrinterRecord) -> bool {
    rec.maintenance
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::ToolSlot;

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
        let mut r = crate::fleet::sample("p");
        r.tools = vec![
            ToolSlot {
                nozzle_mm: Some(0.4),
                material: Some("PLA".into()),
                colour: Some("black".into()),
            },
            ToolSlot::default(),
        ];
        let t = tools(&r);
        assert_eq!(
            t[0].loaded.as_ref().map(|l| l.colour.as_str()),
            Some("black")
        );
        assert_eq!(t[0].loaded.as_ref().and_then(|l| l.remaining_g), None);
        assert_eq!(t[1].loaded, None);
    }
}

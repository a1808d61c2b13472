//! The one table of filament densities, for turning millimetres of filament into grams
//! (`gcode::filament_grams`) wherever a spool or a file does not state its own density.
//!
//! Values are typical densities from filament and resin makers' data sheets (g/cm³ at room
//! temperature, ISO 1183), the middle of the range brands quote: PLA 1.24 (NatureWorks Ingeo
//! 4043D, the usual filament resin; "PLA+" grades are modified PLA at 1.22–1.25); PETG 1.27
//! (Eastman Eastar 6763); ABS 1.04 (1.03–1.06); ASA 1.07; TPU 1.21 (Shore 95A grades,
//! 1.19–1.22; "FLEX" is sold as the same); PA6 / nylon 1.14 (1.12–1.14); PA12 1.01
//! (1.01–1.02); PC 1.20; HIPS 1.04; PVA 1.23. Real spools differ by a few per cent, so a
//! material in the inventory may state its own.

/// PLA's density, g/cm³: what a job is weighed at when its material is unknown (the most
/// common filament, and the middle of the common range).
pub const DEFAULT_DENSITY_G_CM3: f64 = 1.24;

/// The typical density of a material type (case and surrounding spaces ignored), g/cm³, or
/// `None` for a type not in the table.
pub fn typical_density(material: &str) -> Option<f64> {
    let d = match material.trim().to_ascii_uppercase().as_str() {
        "PLA" | "PLA+" => 1.24,
        "PETG" | "PET" => 1.27,
        "ABS" => 1.04,
        "ASA" => 1.07,
        "TPU" | "FLEX" => 1.21,
        "PA" | "PA6" | "NYLON" => 1.14,
        "PA12" => 1.01,
        "PC" => 1.20,
        "HIPS" => 1.04,
        "PVA" => 1.23,
        _ => return None,
    };
    Some(d)
}

/// [`typical_density`], or PLA's for a type not in the table.
pub fn density_or_default(material: &str) -> f64 {
    typical_density(material).unwrap_or(DEFAULT_DENSITY_G_CM3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_type_weighs_the_same() {
        assert_eq!(typical_density(" pla+ "), typical_density("PLA"));
        assert_eq!(typical_density("flex"), typical_density("TPU"));
        assert_eq!(typical_density("Nylon"), typical_density("PA6"));
        assert_eq!(typical_density("unobtainium"), None);
        assert_eq!(density_or_default("unobtainium"), DEFAULT_DENSITY_G_CM3);
        assert_eq!(density_or_default("PETG"), 1.27);
    }
}

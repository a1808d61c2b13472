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

/// Basic colour names and the colour each stands for, so a job or spool named "black" can
/// be matched to a printer that reports only `#RRGGBB` (Bambu's AMS). The values are the
/// CSS/X11 ones (a name may have a darker shade beside it: filament reds and blues are
/// darker than pure `FF0000`); a reported colour takes the name of the nearest entry.
const NAMED: &[(&str, [u8; 3])] = &[
    ("black", [0x00, 0x00, 0x00]),
    ("white", [0xFF, 0xFF, 0xFF]),
    ("grey", [0x80, 0x80, 0x80]),
    ("gray", [0x80, 0x80, 0x80]),
    ("silver", [0xC0, 0xC0, 0xC0]),
    ("red", [0xFF, 0x00, 0x00]),
    ("red", [0xB2, 0x22, 0x22]),
    ("orange", [0xFF, 0xA5, 0x00]),
    ("orange", [0xFF, 0x8C, 0x00]),
    ("yellow", [0xFF, 0xFF, 0x00]),
    ("green", [0x00, 0x80, 0x00]),
    ("blue", [0x00, 0x00, 0xFF]),
    ("blue", [0x00, 0x00, 0x80]),
    ("cyan", [0x00, 0xFF, 0xFF]),
    ("purple", [0x80, 0x00, 0x80]),
    ("magenta", [0xFF, 0x00, 0xFF]),
    ("pink", [0xFF, 0xC0, 0xCB]),
    ("brown", [0x8B, 0x45, 0x13]),
    ("beige", [0xF5, 0xF5, 0xDC]),
];

/// `#RRGGBB`, `RRGGBB`, or either with an alpha byte (`RRGGBBAA`, how Bambu reports it).
pub fn parse_hex_colour(s: &str) -> Option<[u8; 3]> {
    let h = s.trim().trim_start_matches('#');
    if !(h.len() == 6 || h.len() == 8) || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

/// The basic colour name nearest to `rgb` (squared RGB distance): how a reported colour is
/// compared with a colour the farm names.
pub fn nearest_name(rgb: [u8; 3]) -> &'static str {
    let d = |c: [u8; 3]| -> u32 {
        (0..3)
            .map(|i| (i32::from(rgb[i]) - i32::from(c[i])).pow(2) as u32)
            .sum()
    };
    NAMED
        .iter()
        .min_by_key(|(_, c)| d(*c))
        .map_or("black", |(n, _)| n)
}

/// Does the colour `have` (a printer's or spool's) satisfy the colour `want` (a job's)?
/// The same text (case and spaces ignored); or two hex colours that are equal; or a basic
/// name (`black`, `grey`/`gray`, …) and a hex colour whose nearest basic name it is. Any
/// other name ("Galaxy Black") matches only itself.
pub fn same_colour(want: &str, have: &str) -> bool {
    let (w, h) = (want.trim(), have.trim());
    if w.eq_ignore_ascii_case(h) {
        return true;
    }
    let named = |s: &str| {
        NAMED
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(n, _)| *n)
    };
    let same_name =
        |a: &str, b: &str| a == b || (matches!(a, "grey" | "gray") && matches!(b, "grey" | "gray"));
    match (parse_hex_colour(w), parse_hex_colour(h)) {
        (Some(a), Some(b)) => a == b,
        (Some(rgb), None) => named(h).is_some_and(|n| same_name(n, nearest_name(rgb))),
        (None, Some(rgb)) => named(w).is_some_and(|n| same_name(n, nearest_name(rgb))),
        (None, None) => false,
    }
}

/// Does a material type `have` satisfy `want` (case and spaces ignored)?
pub fn same_material(want: &str, have: &str) -> bool {
    want.trim().eq_ignore_ascii_case(have.trim())
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

    #[test]
    fn a_named_colour_matches_the_reported_colour_nearest_to_it() {
        assert!(same_colour("black", "#000000"));
        assert!(same_colour("Black", "161616FF"), "Bambu's near-black");
        // Bambu PLA Basic's own colours take their names.
        for (name, hex) in [
            ("red", "C12E1FFF"),
            ("blue", "0A2989FF"),
            ("green", "00AE42FF"),
            ("yellow", "F4EE2AFF"),
            ("orange", "FF6A13FF"),
            ("grey", "8E9089FF"),
            ("white", "FFFFFFFF"),
        ] {
            assert!(same_colour(name, hex), "{name} {hex}");
        }
        assert!(
            same_colour("#c12e1f", "C12E1FFF"),
            "hex to hex, alpha ignored"
        );
        assert!(same_colour("gray", "#808080") && same_colour("grey", "#7F7F7F"));
        assert!(same_colour(" Galaxy Black ", "galaxy black"));
        assert!(!same_colour("Galaxy Black", "#000000"), "not a basic name");
        assert!(!same_colour("black", "#FFFFFF"));
        assert!(!same_colour("#000000", "#000001"));
        assert!(!same_colour("red", "blue"));
        assert_eq!(parse_hex_colour("#12345"), None);
        assert_eq!(parse_hex_colour("zz0000"), None);
        assert!(same_material(" petg", "PETG") && !same_material("PLA", "PLA-CF"));
    }
}

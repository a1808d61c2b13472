//! The operator's catalog (SKU → files) and what is known about each stored file.
//!
//! A shop usually sells products, not G-code: the operator maps each SKU to the file (or
//! files, for a kit) that make one unit, with the material, colour and nozzle it is printed
//! in by default. An order item may override material and colour.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | SKU → files, what is kept about each analysed file (pure) |
//! | [`files`] | content-addressed G-code store with upload checks |
//! | [`files_http`] | the one G-code upload path (`POST /jobs`, `/files`, `/quotes`): refuses multipart, then the store's checks |
//! | [`writes`] | farm writes: analysed files, catalog entries |
//! | [`http`] | `/api/v1/catalog` |

pub mod files;
pub mod files_http;
pub mod http;
pub mod writes;

use crate::orders::ItemFile;
use serde::{Deserialize, Serialize};

/// `PUT /api/v1/catalog/{sku}`: one sellable product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    #[serde(default)]
    pub sku: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The files that make one unit (uploaded first with `POST /api/v1/files`).
    pub files: Vec<CatalogFile>,
    #[serde(default)]
    pub material: Option<String>,
    #[serde(default)]
    pub colour: Option<String>,
    #[serde(default)]
    pub nozzle_mm: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    pub sha256: String,
    #[serde(default)]
    pub name: Option<String>,
    /// For a `.gcode.3mf`: the plate this SKU prints (may be left out if the file has one plate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plate: Option<u32>,
}

impl CatalogEntry {
    pub fn item_files(&self) -> Vec<ItemFile> {
        self.files
            .iter()
            .map(|f| ItemFile {
                sha256: f.sha256.clone(),
                name: f
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("{}.gcode", self.sku)),
                plate: f.plate,
            })
            .collect()
    }
}

/// A SKU is short, printable, and safe in a URL path.
pub fn valid_sku(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// What the analyzer said about a stored file, kept so orders can reference it by hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileMeta {
    pub sha256: String,
    pub size: u64,
    pub name: String,
    /// Per tool, mm; for a `.gcode.3mf`, its first plate's (each plate's is in `plates`).
    pub filament_mm: Vec<f64>,
    pub estimated_s: f64,
    /// Extent of the print, mm.
    pub size_mm: Option<[f64; 3]>,
    /// A `.gcode.3mf`'s sliced plates, ascending; empty for G-code and `.bgcode`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plates: Vec<PlateMeta>,
}

/// One sliced plate of a `.gcode.3mf`: the analysis of its G-code, and what the slicer said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlateMeta {
    /// N of `Metadata/plate_<N>.gcode`.
    pub plate: u32,
    /// The plate's name in the slicer, if it was given one.
    #[serde(default)]
    pub name: Option<String>,
    /// The analyzer's filament per tool for this plate's G-code, mm.
    pub filament_mm: Vec<f64>,
    /// The analyzer's motion time for this plate, s.
    pub estimated_s: f64,
    pub size_mm: Option<[f64; 3]>,
    /// The slicer's own prediction for the plate (`slice_info.config`), s.
    #[serde(default)]
    pub slicer_estimated_s: Option<f64>,
    /// The slicer's filament weight for the plate, g.
    #[serde(default)]
    pub slicer_weight_g: Option<f64>,
    /// The slicer's filament per slot (what an AMS maps onto trays).
    #[serde(default)]
    pub slots: Vec<PlateSlot>,
    /// The plate's previews in the file.
    #[serde(default)]
    pub thumbnails: Vec<ThumbnailInfo>,
}

/// One filament slot a plate uses, as the slicer states it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PlateSlot {
    /// 1-based slot in the slicer's filament list.
    pub slot: u32,
    pub material: Option<String>,
    /// `#RRGGBB` as the slicer wrote it.
    pub colour: Option<String>,
    pub used_g: Option<f64>,
    pub used_m: Option<f64>,
}

/// A preview image in a file (the image itself is not kept in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ThumbnailInfo {
    pub format: String,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

/// Which plate of a file a job prints: `plates` are the file's plate numbers (empty: not a
/// `.gcode.3mf`). One plate may be left out; several need a choice, and the error lists them.
pub fn choose_plate(plates: &[u32], plate: Option<u32>) -> Result<Option<u32>, String> {
    use farm_protocol::threemf::ThreeMfError;
    match (plates, plate) {
        ([], None) => Ok(None),
        ([], Some(_)) => Err(
            "this file is plain G-code, which has no plates; leave `plate` out (plates are for .gcode.3mf files)".into(),
        ),
        ([only], None) => Ok(Some(*only)),
        (many, None) => Err(ThreeMfError::WhichPlate(many.to_vec()).to_string()),
        (all, Some(n)) if all.contains(&n) => Ok(Some(n)),
        (all, Some(n)) => Err(ThreeMfError::NoPlate {
            plate: n,
            plates: all.to_vec(),
        }
        .to_string()),
    }
}

impl FileMeta {
    pub fn plate_numbers(&self) -> Vec<u32> {
        self.plates.iter().map(|p| p.plate).collect()
    }

    /// The plate chosen by [`choose_plate`], and this file's figures for it: a 3MF plate's
    /// own filament, time and extent; the file's own otherwise.
    pub fn for_plate(&self, plate: Option<u32>) -> Result<(Option<u32>, FileMeta), String> {
        let chosen = choose_plate(&self.plate_numbers(), plate)?;
        let mut f = self.clone();
        f.plates.clear();
        if let Some(p) = self.plates.iter().find(|p| Some(p.plate) == chosen) {
            f.filament_mm = p.filament_mm.clone();
            f.estimated_s = p.estimated_s;
            f.size_mm = p.size_mm;
        }
        Ok((chosen, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_url_safe() {
        assert!(valid_sku("CUBE-20mm_v2.1"));
        assert!(!valid_sku(""));
        assert!(!valid_sku("a/b"));
        assert!(!valid_sku("a b"));
        assert!(!valid_sku(&"x".repeat(65)));
    }

    #[test]
    fn a_plate_is_chosen_or_the_error_lists_the_plates() {
        assert_eq!(choose_plate(&[], None), Ok(None));
        assert!(choose_plate(&[], Some(1)).is_err_and(|e| e.contains("no plates")));
        assert_eq!(choose_plate(&[3], None), Ok(Some(3)));
        assert_eq!(choose_plate(&[1, 2], Some(2)), Ok(Some(2)));
        let which = choose_plate(&[1, 2], None).expect_err("two plates");
        assert!(which.contains("2 plates (1, 2)"), "{which}");
        let none = choose_plate(&[1, 2], Some(5)).expect_err("no plate 5");
        assert!(
            none.contains("no plate 5") && none.contains("1, 2"),
            "{none}"
        );
    }

    #[test]
    fn a_plates_figures_replace_the_files() {
        let plate = |n: u32, mm: f64| PlateMeta {
            plate: n,
            name: None,
            filament_mm: vec![mm],
            estimated_s: mm * 10.0,
            size_mm: None,
            slicer_estimated_s: None,
            slicer_weight_g: None,
            slots: vec![],
            thumbnails: vec![],
        };
        let f = FileMeta {
            sha256: "a".into(),
            size: 1,
            name: "x.gcode.3mf".into(),
            filament_mm: vec![1.0],
            estimated_s: 10.0,
            size_mm: None,
            plates: vec![plate(1, 1.0), plate(2, 7.0)],
        };
        let (n, two) = f.for_plate(Some(2)).expect("plate 2");
        assert_eq!(
            (n, two.filament_mm, two.estimated_s),
            (Some(2), vec![7.0], 70.0)
        );
        assert!(two.plates.is_empty());
        assert!(f.for_plate(None).is_err());
    }
}

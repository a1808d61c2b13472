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
    pub filament_mm: Vec<f64>,
    pub estimated_s: f64,
    /// Extent of the print, mm.
    pub size_mm: Option<[f64; 3]>,
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
}

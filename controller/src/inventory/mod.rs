//! Filament inventory: materials, spools, the ledger, low stock and the shortage forecast.
//!
//! `mod.rs`, `ledger` and `forecast` are pure domain code: records, validation and arithmetic
//! over plain data. The farm's writes ([`writes`]) call it under the farm lock and commit what
//! it returns.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | materials and spools: records, validation, what the API shows |
//! | [`ledger`] | ledger rows, exactly-once booking of cumulative material reports, adjustments |
//! | [`forecast`] | stock per material + colour, low-stock alerts, the shortage forecast |
//! | [`writes`] | farm writes: materials, spools, loading, adjustments; ledger booking in the event path |
//! | [`loadout`] | what each printer has loaded, as the scheduler sees it (the seam with jobs) |
//! | [`http`] | `/api/v1` materials, spools, loading, adjustments, ledger, stock, forecast |
//!
//! A spool's remaining filament is never stored: it is `initial_g + Σ ledger rows`, so every
//! gram can be audited (`GET /api/v1/spools/{id}/ledger`).

pub mod actions;
pub mod forecast;
pub mod http;
pub mod ledger;
pub mod loadout;
pub mod writes;

use farm_protocol::gcode::filament_grams;
use farm_protocol::materials::typical_density;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Why an inventory write was refused. The texts say what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
}

/// A filament product the farm stocks: type and colour, with what turns mm into grams and euros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Material {
    /// `[a-z0-9-]{1,64}`, e.g. `pla-black`.
    pub id: String,
    /// The type jobs ask for: `PLA`, `PETG`, …
    pub material: String,
    pub colour: String,
    pub diameter_mm: f64,
    /// g/cm³.
    pub density_g_cm3: f64,
    /// Currency units per kg of filament (the currency is `[pricing] currency`).
    pub cost_per_kg: f64,
    /// Warn when the farm holds less than this of this material + colour, g. Unset: the
    /// `[inventory] low_stock_g` default.
    #[serde(default)]
    pub low_stock_g: Option<f64>,
}

impl Material {
    /// Grams in one mm of this filament.
    pub fn grams_per_mm(&self) -> f64 {
        filament_grams(1.0, self.diameter_mm, self.density_g_cm3)
    }
}

/// A material as the API receives it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMaterial {
    #[serde(default)]
    pub id: Option<String>,
    pub material: String,
    pub colour: String,
    #[serde(default)]
    pub diameter_mm: Option<f64>,
    #[serde(default)]
    pub density_g_cm3: Option<f64>,
    pub cost_per_kg: f64,
    #[serde(default)]
    pub low_stock_g: Option<f64>,
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(64).collect()
}

/// Short printable text (names, lots, locations, notes).
pub fn clean_text(what: &str, s: &str, max: usize) -> Result<String, StockError> {
    let t = s.trim();
    if t.is_empty() || t.len() > max || t.chars().any(char::is_control) {
        return Err(StockError::Invalid(format!(
            "{what} must be 1 to {max} printable characters"
        )));
    }
    Ok(t.to_string())
}

/// A weight or price from the outside: finite and not negative.
pub fn non_negative(what: &str, v: f64) -> Result<f64, StockError> {
    if !v.is_finite() || v < 0.0 {
        return Err(StockError::Invalid(format!(
            "{what} must be a number ≥ 0 (got {v})"
        )));
    }
    Ok(v)
}

/// Checks a new material and fills in defaults (diameter, typical density, id from type + colour).
pub fn new_material(n: NewMaterial, default_diameter_mm: f64) -> Result<Material, StockError> {
    let material = clean_text("material", &n.material, 32)?;
    let colour = clean_text("colour", &n.colour, 64)?;
    let id = match n.id {
        Some(id) if is_id(&id) => id,
        Some(id) => {
            return Err(StockError::Invalid(format!(
                "material id {id:?} must be 1 to 64 of a-z, 0-9 and '-'"
            )));
        }
        None => slug(&format!("{material}-{colour}")),
    };
    if !is_id(&id) {
        return Err(StockError::Invalid(
            "cannot derive an id from material and colour; send an `id` (a-z, 0-9, '-')".into(),
        ));
    }
    let diameter_mm = n.diameter_mm.unwrap_or(default_diameter_mm);
    if !(diameter_mm.is_finite() && (0.5..=5.0).contains(&diameter_mm)) {
        return Err(StockError::Invalid(format!(
            "diameter_mm must be between 0.5 and 5 (1.75 or 2.85 for most filament); got {diameter_mm}"
        )));
    }
    // The shared table of typical densities, when the material states none.
    let density_g_cm3 = match n.density_g_cm3.or_else(|| typical_density(&material)) {
        Some(d) if d.is_finite() && (0.5..=3.0).contains(&d) => d,
        Some(d) => {
            return Err(StockError::Invalid(format!(
                "density_g_cm3 must be between 0.5 and 3 (PLA is 1.24); got {d}"
            )));
        }
        None => {
            return Err(StockError::Invalid(format!(
                "no typical density known for {material:?}: send density_g_cm3 (from the spool's data sheet)"
            )));
        }
    };
    let cost_per_kg = non_negative("cost_per_kg", n.cost_per_kg)?;
    let low_stock_g = n
        .low_stock_g
        .map(|g| non_negative("low_stock_g", g))
        .transpose()?;
    Ok(Material {
        id,
        material,
        colour,
        diameter_mm,
        density_g_cm3,
        cost_per_kg,
        low_stock_g,
    })
}

/// Where a spool is mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mount {
    pub printer: String,
    pub tool: u32,
}

/// One physical spool. What is left on it comes from the ledger, not from this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Spool {
    /// `s-<number>`.
    pub id: String,
    pub number: u64,
    pub material_id: String,
    /// Net filament on the spool when it arrived, g.
    pub initial_g: f64,
    /// The empty spool's own weight, g (so a weighed gross weight can be turned into net).
    pub tare_g: f64,
    #[serde(default)]
    pub lot: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub loaded: Option<Mount>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The id of spool `number`, and back.
pub fn spool_id(number: u64) -> String {
    format!("s-{number}")
}

pub fn spool_number(id: &str) -> Option<u64> {
    id.strip_prefix("s-")?.parse().ok()
}

/// A spool as the API receives it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSpool {
    pub material: String,
    pub initial_g: f64,
    #[serde(default)]
    pub tare_g: Option<f64>,
    #[serde(default)]
    pub lot: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    /// How many identical spools arrived (a delivery), default 1.
    #[serde(default)]
    pub count: Option<u32>,
}

/// A spool as the API shows it: the record, its material, and what the ledger says is left.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SpoolView {
    #[serde(flatten)]
    pub spool: Spool,
    pub material: String,
    pub colour: String,
    pub remaining_g: f64,
    /// What a scale would show with the spool on it, g.
    pub gross_g: f64,
}

/// What a scheduler needs to know about the spool on one tool (seam with the scheduler).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LoadedSpool {
    pub spool_id: String,
    pub material: String,
    pub colour: String,
    pub remaining_g: f64,
}

/// The running inventory in memory: materials, spools, their ledger sums, and job bookings.
#[derive(Debug, Default)]
pub struct Stock {
    pub materials: BTreeMap<String, Material>,
    /// By spool number.
    pub spools: BTreeMap<u64, Spool>,
    /// Σ ledger rows per spool number (remaining = initial + this).
    pub ledger_sum_g: BTreeMap<u64, f64>,
    /// Per job attempt ([`ledger::booking_key`]).
    pub bookings: BTreeMap<String, ledger::JobBooking>,
}

impl Stock {
    pub fn remaining_g(&self, s: &Spool) -> f64 {
        s.initial_g + self.ledger_sum_g.get(&s.number).copied().unwrap_or(0.0)
    }

    pub fn spool_by_id(&self, id: &str) -> Option<&Spool> {
        self.spools.get(&spool_number(id)?)
    }

    pub fn view(&self, s: &Spool) -> SpoolView {
        let m = self.materials.get(&s.material_id);
        let remaining_g = self.remaining_g(s);
        SpoolView {
            spool: s.clone(),
            material: m.map(|m| m.material.clone()).unwrap_or_default(),
            colour: m.map(|m| m.colour.clone()).unwrap_or_default(),
            remaining_g,
            gross_g: remaining_g + s.tare_g,
        }
    }

    /// The spool mounted on `printer`'s `tool`, if any.
    pub fn on_tool(&self, printer: &str, tool: u32) -> Option<&Spool> {
        self.spools.values().find(|s| {
            s.loaded
                .as_ref()
                .is_some_and(|l| l.printer == printer && l.tool == tool)
        })
    }

    /// Per tool (index = tool number), what is mounted on `printer`.
    pub fn loaded_spools(&self, printer: &str) -> Vec<Option<LoadedSpool>> {
        let mut out: Vec<Option<LoadedSpool>> = vec![];
        for s in self.spools.values() {
            let Some(l) = s.loaded.as_ref().filter(|l| l.printer == printer) else {
                continue;
            };
            let i = l.tool as usize;
            if out.len() <= i {
                out.resize(i + 1, None);
            }
            let v = self.view(s);
            out[i] = Some(LoadedSpool {
                spool_id: s.id.clone(),
                material: v.material,
                colour: v.colour,
                remaining_g: v.remaining_g,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pla(id: Option<&str>) -> NewMaterial {
        NewMaterial {
            id: id.map(str::to_string),
            material: "PLA".into(),
            colour: "Galaxy Black".into(),
            diameter_mm: None,
            density_g_cm3: None,
            cost_per_kg: 20.0,
            low_stock_g: None,
        }
    }

    #[test]
    fn a_material_gets_an_id_and_a_typical_density() {
        let m = new_material(pla(None), 1.75).expect("valid");
        assert_eq!(m.id, "pla-galaxy-black");
        assert_eq!(m.density_g_cm3, 1.24);
        // 1 m of 1.75 mm PLA weighs about 2.98 g.
        assert!((m.grams_per_mm() * 1000.0 - 2.982).abs() < 0.01);
    }

    #[test]
    fn bad_materials_say_what_to_fix() {
        let mut n = pla(Some("Bad Id"));
        assert!(new_material(n.clone(), 1.75).is_err());
        n.id = None;
        n.cost_per_kg = -1.0;
        let e = new_material(n.clone(), 1.75).expect_err("negative price");
        assert!(e.to_string().contains("cost_per_kg"), "{e}");
        n.cost_per_kg = 1.0;
        n.material = "Unobtainium".into();
        let e = new_material(n, 1.75).expect_err("no density");
        assert!(e.to_string().contains("density_g_cm3"), "{e}");
    }

    #[test]
    fn spool_ids_round_trip() {
        assert_eq!(spool_number(&spool_id(42)), Some(42));
        assert_eq!(spool_number("x-1"), None);
    }
}

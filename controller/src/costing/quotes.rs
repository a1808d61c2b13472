//! Quotes (pure): what a G-code file would cost and what the customer pays, before anyone
//! orders it.
//!
//! Cost uses the same formulas as [`crate::costing`] with the analyzer's figures: grams per
//! tool from each tool's material, print time = motion estimate + heat-up. The earliest
//! completion comes from the scheduler itself (`Farm::promise`), not from here.

use crate::costing::{Breakdown, Pricing, breakdown, price};
use serde::Serialize;

/// The filament a quote assumes on one tool.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ToolMaterial {
    /// A material of the inventory, or `None` for the pricing defaults.
    pub material_id: Option<String>,
    pub grams_per_mm: f64,
    pub cost_per_kg: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ToolQuote {
    pub tool: u32,
    pub material_id: Option<String>,
    pub mm: f64,
    pub grams: f64,
    pub cost: f64,
}

/// What a file would cost to print once, and its price.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Estimate {
    pub tools: Vec<ToolQuote>,
    pub grams: f64,
    pub print_s: f64,
    pub cost: Breakdown,
    pub price: f64,
}

/// Cost and price of one print from the analyzer's mm per tool and time.
pub fn estimate(
    filament_mm: &[f64],
    print_s: f64,
    materials: &[ToolMaterial],
    fallback: &ToolMaterial,
    power_w: f64,
    p: &Pricing,
) -> Estimate {
    let tools: Vec<ToolQuote> = filament_mm
        .iter()
        .enumerate()
        .filter(|(_, mm)| mm.is_finite() && **mm > 0.0)
        .map(|(i, &mm)| {
            let m = materials.get(i).unwrap_or(fallback);
            let grams = mm * m.grams_per_mm;
            ToolQuote {
                tool: i as u32,
                material_id: m.material_id.clone(),
                mm,
                grams,
                cost: grams * m.cost_per_kg / 1000.0,
            }
        })
        .collect();
    let material: f64 = tools.iter().map(|t| t.cost).sum();
    let print_s = print_s.max(0.0);
    let cost = breakdown(material, print_s / 3600.0, power_w, p);
    Estimate {
        grams: tools.iter().map(|t| t.grams).sum(),
        tools,
        print_s,
        price: price(cost.total, p),
        cost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rates() -> Pricing {
        Pricing {
            machine_per_hour: 2.0,
            energy_per_kwh: 0.5,
            markup: 1.0,
            minimum_price: 0.0,
            ..Pricing::default()
        }
    }

    #[test]
    fn a_two_tool_quote() {
        let pla = ToolMaterial {
            material_id: Some("pla".into()),
            grams_per_mm: 0.003,
            cost_per_kg: 20.0,
        };
        let fallback = ToolMaterial {
            material_id: None,
            grams_per_mm: 0.002,
            cost_per_kg: 10.0,
        };
        let e = estimate(
            &[1000.0, 0.0, 500.0],
            7200.0,
            &[pla],
            &fallback,
            100.0,
            &rates(),
        );
        assert_eq!(e.tools.len(), 2, "unused tools are left out");
        assert!((e.grams - 4.0).abs() < 1e-9);
        // material 3 g × 0.02 + 1 g × 0.01 = 0.07; machine 4.0; energy 0.1 kW × 2 h × 0.5 = 0.1.
        assert!((e.cost.total - 4.17).abs() < 1e-9);
        assert!((e.price - 8.34).abs() < 1e-9);
    }
}

//! Quotes (pure): what a G-code file would cost and cost the customer, and the earliest time
//! the farm could promise it, before anyone orders it.
//!
//! Cost uses the same formulas as [`crate::costing`] with the analyzer's figures: grams per
//! tool from each tool's material, print time = motion estimate + heat-up. The completion
//! estimate is an honest list schedule over the farm as it stands: printers that can take work
//! become free now (idle), when their current job should end (busy, plus a bed clear if an
//! operator must do it), or after a bed clear (waiting for one); queued jobs take the earliest
//! free printer in queue order; the quoted file goes after them.

use crate::config::PricingConfig;
use crate::costing::{Breakdown, breakdown, price};
use crate::fleet::PrinterState;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

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
    p: &PricingConfig,
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

/// A printer as the completion estimate sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Availability {
    /// Can start a job at this time.
    FreeAt(OffsetDateTime),
    /// Offline, in error, in maintenance: cannot be promised.
    Unavailable,
}

/// Whether and when a printer can take new work, from what the farm knows of it.
pub fn availability(
    state: PrinterState,
    blocked_by_maintenance: bool,
    auto_eject: bool,
    job_remaining_s: Option<f64>,
    now: OffsetDateTime,
    bed_clear_s: f64,
) -> Availability {
    let secs = |s: f64| Duration::seconds_f64(if s.is_finite() { s.max(0.0) } else { 0.0 });
    let clear = if auto_eject { 0.0 } else { bed_clear_s };
    match state {
        _ if blocked_by_maintenance => Availability::Unavailable,
        PrinterState::Idle => Availability::FreeAt(now),
        PrinterState::Busy | PrinterState::Paused => {
            Availability::FreeAt(now + secs(job_remaining_s.unwrap_or(0.0)) + secs(clear))
        }
        PrinterState::AwaitingClear => Availability::FreeAt(now + secs(bed_clear_s)),
        PrinterState::Offline | PrinterState::Error | PrinterState::Maintenance => {
            Availability::Unavailable
        }
    }
}

/// When each queued job (durations in queue order) would start, each on the earliest free
/// printer. `None` for all when no printer can take work.
pub fn planned_starts(printers: &[Availability], queued_s: &[f64]) -> Vec<Option<OffsetDateTime>> {
    let mut free: Vec<OffsetDateTime> = printers
        .iter()
        .filter_map(|a| match a {
            Availability::FreeAt(t) => Some(*t),
            Availability::Unavailable => None,
        })
        .collect();
    let secs = |s: f64| Duration::seconds_f64(if s.is_finite() { s.max(0.0) } else { 0.0 });
    queued_s
        .iter()
        .map(|d| {
            let (i, t) = free.iter().copied().enumerate().min_by_key(|(_, t)| *t)?;
            free[i] = t + secs(*d);
            Some(t)
        })
        .collect()
}

/// When the quoted print (taking `print_s`) would be done: after `queued` jobs (durations, in
/// queue order) are placed on the earliest free printer each. `None`: no printer can take it.
pub fn earliest_completion(
    printers: &[Availability],
    queued_s: &[f64],
    print_s: f64,
) -> Option<OffsetDateTime> {
    let mut free: Vec<OffsetDateTime> = printers
        .iter()
        .filter_map(|a| match a {
            Availability::FreeAt(t) => Some(*t),
            Availability::Unavailable => None,
        })
        .collect();
    if free.is_empty() {
        return None;
    }
    let secs = |s: f64| Duration::seconds_f64(if s.is_finite() { s.max(0.0) } else { 0.0 });
    for d in queued_s {
        let (i, t) = free.iter().copied().enumerate().min_by_key(|(_, t)| *t)?;
        free[i] = t + secs(*d);
    }
    free.iter().min().map(|t| *t + secs(print_s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn rates() -> PricingConfig {
        PricingConfig {
            machine_per_hour: 2.0,
            energy_per_kwh: 0.5,
            markup: 1.0,
            minimum_price: 0.0,
            ..PricingConfig::default()
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

    #[test]
    fn completion_is_after_the_queue_on_the_earliest_free_printer() {
        let h = |n: i64| T0 + Duration::hours(n);
        let p = [
            Availability::FreeAt(h(0)),
            Availability::FreeAt(h(1)),
            Availability::Unavailable,
        ];
        // Idle printer, nothing queued: now + print time.
        assert_eq!(
            earliest_completion(&p, &[], 1800.0),
            Some(T0 + Duration::minutes(30))
        );
        // Two 2 h jobs queued: they take both printers (ends 2 h and 3 h); ours starts at 2 h.
        assert_eq!(
            earliest_completion(&p, &[7200.0, 7200.0], 3600.0),
            Some(h(3))
        );
        assert_eq!(
            earliest_completion(&[Availability::Unavailable], &[], 1.0),
            None
        );
        let starts = planned_starts(&p, &[7200.0, 7200.0, 60.0]);
        assert_eq!(starts, vec![Some(h(0)), Some(h(1)), Some(h(2))]);
    }

    #[test]
    fn which_printers_can_take_work_and_when() {
        let a = |s, blocked, eject, left| availability(s, blocked, eject, left, T0, 600.0);
        assert_eq!(
            a(PrinterState::Idle, false, false, None),
            Availability::FreeAt(T0)
        );
        assert_eq!(
            a(PrinterState::Idle, true, false, None),
            Availability::Unavailable
        );
        assert_eq!(
            a(PrinterState::Busy, false, false, Some(60.0)),
            Availability::FreeAt(T0 + Duration::seconds(660))
        );
        assert_eq!(
            a(PrinterState::Busy, false, true, Some(60.0)),
            Availability::FreeAt(T0 + Duration::seconds(60))
        );
        assert_eq!(
            a(PrinterState::AwaitingClear, false, false, None),
            Availability::FreeAt(T0 + Duration::seconds(600))
        );
        assert_eq!(
            a(PrinterState::Offline, false, false, None),
            Availability::Unavailable
        );
    }
}

//! What printing costs (pure): per job, per order, per period.
//!
//! A job's cost is
//! - **material**: the grams the ledger booked to spools × each spool's material price per kg
//!   at booking time (mm printed with no spool loaded are priced with `[pricing]
//!   material_per_kg` at `default_density_g_cm3`, 1.75 mm);
//! - **machine**: print hours × `machine_per_hour`;
//! - **energy**: the printer's power draw (kW) × print hours × `energy_per_kwh`;
//!
//! and **waste** is what failed: the whole cost of a failed or cancelled job, plus the material
//! of earlier attempts of a requeued job. Price = cost × (1 + markup), at least the minimum.
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | cost of a job, an order, a period (pure) |
//! | [`quotes`] | price and earliest completion of a G-code file before it is ordered (pure) |
//! | [`http`] | `/api/v1/costs`: a job's cost, the period report (JSON, CSV) |
//! | [`quotes_http`] | `POST /api/v1/quotes` |

pub mod http;
pub mod quotes;
pub mod quotes_http;

use crate::inventory::ledger::JobBooking;
use crate::jobs::{Job, JobState};
use farm_protocol::gcode::filament_grams;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use time::OffsetDateTime;

/// The farm's rates (the config's `[pricing]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pricing {
    /// Shown with every amount; amounts are plain numbers in this currency.
    pub currency: String,
    /// Material price for quotes and jobs with no known material, per kg.
    pub material_per_kg: f64,
    /// Machine time (wear, depreciation, floor space), per hour of printing.
    pub machine_per_hour: f64,
    /// Electricity, per kWh.
    pub energy_per_kwh: f64,
    /// A printer's average power draw while printing, W.
    pub printer_power_w: f64,
    /// Per-printer power draw, W, where it differs (`[pricing.power_w]` `p-1 = 350`).
    pub power_w: std::collections::BTreeMap<String, f64>,
    /// Price = cost × (1 + markup), but at least `minimum_price`.
    pub markup: f64,
    pub minimum_price: f64,
    /// Density and diameter assumed for quotes that name no material.
    pub default_density_g_cm3: f64,
}

impl Default for Pricing {
    fn default() -> Self {
        Self {
            currency: "EUR".into(),
            material_per_kg: 25.0,
            machine_per_hour: 1.0,
            energy_per_kwh: 0.30,
            printer_power_w: 150.0,
            power_w: Default::default(),
            markup: 0.5,
            minimum_price: 5.0,
            default_density_g_cm3: farm_protocol::materials::DEFAULT_DENSITY_G_CM3,
        }
    }
}

impl Pricing {
    /// A printer's power draw while printing, W: its own value, else the default.
    pub fn power_w(&self, printer: &str) -> f64 {
        self.power_w
            .get(printer)
            .copied()
            .unwrap_or(self.printer_power_w)
    }
}

/// Costs of one thing, split by kind (currency units of `[pricing] currency`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Breakdown {
    pub material: f64,
    pub machine: f64,
    pub energy: f64,
    pub total: f64,
}

/// The running costs of `hours` on a printer drawing `power_w`, plus `material`.
pub fn breakdown(material: f64, hours: f64, power_w: f64, p: &Pricing) -> Breakdown {
    let machine = hours * p.machine_per_hour;
    let energy = power_w / 1000.0 * hours * p.energy_per_kwh;
    Breakdown {
        material,
        machine,
        energy,
        total: material + machine + energy,
    }
}

/// What the farm charges for something that costs `cost` to make.
pub fn price(cost: f64, p: &Pricing) -> f64 {
    (cost * (1.0 + p.markup)).max(p.minimum_price)
}

/// Grams per mm assumed when nothing better is known.
pub fn default_grams_per_mm(p: &Pricing) -> f64 {
    filament_grams(1.0, 1.75, p.default_density_g_cm3)
}

/// Material of one kind used by a job.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MaterialUse {
    /// `None`: printed with no spool loaded.
    pub material_id: Option<String>,
    pub grams: f64,
    pub cost: f64,
}

/// The cost of one job.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct JobCost {
    pub job_id: String,
    pub printer: Option<String>,
    pub state: JobState,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    pub hours: f64,
    pub power_w: f64,
    pub energy_kwh: f64,
    pub grams: f64,
    pub materials: Vec<MaterialUse>,
    pub cost: Breakdown,
    /// The part of `cost.total` that produced nothing sellable.
    pub waste: f64,
    /// Revenue of the job: for an order's job, its share of the price the shop paid
    /// ([`share_order_prices`]); otherwise the list price at the pricing rules. 0 if it did not
    /// complete.
    pub price: f64,
    pub margin: f64,
}

/// Costs a job from its bookings (every attempt) at `power_w`. Running jobs count to `now`.
pub fn job_cost(
    job: &Job,
    bookings: &[JobBooking],
    power_w: f64,
    p: &Pricing,
    now: OffsetDateTime,
) -> JobCost {
    let hours = match job.started_at {
        Some(s) => ((job.finished_at.unwrap_or(now) - s).as_seconds_f64() / 3600.0).max(0.0),
        None => 0.0,
    };
    let mut uses: BTreeMap<Option<String>, (f64, f64)> = BTreeMap::new();
    let mut earlier_attempts = 0.0;
    for b in bookings {
        for s in b.segments() {
            let (grams, cost) = match (&s.spool_id, s.cost_per_kg) {
                (Some(_), Some(per_kg)) => (s.grams, s.grams * per_kg / 1000.0),
                _ => {
                    let g = s.mm * default_grams_per_mm(p);
                    (g, g * p.material_per_kg / 1000.0)
                }
            };
            let e = uses.entry(s.material_id.clone()).or_default();
            e.0 += grams;
            e.1 += cost;
            if b.attempt != job.attempts {
                earlier_attempts += cost;
            }
        }
    }
    let materials: Vec<MaterialUse> = uses
        .into_iter()
        .map(|(material_id, (grams, cost))| MaterialUse {
            material_id,
            grams,
            cost,
        })
        .collect();
    let material: f64 = materials.iter().map(|m| m.cost).sum();
    let cost = breakdown(material, hours, power_w, p);
    let completed = job.state == JobState::Completed;
    let waste = if completed {
        earlier_attempts
    } else if job.state.is_final() {
        cost.total
    } else {
        earlier_attempts
    };
    let list_price = if completed {
        price(cost.total - waste, p)
    } else {
        0.0
    };
    JobCost {
        job_id: job.id.clone(),
        printer: job.printer_id.clone(),
        state: job.state,
        finished_at: job.finished_at,
        hours,
        power_w,
        energy_kwh: power_w / 1000.0 * hours,
        grams: materials.iter().map(|m| m.grams).sum(),
        materials,
        cost,
        waste,
        price: list_price,
        margin: list_price - cost.total,
    }
}

/// Replaces the list price of order jobs by their share of what the shop paid: an order's
/// price is split over its completed jobs in proportion to their list prices (equally if
/// those are all 0). `order_of` gives a job's order id; `orders` each order's price and the
/// list prices of *all* its completed jobs (also those outside a report's period), so a
/// period's revenue is its share, never the whole order twice.
pub fn share_order_prices(
    costs: &mut [JobCost],
    order_of: impl Fn(&str) -> Option<String>,
    orders: &std::collections::HashMap<String, (f64, Vec<f64>)>,
) {
    for c in costs.iter_mut() {
        if c.state != JobState::Completed {
            continue;
        }
        let Some((paid, list)) = order_of(&c.job_id).and_then(|o| orders.get(&o)) else {
            continue;
        };
        let total: f64 = list.iter().sum();
        let share = if total > 0.0 {
            c.price / total
        } else if list.is_empty() {
            0.0
        } else {
            1.0 / list.len() as f64
        };
        c.price = paid * share;
        c.margin = c.price - c.cost.total;
    }
}

/// An order's economics from its jobs' costs and its agreed price.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OrderCost {
    pub cost: f64,
    pub waste: f64,
    pub price: f64,
    pub margin: f64,
    /// margin / price (0 for a free order).
    pub margin_fraction: f64,
}

pub fn order_cost(jobs: &[JobCost], price: f64) -> OrderCost {
    let cost: f64 = jobs.iter().map(|j| j.cost.total).sum();
    let margin = price - cost;
    OrderCost {
        cost,
        waste: jobs.iter().map(|j| j.waste).sum(),
        price,
        margin,
        margin_fraction: if price > 0.0 { margin / price } else { 0.0 },
    }
}

/// Totals of a group of jobs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub jobs: u64,
    pub hours: f64,
    pub grams: f64,
    pub revenue: f64,
    pub cost: f64,
    pub waste: f64,
    pub margin: f64,
}

impl Totals {
    fn add(&mut self, j: &JobCost) {
        self.jobs += 1;
        self.hours += j.hours;
        self.grams += j.grams;
        self.revenue += j.price;
        self.cost += j.cost.total;
        self.waste += j.waste;
        self.margin = self.revenue - self.cost;
    }
}

/// Material used over a period, per material.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MaterialTotals {
    pub grams: f64,
    pub cost: f64,
    pub jobs: u64,
}

/// A period's report: totals, by printer, by material.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Report {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub currency: String,
    pub totals: Totals,
    pub by_printer: BTreeMap<String, Totals>,
    /// Keyed by material id (`none` for filament printed with no spool loaded).
    pub by_material: BTreeMap<String, MaterialTotals>,
    pub jobs: Vec<JobCost>,
}

/// Jobs that finished in `[from, to)`, summed.
pub fn report(
    costs: Vec<JobCost>,
    from: OffsetDateTime,
    to: OffsetDateTime,
    currency: &str,
) -> Report {
    let jobs: Vec<JobCost> = costs
        .into_iter()
        .filter(|j| j.finished_at.is_some_and(|f| f >= from && f < to))
        .collect();
    let mut totals = Totals::default();
    let mut by_printer: BTreeMap<String, Totals> = BTreeMap::new();
    let mut by_material: BTreeMap<String, MaterialTotals> = BTreeMap::new();
    for j in &jobs {
        totals.add(j);
        by_printer
            .entry(j.printer.clone().unwrap_or_else(|| "none".into()))
            .or_default()
            .add(j);
        for m in &j.materials {
            let e = by_material
                .entry(m.material_id.clone().unwrap_or_else(|| "none".into()))
                .or_default();
            e.grams += m.grams;
            e.cost += m.cost;
            e.jobs += 1;
        }
    }
    Report {
        from,
        to,
        currency: currency.into(),
        totals,
        by_printer,
        by_material,
        jobs,
    }
}

/// The report's jobs as CSV (one row per job, a header first).
pub fn csv(r: &Report) -> String {
    let mut o = String::from(
        "job_id,printer,state,finished_at,hours,grams,material_cost,machine_cost,energy_kwh,energy_cost,total_cost,waste,price,margin\n",
    );
    for j in &r.jobs {
        let finished = j
            .finished_at
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "{},{},{},{},{:.4},{:.2},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4},{:.4}",
            csv_field(&j.job_id),
            csv_field(j.printer.as_deref().unwrap_or("")),
            j.state.as_str(),
            finished,
            j.hours,
            j.grams,
            j.cost.material,
            j.cost.machine,
            j.energy_kwh,
            j.cost.energy,
            j.cost.total,
            j.waste,
            j.price,
            j.margin
        );
    }
    o
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::ledger::{Segment, ToolBooking};
    use time::Duration;

    const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn rates() -> Pricing {
        Pricing {
            machine_per_hour: 2.0,
            energy_per_kwh: 0.25,
            material_per_kg: 30.0,
            markup: 0.5,
            minimum_price: 1.0,
            ..Pricing::default()
        }
    }

    fn booking(attempt: u32, grams: f64, per_kg: f64) -> JobBooking {
        JobBooking {
            job_id: "job-1".into(),
            attempt,
            printer: "p-1".into(),
            tools: vec![ToolBooking {
                booked_mm: grams * 300.0,
                segments: vec![Segment {
                    spool_id: Some("s-1".into()),
                    material_id: Some("pla-black".into()),
                    mm: grams * 300.0,
                    grams,
                    cost_per_kg: Some(per_kg),
                }],
            }],
        }
    }

    fn job(state: JobState, attempts: u32) -> Job {
        let mut j = crate::jobs::sample(1);
        j.state = state;
        j.attempts = attempts;
        j.printer_id = Some("p-1".into());
        j.started_at = Some(T0);
        j.finished_at = Some(T0 + Duration::hours(2));
        j
    }

    #[test]
    fn an_orders_price_is_shared_over_its_completed_jobs_by_list_price() {
        let job = |id: &str, state: JobState, list: f64, cost: f64| JobCost {
            job_id: id.into(),
            printer: None,
            state,
            finished_at: None,
            hours: 0.0,
            power_w: 0.0,
            energy_kwh: 0.0,
            grams: 0.0,
            materials: vec![],
            cost: Breakdown {
                total: cost,
                ..Breakdown::default()
            },
            waste: 0.0,
            price: list,
            margin: list - cost,
        };
        let mut costs = vec![
            job("a", JobState::Completed, 30.0, 10.0),
            job("f", JobState::Failed, 0.0, 4.0),
            job("x", JobState::Completed, 8.0, 2.0),
        ];
        // Order o: jobs a and b (b completed outside this period), paid 20.
        let orders = std::collections::HashMap::from([("o".to_string(), (20.0, vec![30.0, 10.0]))]);
        let order_of = |j: &str| matches!(j, "a" | "b" | "f").then(|| "o".to_string());
        share_order_prices(&mut costs, order_of, &orders);
        assert!(
            (costs[0].price - 15.0).abs() < 1e-9,
            "a's share: 30/40 of 20"
        );
        assert!((costs[0].margin - 5.0).abs() < 1e-9);
        assert_eq!(costs[1].price, 0.0, "a failed attempt earns nothing");
        assert_eq!(
            costs[2].price, 8.0,
            "a job of no order keeps its list price"
        );
    }

    #[test]
    fn a_completed_job_costs_material_machine_and_energy() {
        let c = job_cost(
            &job(JobState::Completed, 1),
            &[booking(1, 100.0, 20.0)],
            200.0,
            &rates(),
            T0,
        );
        // 100 g at 20/kg = 2.00; 2 h × 2.00 = 4.00; 0.2 kW × 2 h × 0.25 = 0.10.
        assert!((c.cost.material - 2.0).abs() < 1e-9);
        assert!((c.cost.machine - 4.0).abs() < 1e-9);
        assert!((c.cost.energy - 0.1).abs() < 1e-9);
        assert!((c.cost.total - 6.1).abs() < 1e-9);
        assert_eq!(c.waste, 0.0);
        assert!((c.price - 9.15).abs() < 1e-9);
        assert!((c.margin - 3.05).abs() < 1e-9);
    }

    #[test]
    fn failures_are_waste() {
        let failed = job_cost(
            &job(JobState::Failed, 1),
            &[booking(1, 50.0, 20.0)],
            200.0,
            &rates(),
            T0,
        );
        assert_eq!((failed.waste, failed.price), (failed.cost.total, 0.0));
        // Second attempt completed: the first attempt's material is waste.
        let c = job_cost(
            &job(JobState::Completed, 2),
            &[booking(1, 50.0, 20.0), booking(2, 100.0, 20.0)],
            200.0,
            &rates(),
            T0,
        );
        assert!((c.waste - 1.0).abs() < 1e-9);
        assert!((c.cost.material - 3.0).abs() < 1e-9);
    }

    #[test]
    fn unattributed_filament_uses_the_default_price() {
        let mut b = booking(1, 0.0, 0.0);
        b.tools[0].segments[0] = Segment {
            spool_id: None,
            material_id: None,
            mm: 1000.0,
            grams: 0.0,
            cost_per_kg: None,
        };
        let c = job_cost(&job(JobState::Completed, 1), &[b], 0.0, &rates(), T0);
        let g = 1000.0 * default_grams_per_mm(&rates());
        assert!((c.grams - g).abs() < 1e-9);
        assert!((c.cost.material - g * 0.030).abs() < 1e-9);
    }

    #[test]
    fn orders_reports_and_csv() {
        let a = job_cost(
            &job(JobState::Completed, 1),
            &[booking(1, 100.0, 20.0)],
            200.0,
            &rates(),
            T0,
        );
        let f = job_cost(
            &job(JobState::Failed, 1),
            &[booking(1, 50.0, 20.0)],
            200.0,
            &rates(),
            T0,
        );
        let o = order_cost(&[a.clone(), f.clone()], 20.0);
        assert!((o.cost - (a.cost.total + f.cost.total)).abs() < 1e-9);
        assert!((o.margin - (20.0 - o.cost)).abs() < 1e-9);
        let r = report(
            vec![a.clone(), f.clone()],
            T0,
            T0 + Duration::days(1),
            "EUR",
        );
        assert_eq!(r.totals.jobs, 2);
        assert!((r.totals.revenue - a.price).abs() < 1e-9);
        assert!((r.by_material["pla-black"].grams - 150.0).abs() < 1e-9);
        assert_eq!(r.by_printer["p-1"].jobs, 2);
        let empty = report(
            vec![a],
            T0 + Duration::days(1),
            T0 + Duration::days(2),
            "EUR",
        );
        assert_eq!(empty.totals.jobs, 0);
        let text = csv(&r);
        assert_eq!(text.lines().count(), 3);
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("job-1,p-1,completed,"))
        );
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }

    #[test]
    fn price_has_a_floor() {
        assert_eq!(price(0.1, &rates()), 1.0);
        assert!((price(10.0, &rates()) - 15.0).abs() < 1e-9);
    }
}

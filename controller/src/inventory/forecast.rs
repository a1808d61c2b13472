//! Stock per material + colour, low-stock alerts, and the shortage forecast (pure).
//!
//! Users ask for alerts on the aggregate ("we are short of black PETG"), not per spool
//! (anchors §3 #6), so everything here is keyed by material type and colour.

use serde::Serialize;
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// How much the farm holds of one material + colour.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StockLevel {
    pub material: String,
    pub colour: String,
    /// Σ remaining over spools with filament left, g (negative remainders count as 0).
    pub remaining_g: f64,
    pub spools: u32,
    /// Alert below this, g.
    pub threshold_g: f64,
    pub low: bool,
}

/// One spool's contribution: (material, colour, remaining g, its material's threshold if set).
pub struct SpoolStock<'a> {
    pub material: &'a str,
    pub colour: &'a str,
    pub remaining_g: f64,
    pub threshold_g: Option<f64>,
}

/// Aggregates spools per material + colour. `known` lists every material + colour the farm
/// stocks (with its threshold), so one with no spools left still shows, as low.
pub fn stock_levels<'a>(
    spools: impl IntoIterator<Item = SpoolStock<'a>>,
    known: impl IntoIterator<Item = (&'a str, &'a str, Option<f64>)>,
    default_threshold_g: f64,
) -> Vec<StockLevel> {
    let mut m: BTreeMap<(String, String), (f64, u32, Option<f64>)> = BTreeMap::new();
    for (mat, col, th) in known {
        let e = m.entry((mat.into(), col.into())).or_default();
        e.2 = max_opt(e.2, th);
    }
    for s in spools {
        let e = m.entry((s.material.into(), s.colour.into())).or_default();
        if s.remaining_g > 0.0 {
            e.0 += s.remaining_g;
            e.1 += 1;
        }
        e.2 = max_opt(e.2, s.threshold_g);
    }
    m.into_iter()
        .map(|((material, colour), (remaining_g, spools, th))| {
            let threshold_g = th.unwrap_or(default_threshold_g);
            StockLevel {
                material,
                colour,
                remaining_g,
                spools,
                threshold_g,
                low: remaining_g < threshold_g,
            }
        })
        .collect()
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// Filament the queue will need: one job (or part of one) of one material + colour.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Demand {
    pub material: String,
    /// `None`: any colour of the material (jobs that do not say).
    pub colour: Option<String>,
    pub grams: f64,
    /// When the job is planned to start (it draws its filament from then on).
    #[serde(with = "time::serde::rfc3339")]
    pub eta: OffsetDateTime,
}

/// The forecast for one material + colour.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Shortage {
    pub material: String,
    /// `None`: demand that accepts any colour, against all colours' stock.
    pub colour: Option<String>,
    pub stock_g: f64,
    pub demand_g: f64,
    /// `demand − stock` when positive, else 0.
    pub shortfall_g: f64,
    /// The planned start of the first job that stock cannot cover, at the current plan.
    #[serde(with = "time::serde::rfc3339::option")]
    pub runs_out_at: Option<OffsetDateTime>,
    pub jobs: u32,
}

/// Demand against stock, in plan order: per material + colour, how much is needed, what is
/// missing, and when stock runs out. Only keys with demand are listed; shortages first.
pub fn forecast(demand: &[Demand], stock: &[StockLevel]) -> Vec<Shortage> {
    let mut by_key: BTreeMap<(String, Option<String>), Vec<&Demand>> = BTreeMap::new();
    for d in demand
        .iter()
        .filter(|d| d.grams.is_finite() && d.grams > 0.0)
    {
        by_key
            .entry((d.material.clone(), d.colour.clone()))
            .or_default()
            .push(d);
    }
    let mut out: Vec<Shortage> = by_key
        .into_iter()
        .map(|((material, colour), mut ds)| {
            let stock_g: f64 = stock
                .iter()
                .filter(|s| {
                    s.material.eq_ignore_ascii_case(&material)
                        && colour
                            .as_ref()
                            .is_none_or(|c| s.colour.eq_ignore_ascii_case(c))
                })
                .map(|s| s.remaining_g)
                .sum();
            ds.sort_by_key(|d| d.eta);
            let mut need = 0.0;
            let mut runs_out_at = None;
            for d in &ds {
                need += d.grams;
                if runs_out_at.is_none() && need > stock_g {
                    runs_out_at = Some(d.eta);
                }
            }
            Shortage {
                material,
                colour,
                stock_g,
                demand_g: need,
                shortfall_g: (need - stock_g).max(0.0),
                runs_out_at,
                jobs: ds.len() as u32,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (a.runs_out_at.is_none(), a.runs_out_at).cmp(&(b.runs_out_at.is_none(), b.runs_out_at))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn level(material: &str, colour: &str, g: f64) -> StockLevel {
        StockLevel {
            material: material.into(),
            colour: colour.into(),
            remaining_g: g,
            spools: 1,
            threshold_g: 0.0,
            low: false,
        }
    }

    #[test]
    fn low_stock_is_per_material_and_colour() {
        let spools = [
            SpoolStock {
                material: "PLA",
                colour: "black",
                remaining_g: 300.0,
                threshold_g: Some(500.0),
            },
            SpoolStock {
                material: "PLA",
                colour: "black",
                remaining_g: 300.0,
                threshold_g: None,
            },
            SpoolStock {
                material: "PLA",
                colour: "red",
                remaining_g: 100.0,
                threshold_g: None,
            },
            SpoolStock {
                material: "PLA",
                colour: "red",
                remaining_g: -3.0,
                threshold_g: None,
            },
        ];
        let levels = stock_levels(spools, [("PETG", "blue", None)], 250.0);
        let get = |c: &str| levels.iter().find(|l| l.colour == c).expect("level");
        assert_eq!((get("black").remaining_g, get("black").low), (600.0, false));
        assert_eq!(
            (get("red").remaining_g, get("red").spools, get("red").low),
            (100.0, 1, true)
        );
        assert!(get("blue").low, "a stocked colour with no spools is low");
    }

    #[test]
    fn forecast_says_when_stock_runs_out() {
        let d = |g: f64, h: i64, colour: Option<&str>| Demand {
            material: "PLA".into(),
            colour: colour.map(str::to_string),
            grams: g,
            eta: T0 + Duration::hours(h),
        };
        let stock = [level("PLA", "black", 500.0), level("PLA", "red", 200.0)];
        let f = forecast(
            &[
                d(300.0, 5, Some("black")),
                d(300.0, 2, Some("black")),
                d(100.0, 1, Some("red")),
                d(650.0, 3, None),
            ],
            &stock,
        );
        let black = f
            .iter()
            .find(|s| s.colour.as_deref() == Some("black"))
            .expect("black");
        assert_eq!((black.demand_g, black.shortfall_g), (600.0, 100.0));
        assert_eq!(black.runs_out_at, Some(T0 + Duration::hours(5)));
        let red = f
            .iter()
            .find(|s| s.colour.as_deref() == Some("red"))
            .expect("red");
        assert_eq!((red.shortfall_g, red.runs_out_at), (0.0, None));
        let any = f.iter().find(|s| s.colour.is_none()).expect("any colour");
        assert_eq!((any.stock_g, any.runs_out_at), (700.0, None));
        assert!(f[0].runs_out_at.is_some(), "shortages first");
    }
}

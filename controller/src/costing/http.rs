//! `/api/v1/jobs/{id}/cost` and `/api/v1/reports/costs`: what printing cost, per job and period.

use crate::api::problem::{Caller, Problem};
use crate::api::{AppState, require};
use crate::auth::Role;
use crate::costing::{self, JobCost};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A printer's power draw while printing, W: the registry's (`PATCH /printers/{id}/profile`),
/// else `[pricing.power_w]`, else `[pricing] printer_power_w`.
pub fn printer_power_w(st: &AppState, printer: &str) -> f64 {
    st.farm
        .printer(printer)
        .and_then(|v| v.power_w)
        .filter(|w| w.is_finite() && *w > 0.0)
        .unwrap_or_else(|| st.production.pricing.power_w(printer))
}

fn cost_of(st: &AppState, job: &crate::jobs::Job, now: OffsetDateTime) -> JobCost {
    let power = job
        .printer_id
        .as_deref()
        .map_or(0.0, |p| printer_power_w(st, p));
    costing::job_cost(
        job,
        &st.farm.bookings_of(&job.id),
        power,
        &st.production.pricing,
        now,
    )
}

/// Cost of a job: material (ledger grams × price), machine time, energy, waste.
#[utoipa::path(get, path = "/jobs/{id}/cost", tag = "costs", params(("id" = String, Path, description = "Id")), responses((status = 200, body = crate::costing::JobCost), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn job_cost(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let job = st
        .farm
        .job(&id)
        .ok_or_else(|| crate::farm::FarmError::NoJob(id))?;
    Ok(Json(cost_of(&st, &job, OffsetDateTime::now_utc())))
}

/// What an order cost the farm against what the shop paid for it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct OrderCostView {
    pub order_id: String,
    /// The farm's costing currency (`[pricing] currency`).
    pub currency: String,
    /// Every job of the order, failed attempts included (their material is waste).
    pub jobs: Vec<JobCost>,
    /// Cost, waste, the shop's price, margin.
    pub total: costing::OrderCost,
    /// Set when the order's price is in another currency than the costs (no conversion).
    pub warning: Option<String>,
}

/// Digits after the decimal point of a currency's minor unit (ISO 4217; 2 unless listed).
fn minor_digits(currency: &str) -> i32 {
    match currency.to_ascii_uppercase().as_str() {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" | "XAF" | "XOF" | "UGX" | "PYG" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
        _ => 2,
    }
}

/// Cost, price and margin of an order: the cost of each of its jobs (material from the
/// ledger, machine time, energy; failed attempts as waste) against the price the shop paid.
/// Staff only: a shop token does not see the farm's costs.
#[utoipa::path(get, path = "/orders/{id}/cost", tag = "costs", params(("id" = String, Path, description = "Order id")), responses((status = 200, body = OrderCostView), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn order_cost(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let order = st.farm.order_view(&id, None).ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "Not found",
            &format!("no order {id:?}; list orders with GET /api/v1/orders"),
        )
    })?;
    let now = OffsetDateTime::now_utc();
    let jobs: Vec<JobCost> = st
        .farm
        .jobs(None, 0, usize::MAX)
        .iter()
        .filter(|j| j.order.as_ref().is_some_and(|o| o.order_id == id))
        .map(|j| cost_of(&st, j, now))
        .collect();
    let currency = st.production.pricing.currency.clone();
    let (price, warning) = match &order.price {
        None => (
            0.0,
            Some("the order states no price: margin is minus the cost".into()),
        ),
        Some(m) => {
            let price = m.amount_minor as f64 / 10f64.powi(minor_digits(&m.currency));
            let warning = (!m.currency.eq_ignore_ascii_case(&currency)).then(|| {
                format!(
                    "the order is priced in {} but costs are in {currency}; the margin mixes them",
                    m.currency
                )
            });
            (price, warning)
        }
    };
    Ok(Json(OrderCostView {
        order_id: id,
        currency,
        total: costing::order_cost(&jobs, price),
        jobs,
        warning,
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// RFC 3339 (`2026-05-01T00:00:00Z`) or a date (`2026-05-01`, midnight UTC).
fn instant(what: &str, s: &str) -> Result<OffsetDateTime, Problem> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad query",
                &format!("{what} must be a date (2026-05-01) or an RFC 3339 time (2026-05-01T08:00:00Z); got {s:?}"),
            )
        })
}

/// Jobs finished in `[from, to)`: totals, by printer, by material, and every job. Default
/// period: the last 30 days. `format=csv` gives one row per job.
#[utoipa::path(get, path = "/reports/costs", tag = "costs", params(ReportQuery), responses((status = 200, description = "JSON, or CSV with `format=csv`", body = crate::costing::Report), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn report(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<ReportQuery>,
) -> Result<Response, Problem> {
    require(&c, Role::Viewer)?;
    let now = OffsetDateTime::now_utc();
    let to =
        q.to.as_deref()
            .map(|s| instant("to", s))
            .transpose()?
            .unwrap_or(now + time::Duration::seconds(1));
    let from = q
        .from
        .as_deref()
        .map(|s| instant("from", s))
        .transpose()?
        .unwrap_or(to - time::Duration::days(30));
    if from >= to {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad query",
            "`from` must be before `to`",
        ));
    }
    let in_period = st.farm.jobs_with_bookings(from, to);
    let mut costs: Vec<JobCost> = in_period
        .iter()
        .map(|(job, bookings)| {
            let power = job
                .printer_id
                .as_deref()
                .map_or(0.0, |p| printer_power_w(&st, p));
            costing::job_cost(job, bookings, power, &st.production.pricing, now)
        })
        .collect();
    // Revenue of order jobs is their share of what the shop paid, split over all the
    // order's completed jobs (also those outside the period).
    let order_of: HashMap<String, String> = in_period
        .iter()
        .filter_map(|(j, _)| Some((j.id.clone(), j.order.as_ref()?.order_id.clone())))
        .collect();
    let mut orders: HashMap<String, (f64, Vec<f64>)> = HashMap::new();
    if !order_of.is_empty() {
        let all = st.farm.jobs(None, 0, usize::MAX);
        for id in order_of.values() {
            if orders.contains_key(id) {
                continue;
            }
            let Some(paid) = st
                .farm
                .order_view(id, None)
                .and_then(|o| o.price)
                .map(|m| m.amount_minor as f64 / 10f64.powi(minor_digits(&m.currency)))
            else {
                continue; // no price stated: the list price stands
            };
            let list = all
                .iter()
                .filter(|j| j.order.as_ref().is_some_and(|o| &o.order_id == id))
                .map(|j| cost_of(&st, j, now))
                .filter(|c| c.state == crate::jobs::JobState::Completed)
                .map(|c| c.price)
                .collect();
            orders.insert(id.clone(), (paid, list));
        }
    }
    costing::share_order_prices(&mut costs, |j| order_of.get(j).cloned(), &orders);
    let r = costing::report(costs, from, to, &st.production.pricing.currency);
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(r).into_response()),
        Some("csv") => Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"costs.csv\"",
                ),
            ],
            costing::csv(&r),
        )
            .into_response()),
        Some(f) => Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad query",
            &format!("format must be json or csv; got {f:?}"),
        )),
    }
}

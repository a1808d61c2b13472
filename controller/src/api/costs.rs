//! `/api/v1/jobs/{id}/cost` and `/api/v1/reports/costs`: what printing cost, per job and period.

use super::problem::{Caller, Problem};
use super::{AppState, require};
use crate::auth::Role;
use crate::costing::{self, JobCost};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
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
    let costs: Vec<JobCost> = st
        .farm
        .jobs_with_bookings(from, to)
        .iter()
        .map(|(job, bookings)| {
            let power = job
                .printer_id
                .as_deref()
                .map_or(0.0, |p| printer_power_w(&st, p));
            costing::job_cost(job, bookings, power, &st.production.pricing, now)
        })
        .collect();
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

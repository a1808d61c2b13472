//! `/api/v1/queue`: the timeline and operators' queue actions.

use crate::api::problem::{Caller, JsonBody, Problem};
use crate::api::{AppState, require};
use crate::auth::Role;
use crate::jobs::production::QueuePatch;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde::Serialize;

/// One queued job on the timeline.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub job_id: String,
    pub printer_id: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub start: Option<time::OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub end: Option<time::OffsetDateTime>,
    pub waiting: Option<String>,
}

/// `GET /api/v1/queue`: the latest plan — every queued job with its slot or why it waits.
#[utoipa::path(get, path = "/queue", tag = "queue", responses((status = 200, description = "`{items: [TimelineEntry]}`: every queued job with its planned printer and times, or why it waits", body = Object), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn timeline(State(st): State<AppState>, c: Caller) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let plan = st.farm.timeline();
    // Planned jobs by start time, then the waiting ones in queue order (the order the
    // scheduler considered them: priority, due date, the operator's moves, age) — not by id,
    // which would put job-10 before job-9 and hide an operator's reordering.
    let mut items: Vec<TimelineEntry> = plan
        .slots()
        .iter()
        .map(|s| TimelineEntry {
            job_id: s.job_id.to_string(),
            printer_id: Some(s.printer_id.to_string()),
            start: Some(s.start),
            end: Some(s.end),
            waiting: None,
        })
        .collect();
    items.sort_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then_with(|| a.printer_id.cmp(&b.printer_id))
    });
    items.extend(plan.waitings().iter().map(|w| TimelineEntry {
        job_id: w.job_id.to_string(),
        printer_id: None,
        start: None,
        end: None,
        waiting: Some(w.reason.to_string()),
    }));
    Ok(Json(serde_json::json!({
        "items": items,
        "planned_jobs": plan.planned_jobs,
        "plan_took_us": plan.took_us,
    })))
}

/// `PATCH /api/v1/queue/{job}`: priority, pin, hold, move before another job.
#[utoipa::path(patch, path = "/queue/{id}", tag = "queue", params(("id" = String, Path, description = "Id")), request_body = crate::jobs::production::QueuePatch, responses((status = 200, body = crate::jobs::Job), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn update(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(p): JsonBody<QueuePatch>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    Ok(Json(st.farm.update_queued(&id, p).await?))
}

/// `POST /api/v1/queue/{job}/requeue`: print a failed or cancelled job again.
#[utoipa::path(post, path = "/queue/{id}/requeue", tag = "queue", params(("id" = String, Path, description = "Id")), responses((status = 201, body = crate::jobs::Job), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn requeue(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(st.farm.requeue(&id).await?),
    ))
}

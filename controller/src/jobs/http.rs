//! `/api/v1/jobs` and `/api/v1/files`: queueing G-code and handing it to agents.

use crate::api::openapi::{Page, ProblemDoc};
use crate::api::problem::{Caller, Problem};
use crate::api::{AppState, require};
use crate::auth::Role;
use crate::jobs::Job;
use crate::jobs::JobState;
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower::ServiceExt;
use utoipa::IntoParams;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only jobs in this state (`queued`, `printing`, `completed`, …).
    state: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1–1000 (default 100).
    limit: Option<usize>,
}

/// Jobs in queue order, a page at a time.
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListQuery),
    responses((status = 200, body = Page<Job>), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn list(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let bad = |d: String| Problem::new(StatusCode::BAD_REQUEST, "Bad query", &d);
    let state = q
        .state
        .as_deref()
        .map(str::parse::<JobState>)
        .transpose()
        .map_err(bad)?;
    let after = q
        .cursor
        .as_deref()
        .map(str::parse::<u64>)
        .transpose()
        .map_err(|_| bad("cursor must be a value from next_cursor".into()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = st.farm.jobs(state, after.unwrap_or(0), limit);
    let next = (items.len() == limit)
        .then(|| items.last().map(|j| j.number.to_string()))
        .flatten();
    Ok(Json(
        serde_json::json!({ "items": items, "next_cursor": next }),
    ))
}

/// One job.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, body = Job), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn show(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    st.farm
        .job(&id)
        .map(Json)
        .ok_or_else(|| crate::farm::FarmError::NoJob(id).into())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// Display name of the jobs (default `upload.gcode`).
    name: Option<String>,
    /// How many jobs (copies) to queue (default 1).
    copies: Option<u32>,
    /// Higher runs first (default 0).
    priority: Option<i32>,
    /// For a `.gcode.3mf`: the plate to print (may be left out if the file has one plate).
    plate: Option<u32>,
    /// Only a printer with this material loaded may print them (e.g. `PLA`; default: any).
    material: Option<String>,
    /// Only a printer with this colour loaded may print them (e.g. `orange`; default: any).
    colour: Option<String>,
}

/// Upload: the raw G-code (or `.bgcode`, or a `.gcode.3mf` with `plate`) is the body. Stored
/// once by sha256; `copies` jobs are queued. The file is checked (size, G-code, the archive)
/// and analysed before anything is queued; the answer carries the job's plate's analysis and,
/// for a 3MF, every plate's figures.
#[utoipa::path(post, path = "/jobs", tag = "jobs", params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The G-code file, as is"),
    responses((status = 201, description = "`{jobs: [Job], analysis}`: the queued jobs and the analyzer's figures", body = Object), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn upload(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<UploadQuery>,
    req: Request,
) -> Result<Response, Problem> {
    require(&c, Role::Operator)?;
    let name = crate::catalog::files_http::file_name(q.name)?;
    let needs = crate::jobs::Needs::new(q.material, q.colour)
        .map_err(|d| Problem::new(StatusCode::BAD_REQUEST, "Bad query", &d))?;
    let stored = crate::catalog::files_http::receive_gcode(&st, req).await?;
    let jobs = st
        .farm
        .add_jobs_needing(
            &name,
            &stored,
            q.plate,
            q.copies.unwrap_or(1),
            q.priority.unwrap_or(0),
            &needs,
        )
        .await?;
    let analysis = stored.plate(q.plate).map_or(&stored.analysis, |(_, a)| a);
    let plates: Vec<_> = stored.plates.iter().map(|p| &p.meta).collect();
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "jobs": jobs, "analysis": analysis, "plates": plates })),
    )
        .into_response())
}

/// Cancels a job: at once if queued (200), through its printer if running (202).
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs",
    params(("id" = String, Path, description = "Job id")),
    responses((status = 200, description = "Cancelled", body = Job), (status = 202, description = "Cancelling on the printer", body = Job), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn cancel(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    let job = st.farm.cancel_job(&id).await?;
    let status = if job.state.is_final() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, Json(job)))
}

/// A stored file, for the agent whose printer has a job with it (or staff). Supports `Range`.
#[utoipa::path(get, path = "/files/{sha256}", tag = "jobs",
    params(("sha256" = String, Path, description = "sha256 of the file (hex)")),
    responses((status = 200, description = "The file", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", body = Vec<u8>, content_type = "application/octet-stream"), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn file(
    State(st): State<AppState>,
    c: Caller,
    Path(sha256): Path<String>,
    req: Request,
) -> Result<Response, Problem> {
    let Some(who) = c.0.as_ref() else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Authentication required",
            "send the agent's token as `Authorization: Bearer <token>`",
        ));
    };
    let path = match st.files.path(&sha256) {
        Some(p) if st.farm.may_fetch(who, &sha256) => p,
        // The same answer for "absent" and "not yours": no probing for other printers' files.
        _ => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "No such file",
                "no file with that sha256 is assigned to you",
            ));
        }
    };
    let res = tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await;
    match res {
        Ok(r) => Ok(r.map(Body::new)),
        Err(e) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Could not read the file",
            &e.to_string(),
        )),
    }
}

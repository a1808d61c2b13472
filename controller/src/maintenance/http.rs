//! `/api/v1/maintenance/*` and `/api/v1/printers/{id}/counters`: tasks, completions, counters.

use crate::api::problem::{Caller, JsonBody, Problem};
use crate::api::{AppState, require};
use crate::auth::Role;
use crate::inventory::http::who;
use crate::maintenance::writes::NewTask;
use crate::maintenance::writes::WriteError;
use crate::maintenance::{Completion, Counters, Due, MaintenanceError, TaskStatus};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

impl From<MaintenanceError> for Problem {
    fn from(e: MaintenanceError) -> Self {
        let (status, title) = match &e {
            MaintenanceError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            MaintenanceError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request"),
        };
        Problem::new(status, title, &e.to_string())
    }
}

impl From<WriteError> for Problem {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Refused(e) => e.into(),
            // The same answer as any other storage failure (503, logged).
            WriteError::Store(e) => crate::farm::FarmError::Store(e).into(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskPage {
    pub items: Vec<TaskStatus>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    printer: Option<String>,
}

/// Maintenance tasks with their state (ok, due soon, overdue).
#[utoipa::path(get, path = "/maintenance/tasks", tag = "maintenance", params(TaskQuery), responses((status = 200, body = TaskPage), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn list(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<TaskQuery>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let items = st.farm.tasks(
        q.printer.as_deref(),
        st.production.maintenance.due_soon_fraction,
    );
    Ok(Json(TaskPage {
        items,
        next_cursor: None,
    }))
}

/// Tasks that are due soon or overdue, most urgent first.
#[utoipa::path(get, path = "/maintenance/due", tag = "maintenance", params(TaskQuery), responses((status = 200, body = TaskPage), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn due(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<TaskQuery>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let items = st
        .farm
        .tasks(
            q.printer.as_deref(),
            st.production.maintenance.due_soon_fraction,
        )
        .into_iter()
        .filter(|t| t.due != Due::Ok)
        .collect();
    Ok(Json(TaskPage {
        items,
        next_cursor: None,
    }))
}

/// Adds a task with an interval by hours, filament, jobs or days; blocking or warning.
#[utoipa::path(post, path = "/maintenance/tasks", tag = "maintenance", request_body = crate::maintenance::writes::NewTask, responses((status = 201, body = crate::maintenance::TaskStatus), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn add(
    State(st): State<AppState>,
    c: Caller,
    JsonBody(n): JsonBody<NewTask>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    let t = st
        .farm
        .add_task(n, st.production.maintenance.due_soon_fraction)
        .await?;
    Ok((StatusCode::CREATED, Json(t)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskStatus,
    /// Completions, newest first (at most 100).
    pub log: Vec<Completion>,
}

/// One task and its completion log.
#[utoipa::path(get, path = "/maintenance/tasks/{id}", tag = "maintenance", params(("id" = String, Path, description = "Id")), responses((status = 200, body = TaskDetail), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn show(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let task = st
        .farm
        .task(&id, st.production.maintenance.due_soon_fraction)
        .ok_or_else(|| {
            MaintenanceError::NotFound(format!(
                "no maintenance task {id:?}; list them with GET /api/v1/maintenance/tasks"
            ))
        })?;
    let log = st.farm.task_log(&id, 100)?;
    Ok(Json(TaskDetail { task, log }))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    #[serde(default)]
    pub notes: Option<String>,
}

/// Someone did the task: the caller is recorded as who did it.
#[utoipa::path(post, path = "/maintenance/tasks/{id}/complete", tag = "maintenance", params(("id" = String, Path, description = "Id")), request_body = CompleteRequest, responses((status = 200, body = crate::maintenance::TaskStatus), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn complete(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    // The body is optional: `{"notes": "…"}` or nothing.
    let notes = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<CompleteRequest>(&body)
            .map_err(|e| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Bad request body",
                    &format!("send {{\"notes\": \"what was done\"}} or no body: {e}"),
                )
            })?
            .notes
    };
    let t = st
        .farm
        .complete_task(
            &id,
            &who(&c),
            notes,
            st.production.maintenance.due_soon_fraction,
        )
        .await?;
    Ok(Json(t))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PrinterCounters {
    pub printer: String,
    /// Since the printer was enrolled.
    pub since_install: Counters,
    pub blocked_by_maintenance: bool,
}

/// Print hours, filament, jobs and failures of a printer, since install.
#[utoipa::path(get, path = "/printers/{id}/counters", tag = "maintenance", params(("id" = String, Path, description = "Id")), responses((status = 200, body = PrinterCounters), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn counters(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let since_install = st
        .farm
        .printer_counters(&id)
        .ok_or_else(|| crate::farm::FarmError::NoPrinter(id.clone()))?;
    Ok(Json(PrinterCounters {
        blocked_by_maintenance: st.farm.maintenance_blocked(&id),
        printer: id,
        since_install,
    }))
}

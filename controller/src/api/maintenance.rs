//! `/api/v1/maintenance/*` and `/api/v1/printers/{id}/counters`: tasks, completions, counters.

use super::inventory::who;
use super::problem::{Caller, JsonBody, Problem};
use super::{AppState, require};
use crate::auth::Role;
use crate::farm::maintenance::NewTask;
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
            MaintenanceError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "Storage failure"),
        };
        if status.is_server_error() {
            tracing::error!("{e}");
        }
        Problem::new(status, title, &e.to_string())
    }
}

#[derive(Serialize)]
pub struct TaskPage {
    pub items: Vec<TaskStatus>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    printer: Option<String>,
}

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

pub async fn add(
    State(st): State<AppState>,
    c: Caller,
    JsonBody(n): JsonBody<NewTask>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    let t = st
        .farm
        .add_task(n, st.production.maintenance.due_soon_fraction)?;
    Ok((StatusCode::CREATED, Json(t)))
}

#[derive(Serialize)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskStatus,
    /// Completions, newest first (at most 100).
    pub log: Vec<Completion>,
}

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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    #[serde(default)]
    pub notes: Option<String>,
}

/// Someone did the task: the caller is recorded as who did it.
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
    let t = st.farm.complete_task(
        &id,
        &who(&c),
        notes,
        st.production.maintenance.due_soon_fraction,
    )?;
    Ok(Json(t))
}

#[derive(Serialize)]
pub struct PrinterCounters {
    pub printer: String,
    /// Since the printer was enrolled.
    pub since_install: Counters,
    pub blocked_by_maintenance: bool,
}

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

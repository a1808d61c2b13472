//! `/api/v1/printers`: the fleet.

use crate::api::openapi::{Page, ProblemDoc};
use crate::api::problem::{Caller, JsonBody, Problem};
use crate::api::{AppState, require};
use crate::auth::Role;
use crate::printers::fleet::PrinterView;
use crate::printers::registry::ProfilePatch;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use farm_protocol::messages::Command;
use serde::Deserialize;
use utoipa::ToSchema;

/// All printers with their live state.
#[utoipa::path(get, path = "/printers", tag = "printers",
    responses((status = 200, description = "Every printer (one page)", body = Page<PrinterView>), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn list(State(st): State<AppState>, c: Caller) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    Ok(Json(
        serde_json::json!({ "items": st.farm.printers(), "next_cursor": null }),
    ))
}

/// One printer with its live state.
#[utoipa::path(get, path = "/printers/{id}", tag = "printers",
    params(("id" = String, Path, description = "Printer id")),
    responses((status = 200, body = PrinterView), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn show(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    st.farm
        .printer(&id)
        .map(Json)
        .ok_or_else(|| crate::farm::FarmError::NoPrinter(id).into())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrinter {
    /// `[a-z0-9-]{1,64}`: the printer's id on the wire and its MQTT login.
    #[schema(example = "prusa-mk4-01")]
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    auto_eject: bool,
}

/// Enrols a printer and returns, once, its token and a ready agent config.
#[utoipa::path(post, path = "/printers", tag = "printers", request_body = NewPrinter,
    responses((status = 201, description = "Enrolled: `{printer, token, agent_config}`; the token is shown only now", body = Object), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn add(
    State(st): State<AppState>,
    c: Caller,
    JsonBody(n): JsonBody<NewPrinter>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Admin)?;
    let (rec, token) = st
        .farm
        .add_printer(&n.id, n.name.as_deref(), n.auto_eject)
        .await?;
    let config = crate::printers::enrol::agent_config(&rec, &token, &st.enrol);
    let view = st.farm.printer(&rec.id);
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "printer": view, "token": token, "agent_config": config })),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum CommandRequest {
    Pause,
    Resume,
    Cancel,
    EmergencyStop,
    SetTelemetry { interval_ms: u32 },
    RawGcode { lines: Vec<String> },
}

/// Sends a command; 202 with its id (the result arrives as an event on the printer).
/// `raw_gcode` needs the admin role, the others the operator role.
#[utoipa::path(post, path = "/printers/{id}/commands", tag = "printers", request_body = CommandRequest,
    params(("id" = String, Path, description = "Printer id")),
    responses((status = 202, description = "Queued for the agent: `{command_id}`", body = Object), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn command(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<CommandRequest>,
) -> Result<impl IntoResponse, Problem> {
    require(
        &c,
        if matches!(req, CommandRequest::RawGcode { .. }) {
            Role::Admin
        } else {
            Role::Operator
        },
    )?;
    let printer = st
        .farm
        .printer(&id)
        .ok_or_else(|| crate::farm::FarmError::NoPrinter(id.clone()))?;
    let job = || {
        printer.current_job_id.clone().ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "No job",
                &format!("printer {id} has no job to pause, resume or cancel"),
            )
        })
    };
    let cmd = match req {
        CommandRequest::Pause => Command::Pause { job_id: job()? },
        CommandRequest::Resume => Command::Resume { job_id: job()? },
        CommandRequest::Cancel => Command::Cancel { job_id: job()? },
        CommandRequest::EmergencyStop => Command::EmergencyStop {},
        CommandRequest::SetTelemetry { interval_ms } => Command::SetTelemetry { interval_ms },
        CommandRequest::RawGcode { lines } => {
            if lines.is_empty() || lines.iter().any(|l| l.contains(['\n', '\r'])) {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid G-code",
                    "send one or more lines, none containing a line break",
                ));
            }
            Command::RawGcode { lines }
        }
    };
    if !printer.online {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Printer offline",
            &format!("printer {id} is offline; the command would not arrive"),
        ));
    }
    let command_id = st.farm.send_command(&id, cmd).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "command_id": command_id })),
    ))
}

/// The operator confirms the bed is clear, so the printer can take the next job.
#[utoipa::path(post, path = "/printers/{id}/clear", tag = "printers",
    params(("id" = String, Path, description = "Printer id")),
    responses((status = 200, body = PrinterView), (status = "4XX", description = "Refused: the problem says why and what to do", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn clear(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    Ok(Json(st.farm.clear_bed(&id).await?))
}

/// `PATCH /api/v1/printers/{id}/profile`: model, build volume, tools, tags, location, power,
/// auto-eject, maintenance.
#[utoipa::path(patch, path = "/printers/{id}/profile", tag = "printers", params(("id" = String, Path, description = "Id")), request_body = crate::printers::registry::ProfilePatch, responses((status = 200, body = crate::printers::fleet::PrinterView), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn profile(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(p): JsonBody<ProfilePatch>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    Ok(Json(st.farm.set_profile(&id, p).await?))
}

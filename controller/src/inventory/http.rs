//! `/api/v1/materials`, `/api/v1/spools`, `/api/v1/inventory/*`: filament stock and its ledger.

use crate::api::problem::{Caller, JsonBody, Problem};
use crate::api::{AppState, require};
use crate::auth::Role;
use crate::inventory::forecast::{Demand, Shortage, StockLevel, forecast};
use crate::inventory::ledger::{Adjust, LedgerRow};
use crate::inventory::writes::WriteError;
use crate::inventory::{
    LoadedSpool, NewMaterial, NewSpool, SpoolView, StockError, new_material, spool_number,
};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};

impl From<StockError> for Problem {
    fn from(e: StockError) -> Self {
        let (status, title) = match &e {
            StockError::NotFound(_) => (StatusCode::NOT_FOUND, "Not found"),
            StockError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request"),
            StockError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
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

fn bad_query(d: &str) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, "Bad query", d)
}

/// The name recorded as "by" in the ledger.
pub(crate) fn who(c: &Caller) -> String {
    c.0.as_ref()
        .map_or_else(|| "anonymous".into(), |p| p.name.clone())
}

pub use crate::api::openapi::Page;

// ---- materials --------------------------------------------------------------------------

/// Every material (type, colour, diameter, density, cost, low-stock threshold).
#[utoipa::path(get, path = "/materials", tag = "inventory", responses((status = 200, body = Page<crate::inventory::Material>), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn list_materials(
    State(st): State<AppState>,
    c: Caller,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    Ok(Json(Page {
        items: st.farm.materials(),
        next_cursor: None,
    }))
}

/// One material.
#[utoipa::path(get, path = "/materials/{id}", tag = "inventory", params(("id" = String, Path, description = "Id")), responses((status = 200, body = crate::inventory::Material), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn show_material(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    st.farm.material(&id).map(Json).ok_or_else(|| {
        StockError::NotFound(format!(
            "no material {id:?}; list materials with GET /api/v1/materials"
        ))
        .into()
    })
}

/// Adds a material; its id is made from type and colour unless given.
#[utoipa::path(post, path = "/materials", tag = "inventory", request_body = crate::inventory::NewMaterial, responses((status = 201, body = crate::inventory::Material), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn add_material(
    State(st): State<AppState>,
    c: Caller,
    JsonBody(n): JsonBody<NewMaterial>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    let m = new_material(n, st.production.inventory.default_diameter_mm)?;
    let m = st.farm.put_material(m, false).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// Replaces a material (e.g. a new price). Its id is the path's.
#[utoipa::path(put, path = "/materials/{id}", tag = "inventory", params(("id" = String, Path, description = "Id")), request_body = crate::inventory::NewMaterial, responses((status = 200, body = crate::inventory::Material), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn put_material(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(mut n): JsonBody<NewMaterial>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    if n.id.as_ref().is_some_and(|x| *x != id) {
        return Err(StockError::Invalid(format!(
            "the body's id {:?} differs from the path's {id:?}; leave it out",
            n.id.unwrap_or_default()
        ))
        .into());
    }
    n.id = Some(id);
    let m = new_material(n, st.production.inventory.default_diameter_mm)?;
    Ok(Json(st.farm.put_material(m, true).await?))
}

// ---- spools -----------------------------------------------------------------------------

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SpoolQuery {
    material: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Spools with their remaining weight (derived from the ledger), a page at a time.
#[utoipa::path(get, path = "/spools", tag = "inventory", params(SpoolQuery), responses((status = 200, body = Page<crate::inventory::SpoolView>), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn list_spools(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<SpoolQuery>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let after = match q.cursor.as_deref() {
        None => 0,
        Some(c) => spool_number(c)
            .or_else(|| c.parse().ok())
            .ok_or_else(|| bad_query("cursor must be a value from next_cursor"))?,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = st.farm.spools(after, limit, q.material.as_deref());
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|s| s.spool.id.clone()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
}

/// Registers one or more new spools (a delivery).
#[utoipa::path(post, path = "/spools", tag = "inventory", request_body = crate::inventory::NewSpool, responses((status = 201, body = Page<crate::inventory::SpoolView>), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn add_spools(
    State(st): State<AppState>,
    c: Caller,
    JsonBody(n): JsonBody<NewSpool>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    let items = st.farm.add_spools(n).await?;
    Ok((
        StatusCode::CREATED,
        Json(Page {
            items,
            next_cursor: None,
        }),
    ))
}

fn spool_or_404(st: &AppState, id: &str) -> Result<SpoolView, Problem> {
    st.farm.spool(id).ok_or_else(|| {
        StockError::NotFound(format!(
            "no spool {id:?}; list spools with GET /api/v1/spools"
        ))
        .into()
    })
}

/// One spool.
#[utoipa::path(get, path = "/spools/{id}", tag = "inventory", params(("id" = String, Path, description = "Id")), responses((status = 200, body = crate::inventory::SpoolView), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn show_spool(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    Ok(Json(spool_or_404(&st, &id)?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    pub printer: String,
    #[serde(default)]
    pub tool: u32,
}

/// Loads a spool on a printer's tool (unloading whatever was there).
#[utoipa::path(post, path = "/spools/{id}/load", tag = "inventory", params(("id" = String, Path, description = "Id")), request_body = LoadRequest, responses((status = 200, body = crate::inventory::SpoolView), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn load(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(r): JsonBody<LoadRequest>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    let v = st
        .farm
        .load_spool(
            &id,
            &r.printer,
            r.tool,
            st.production.inventory.max_tools,
            &who(&c),
        )
        .await?;
    // A newly loaded spool may let a waiting job start.
    st.farm.kick.notify_one();
    Ok(Json(v))
}

/// Takes a spool off its printer.
#[utoipa::path(post, path = "/spools/{id}/unload", tag = "inventory", params(("id" = String, Path, description = "Id")), responses((status = 200, body = crate::inventory::SpoolView), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn unload(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    Ok(Json(st.farm.unload_spool(&id, &who(&c)).await?))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Adjusted {
    pub spool: SpoolView,
    pub row: LedgerRow,
}

/// A manual ledger row with a reason: weighed, scrapped, delivery, correction.
#[utoipa::path(post, path = "/spools/{id}/adjust", tag = "inventory", params(("id" = String, Path, description = "Id")), request_body = crate::inventory::ledger::Adjust, responses((status = 200, body = Adjusted), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn adjust(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    JsonBody(a): JsonBody<Adjust>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    let (spool, row) = st.farm.adjust_spool(&id, a, &who(&c)).await?;
    Ok(Json(Adjusted { spool, row }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    cursor: Option<u64>,
    limit: Option<usize>,
}

/// The audit trail: `remaining_g = initial_g + Σ grams` over every row.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LedgerPage {
    pub spool: SpoolView,
    pub items: Vec<LedgerRow>,
    pub next_cursor: Option<String>,
}

/// Every gram that left or joined the spool, in order: the audit trail of its remaining weight.
#[utoipa::path(get, path = "/spools/{id}/ledger", tag = "inventory", params(("id" = String, Path, description = "Id"), LedgerQuery), responses((status = 200, body = LedgerPage), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn ledger(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    Query(q): Query<LedgerQuery>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let spool = spool_or_404(&st, &id)?;
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let items = st.farm.spool_ledger(&id, q.cursor.unwrap_or(0), limit)?;
    let next_cursor = (items.len() == limit)
        .then(|| items.last().map(|r| r.n.to_string()))
        .flatten();
    Ok(Json(LedgerPage {
        spool,
        items,
        next_cursor,
    }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PrinterSpools {
    pub printer: String,
    /// Index = tool number.
    pub tools: Vec<Option<LoadedSpool>>,
}

/// What is loaded on each tool of a printer.
#[utoipa::path(get, path = "/printers/{id}/spools", tag = "inventory", params(("id" = String, Path, description = "Id")), responses((status = 200, body = PrinterSpools), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn printer_spools(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    if st.farm.printer(&id).is_none() {
        return Err(crate::farm::FarmError::NoPrinter(id).into());
    }
    Ok(Json(PrinterSpools {
        tools: st.farm.loaded_spools(&id),
        printer: id,
    }))
}

// ---- stock, low stock, forecast ---------------------------------------------------------

#[derive(Serialize, utoipa::ToSchema)]
pub struct StockPage {
    pub items: Vec<StockLevel>,
}

/// Stock per material and colour.
#[utoipa::path(get, path = "/inventory/stock", tag = "inventory", responses((status = 200, body = StockPage), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn stock(State(st): State<AppState>, c: Caller) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    Ok(Json(StockPage {
        items: st.farm.stock_levels(st.production.inventory.low_stock_g),
    }))
}

/// Only the material + colour pairs below their threshold.
#[utoipa::path(get, path = "/inventory/low-stock", tag = "inventory", responses((status = 200, body = StockPage), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn low_stock(
    State(st): State<AppState>,
    c: Caller,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let items = st
        .farm
        .stock_levels(st.production.inventory.low_stock_g)
        .into_iter()
        .filter(|l| l.low)
        .collect();
    Ok(Json(StockPage { items }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ForecastPage {
    pub items: Vec<Shortage>,
    /// How demand was attributed while jobs do not name their material.
    pub basis: String,
}

/// Queued jobs as demand: the one adapter between the queue and the pure forecast. Each job
/// needs its material and colour (or `[inventory] forecast_material` of any colour when it
/// names none) at the time the scheduler's latest plan starts it; a job no printer can take
/// yet still counts against stock, a year out.
pub fn queued_demand(st: &AppState) -> Vec<Demand> {
    let now = time::OffsetDateTime::now_utc();
    let plan = st.farm.timeline();
    st.farm
        .jobs(Some(crate::jobs::JobState::Queued), 0, usize::MAX)
        .into_iter()
        .map(|j| {
            let material = j
                .material
                .clone()
                .unwrap_or_else(|| st.production.inventory.forecast_material.clone());
            let mm: f64 = j.filament_mm.iter().filter(|v| v.is_finite()).sum();
            Demand {
                grams: crate::inventory::loadout::grams(mm, &material),
                material,
                colour: j.colour.clone(),
                eta: plan
                    .slot(j.number)
                    .map_or(now + time::Duration::days(365), |s| s.start),
            }
        })
        .collect()
}

/// Grams the queue needs per material and colour against stock, and when stock runs out.
#[utoipa::path(get, path = "/inventory/forecast", tag = "inventory", responses((status = 200, body = ForecastPage), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn shortage_forecast(
    State(st): State<AppState>,
    c: Caller,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Viewer)?;
    let demand = queued_demand(&st);
    let levels = st.farm.stock_levels(st.production.inventory.low_stock_g);
    Ok(Json(ForecastPage {
        items: forecast(&demand, &levels),
        basis: format!(
            "queued jobs' analyzer filament in their material and colour ({} of any colour where a job names none), needed when the scheduler's latest plan starts them",
            st.production.inventory.forecast_material
        ),
    }))
}

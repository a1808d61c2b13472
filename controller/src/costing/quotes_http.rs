//! `POST /api/v1/quotes`: what a G-code file would cost, its price, and the earliest time the
//! farm could finish it, before anyone orders it.

use crate::api::problem::{Caller, Problem};
use crate::api::{AppState, require};
use crate::auth::Role;
use crate::costing::quotes::{Estimate, ToolMaterial, estimate};
use crate::costing::{Breakdown, default_grams_per_mm, price};
use crate::inventory::StockError;
use axum::Json;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use farm_protocol::gcode::Analysis;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct QuoteQuery {
    /// A file already uploaded; otherwise the body is the G-code.
    sha256: Option<String>,
    /// Material ids per tool, comma-separated (`pla-black,petg-red`); default: pricing defaults.
    materials: Option<String>,
    copies: Option<u32>,
    /// For a `.gcode.3mf`: the plate to quote (may be left out if the file has one plate).
    plate: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct QuoteResponse {
    pub sha256: String,
    /// The `.gcode.3mf` plate quoted; `null` for G-code.
    pub plate: Option<u32>,
    pub copies: u32,
    pub currency: String,
    /// One copy: grams per tool, print time, cost and price.
    pub per_copy: Estimate,
    pub grams: f64,
    pub print_s: f64,
    /// All copies.
    pub cost: Breakdown,
    pub price: f64,
    /// When the last copy could be done if ordered now; `null` if no printer can take work.
    #[serde(with = "time::serde::rfc3339::option")]
    pub earliest_completion: Option<OffsetDateTime>,
    pub completion_basis: &'static str,
}

fn may_quote(c: &Caller) -> Result<(), Problem> {
    if c.0.as_ref().is_some_and(|p| p.role == Role::Shop) {
        return Ok(());
    }
    require(c, Role::Operator)
}

/// Prices a G-code file: grams per material, print time, cost, price and the earliest completion the farm can promise now.
#[utoipa::path(post, path = "/quotes", tag = "quotes", params(QuoteQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The G-code file (or none with `sha256=` of an uploaded file)"), responses((status = 200, body = QuoteResponse), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn quote(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<QuoteQuery>,
    req: Request,
) -> Result<Response, Problem> {
    may_quote(&c)?;
    let copies = q.copies.unwrap_or(1);
    if !(1..=1000).contains(&copies) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request",
            "copies must be between 1 and 1000",
        ));
    }
    let p = &st.production.pricing;
    let fallback = ToolMaterial {
        material_id: None,
        grams_per_mm: default_grams_per_mm(p),
        cost_per_kg: p.material_per_kg,
    };
    let mut materials = vec![];
    // The first tool's material decides where the copies can print (for the promise).
    let mut first_material = None;
    for id in q
        .materials
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
    {
        if id.is_empty() {
            continue;
        }
        let m = st.farm.material(id).ok_or_else(|| {
            let known: Vec<String> = st.farm.materials().into_iter().map(|m| m.id).collect();
            StockError::Invalid(format!(
                "no material {id:?} in the inventory; use one of: {} (or leave `materials` out for the default price)",
                if known.is_empty() { "(none yet)".to_string() } else { known.join(", ") }
            ))
        })?;
        if first_material.is_none() {
            first_material = Some(m.clone());
        }
        materials.push(ToolMaterial {
            material_id: Some(m.id.clone()),
            grams_per_mm: m.grams_per_mm(),
            cost_per_kg: m.cost_per_kg,
        });
    }
    let stored = match q.sha256 {
        Some(sha) => st
            .files
            .analyse(&sha)
            .await
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::NOT_FOUND,
                    "No such file",
                    "no uploaded file has that sha256; send the G-code as the body instead",
                )
            })?
            .map_err(|e| io_problem(&e.to_string()))?,
        None => crate::catalog::files_http::receive_gcode(&st, req).await?,
    };
    let (plate, analysis) = stored
        .plate(q.plate)
        .map_err(|e| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Plate", &e))?;
    let (sha256, analysis) = (stored.sha256.clone(), analysis.clone());
    let print_s = analysis.estimated_s + analysis.heat_s;
    let one = estimate(
        &analysis.filament_mm,
        print_s,
        &materials,
        &fallback,
        p.printer_power_w,
        p,
    );
    let n = f64::from(copies);
    let cost = Breakdown {
        material: one.cost.material * n,
        machine: one.cost.machine * n,
        energy: one.cost.energy * n,
        total: one.cost.total * n,
    };
    Ok(Json(QuoteResponse {
        sha256,
        plate,
        copies,
        currency: p.currency.clone(),
        grams: one.grams * n,
        print_s: one.print_s * n,
        price: price(cost.total, p),
        cost,
        earliest_completion: completion(&st, &analysis, print_s, first_material.as_ref(), copies),
        completion_basis: "the scheduler's plan of the farm as it is now (material, colour and build volume matching, queue order, power budget, working hours, learnt print times), with the copies queued behind the current queue; null when no printer could take them",
        per_copy: one,
    })
    .into_response())
}

/// When the last of `copies` prints could end if ordered now: the scheduler's own plan of the
/// farm as it is (constraints, queue order, power budget, working hours, learnt times) with
/// the copies added behind the queue. `material` (type and colour) is what they must print in.
fn completion(
    st: &AppState,
    analysis: &Analysis,
    print_s: f64,
    material: Option<&crate::inventory::Material>,
    copies: u32,
) -> Option<OffsetDateTime> {
    let kind = material.map_or("PLA", |m| m.material.as_str());
    let probe = crate::jobs::scheduler::JobInput {
        id: "".into(),
        priority: 0,
        due: None,
        position: 0,
        material: material.map(|m| m.material.as_str().into()),
        colour: material.map(|m| m.colour.as_str().into()),
        nozzle_mm: None,
        size_mm: analysis
            .bounds
            .as_ref()
            .map(|b| std::array::from_fn(|i| b.max[i] - b.min[i])),
        grams: analysis
            .filament_mm
            .iter()
            .map(|mm| crate::inventory::loadout::grams(*mm, kind))
            .collect(),
        estimated_s: print_s,
        pinned: None,
        hold: None,
    };
    st.farm.promise(&probe, copies)
}

fn io_problem(d: &str) -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Could not read the file",
        d,
    )
}

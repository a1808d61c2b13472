//! `/api/v1/catalog`: SKUs the shop can order, mapped to files by operators.

use crate::api::problem::{Caller, JsonBody, Problem};
use crate::api::{AppState, require};
use crate::auth::Role;
use crate::catalog::CatalogEntry;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;

fn shop_or_viewer(c: &Caller) -> Result<(), Problem> {
    match &c.0 {
        Some(p) if p.role == Role::Shop => Ok(()),
        _ => require(c, Role::Viewer),
    }
}

/// The catalog: SKUs the shop can order and the files they map to.
#[utoipa::path(get, path = "/catalog", tag = "orders", responses((status = 200, description = "`{items: [CatalogEntry]}`", body = Object), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn list(State(st): State<AppState>, c: Caller) -> Result<impl IntoResponse, Problem> {
    shop_or_viewer(&c)?;
    Ok(Json(
        serde_json::json!({ "items": st.farm.catalog(), "next_cursor": null }),
    ))
}

/// Maps a SKU to files (operator).
#[utoipa::path(put, path = "/catalog/{sku}", tag = "orders", params(("sku" = String, Path, description = "Catalog SKU")), request_body = crate::catalog::CatalogEntry, responses((status = 200, body = crate::catalog::CatalogEntry), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn put(
    State(st): State<AppState>,
    c: Caller,
    Path(sku): Path<String>,
    JsonBody(mut e): JsonBody<CatalogEntry>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    if !e.sku.is_empty() && e.sku != sku {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "SKU mismatch",
            "the body's `sku` differs from the path; leave it out or make them equal",
        ));
    }
    e.sku = sku;
    Ok(Json(st.farm.put_catalog(e).await?))
}

/// Removes a SKU from the catalog.
#[utoipa::path(delete, path = "/catalog/{sku}", tag = "orders", params(("sku" = String, Path, description = "Catalog SKU")), responses((status = 200, description = "Removed", body = Object), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn delete(
    State(st): State<AppState>,
    c: Caller,
    Path(sku): Path<String>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Operator)?;
    st.farm.delete_catalog(&sku).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! `/api/v1/orders`: the shop's order API; `/api/v1/files`: uploads to order from;
//! `/api/v1/webhooks/deliveries`: the webhook delivery log.
//!
//! A shop token sees and acts on its own orders only (orders belong to the shop token's name);
//! operators see all. `POST /orders` honours `Idempotency-Key`: a retry with the same key and
//! body answers with the first order; the same key with another body is a 409.

use crate::api::problem::{Caller, Problem};
use crate::api::{AppState, require};
use crate::auth::{Principal, Role};
use crate::orders::follow_up::OrderError;
use crate::orders::intake::Intake;
use crate::orders::view::OrderView;
use crate::orders::{FieldError, OrderEvent, OrderRequest, OrderState};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// Who may touch orders, and whose: `Some(shop)` limits to that shop's orders.
fn scope(c: &Caller, write: bool) -> Result<Option<String>, Problem> {
    match &c.0 {
        Some(Principal {
            role: Role::Shop,
            name,
            ..
        }) => Ok(Some(name.clone())),
        _ => {
            require(c, if write { Role::Operator } else { Role::Viewer })?;
            Ok(None)
        }
    }
}

/// A problem+json answer with the list of field mistakes.
fn invalid(errors: &[FieldError]) -> Response {
    let detail = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.problem))
        .collect::<Vec<_>>()
        .join("; ");
    let body = serde_json::json!({
        "type": "about:blank",
        "title": "Invalid order",
        "status": 422,
        "detail": detail,
        "errors": errors,
    });
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

impl From<OrderError> for Problem {
    fn from(e: OrderError) -> Self {
        match e {
            OrderError::Invalid(errs) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid order",
                &errs
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.problem))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            OrderError::KeyReused(_) => Problem::new(
                StatusCode::CONFLICT,
                "Idempotency-Key reused",
                &e.to_string(),
            ),
            OrderError::NotFound(_) => {
                Problem::new(StatusCode::NOT_FOUND, "Not found", &e.to_string())
            }
            OrderError::Refused(_) => Problem::new(StatusCode::CONFLICT, "Not now", &e.to_string()),
            OrderError::Farm(f) => f.into(),
        }
    }
}

fn answer(e: OrderError) -> Response {
    match e {
        OrderError::Invalid(errs) => invalid(&errs),
        other => Problem::from(other).into_response(),
    }
}

/// `201` answer to `POST /orders`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderCreated {
    pub order: OrderView,
    /// When the last copy should be printed, from the scheduler's timeline (null if some copy
    /// cannot be placed yet; `warnings` and `order.waiting` say why).
    #[serde(with = "time::serde::rfc3339::option")]
    pub promised_at: Option<time::OffsetDateTime>,
    pub warnings: Vec<String>,
}

/// Places an order from the shop: items (file by sha256 or SKU), quantities, material, colour, nozzle, priority, due date, price.
#[utoipa::path(post, path = "/orders", tag = "orders", params(("Idempotency-Key" = Option<String>, Header, description = "A retried request with the same key and body returns the first answer (never a second order); the same key with another body is refused (409)")), request_body = crate::orders::OrderRequest, responses((status = 201, description = "The order, its state and the promised completion time", body = OrderCreated), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn create(
    State(st): State<AppState>,
    c: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let shop = match (&c.0, scope(&c, true)) {
        (Some(p), Ok(_)) => p.name.clone(),
        (_, Err(p)) => return p.into_response(),
        (None, Ok(_)) => "anonymous".into(),
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.trim().is_empty() && k.len() <= 255 => Some(k.trim().to_string()),
        Some(_) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad Idempotency-Key",
                "send 1 to 255 printable ASCII characters, unique per order (a UUID is ideal)",
            )
            .into_response();
        }
    };
    let request: OrderRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Bad order body",
                &format!("{e}; see the README's order example"),
            )
            .into_response();
        }
    };
    let intake = Intake {
        shop: shop.clone(),
        idempotency_key: key,
        body_sha256: hex::encode(Sha256::digest(&body)),
        request,
    };
    let placed = match st.intake.place(intake).await {
        Ok(p) => p,
        Err(e) => return answer(e),
    };
    // The promise comes from the first plan that includes the order (the scheduler runs on
    // the kick intake gave it; under load one plan covers many orders).
    let mut done = st.farm.production.plan_done.subscribe();
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        done.wait_for(|v| *v >= placed.queue_version),
    )
    .await;
    let Some(order) = st.farm.order_view(&placed.order_id, Some(&shop)) else {
        return Problem::from(OrderError::NotFound(placed.order_id)).into_response();
    };
    let mut res = (
        StatusCode::CREATED,
        Json(OrderCreated {
            promised_at: order.eta,
            order,
            warnings: placed.warnings,
        }),
    )
        .into_response();
    if placed.replay {
        res.headers_mut().insert(
            "idempotent-replayed",
            header::HeaderValue::from_static("true"),
        );
    }
    res
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Orders, newest first; a shop token sees only its own.
#[utoipa::path(get, path = "/orders", tag = "orders", params(ListQuery), responses((status = 200, description = "`{items: [OrderView], next_cursor}`; a shop sees only its own orders", body = Object), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn list(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, Problem> {
    let shop = scope(&c, false)?;
    let bad = |d: String| Problem::new(StatusCode::BAD_REQUEST, "Bad query", &d);
    let state = q
        .state
        .as_deref()
        .map(|s| {
            OrderState::ALL
                .into_iter()
                .find(|x| x.as_str() == s)
                .ok_or_else(|| bad(format!("unknown order state {s:?}")))
        })
        .transpose()?;
    let after = q
        .cursor
        .as_deref()
        .map(str::parse::<u64>)
        .transpose()
        .map_err(|_| bad("cursor must be a value from next_cursor".into()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let (items, next) = st
        .farm
        .order_list(shop.as_deref(), state, after.unwrap_or(0), limit);
    Ok(Json(serde_json::json!({
        "items": items,
        "next_cursor": next.map(|n| n.to_string()),
    })))
}

/// One order: state, each item and copy, ETA, material used so far.
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = String, Path, description = "Id")), responses((status = 200, body = crate::orders::view::OrderView), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn show(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, Problem> {
    let shop = scope(&c, false)?;
    st.farm
        .order_view(&id, shop.as_deref())
        .map(Json)
        .ok_or_else(|| OrderError::NotFound(id).into())
}

/// `POST /orders/{id}/cancel`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    /// Also stop copies printing right now (default: let them finish).
    #[serde(default)]
    pub stop_printing: bool,
}

/// Cancels an order: queued copies at once, printing ones only with `stop_printing: true`.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", params(("id" = String, Path, description = "Id")), request_body = CancelRequest, responses((status = 200, body = crate::orders::view::OrderView), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn cancel(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<OrderView>, Problem> {
    let shop = scope(&c, true)?;
    let req: CancelRequest = if body.is_empty() {
        CancelRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Bad body",
                &format!("{e}; send {{\"stop_printing\": true}} or nothing"),
            )
        })?
    };
    Ok(Json(
        st.farm
            .order_event(&id, shop.as_deref(), OrderEvent::Cancel, req.stop_printing)
            .await?,
    ))
}

/// `POST /orders/{id}/fulfil`: operators hand the order over.
#[utoipa::path(post, path = "/orders/{id}/fulfil", tag = "orders", params(("id" = String, Path, description = "Id")), responses((status = 200, body = crate::orders::view::OrderView), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn fulfil(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, Problem> {
    require(&c, Role::Operator)?;
    Ok(Json(
        st.farm
            .order_event(&id, None, OrderEvent::Fulfil, false)
            .await?,
    ))
}

/// `POST /orders/{id}/release` (manual release mode).
#[utoipa::path(post, path = "/orders/{id}/release", tag = "orders", params(("id" = String, Path, description = "Id")), responses((status = 200, body = crate::orders::view::OrderView), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn release(
    State(st): State<AppState>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, Problem> {
    require(&c, Role::Operator)?;
    Ok(Json(st.farm.release_order(&id).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    name: Option<String>,
}

/// `POST /api/v1/files`: stores and analyses G-code (raw body) without queueing anything;
/// orders and catalog entries then name it by `sha256`.
#[utoipa::path(post, path = "/files", tag = "orders", params(FileQuery), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The G-code file, as is"), responses((status = 201, body = crate::catalog::FileMeta), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn upload_file(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<FileQuery>,
    req: Request,
) -> Result<Response, Problem> {
    scope(&c, true)?;
    let name = crate::catalog::files_http::file_name(q.name)?;
    let stored = crate::catalog::files_http::receive_gcode(&st, req).await?;
    let meta = crate::orders::follow_up::file_meta(&name, &stored);
    st.farm.record_file(meta.clone()).await?;
    Ok((StatusCode::CREATED, Json(meta)).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    order: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET /api/v1/webhooks/deliveries`: every webhook, pending and done (admin).
#[utoipa::path(get, path = "/webhooks/deliveries", tag = "orders", params(DeliveryQuery), responses((status = 200, description = "The webhook delivery log: attempts, status, next try", body = Object), (status = "4XX", description = "Refused: the problem says why and what to do", body = crate::api::openapi::ProblemDoc, content_type = "application/problem+json")))]
pub async fn deliveries(
    State(st): State<AppState>,
    c: Caller,
    Query(q): Query<DeliveryQuery>,
) -> Result<impl IntoResponse, Problem> {
    require(&c, Role::Admin)?;
    let after = q
        .cursor
        .as_deref()
        .map(str::parse::<u64>)
        .transpose()
        .map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad query",
                "cursor must be a value from next_cursor",
            )
        })?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = st
        .farm
        .delivery_log(after.unwrap_or(0), limit, q.order.as_deref())?;
    let next = (items.len() == limit)
        .then(|| items.last().map(|d| d.number.to_string()))
        .flatten();
    Ok(Json(
        serde_json::json!({ "items": items, "next_cursor": next }),
    ))
}

//! REST API under `/api/v1`, the live stream, `/metrics` and the dashboard (DESIGN §8).
//!
//! | module | routes |
//! |---|---|
//! | [`problem`] | RFC 9457 errors, the JSON body extractor, and who is calling ([`Caller`]) |
//! | [`printers`] | printers: list, show, enrol, commands, bed clear |
//! | [`jobs`] | jobs: upload (content-addressed), list, show, cancel; file download for agents |
//! | [`stream`] | `/api/v1/stream`: a snapshot, then changes (Server-Sent Events) |
//! | [`orders`] | orders (the shop's API, idempotent intake), file uploads to order from, webhook log |
//! | [`catalog`] | SKU → files |
//! | [`queue`] | the timeline, operators' queue actions, the printer registry |
//!
//! Every write answers 2xx only after its store transaction committed.

pub mod catalog;
pub mod jobs;
pub mod orders;
pub mod printers;
pub mod problem;
pub mod queue;
pub mod stream;

use crate::auth::Role;
use crate::farm::Farm;
use crate::files::FileStore;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use problem::{Caller, JsonBody, Problem};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    pub farm: Arc<Farm>,
    pub files: Arc<FileStore>,
    /// Role given to requests without a token (the demo on loopback), or none.
    pub anonymous: Option<Role>,
    pub broker: &'static str,
    /// What enrolment tells agents: where to fetch files and which broker to use.
    pub enrol: crate::enrol::Endpoints,
    /// Order intake (group commit).
    pub intake: crate::farm::intake::IntakeQueue,
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/session", post(session))
        .route("/printers", get(printers::list).post(printers::add))
        .route("/printers/{id}", get(printers::show))
        .route("/printers/{id}/commands", post(printers::command))
        .route("/printers/{id}/clear", post(printers::clear))
        .route(
            "/jobs",
            get(jobs::list)
                .post(jobs::upload)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/cancel", post(jobs::cancel))
        .route("/files/{sha256}", get(jobs::file))
        .route("/stream", get(stream::stream))
        // Production core, part A: orders, files, catalog, queue, registry, webhooks.
        .route("/orders", get(orders::list).post(orders::create))
        .route("/orders/{id}", get(orders::show))
        .route("/orders/{id}/cancel", post(orders::cancel))
        .route("/orders/{id}/fulfil", post(orders::fulfil))
        .route("/orders/{id}/release", post(orders::release))
        .route(
            "/files",
            post(orders::upload_file).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/catalog", get(catalog::list))
        .route(
            "/catalog/{sku}",
            axum::routing::put(catalog::put).delete(catalog::delete),
        )
        .route("/queue", get(queue::timeline))
        .route("/queue/{id}", axum::routing::patch(queue::update))
        .route("/queue/{id}/requeue", post(queue::requeue))
        .route(
            "/printers/{id}/profile",
            axum::routing::patch(queue::profile),
        )
        .route("/webhooks/deliveries", get(orders::deliveries))
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "No such API endpoint",
                "see the README for the API",
            )
        });
    Router::new()
        .nest("/api/v1", api)
        .route("/metrics", get(metrics))
        .fallback(crate::dashboard::asset)
        .layer(axum::extract::DefaultBodyLimit::max(1 << 20))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn count_requests(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let class = match res.status().as_u16() {
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    st.farm.metrics.http_requests.inc(class);
    res
}

async fn health(State(st): State<AppState>) -> impl IntoResponse {
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": st.farm.started.elapsed().as_secs(),
        "broker": st.broker,
        "broker_connected": st.farm.broker_connected.load(std::sync::atomic::Ordering::Relaxed),
        "printers_online": st.farm.online_count(),
    }))
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

/// Exchanges an API token for an HttpOnly session cookie (for the dashboard and its stream).
async fn session(
    State(st): State<AppState>,
    JsonBody(login): JsonBody<Login>,
) -> Result<Response, Problem> {
    match st.farm.principal(&login.token) {
        Some(p) if p.role != Role::Agent => {
            let cookie = format!(
                "{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=2592000",
                problem::COOKIE,
                login.token
            );
            let mut res =
                axum::Json(serde_json::json!({"role": p.role, "name": p.name})).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                res.headers_mut().insert(header::SET_COOKIE, v);
            }
            Ok(res)
        }
        _ => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Unknown token",
            "that token is not valid here; create one with `farm-controller token add`",
        )),
    }
}

async fn metrics(State(st): State<AppState>) -> impl IntoResponse {
    let body = st.farm.metrics.render(&st.farm.gauges());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

/// Used by handlers: the caller must hold at least `role`.
pub fn require(c: &Caller, role: Role) -> Result<(), Problem> {
    match &c.0 {
        Some(p) if p.role.covers(role) => Ok(()),
        Some(p) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Not allowed",
            &format!(
                "this needs the {} role; your token has {}",
                role.as_str(),
                p.role.as_str()
            ),
        )),
        None => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Authentication required",
            "send `Authorization: Bearer <token>`; create a token with `farm-controller token add --role operator`",
        )),
    }
}

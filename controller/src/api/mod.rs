//! REST API under `/api/v1`, the live stream, `/metrics` and the dashboard (DESIGN §8).
//!
//! | module | routes |
//! |---|---|
//! | [`problem`] | RFC 9457 errors, the JSON body extractor, and who is calling ([`Caller`]) |
//! | [`printers`] | printers: list, show, enrol, commands, bed clear |
//! | [`jobs`] | jobs: upload (content-addressed), list, show, cancel; file download for agents |
//! | [`stream`] | `/api/v1/stream`: a snapshot, then changes (Server-Sent Events) |
//! | [`inventory`] | materials, spools, loading, adjustments, the ledger, stock, low stock, forecast |
//! | [`maintenance`] | maintenance tasks, completions, due list, printer counters |
//! | [`costs`] | cost of a job; the period cost report (JSON, CSV) |
//! | [`quotes`] | `POST /quotes`: cost, price and earliest completion of a G-code file |
//!
//! Every write answers 2xx only after its store transaction committed.

pub mod costs;
pub mod inventory;
pub mod jobs;
pub mod maintenance;
pub mod printers;
pub mod problem;
pub mod quotes;
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
    /// `[inventory]`, `[pricing]`, `[maintenance]`.
    pub production: Arc<crate::config::ProductionConfig>,
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
        // ---- production core, part B: inventory, maintenance, costs, quotes ----
        .route(
            "/materials",
            get(inventory::list_materials).post(inventory::add_material),
        )
        .route(
            "/materials/{id}",
            get(inventory::show_material).put(inventory::put_material),
        )
        .route(
            "/spools",
            get(inventory::list_spools).post(inventory::add_spools),
        )
        .route("/spools/{id}", get(inventory::show_spool))
        .route("/spools/{id}/load", post(inventory::load))
        .route("/spools/{id}/unload", post(inventory::unload))
        .route("/spools/{id}/adjust", post(inventory::adjust))
        .route("/spools/{id}/ledger", get(inventory::ledger))
        .route("/printers/{id}/spools", get(inventory::printer_spools))
        .route("/printers/{id}/counters", get(maintenance::counters))
        .route("/inventory/stock", get(inventory::stock))
        .route("/inventory/low-stock", get(inventory::low_stock))
        .route("/inventory/forecast", get(inventory::shortage_forecast))
        .route(
            "/maintenance/tasks",
            get(maintenance::list).post(maintenance::add),
        )
        .route("/maintenance/tasks/{id}", get(maintenance::show))
        .route(
            "/maintenance/tasks/{id}/complete",
            post(maintenance::complete),
        )
        .route("/maintenance/due", get(maintenance::due))
        .route("/jobs/{id}/cost", get(costs::job_cost))
        .route("/reports/costs", get(costs::report))
        .route(
            "/quotes",
            post(quotes::quote).layer(axum::extract::DefaultBodyLimit::disable()),
        )
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
    let mut body = st.farm.metrics.render(&st.farm.gauges());
    body +=
        &crate::metrics::render_stock(&st.farm.stock_levels(st.production.inventory.low_stock_g));
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

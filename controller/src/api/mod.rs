//! REST API under `/api/v1`, the live stream, `/metrics` and the dashboard (DESIGN §8).
//!
//! The handlers live with their concept (`printers/http.rs`, `jobs/http.rs`, …); this folder
//! holds the router that gathers them and what every route shares:
//!
//! | module | what |
//! |---|---|
//! | `mod.rs` | the router, the 401 layer, health, session, `/metrics` |
//! | [`problem`] | RFC 9457 errors, the JSON body extractor, and who is calling ([`Caller`]) |
//! | [`openapi`] | the OpenAPI document (generated from the handlers) and Swagger UI |
//! | [`stream`] | `/api/v1/stream`: a snapshot, then changes (Server-Sent Events) |
//! | [`dashboard`] | embedded static assets |
//!
//! Every write answers 2xx only after its store transaction committed. Every route under
//! `/api/v1` is registered with `routes!` from its `#[utoipa::path]`, so it is documented.

pub mod dashboard;
pub mod openapi;
pub mod problem;
pub mod stream;

// Each concept's routes live in its own folder; the router only gathers them.
use crate::catalog::http as catalog;
use crate::costing::http as costs;
use crate::costing::quotes_http as quotes;
use crate::inventory::http as inventory;
use crate::jobs::http as jobs;
use crate::jobs::queue_http as queue;
use crate::maintenance::http as maintenance;
use crate::orders::http as orders;
use crate::printers::http as printers;

use crate::auth::Role;
use crate::catalog::files::FileStore;
use crate::farm::Farm;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use openapi::ProblemDoc;
use problem::{Caller, JsonBody, Problem};
use std::sync::Arc;
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct AppState {
    pub farm: Arc<Farm>,
    pub files: Arc<FileStore>,
    /// Role given to requests without a token (the demo on loopback), or none.
    pub anonymous: Option<Role>,
    pub broker: &'static str,
    /// What enrolment tells agents: where to fetch files and which broker to use.
    pub enrol: Arc<crate::printers::enrol::Endpoints>,
    /// `[inventory]`, `[pricing]`, `[maintenance]`.
    pub production: Arc<crate::config::ProductionConfig>,
    /// Order intake (group commit).
    pub intake: crate::orders::intake::IntakeQueue,
}

/// The `/api/v1` routes with their OpenAPI document (paths relative to `/api/v1`).
pub fn api(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    use utoipa_axum::router::UtoipaMethodRouterExt;
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(printers::list, printers::add))
        .routes(routes!(printers::show))
        .routes(routes!(printers::command))
        .routes(routes!(printers::clear))
        .routes(routes!(jobs::list))
        // Uploads stream to disk and enforce their own limit (`max_upload_bytes`).
        .routes(routes!(jobs::upload).layer(axum::extract::DefaultBodyLimit::disable()))
        .routes(routes!(jobs::show))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::file))
        .routes(routes!(stream::stream))
        // ---- production core, part B: inventory, maintenance, costs, quotes ----
        .routes(routes!(inventory::list_materials, inventory::add_material))
        .routes(routes!(inventory::show_material, inventory::put_material))
        .routes(routes!(inventory::list_spools, inventory::add_spools))
        .routes(routes!(inventory::show_spool))
        .routes(routes!(inventory::load))
        .routes(routes!(inventory::unload))
        .routes(routes!(inventory::adjust))
        .routes(routes!(inventory::ledger))
        .routes(routes!(inventory::printer_spools))
        .routes(routes!(maintenance::counters))
        .routes(routes!(inventory::stock))
        .routes(routes!(inventory::low_stock))
        .routes(routes!(inventory::shortage_forecast))
        .routes(routes!(maintenance::list, maintenance::add))
        .routes(routes!(maintenance::show))
        .routes(routes!(maintenance::complete))
        .routes(routes!(maintenance::due))
        .routes(routes!(costs::job_cost))
        .routes(routes!(costs::report))
        .routes(routes!(costs::order_cost))
        // Quotes take a whole G-code file, streamed like uploads.
        .routes(routes!(quotes::quote).layer(axum::extract::DefaultBodyLimit::disable()))
        // ---- production core, part A: orders, files, catalog, queue, registry, webhooks ----
        .routes(routes!(orders::list, orders::create))
        .routes(routes!(orders::show))
        .routes(routes!(orders::cancel))
        .routes(routes!(orders::fulfil))
        .routes(routes!(orders::release))
        .routes(routes!(orders::upload_file).layer(axum::extract::DefaultBodyLimit::disable()))
        .routes(routes!(catalog::list))
        .routes(routes!(catalog::put, catalog::delete))
        .routes(routes!(queue::timeline))
        .routes(routes!(queue::update))
        .routes(routes!(queue::requeue))
        .routes(routes!(printers::profile))
        .routes(routes!(orders::deliveries))
        // Everything above needs a caller; routes added below this line are open.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_caller,
        ))
        .routes(routes!(health))
        .routes(routes!(session, whoami))
        .split_for_parts()
}

/// 401 before anything else (body parsing included) for a request with no credential. The
/// handlers still check the role; this only keeps anonymous callers from probing bodies.
/// The caller found here is kept with the request, so the handler's [`Caller`] does not look
/// the token up a second time.
async fn require_caller(c: Caller, mut req: Request, next: Next) -> Response {
    let Some(p) = c.0 else {
        return require(&c, Role::Viewer)
            .err()
            .map(IntoResponse::into_response)
            .unwrap_or_else(|| StatusCode::UNAUTHORIZED.into_response());
    };
    req.extensions_mut().insert(problem::Known(p));
    next.run(req).await
}

pub fn router(state: AppState) -> Router {
    let (api, doc) = api(&state);
    let doc_json = Arc::new(doc.to_json().unwrap_or_default());
    let api = api
        .route(
            openapi::DOCUMENT_PATH,
            get(move || {
                let body = Arc::clone(&doc_json);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        (*body).clone(),
                    )
                }
            }),
        )
        .fallback(|| async {
            Problem::new(
                StatusCode::NOT_FOUND,
                "No such API endpoint",
                "see /api/v1/openapi.json (or /api/docs/) for the API",
            )
        });
    // The UI fetches the document from the API's own route above (served once, not twice).
    let docs: Router<AppState> = utoipa_swagger_ui::SwaggerUi::new(openapi::UI_PATH)
        .config(utoipa_swagger_ui::Config::new(["/api/v1/openapi.json"]))
        .into();
    Router::new()
        .nest("/api/v1", api)
        .merge(docs)
        .route("/metrics", get(metrics))
        .fallback(crate::api::dashboard::asset)
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

/// Liveness and the broker connection; needs no token.
#[derive(serde::Serialize, ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
    version: &'static str,
    uptime_s: u64,
    /// `embedded` or the external broker's URL.
    broker: &'static str,
    broker_connected: bool,
    printers_online: usize,
}

/// Liveness, version, broker connection and printers online. Needs no token.
#[utoipa::path(get, path = "/health", tag = "farm", security(()),
    responses((status = 200, body = Health)))]
async fn health(State(st): State<AppState>) -> impl IntoResponse {
    axum::Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: st.farm.started.elapsed().as_secs(),
        broker: st.broker,
        broker_connected: st
            .farm
            .broker_connected
            .load(std::sync::atomic::Ordering::Relaxed),
        printers_online: st.farm.online_count(),
    })
}

#[derive(serde::Deserialize, ToSchema)]
struct Login {
    /// An API token (not an agent's).
    token: String,
}

/// Exchanges an API token for an HttpOnly session cookie (for the dashboard and its stream).
#[utoipa::path(post, path = "/session", tag = "farm", security(()), request_body = Login,
    responses((status = 200, description = "`{role, name}`; the `farm_session` cookie is set", body = Object),
        (status = "4XX", description = "Unknown token", body = ProblemDoc, content_type = "application/problem+json")))]
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

/// Who the caller is (token, session cookie or the anonymous role): the dashboard shows only
/// the actions this role may take.
#[utoipa::path(get, path = "/session", tag = "farm",
    responses((status = 200, description = "`{role, name}` of the caller", body = Object),
        (status = "4XX", description = "No credential and no anonymous role: sign in", body = ProblemDoc, content_type = "application/problem+json")))]
async fn whoami(c: Caller) -> Result<Response, Problem> {
    match c.0 {
        Some(p) => {
            Ok(axum::Json(serde_json::json!({"role": p.role, "name": p.name})).into_response())
        }
        None => Err(unauthenticated()),
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
        None => Err(unauthenticated()),
    }
}

fn unauthenticated() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "Authentication required",
        "send `Authorization: Bearer <token>`; create a token with `farm-controller token add --role operator`",
    )
}

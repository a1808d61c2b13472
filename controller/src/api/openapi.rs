//! The OpenAPI document of the controller's HTTP API, generated from the handlers themselves.
//!
//! Every route under `/api/v1` is registered through `utoipa_axum::routes!`, which takes the
//! method and path from the handler's `#[utoipa::path]` attribute: a route cannot exist without
//! its documentation, nor the other way round. The document is served at
//! `/api/v1/openapi.json` and browsable at `/api/docs/` (Swagger UI, vendored: works offline).
//!
//! Shared pieces live here: the bearer security scheme (applied to every operation unless it
//! says `security(())`), and the problem+json error body.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, SecurityRequirement};
use utoipa::{Modify, OpenApi, ToSchema};

/// Where the document is served (inside `/api/v1`).
pub const DOCUMENT_PATH: &str = "/openapi.json";
/// Where Swagger UI is served.
pub const UI_PATH: &str = "/api/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Print farm controller API",
        description = "Printers, jobs, orders, inventory and maintenance of a 3D-printer farm. \
            Authenticate with `Authorization: Bearer <token>` (tokens: `farm-controller token add`). \
            Errors are `application/problem+json` (RFC 9457) and say what to change.",
    ),
    servers((url = "/api/v1")),
    modifiers(&BearerAuth),
    components(schemas(ProblemDoc)),
    tags(
        (name = "farm", description = "Health and sessions"),
        (name = "printers", description = "The fleet: enrolment, live state, commands, bed clear"),
        (name = "jobs", description = "G-code uploads and the jobs made from them"),
        (name = "stream", description = "Live changes as Server-Sent Events"),
        (name = "inventory", description = "Materials, spools, loading, the filament ledger, stock and forecast"),
        (name = "maintenance", description = "Maintenance tasks, due list, printer counters"),
        (name = "costs", description = "Job costs and period reports"),
        (name = "quotes", description = "Price and promise for a G-code file"),
        (name = "orders", description = "The shop's orders (idempotent intake), files to order from, catalog, webhook log"),
        (name = "queue", description = "The scheduler's timeline and operators' queue actions"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer scheme and requires it everywhere by default.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token, or the `farm_session` cookie set by POST /session",
                    ))
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// An error, as every endpoint returns it (`application/problem+json`, RFC 9457).
#[derive(ToSchema)]
#[allow(dead_code)] // documentation only: `Problem` renders the same fields by hand
pub struct ProblemDoc {
    /// Always `about:blank`: the title and status say what kind of problem it is.
    #[schema(rename = "type", example = "about:blank")]
    kind: String,
    #[schema(example = "Not found")]
    title: String,
    #[schema(example = 404)]
    status: u16,
    /// What went wrong and what to do about it.
    #[schema(example = "no printer \"p-9\"")]
    detail: String,
}

/// A page of a list: `next_cursor` is `null` on the last page.
#[derive(serde::Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page.
    pub next_cursor: Option<String>,
}

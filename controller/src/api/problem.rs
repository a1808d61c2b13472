//! Errors as `application/problem+json` (RFC 9457), a JSON extractor that answers in kind,
//! and the [`Caller`] extractor (bearer token, session cookie, or the anonymous role).

use super::AppState;
use crate::auth::Principal;
use crate::farm::FarmError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

pub const COOKIE: &str = "farm_session";

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
}

impl Problem {
    pub fn new(status: StatusCode, title: &str, detail: &str) -> Self {
        Self {
            status,
            title: title.into(),
            detail: detail.into(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<FarmError> for Problem {
    fn from(e: FarmError) -> Self {
        let (status, title) = match &e {
            FarmError::NoPrinter(_) | FarmError::NoJob(_) => (StatusCode::NOT_FOUND, "Not found"),
            FarmError::PrinterExists(_) | FarmError::Conflict(_) => {
                (StatusCode::CONFLICT, "Conflict")
            }
            FarmError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid request"),
            FarmError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "Storage failure"),
        };
        if status.is_server_error() {
            tracing::error!("{e}");
        }
        Problem::new(status, title, &e.to_string())
    }
}

/// `axum::Json`, but a bad body is a problem+json answer that says what is wrong.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(Problem::new(e.status(), "Bad request body", &e.body_text())),
        }
    }
}

/// The caller the router's layer already identified (kept in the request's extensions).
#[derive(Clone)]
pub(crate) struct Known(pub(crate) Principal);

/// Who is calling: `None` when no valid credential was sent and there is no anonymous role.
pub struct Caller(pub Option<Principal>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(Known(p)) = parts.extensions.get::<Known>() {
            return Ok(Caller(Some(p.clone())));
        }
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        let cookie = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|h| h.to_str().ok())
            .find_map(|h| {
                h.split(';').find_map(|kv| {
                    kv.trim()
                        .strip_prefix(COOKIE)
                        .and_then(|v| v.strip_prefix('='))
                })
            });
        if let Some(tok) = bearer.or(cookie) {
            return match st.farm.principal(tok) {
                Some(p) => Ok(Caller(Some(p))),
                // A wrong token is an error even where anonymous access exists: it is a mistake to fix.
                None if bearer.is_some() => Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "Unknown token",
                    "the bearer token is not valid here; create one with `farm-controller token add`",
                )),
                None => Ok(Caller(st.anonymous.map(anonymous))),
            };
        }
        Ok(Caller(st.anonymous.map(anonymous)))
    }
}

fn anonymous(role: crate::auth::Role) -> Principal {
    Principal {
        role,
        printer: None,
        name: "anonymous".into(),
    }
}

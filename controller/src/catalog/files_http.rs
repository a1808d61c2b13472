//! The one way a G-code file comes in over HTTP, for `POST /jobs`, `POST /files` and
//! `POST /quotes`: the raw request body, streamed to the file store.

use crate::api::AppState;
use crate::api::problem::Problem;
use crate::catalog::files::{Stored, UploadError};
use axum::extract::Request;
use axum::http::{StatusCode, header};

/// Receives the body as a G-code file: a multipart form is refused with how to send the file
/// instead; the rest is the file store's (size limit, G-code check, analysis, stored by
/// sha256). Every refusal is counted by reason and says what to do.
pub async fn receive_gcode(st: &AppState, req: Request) -> Result<Stored, Problem> {
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/")
        });
    if multipart {
        st.farm.metrics.uploads_rejected.inc("multipart");
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the file as the body",
            "POST the raw G-code (Content-Type: application/octet-stream or text/x-gcode), e.g. curl --data-binary @part.gcode",
        ));
    }
    st.files
        .store(req.into_body().into_data_stream())
        .await
        .map_err(|e| {
            st.farm.metrics.uploads_rejected.inc(e.reason());
            let status = match e {
                UploadError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                UploadError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            Problem::new(status, "Upload refused", &e.to_string())
        })
}

/// The display name of an uploaded file (`?name=`, default `upload.gcode`): at most 128
/// printable characters, as it is shown on the dashboard and in orders.
pub fn file_name(name: Option<String>) -> Result<String, Problem> {
    let name = name.unwrap_or_else(|| "upload.gcode".into());
    if name.len() > 128 || name.chars().any(char::is_control) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Bad name",
            "a file name is at most 128 printable characters",
        ));
    }
    Ok(name)
}

//! PrusaLink's HTTP API v1, the calls the farm needs: version, storage, status, upload, start,
//! pause, resume, stop.
//!
//! Login is either `X-Api-Key` or HTTP Digest as PrusaLink does it (realm `Administrator`,
//! `algorithm=MD5-sess`, `qop=auth`): the first call is answered 401 with a challenge; every
//! call after that carries an answer to the last challenge (the nonce count rising), so a call
//! costs one round trip. When the nonce expires PrusaLink answers 401 with `stale=true`: the
//! call is repeated once with the new nonce. A 401 to a fresh answer means a wrong user or
//! password. The digest itself is the `digest_auth` crate's.
//!
//! Every error is an [`ApiError`] whose text says what to do; a refused login is told apart
//! because it needs a person, not a retry at full speed.

use super::Credentials;
use super::wire::{Observation, Storage, Version, parse_status, parse_storage};
use crate::octoprint::client::describe;
use digest_auth::{AuthContext, HttpMethod, WwwAuthenticateHeader};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use std::path::Path;
use std::time::Duration;

/// Small calls (status, commands) must answer within this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// An upload may take long (a large file over the printer's Wi-Fi); it must still end.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(900);
/// Longest error body quoted in a message.
const MAX_QUOTE: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "cannot reach PrusaLink at {url}: {detail}; check that the printer is on and on the \
         network, and that printer.prusalink.url is right"
    )]
    Unreachable { url: String, detail: String },
    #[error("PrusaLink at {url} refused the login: {why}")]
    Refused { url: String, why: String },
    #[error("PrusaLink answered {status} to {what}: {message}")]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    #[error("PrusaLink's answer to {what} is not what its API v1 describes: {detail}")]
    Decode { what: String, detail: String },
    #[error("cannot read the job file {path}: {detail}")]
    File { path: String, detail: String },
}

impl ApiError {
    /// `409 Conflict`: the printer is not in a state for this (busy, nothing to pause, …).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Status { status: 409, .. })
    }

    /// `404`: no such job (a stale id) or file.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status: 404, .. })
    }

    /// The printer cannot be used until something changes: unreachable, or the login refused.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            ApiError::Unreachable { .. } | ApiError::Refused { .. }
        )
    }
}

enum Login {
    Key(String),
    Digest {
        username: String,
        password: String,
        /// The last challenge; its nonce count rises with every answer.
        challenge: Option<WwwAuthenticateHeader>,
    },
}

/// A client for one PrusaLink.
pub struct Api {
    http: reqwest::Client,
    base: String,
    login: Login,
}

impl Api {
    pub fn new(url: &str, credentials: Credentials) -> Result<Api, ApiError> {
        crate::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ApiError::Unreachable {
                url: url.to_string(),
                detail: format!("cannot set up the HTTP client: {e}"),
            })?;
        let login = match credentials {
            Credentials::ApiKey(k) => Login::Key(k),
            Credentials::Digest { username, password } => Login::Digest {
                username,
                password,
                challenge: None,
            },
        };
        Ok(Api {
            http,
            base: url.trim_end_matches('/').to_string(),
            login,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The `Authorization` answer to the last challenge for `method path`, if there is one.
    fn answer(&mut self, method: &Method, path: &str) -> Result<Option<String>, ApiError> {
        let Login::Digest {
            username,
            password,
            challenge: Some(challenge),
        } = &mut self.login
        else {
            return Ok(None);
        };
        let context = AuthContext::new_with_method(
            username.as_str(),
            password.as_str(),
            path,
            Option::<&[u8]>::None,
            HttpMethod::from(method.as_str()),
        );
        challenge
            .respond(&context)
            .map(|h| Some(h.to_header_string()))
            .map_err(|e| ApiError::Refused {
                url: self.base.clone(),
                why: format!("cannot answer its Digest challenge ({e})"),
            })
    }

    /// Sends `method path`, logging in as configured, and sorts the answer: 2xx → the
    /// response; 401/403 → `Refused`; else `Status`. `upload` is a file sent as the raw body.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        upload: Option<(&Path, u64)>,
    ) -> Result<reqwest::Response, ApiError> {
        let what = format!("{method} {path}");
        // Twice at most: once more after a (new or stale) challenge.
        for attempt in 0..2 {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .timeout(if upload.is_some() {
                    UPLOAD_TIMEOUT
                } else {
                    CALL_TIMEOUT
                });
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some((file, size)) = upload {
                // Reopened on a retry: a streamed body cannot be sent twice.
                let f = tokio::fs::File::open(file)
                    .await
                    .map_err(|e| ApiError::File {
                        path: file.display().to_string(),
                        detail: e.to_string(),
                    })?;
                req = req
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, size)
                    .body(reqwest::Body::from(f));
            }
            let answered = match &self.login {
                Login::Key(k) => {
                    req = req.header("X-Api-Key", k);
                    false
                }
                Login::Digest { .. } => match self.answer(&method, path)? {
                    Some(a) => {
                        req = req.header(AUTHORIZATION, a);
                        true
                    }
                    None => false,
                },
            };
            let resp = req.send().await.map_err(|e| ApiError::Unreachable {
                url: self.base.clone(),
                detail: describe(&e),
            })?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED {
                let retry = self.challenged(&resp, answered)?;
                if retry && attempt == 0 {
                    continue;
                }
                return Err(self.refused(answered));
            }
            if status == StatusCode::FORBIDDEN {
                let why = match self.login {
                    Login::Key(_) => {
                        "the API key is wrong (HTTP 403): copy it again from the printer's \
                         network menu (or PrusaLink's settings) into printer.prusalink.api_key"
                    }
                    Login::Digest { .. } => {
                        "HTTP 403 (forbidden) to a valid login; check the user's rights on \
                         the printer"
                    }
                };
                return Err(ApiError::Refused {
                    url: self.base.clone(),
                    why: why.into(),
                });
            }
            let body = resp.text().await.unwrap_or_default();
            return Err(ApiError::Status {
                what,
                status: status.as_u16(),
                message: quote(&body),
            });
        }
        Err(self.refused(true))
    }

    /// A 401: keeps its Digest challenge; whether the call is worth repeating (a first
    /// challenge, or a stale nonce).
    fn challenged(&mut self, resp: &reqwest::Response, answered: bool) -> Result<bool, ApiError> {
        let Login::Digest { challenge, .. } = &mut self.login else {
            return Ok(false);
        };
        let header = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.trim_start().to_ascii_lowercase().starts_with("digest"));
        let Some(parsed) = header.and_then(|h| digest_auth::parse(h).ok()) else {
            return Err(ApiError::Refused {
                url: self.base.clone(),
                why: "it answered 401 without a Digest challenge; is printer.prusalink.url a \
                      PrusaLink?"
                    .into(),
            });
        };
        let stale = parsed.stale;
        *challenge = Some(parsed);
        Ok(!answered || stale)
    }

    fn refused(&self, answered: bool) -> ApiError {
        let why = match (&self.login, answered) {
            (Login::Key(_), _) => {
                "it asks for HTTP Digest (HTTP 401) and takes no API key: set \
                 printer.prusalink.username and password (on the printer's network menu) \
                 instead of api_key"
            }
            (Login::Digest { .. }, _) => {
                "wrong user name or password (HTTP 401 to a Digest login): copy them again \
                 from the printer's network menu (or PrusaLink's settings) into \
                 printer.prusalink.username and password"
            }
        };
        ApiError::Refused {
            url: self.base.clone(),
            why: why.into(),
        }
    }

    async fn body(what: &str, resp: reqwest::Response) -> Result<Vec<u8>, ApiError> {
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ApiError::Decode {
                what: what.to_string(),
                detail: e.to_string(),
            })
    }

    /// `GET /api/version`.
    pub async fn version(&mut self) -> Result<Version, ApiError> {
        let what = "GET /api/version";
        let resp = self.send(Method::GET, "/api/version", &[], None).await?;
        let body = Self::body(what, resp).await?;
        serde_json::from_slice(&body).map_err(|e| ApiError::Decode {
            what: what.into(),
            detail: e.to_string(),
        })
    }

    /// `GET /api/v1/storage`.
    pub async fn storage(&mut self) -> Result<Vec<Storage>, ApiError> {
        let what = "GET /api/v1/storage";
        let resp = self.send(Method::GET, "/api/v1/storage", &[], None).await?;
        let body = Self::body(what, resp).await?;
        parse_storage(&body).map_err(|e| ApiError::Decode {
            what: what.into(),
            detail: e.to_string(),
        })
    }

    /// `GET /api/v1/status`.
    pub async fn status(&mut self) -> Result<Observation, ApiError> {
        let what = "GET /api/v1/status";
        let resp = self.send(Method::GET, "/api/v1/status", &[], None).await?;
        let body = Self::body(what, resp).await?;
        parse_status(&body).map_err(|e| ApiError::Decode {
            what: what.into(),
            detail: e.to_string(),
        })
    }

    /// `PUT /api/v1/files/{storage}/{name}`: the file as the raw body, replacing one of the
    /// same name (`Overwrite: ?1`), not printed yet (`Print-After-Upload: ?0`).
    pub async fn upload(
        &mut self,
        storage: &str,
        name: &str,
        file: &Path,
        size: u64,
    ) -> Result<(), ApiError> {
        let path = file_path(storage, name);
        let headers = [("Overwrite", "?1"), ("Print-After-Upload", "?0")];
        self.send(Method::PUT, &path, &headers, Some((file, size)))
            .await
            .map(drop)
    }

    /// `POST /api/v1/files/{storage}/{name}`: print this file (204; 409 while a job runs).
    pub async fn print(&mut self, storage: &str, name: &str) -> Result<(), ApiError> {
        let path = file_path(storage, name);
        self.send(Method::POST, &path, &[], None).await.map(drop)
    }

    /// `PUT /api/v1/job/{id}/pause`.
    pub async fn pause(&mut self, id: u64) -> Result<(), ApiError> {
        let path = format!("/api/v1/job/{id}/pause");
        self.send(Method::PUT, &path, &[], None).await.map(drop)
    }

    /// `PUT /api/v1/job/{id}/resume`.
    pub async fn resume(&mut self, id: u64) -> Result<(), ApiError> {
        let path = format!("/api/v1/job/{id}/resume");
        self.send(Method::PUT, &path, &[], None).await.map(drop)
    }

    /// `DELETE /api/v1/job/{id}`: stop the print.
    pub async fn stop(&mut self, id: u64) -> Result<(), ApiError> {
        let path = format!("/api/v1/job/{id}");
        self.send(Method::DELETE, &path, &[], None).await.map(drop)
    }
}

/// `/api/v1/files/usb/name.gcode`; the name is the agent's own (safe characters only).
fn file_path(storage: &str, name: &str) -> String {
    format!("/api/v1/files/{}/{name}", storage.trim_matches('/'))
}

/// The start of an error body, trimmed.
fn quote(body: &str) -> String {
    let mut message = body.trim().to_string();
    if message.len() > MAX_QUOTE {
        let mut end = MAX_QUOTE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    if message.is_empty() {
        "(no text)".into()
    } else {
        message
    }
}

//! OctoPrint's REST API, the calls the farm needs: version check, passive login (for the push
//! channel), upload-and-print, job commands, printer commands, connecting to the printer, and
//! the two status reads used while the push channel is down.
//!
//! Every error is an [`ApiError`] whose text says what to do; `403` is told apart because a
//! wrong key needs a person, not a retry loop at full speed.

use super::wire::{JobStatusJson, PrinterJson};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Small calls (status, commands) must answer within this.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// An upload may take long (large file, slow Pi); it must still end.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest error body quoted in a message.
const MAX_QUOTE: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "cannot reach OctoPrint at {url}: {detail}; check that OctoPrint runs and that \
         printer.octoprint.url is right"
    )]
    Unreachable { url: String, detail: String },
    #[error(
        "OctoPrint at {url} refused the API key (HTTP 403): create an application key in \
         OctoPrint (Settings → Application Keys) and put it in printer.octoprint.api_key"
    )]
    Refused { url: String },
    #[error("OctoPrint answered {status} to {what}: {message}")]
    Status {
        what: &'static str,
        status: u16,
        message: String,
    },
    #[error("OctoPrint's answer to {what} is not what OctoPrint 1.11 sends: {detail}")]
    Decode { what: &'static str, detail: String },
    #[error("cannot read the job file {path}: {detail}")]
    File { path: String, detail: String },
}

impl ApiError {
    /// `409 Conflict`: the printer is not in a state for this (not operational, nothing printing).
    pub fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Status { status: 409, .. })
    }
}

/// What the upload answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    /// The file's path in local storage, as OctoPrint stored it.
    pub path: String,
    pub printing: bool,
}

/// A REST client for one OctoPrint.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    pub fn new(url: &str, key: &str) -> Result<Api, ApiError> {
        crate::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ApiError::Unreachable {
                url: url.to_string(),
                detail: format!("cannot set up the HTTP client: {e}"),
            })?;
        Ok(Api {
            http,
            base: url.trim_end_matches('/').to_string(),
            key: key.to_string(),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("X-Api-Key", &self.key)
            .timeout(CALL_TIMEOUT)
    }

    /// Sends, and sorts the answer: 2xx → the response; 403 → `Refused`; else `Status`.
    async fn send(
        &self,
        what: &'static str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ApiError> {
        let resp = req.send().await.map_err(|e| ApiError::Unreachable {
            url: self.base.clone(),
            detail: describe(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        if status == StatusCode::FORBIDDEN {
            return Err(ApiError::Refused {
                url: self.base.clone(),
            });
        }
        let body = resp.text().await.unwrap_or_default();
        // OctoPrint explains itself in {"error": "…"}.
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(body);
        let mut message = message.trim().to_string();
        if message.len() > MAX_QUOTE {
            let mut end = MAX_QUOTE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        Err(ApiError::Status {
            what,
            status: status.as_u16(),
            message,
        })
    }

    async fn json<T: for<'de> Deserialize<'de>>(
        &self,
        what: &'static str,
        resp: reqwest::Response,
    ) -> Result<T, ApiError> {
        resp.json().await.map_err(|e| ApiError::Decode {
            what,
            detail: e.to_string(),
        })
    }

    /// `GET /api/version` → the server version text (e.g. `OctoPrint 1.11.8`).
    pub async fn version(&self) -> Result<String, ApiError> {
        let what = "GET /api/version";
        let resp = self
            .send(what, self.request(Method::GET, "/api/version"))
            .await?;
        let v: Value = self.json(what, resp).await?;
        Ok(v.get("text")
            .and_then(Value::as_str)
            .unwrap_or("OctoPrint")
            .to_string())
    }

    /// `POST /api/login {"passive": true}` → `user:session` for the push channel's `auth`.
    pub async fn session(&self) -> Result<String, ApiError> {
        let what = "POST /api/login";
        let req = self
            .request(Method::POST, "/api/login")
            .json(&json!({"passive": true}));
        let v: Value = self.json(what, self.send(what, req).await?).await?;
        let field = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        match (field("name"), field("session")) {
            (Some(name), Some(session)) => Ok(format!("{name}:{session}")),
            _ => Err(ApiError::Decode {
                what,
                detail: "no name and session in the answer (is the key an API key?)".into(),
            }),
        }
    }

    /// Uploads `path` as `name` to local storage and starts printing it (`select` + `print`).
    pub async fn upload_and_print(
        &self,
        path: &Path,
        name: &str,
        size: u64,
    ) -> Result<Uploaded, ApiError> {
        let what = "POST /api/files/local";
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ApiError::File {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        // A streamed part with its length: OctoPrint needs Content-Length, and a large file
        // must not be held in memory.
        let part = reqwest::multipart::Part::stream_with_length(file, size)
            .file_name(name.to_string())
            .mime_str("application/octet-stream")
            .map_err(|e| ApiError::Decode {
                what,
                detail: e.to_string(),
            })?;
        let form = reqwest::multipart::Form::new()
            .part("file", part)
            .text("select", "true")
            .text("print", "true");
        let req = self
            .request(Method::POST, "/api/files/local")
            .timeout(UPLOAD_TIMEOUT)
            .multipart(form);
        let v: Value = self.json(what, self.send(what, req).await?).await?;
        let stored = v
            .pointer("/files/local/path")
            .and_then(Value::as_str)
            .unwrap_or(name)
            .to_string();
        Ok(Uploaded {
            path: stored,
            printing: v.get("effectivePrint").and_then(Value::as_bool) == Some(true),
        })
    }

    /// `POST /api/job` with `body` (`pause`, `cancel`, …); 204 expected.
    pub async fn job_command(&self, body: Value) -> Result<(), ApiError> {
        let req = self.request(Method::POST, "/api/job").json(&body);
        self.send("POST /api/job", req).await.map(drop)
    }

    /// `POST /api/printer/command {"commands": [...]}`; OctoPrint does not return the replies.
    pub async fn printer_command(&self, lines: &[String]) -> Result<(), ApiError> {
        let req = self
            .request(Method::POST, "/api/printer/command")
            .json(&json!({ "commands": lines }));
        self.send("POST /api/printer/command", req).await.map(drop)
    }

    /// `POST /api/connection {"command": "connect"}` with OctoPrint's saved port and baud rate.
    pub async fn connect_printer(&self) -> Result<(), ApiError> {
        let req = self
            .request(Method::POST, "/api/connection")
            .json(&json!({"command": "connect"}));
        self.send("POST /api/connection", req).await.map(drop)
    }

    /// `GET /api/printer` (`None` on 409: OctoPrint is not connected to the printer).
    pub async fn printer(&self) -> Result<Option<PrinterJson>, ApiError> {
        let what = "GET /api/printer";
        match self
            .send(what, self.request(Method::GET, "/api/printer"))
            .await
        {
            Ok(resp) => Ok(Some(self.json(what, resp).await?)),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/job`.
    pub async fn job(&self) -> Result<JobStatusJson, ApiError> {
        let what = "GET /api/job";
        let resp = self
            .send(what, self.request(Method::GET, "/api/job"))
            .await?;
        self.json(what, resp).await
    }
}

/// reqwest's error with its causes ("error sending request: connection refused"); the
/// PrusaLink client uses it too.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

//! Moonraker's HTTP API: the file upload (multipart, streamed from disk), and the few reads
//! an operator or a test wants without a websocket (server info, file metadata, job history).
//!
//! Every request carries `X-Api-Key` when a key is configured. Moonraker checks a key *before*
//! its trusted-client list, so a wrong key fails even from a trusted address; no key from a
//! trusted address is fine. Error bodies are `{"error": {"code", "message", "traceback"}}`:
//! only `message` is shown (the traceback holds Moonraker's server paths).

use futures_util::{StreamExt, stream};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// An upload may take this long (a 200 MB file on a slow Wi-Fi link).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// Reads answer quickly or not at all.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Why an HTTP call to Moonraker failed. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("Moonraker refused the request to {path} (401 {message}): {hint}")]
    Unauthorized {
        path: String,
        message: String,
        hint: &'static str,
    },
    #[error("Moonraker answered {path} with {status}: {message}")]
    Status {
        path: String,
        status: u16,
        message: String,
    },
    #[error(
        "cannot reach Moonraker at {url}: {reason}; check [printer.moonraker] url and that Moonraker is running"
    )]
    Transport { url: String, reason: String },
    #[error("cannot read {path} for upload: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("Moonraker's answer to {path} is not the JSON it documents: {reason}")]
    Malformed { path: String, reason: String },
}

/// What to tell an operator whose request Moonraker refused.
pub fn auth_hint(key_set: bool) -> &'static str {
    if key_set {
        "the API key is wrong; set [printer.moonraker] api_key to the key Moonraker shows \
         (GET /access/api_key from a trusted host, or the API key page of Mainsail/Fluidd)"
    } else {
        "this agent's address is not one of Moonraker's [authorization] trusted_clients and no \
         key is configured; set [printer.moonraker] api_key, or add the agent's address to \
         trusted_clients"
    }
}

/// A client for one Moonraker.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
    api_key: String,
}

/// The file Moonraker stored (`item` of the upload answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Uploaded {
    /// Path relative to the `gcodes` root: what `printer.print.start` takes.
    pub path: String,
    pub size: u64,
}

impl Http {
    pub fn new(base: &str, api_key: &str) -> Result<Self, HttpError> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| HttpError::Transport {
                url: base.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
        })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        if self.api_key.is_empty() {
            r
        } else {
            r.header("X-Api-Key", &self.api_key)
        }
    }

    /// Sends a request and returns the JSON body of a 2xx answer.
    async fn send(&self, req: reqwest::RequestBuilder, path: &str) -> Result<Value, HttpError> {
        let resp = req.send().await.map_err(|e| HttpError::Transport {
            url: format!("{}{path}", self.base),
            reason: without_url(&e),
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| HttpError::Transport {
            url: format!("{}{path}", self.base),
            reason: without_url(&e),
        })?;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return json.ok_or_else(|| HttpError::Malformed {
                path: path.to_string(),
                reason: format!("{} bytes that are not JSON", body.len()),
            });
        }
        let message = json
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(HttpError::Unauthorized {
                path: path.to_string(),
                message,
                hint: auth_hint(!self.api_key.is_empty()),
            });
        }
        Err(HttpError::Status {
            path: path.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    /// `GET path` and the `result` of its `{"result": …}` envelope.
    pub async fn get(&self, path: &str) -> Result<Value, HttpError> {
        let v = self
            .send(
                self.request(reqwest::Method::GET, path)
                    .timeout(READ_TIMEOUT),
                path,
            )
            .await?;
        match v {
            Value::Object(mut m) if m.contains_key("result") => {
                Ok(m.remove("result").unwrap_or(Value::Null))
            }
            other => Err(HttpError::Malformed {
                path: path.to_string(),
                reason: format!("no `result` in {}", clip(&other.to_string())),
            }),
        }
    }

    /// `GET /server/info`: Moonraker's version and Klippy's state.
    pub async fn server_info(&self) -> Result<Value, HttpError> {
        self.get("/server/info").await
    }

    /// `GET /server/files/metadata`: what Moonraker's own parser read from an uploaded file.
    pub async fn metadata(&self, filename: &str) -> Result<Value, HttpError> {
        self.get(&format!(
            "/server/files/metadata?filename={}",
            query(filename)
        ))
        .await
    }

    /// `GET /server/history/list`: the newest `limit` jobs first.
    pub async fn history(&self, limit: u32) -> Result<Value, HttpError> {
        self.get(&format!("/server/history/list?limit={limit}&order=desc"))
            .await
    }

    /// `GET /server/history/job`: one job by Moonraker's id (e.g. `000003`).
    pub async fn history_job(&self, uid: &str) -> Result<Value, HttpError> {
        self.get(&format!("/server/history/job?uid={}", query(uid)))
            .await
    }

    /// `POST /server/files/upload`: streams `local` into the `gcodes` root as `name`.
    /// The multipart body is written by hand so a large file streams from disk with a known
    /// length, without a multipart dependency.
    pub async fn upload(&self, local: &Path, name: &str) -> Result<Uploaded, HttpError> {
        let path = "/server/files/upload";
        let file_err = |source| HttpError::File {
            path: local.display().to_string(),
            source,
        };
        let file = tokio::fs::File::open(local).await.map_err(file_err)?;
        let size = file.metadata().await.map_err(file_err)?.len();
        let boundary = format!("farm-agent-{:032x}", rand::random::<u128>());
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"root\"\r\n\r\ngcodes\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let length = head.len() as u64 + size + tail.len() as u64;
        let chunks = stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut buf = vec![0u8; 64 * 1024];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), Some(file)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        let body = stream::iter([Ok(head.into_bytes())])
            .chain(chunks)
            .chain(stream::iter([Ok(tail.into_bytes())]));
        let req = self
            .request(reqwest::Method::POST, path)
            .timeout(UPLOAD_TIMEOUT)
            .header(
                "Content-Type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .header("Content-Length", length)
            .body(reqwest::Body::wrap_stream(body));
        let v = self.send(req, path).await?;
        let item = &v["item"];
        match (item["path"].as_str(), item["size"].as_u64()) {
            (Some(p), Some(s)) => Ok(Uploaded {
                path: p.to_string(),
                size: s,
            }),
            _ => Err(HttpError::Malformed {
                path: path.to_string(),
                reason: format!("no item path/size in {}", clip(&v.to_string())),
            }),
        }
    }
}

/// A reqwest error's text without the URL (which could carry a query token).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "");
    }
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Percent-encodes a query value (file names may hold spaces and `&`).
fn query(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A job's name as a safe file name in Moonraker's `gcodes` root: letters, digits, `._-`,
/// ending in `.gcode` (Moonraker accepts only G-code extensions there).
pub fn remote_name(name: &str, job_id: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut s: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    s = s.trim_start_matches('.').to_string();
    if s.is_empty() {
        s = format!("job-{job_id}");
    }
    let lower = s.to_ascii_lowercase();
    if ![".gcode", ".g", ".gco"].iter().any(|e| lower.ends_with(e)) {
        s.push_str(".gcode");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_names_are_safe_gcode_names() {
        assert_eq!(
            remote_name("fixture-square.gcode", "j1"),
            "fixture-square.gcode"
        );
        assert_eq!(remote_name("../../etc/passwd", "j1"), "passwd.gcode");
        assert_eq!(remote_name("a b&c.GCODE", "j1"), "a_b_c.GCODE");
        assert_eq!(remote_name("", "j7"), "job-j7.gcode");
        assert_eq!(remote_name(".hidden", "j7"), "hidden.gcode");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(query("a b&c.gcode"), "a%20b%26c.gcode");
        assert_eq!(query("dir/x.gcode"), "dir/x.gcode");
    }
}

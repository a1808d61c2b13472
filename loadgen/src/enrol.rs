//! Mass enrolment through the API (`POST /api/v1/printers`), and the file that lets a big run
//! reuse an earlier one's printers instead of enrolling thousands again.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{StreamExt, TryStreamExt};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One enrolled printer's keys.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enrolled {
    pub id: String,
    /// Signs and verifies every message of this printer.
    pub secret: String,
    /// Its broker password (the login is the id).
    pub token: String,
}

#[derive(Serialize, Deserialize, Default)]
struct EnrolmentFile {
    /// The controller the printers were enrolled on (a hint for whoever reads the file).
    controller: String,
    printers: Vec<Enrolled>,
}

/// Enrols one printer and takes its secret from the agent config it is answered with.
async fn enrol_one(
    http: &reqwest::Client,
    controller: &str,
    admin: &str,
    id: &str,
) -> Result<Enrolled> {
    let r = http
        .post(format!("{controller}/api/v1/printers"))
        .bearer_auth(admin)
        .json(&serde_json::json!({ "id": id }))
        .send()
        .await
        .with_context(|| format!("enrolling {id}: is the controller at {controller}?"))?;
    let status = r.status();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    if status.as_u16() == 409 {
        bail!(
            "printer {id} is already enrolled but not in the enrolment file: pass the --enrolment file of the run that enrolled it, or another --id-prefix"
        );
    }
    if status.as_u16() != 201 {
        bail!("enrolling {id}: the controller answered {status}: {body}");
    }
    let token = body["token"]
        .as_str()
        .ok_or_else(|| anyhow!("enrolling {id}: no token in the answer"))?
        .to_string();
    let config: toml::Table = body["agent_config"]
        .as_str()
        .ok_or_else(|| anyhow!("enrolling {id}: no agent_config in the answer"))?
        .parse()
        .with_context(|| format!("enrolling {id}: the agent config is not TOML"))?;
    let secret = config
        .get("secret")
        .and_then(|v| v.as_str())
        .ok_or_else(|| anyhow!("enrolling {id}: the agent config has no secret"))?
        .to_string();
    Ok(Enrolled {
        id: id.to_string(),
        secret,
        token,
    })
}

/// The keys of every printer in `ids`, in that order: from `file` where it has them, the
/// rest enrolled now (`concurrency` requests at a time) and added to `file`.
pub async fn ensure(
    http: &reqwest::Client,
    controller: &str,
    admin: &str,
    ids: &[String],
    file: Option<&Path>,
    concurrency: usize,
) -> Result<Vec<Enrolled>> {
    let mut saved = match file {
        Some(f) if f.exists() => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the enrolment file {}", f.display()))?;
            serde_json::from_str::<EnrolmentFile>(&text).with_context(|| {
                format!(
                    "{} is not an enrolment file written by farm-loadgen; remove it to enrol again",
                    f.display()
                )
            })?
        }
        _ => EnrolmentFile::default(),
    };
    let known: FxHashMap<&str, &Enrolled> =
        saved.printers.iter().map(|e| (e.id.as_str(), e)).collect();
    let missing: Vec<String> = ids
        .iter()
        .filter(|id| !known.contains_key(id.as_str()))
        .cloned()
        .collect();
    // Owned futures: a borrowing closure here makes the whole run future not `Send`-general
    // enough for `tokio::spawn`.
    let fresh: Vec<Enrolled> = futures_util::stream::iter(missing)
        .map(|id| {
            let (http, controller, admin) =
                (http.clone(), controller.to_string(), admin.to_string());
            async move { enrol_one(&http, &controller, &admin, &id).await }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await?;
    let enrolled_now = fresh.len();
    let mut all: FxHashMap<String, Enrolled> = saved
        .printers
        .drain(..)
        .chain(fresh)
        .map(|e| (e.id.clone(), e))
        .collect();
    if enrolled_now > 0
        && let Some(f) = file
    {
        let out = EnrolmentFile {
            controller: controller.to_string(),
            printers: all.values().cloned().collect(),
        };
        std::fs::write(f, serde_json::to_vec(&out)?)
            .with_context(|| format!("writing the enrolment file {}", f.display()))?;
    }
    ids.iter()
        .map(|id| {
            all.remove(id)
                .ok_or_else(|| anyhow!("printer {id} was not enrolled"))
        })
        .collect()
}

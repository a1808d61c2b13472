//! The PrusaLink back end (`backend = "prusalink"`): drives a Prusa printer through PrusaLink's
//! HTTP API v1, the API that the MK4/MK4S, MK3.5, Core One, XL and MINI serve from their own
//! firmware and that the Pi-hosted PrusaLink serves for the MK3 family. Tested against a
//! simulated printer built from PrusaLink's published OpenAPI document (`tests/src/prusalink.rs`);
//! no real printer and no real PrusaLink ran in the tests.
//!
//! | file | what |
//! |---|---|
//! | [`wire`] | PrusaLink's JSON (`/api/version`, `/api/v1/storage`, `/api/v1/status`) → [`wire::Observation`] (pure, lenient) |
//! | [`state`] | the functional core: observations → farm activity, snapshot, job lifecycle events, how far into the file a job is billed (pure) |
//! | [`client`] | the HTTP calls, with HTTP Digest (MD5-sess, `qop=auth`, a new nonce on `stale=true`) or `X-Api-Key` |
//! | `task` | the shell: one task with the poll timer, reconnect backoff, commands |
//!
//! How a job goes: the agent reads `/api/v1/storage` and takes the first writable storage
//! (`usb` on the printers' own firmware, `local` on a Pi), uploads the job file raw with
//! `PUT /api/v1/files/{storage}/<job id>-<sha256[..12]>.gcode` (`.bgcode` when the file is
//! binary G-code: the bytes go as they are) with `Overwrite: ?1`, then starts it with `POST`
//! to the same path; `job_started` follows PrusaLink's 204. Status is `GET /api/v1/status`
//! every `poll_interval_ms`. Pause, resume and stop are `PUT /api/v1/job/{id}/pause|resume`
//! and `DELETE /api/v1/job/{id}` with the printer's own job id from the status.
//!
//! **Material is billed by progress, not by file position**: PrusaLink v1 reports no file
//! position (neither `/api/v1/status`'s `job` nor `/api/v1/job` has one; only `progress` in
//! percent, `time_printing` and `time_remaining`). The agent turns the highest progress seen
//! into a byte offset (`progress % × file size`) and asks the job file's `ExtrusionIndex` for
//! the filament of the lines before it. Progress is coarse (whole or tenth percents, and on
//! firmware that reads the slicer's `M73` lines it follows time, not bytes), so a partial bill
//! (cancel, failure) is an approximation; a completed job bills exactly the analyzer's total
//! for the file. The bill is a high-water mark: it never goes down.
//!
//! **Which job is ours**: a job ends only on news about it seen after our start. The printer's
//! job id shown before our start (a `FINISHED` left over from the previous print) is never
//! taken for ours; without job ids, only a print seen running after our start is.
//!
//! States (`printer.state`) → farm activity: `IDLE`, `READY`, `FINISHED`, `STOPPED` → idle;
//! `PRINTING`, `BUSY` → printing; `PAUSED` → paused; `ERROR` → error; `ATTENTION` (the
//! printer waits for someone at it: filament runout, a crash, a dialog on its screen) →
//! paused during a farm job (with a `job_paused` and a `firmware_message` saying so), error
//! without one. The agent cannot clear `ATTENTION`: a person at the printer must.

pub mod client;
pub mod state;
mod task;
pub mod wire;

use crate::config::ConfigError;
use crate::printer::{Backend, Port};
use serde::Deserialize;

fn default_poll_interval_ms() -> u32 {
    1000
}

/// `[printer.prusalink]`.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrusaLinkConfig {
    /// The printer's (or the Pi's) base URL, e.g. `http://192.168.1.50`.
    pub url: String,
    /// The API key (sent as `X-Api-Key`). Either this or `username` + `password`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// HTTP Digest user (on the printers' own firmware usually `maker`).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// The storage to upload to (`usb`, `local`); default: the first writable one PrusaLink
    /// lists.
    #[serde(default)]
    pub storage: Option<String>,
    /// How often status is polled, ms (default 1000).
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u32,
    /// The printer's model: a profile of `firmware-profiles/printers/` (`prusa-mk4`,
    /// `prusa-core-one`) or a model it lists (`MK4S`, `COREONE`). The job file's index (the
    /// planned time left that stands in for PrusaLink's own) starts from its limits and
    /// allowances; the file's own settings still win. Absent: the analyzer's defaults.
    #[serde(default)]
    pub model: Option<String>,
}

/// How the agent proves itself to PrusaLink.
#[derive(Clone, PartialEq)]
pub enum Credentials {
    ApiKey(String),
    Digest { username: String, password: String },
}

impl std::fmt::Debug for PrusaLinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl PrusaLinkConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        };
        let url = self.url.trim();
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= 8 {
            return invalid(
                "printer.prusalink.url",
                "must be the printer's base URL, e.g. \"http://192.168.1.50\" (the address \
                 its network menu shows)",
            );
        }
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let (key, user, pass) = (set(&self.api_key), set(&self.username), set(&self.password));
        if self.api_key.is_some() && !key {
            return invalid(
                "printer.prusalink.api_key",
                "is empty: copy the API key from the printer's network menu (or PrusaLink's \
                 settings page), or use username + password instead",
            );
        }
        if key && (self.username.is_some() || self.password.is_some()) {
            return invalid(
                "printer.prusalink",
                "has both api_key and username/password: keep one way to log in",
            );
        }
        if !key && !user && !pass {
            return invalid(
                "printer.prusalink",
                "needs a login: api_key = \"…\", or username = \"maker\" and password = \"…\" \
                 (both on the printer's network menu or PrusaLink's settings page)",
            );
        }
        if !key && !user {
            return invalid(
                "printer.prusalink.username",
                "is missing or empty: HTTP Digest needs the user name (on the printers' own \
                 firmware usually \"maker\") beside the password",
            );
        }
        if !key && !pass {
            return invalid(
                "printer.prusalink.password",
                "is missing or empty: HTTP Digest needs the password beside the user name",
            );
        }
        if let Some(s) = &self.storage
            && (s.trim_matches('/').is_empty() || s.trim_matches('/').contains('/'))
        {
            return invalid(
                "printer.prusalink.storage",
                "must be one storage name such as \"usb\" or \"local\", or left out",
            );
        }
        if !(100..=60_000).contains(&self.poll_interval_ms) {
            return invalid(
                "printer.prusalink.poll_interval_ms",
                "must be between 100 and 60000",
            );
        }
        if let Err(e) = crate::model_profile::base_limits(self.model.as_deref()) {
            return invalid("printer.prusalink.model", &e);
        }
        Ok(())
    }

    /// The analyzer's starting limits for this printer's jobs: its model's profile
    /// (validated with the config), else the defaults.
    pub fn base_limits(&self) -> farm_protocol::gcode::Limits {
        crate::model_profile::base_limits(self.model.as_deref()).unwrap_or_default()
    }

    /// The login the config names (validated: exactly one is there).
    pub fn credentials(&self) -> Credentials {
        match &self.api_key {
            Some(k) => Credentials::ApiKey(k.clone()),
            None => Credentials::Digest {
                username: self.username.clone().unwrap_or_default(),
                password: self.password.clone().unwrap_or_default(),
            },
        }
    }

    /// One line for `check-config`; never contains the key or password.
    pub(crate) fn summary(&self) -> String {
        let login = match self.credentials() {
            Credentials::ApiKey(k) => format!("api_key set ({} bytes)", k.len()),
            Credentials::Digest { username, .. } => {
                format!("digest user {username:?} password set")
            }
        };
        format!(
            "url {} {login} storage {} poll_interval_ms {} model {}",
            self.url,
            self.storage.as_deref().unwrap_or("(first writable)"),
            self.poll_interval_ms,
            self.model.as_deref().unwrap_or("(analyzer defaults)")
        )
    }
}

/// The PrusaLink back end.
pub struct PrusaLink {
    config: PrusaLinkConfig,
}

impl PrusaLink {
    pub fn new(config: PrusaLinkConfig) -> Self {
        Self { config }
    }
}

impl Backend for PrusaLink {
    fn name(&self) -> &'static str {
        "prusalink"
    }

    async fn run(self, port: Port) {
        task::Shell::run(self.config, port).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Result<PrusaLinkConfig, String> {
        let c: PrusaLinkConfig = toml::from_str(toml).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn a_key_or_a_digest_login_and_every_refusal_says_what_to_fix() {
        let c = config("url = \"http://10.0.0.5\"\napi_key = \"k3y\"").expect("key");
        assert!(c.credentials() == Credentials::ApiKey("k3y".into()));
        assert_eq!(c.poll_interval_ms, 1000);
        let c = config("url = \"http://10.0.0.5\"\nusername = \"maker\"\npassword = \"pw\"")
            .expect("digest");
        assert!(matches!(c.credentials(), Credentials::Digest { .. }));
        for text in [c.summary(), format!("{c:?}")] {
            assert!(!text.contains("\"pw\"") && text.contains("maker"), "{text}");
        }

        let cases = [
            (
                "url = \"10.0.0.5\"\napi_key = \"k\"",
                "printer.prusalink.url",
            ),
            ("url = \"http://10.0.0.5\"", "needs a login"),
            ("url = \"http://10.0.0.5\"\napi_key = \" \"", "network menu"),
            (
                "url = \"http://10.0.0.5\"\napi_key = \"k\"\nusername = \"maker\"",
                "keep one way",
            ),
            (
                "url = \"http://10.0.0.5\"\npassword = \"pw\"",
                "printer.prusalink.username",
            ),
            (
                "url = \"http://10.0.0.5\"\nusername = \"maker\"",
                "printer.prusalink.password",
            ),
            (
                "url = \"http://10.0.0.5\"\napi_key = \"k\"\nstorage = \"a/b\"",
                "storage",
            ),
            (
                "url = \"http://10.0.0.5\"\napi_key = \"k\"\npoll_interval_ms = 5",
                "poll_interval_ms",
            ),
            (
                "url = \"http://10.0.0.5\"\napi_key = \"k\"\nmodel = \"MK3S\"",
                "printer.prusalink.model",
            ),
        ];
        for (toml, want) in cases {
            let e = config(toml).expect_err(toml);
            assert!(e.contains(want), "{toml}: {e}");
        }
    }

    /// The configured model's profile is what a job's index plans with: its time left at the
    /// start is the analyzer's with that profile, not with the defaults; filament is the same.
    #[tokio::test]
    async fn a_jobs_index_plans_with_the_printer_models_profile() {
        let c =
            config("url = \"http://10.0.0.5\"\napi_key = \"k\"\nmodel = \"MK4S\"").expect("config");
        let mk4 = crate::model_profile::find("prusa-mk4").expect("profile");
        assert_eq!(c.base_limits(), mk4.limits());
        // Long fast moves (the MK4's limits count) and a filament change (its allowances),
        // with no slicer settings in the file to override them.
        let gcode = "G28\nM83\nT0\n;LAYER_CHANGE\nG1 Z0.2 F600\nG1 X200 Y200 E20 F30000\nG1 X0 Y0 E20\nT1\nG1 X200 Y0 E10 F30000\n";
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.gcode");
        std::fs::write(&path, gcode).expect("write");
        let mut f = crate::octoprint::job_file::JobFile::open_with(&path, c.base_limits())
            .await
            .expect("index");
        let want = farm_protocol::gcode::analyze_seekable_with(
            std::io::Cursor::new(gcode.as_bytes()),
            mk4.limits(),
        )
        .expect("analysis");
        let planned = f.remaining(0).await.expect("time left");
        assert!(
            (planned - want.estimated_s).abs() < 1e-6,
            "{planned} vs {}",
            want.estimated_s
        );
        let mut plain = crate::octoprint::job_file::JobFile::open(&path)
            .await
            .expect("index");
        let default = plain.remaining(0).await.expect("time left");
        assert!(
            (planned - default).abs() > 0.1,
            "the profile changes the plan: {planned} s vs {default} s with the defaults"
        );
        assert_eq!(f.whole(), plain.whole());
        // Without a model: the defaults.
        let none = config("url = \"http://10.0.0.5\"\napi_key = \"k\"").expect("config");
        assert_eq!(none.base_limits(), farm_protocol::gcode::Limits::default());
    }
}

//! The PrusaLink back end against the simulated PrusaLink printer (`farm_e2e::prusalink`),
//! built from PrusaLink's OpenAPI document: first the simulator's own answers against that
//! document and the agent's Digest login against the simulator's independent check; then the
//! real controller and the real agent binary: a print to completion billed exactly (twice, so
//! the first print's FINISHED is still shown when the second starts), pause, resume and a
//! cancel billed from PrusaLink's progress, wrong credentials, and ATTENTION.
//!
//! No real printer and no real PrusaLink ran here: these tests prove the agent against the
//! published API description, not against a device.

use anyhow::{Context, Result, ensure};
use farm_agent::prusalink::Credentials;
use farm_agent::prusalink::client::{Api, ApiError};
use farm_e2e::prusalink::spec::Spec;
use farm_e2e::prusalink::{PrusaLinkSim, Setup, use_prusalink};
use farm_e2e::{Farm, FarmOptions, data, eventually, or_logs};
use farm_protocol::gcode::ExtrusionIndex;
use serde_json::{Value, json};
use std::time::Duration;

const PRINTER: &str = "pl-1";
const LONG: Duration = Duration::from_secs(90);
const DIGEST: &str = "username = \"maker\"\npassword = \"farm-test-pass\"";

// ---- the simulator against the OpenAPI document ----

/// A plain client of the simulator with an API key.
struct Raw {
    http: reqwest::Client,
    url: String,
}

impl Raw {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<(u16, Option<Value>)> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .header("X-Api-Key", "sim-key")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let json = resp.json::<Value>().await.ok();
        Ok((status, json))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let (s, v) = self.call(reqwest::Method::GET, path, &[], vec![]).await?;
        ensure!(s == 200, "GET {path} answered {s}");
        v.context("a JSON body")
    }
}

fn conforms(spec: &Spec, what: &str, v: &Value, schema: &yaml_rust2::Yaml) -> Result<()> {
    let errors = spec.check(v, schema);
    ensure!(
        errors.is_empty(),
        "{what} departs from openapi.yaml: {errors:#?}\n{v:#}"
    );
    Ok(())
}

#[tokio::test]
async fn the_simulated_printer_answers_in_the_openapi_documents_shapes_through_a_whole_print()
-> Result<()> {
    farm_e2e::install_crypto();
    let spec = Spec::load()?;
    // The checker itself finds a departure: a field the document does not have, a wrong type.
    let bad = json!({"printer": {"state": "PRINTING", "nozzle": 1}, "job": {"progress": "42"}});
    let errors = spec.check(&bad, spec.response("get", "/api/v1/status", 200)?);
    ensure!(
        errors.len() == 2,
        "the checker misses departures: {errors:?}"
    );

    let sim = PrusaLinkSim::start(Setup {
        api_key: Some("sim-key".into()),
        print_time: Duration::from_secs(3600),
        start_delay: Duration::ZERO,
        ..Setup::default()
    })
    .await?;
    let raw = Raw {
        http: reqwest::Client::new(),
        url: sim.url.clone(),
    };
    use reqwest::Method;
    let status = |label: &'static str| {
        let (spec, raw) = (&spec, &raw);
        async move {
            let v = raw.get("/api/v1/status").await?;
            conforms(
                spec,
                label,
                &v,
                spec.response("get", "/api/v1/status", 200)?,
            )?;
            Ok::<Value, anyhow::Error>(v)
        }
    };
    conforms(
        &spec,
        "version",
        &raw.get("/api/version").await?,
        spec.response("get", "/api/version", 200)?,
    )?;
    conforms(
        &spec,
        "info",
        &raw.get("/api/v1/info").await?,
        spec.response("get", "/api/v1/info", 200)?,
    )?;
    conforms(
        &spec,
        "storage",
        &raw.get("/api/v1/storage").await?,
        spec.response("get", "/api/v1/storage", 200)?,
    )?;
    ensure!(status("idle status").await?["printer"]["state"] == "IDLE");
    let (s, _) = raw.call(Method::GET, "/api/v1/job", &[], vec![]).await?;
    ensure!(s == 204, "no job: 204, got {s}");

    let file = "/api/v1/files/usb/a.gcode";
    let (s, _) = raw
        .call(Method::PUT, file, &[("Overwrite", "?1")], b"G28\n".to_vec())
        .await?;
    ensure!(s == 201, "upload: {s}");
    let (s, _) = raw.call(Method::PUT, file, &[], b"G28\n".to_vec()).await?;
    ensure!(s == 409, "an existing file without Overwrite: {s}");
    let (s, _) = raw
        .call(Method::PUT, "/api/v1/job/41/pause", &[], vec![])
        .await?;
    ensure!(s == 404, "pause of a job that does not exist: {s}");
    let (s, _) = raw.call(Method::POST, file, &[], vec![]).await?;
    ensure!(s == 204, "print: {s}");
    let (s, _) = raw.call(Method::POST, file, &[], vec![]).await?;
    ensure!(s == 409, "a second print while printing: {s}");
    let printing = status("printing status").await?;
    let id = printing["job"]["id"].as_u64().context("a job id")?;
    ensure!(printing["printer"]["state"] == "PRINTING");
    conforms(
        &spec,
        "job",
        &raw.get("/api/v1/job").await?,
        spec.response("get", "/api/v1/job", 200)?,
    )?;
    let (s, _) = raw
        .call(
            Method::PUT,
            &format!("/api/v1/job/{id}/resume"),
            &[],
            vec![],
        )
        .await?;
    ensure!(s == 409, "resume while printing: {s}");
    let (s, _) = raw
        .call(Method::PUT, &format!("/api/v1/job/{id}/pause"), &[], vec![])
        .await?;
    ensure!(s == 204, "pause: {s}");
    ensure!(status("paused status").await?["printer"]["state"] == "PAUSED");
    let (s, _) = raw
        .call(
            Method::PUT,
            &format!("/api/v1/job/{id}/resume"),
            &[],
            vec![],
        )
        .await?;
    ensure!(s == 204, "resume: {s}");
    sim.attention("Filament runout");
    let held = status("attention status").await?;
    ensure!(
        held["printer"]["state"] == "ATTENTION"
            && held["printer"]["status_printer"]["message"] == "Filament runout"
    );
    sim.attended();
    let (s, _) = raw
        .call(Method::DELETE, &format!("/api/v1/job/{id}"), &[], vec![])
        .await?;
    ensure!(s == 204, "stop: {s}");
    let stopped = status("stopped status").await?;
    ensure!(stopped["printer"]["state"] == "STOPPED" && stopped["job"]["id"] == id);
    conforms(
        &spec,
        "stopped job",
        &raw.get("/api/v1/job").await?,
        spec.response("get", "/api/v1/job", 200)?,
    )?;
    let (s, _) = raw
        .call(Method::DELETE, &format!("/api/v1/job/{id}"), &[], vec![])
        .await?;
    ensure!(s == 409, "stop of a stopped job: {s}");

    // The login rules: a wrong key is 403, no key falls back to Digest's 401.
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/status", sim.url))
        .header("X-Api-Key", "nope")
        .send()
        .await?;
    ensure!(resp.status() == 403 && resp.text().await? == "Bad X-Api-Key.");
    let resp = reqwest::Client::new()
        .get(format!("{}/api/v1/status", sim.url))
        .send()
        .await?;
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    ensure!(
        resp.status() == 401
            && challenge.contains("algorithm=\"MD5-sess\"")
            && challenge.contains("realm=\"Administrator\""),
        "{challenge}"
    );
    Ok(())
}

#[tokio::test]
async fn the_agents_digest_login_renews_a_stale_nonce_and_a_wrong_password_or_key_is_refused()
-> Result<()> {
    farm_agent::ensure_crypto_provider();
    let ttl = Duration::from_millis(300);
    let sim = PrusaLinkSim::start(Setup {
        api_key: Some("sim-key".into()),
        nonce_ttl: ttl,
        ..Setup::default()
    })
    .await?;
    let login = |user: &str, pass: &str| Credentials::Digest {
        username: user.into(),
        password: pass.into(),
    };
    let mut api = Api::new(&sim.url, login("maker", "farm-test-pass"))?;
    api.status().await?;
    api.status().await?;
    ensure!(
        sim.refused() == 1,
        "one challenge, then answers with a rising nonce count: {} refusals",
        sim.refused()
    );
    // The nonce expires (this waits for time to pass, not for an event): PrusaLink says stale.
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let o = api.status().await?;
    ensure!(o.state == farm_agent::prusalink::wire::PrinterState::Idle);
    ensure!(
        sim.stale_answers() == 1,
        "the stale nonce was renewed once: {}",
        sim.stale_answers()
    );

    let mut wrong = Api::new(&sim.url, login("maker", "guess"))?;
    match wrong.status().await {
        Err(e @ ApiError::Refused { .. }) => {
            let m = e.to_string();
            ensure!(
                m.contains("wrong user name or password")
                    && m.contains("printer.prusalink.username"),
                "{m}"
            );
        }
        other => anyhow::bail!("a wrong password: {other:?}"),
    }
    let mut key = Api::new(&sim.url, Credentials::ApiKey("nope".into()))?;
    match key.status().await {
        Err(e @ ApiError::Refused { .. }) => {
            ensure!(e.to_string().contains("printer.prusalink.api_key"), "{e}")
        }
        other => anyhow::bail!("a wrong key: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn a_binary_gcode_job_goes_to_the_printer_byte_for_byte_under_its_own_extension() -> Result<()>
{
    use farm_agent::printer::{Printer, PrinterCommand};
    use farm_agent::prusalink::{PrusaLink, PrusaLinkConfig};
    use farm_protocol::messages::Activity;
    farm_agent::ensure_crypto_provider();
    let sim = PrusaLinkSim::start(Setup {
        api_key: Some("k".into()),
        ..Setup::default()
    })
    .await?;
    let cfg: PrusaLinkConfig = toml::from_str(&format!("url = {:?}\napi_key = \"k\"", sim.url))?;
    let printer = Printer::spawn(PrusaLink::new(cfg));
    eventually("the back end sees an idle printer", LONG, async || {
        (printer.snapshot.borrow().state == Activity::Idle).then_some(())
    })
    .await?;
    // The agent's file cache names every file `.gcode`; the bytes say it is binary G-code.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cached.gcode");
    // A real PrusaSlicer `.bgcode`: the agent decodes it to index the job, so it must be whole.
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../protocol/tests/data/bgcode/prusaslicer-2.8.1-mini-cube.bgcode"
    ))?;
    std::fs::write(&path, &bytes)?;
    let start = PrinterCommand::Start {
        job_id: "j-b".into(),
        name: "part.bgcode".into(),
        path,
        filament: Default::default(),
        plate: None,
    };
    let reply = printer.send(start).await;
    ensure!(reply.is_ok(), "start: {reply:?}");
    let files = sim.files();
    ensure!(
        files
            .iter()
            .any(|(n, b)| n.starts_with("j-b-") && n.ends_with(".bgcode") && *b == bytes),
        "on the printer: {:?}",
        files.keys().collect::<Vec<_>>()
    );
    eventually("the print shows", LONG, async || {
        (sim.state() == "PRINTING").then_some(())
    })
    .await?;
    printer.stop().await;
    Ok(())
}

// ---- through the controller and the agent binary ----

async fn setup(sim: Setup, login: &str) -> Result<(PrusaLinkSim, Farm)> {
    let sim = PrusaLinkSim::start(sim).await?;
    let mut farm = Farm::start(FarmOptions::default()).await?;
    farm.enrol(PRINTER, true, "speed = 1.0").await?;
    use_prusalink(farm.dir.path(), PRINTER, &sim.url, login)?;
    farm.start_agent(PRINTER).await?;
    Ok((sim, farm))
}

async fn run<F>(sim: Setup, login: &str, body: F)
where
    F: AsyncFnOnce(&PrusaLinkSim, &mut Farm) -> Result<()>,
{
    let (sim, mut farm) = match setup(sim, login).await {
        Ok(v) => v,
        Err(e) => panic!("setup: {e:#}"),
    };
    let r = body(&sim, &mut farm).await;
    or_logs(r, &farm);
}

async fn printer(farm: &Farm) -> Option<Value> {
    farm.get(&format!("/api/v1/printers/{PRINTER}")).await.ok()
}

async fn wait_printer_state(farm: &Farm, state: &str) -> Result<Value> {
    eventually(&format!("printer {state}"), LONG, async || {
        printer(farm).await.filter(|p| p["state"] == state)
    })
    .await
}

async fn wait_job_state(farm: &Farm, id: &str, state: &str) -> Result<Value> {
    eventually(&format!("job {id} {state}"), LONG, async || {
        farm.get(&format!("/api/v1/jobs/{id}"))
            .await
            .ok()
            .filter(|j| j["state"] == state)
    })
    .await
}

fn mm(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

async fn upload(farm: &Farm, file: &str) -> Result<String> {
    let jobs = farm
        .upload(file, data(&format!("octoprint/{file}")), 1)
        .await?;
    jobs.first()
        .and_then(|j| j["id"].as_str())
        .map(str::to_string)
        .context("no job created")
}

async fn command(farm: &Farm, kind: &str) -> Result<()> {
    let (s, body) = farm
        .post_json(
            &format!("/api/v1/printers/{PRINTER}/commands"),
            json!({ "kind": kind }),
        )
        .await?;
    ensure!(s == 202, "{kind} answered {s}: {body}");
    Ok(())
}

/// Prints `short.gcode` to completion; checks progress was seen and the bill is the file's.
async fn print_short(farm: &Farm, sim: &PrusaLinkSim) -> Result<()> {
    let id = upload(farm, "short.gcode").await?;
    let mut seen = 0.0f64;
    let done = eventually("the print completed", LONG, async || {
        let p = printer(farm).await?;
        if p["job"]["job_id"] == id.as_str() {
            let now = p["job"]["progress"].as_f64().unwrap_or(0.0);
            if now > 0.0 && now < 1.0 {
                seen = seen.max(now);
            }
        }
        farm.get(&format!("/api/v1/jobs/{id}"))
            .await
            .ok()
            .filter(|j| j["state"] == "completed")
    })
    .await?;
    ensure!(seen > 0.0, "the controller saw the progress advance");
    let (got, want) = (mm(&done["extruded_mm"]), mm(&done["filament_mm"]));
    ensure!(
        !want.is_empty()
            && got.len() == want.len()
            && got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-9),
        "billed {got:?} but the file takes {want:?}"
    );
    let files = sim.files();
    let ours = files
        .iter()
        .find(|(name, _)| name.starts_with(id.as_str()))
        .context("the job's file is on the printer")?;
    ensure!(
        ours.0.ends_with(".gcode") && *ours.1 == data("octoprint/short.gcode"),
        "uploaded as {}",
        ours.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_print_to_completion_on_prusalink_and_bill_the_files_filament() {
    run(Setup::default(), DIGEST, async |sim, farm| {
        let p = wait_printer_state(farm, "idle").await?;
        ensure!(
            p["agent"]["backend"] == "prusalink",
            "agent health: {}",
            p["agent"]
        );
        print_short(farm, sim).await?;
        ensure!(
            sim.state() == "FINISHED",
            "the printer shows the finished print"
        );
        // The first print's FINISHED is still shown when the second starts: it must not end it.
        wait_printer_state(farm, "idle").await?;
        print_short(farm, sim).await?;
        ensure!(
            sim.prints_started() == 2,
            "two prints started on the printer"
        );
        ensure!(
            sim.state() == "FINISHED",
            "the job ended when the printer finished it, not on the old FINISHED: {}",
            sim.state()
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_a_cancel_billed_from_prusalinks_progress() {
    let setup = Setup {
        api_key: Some("sim-key".into()),
        print_time: Duration::from_secs(60),
        ..Setup::default()
    };
    run(setup, "api_key = \"sim-key\"", async |sim, farm| {
        wait_printer_state(farm, "idle").await?;
        let id = upload(farm, "long.gcode").await?;
        wait_job_state(farm, &id, "printing").await?;
        eventually("progress past 2 %", LONG, async || sim.progress().filter(|p| *p > 2.0)).await?;
        command(farm, "pause").await?;
        wait_job_state(farm, &id, "paused").await?;
        wait_printer_state(farm, "paused").await?;
        ensure!(sim.state() == "PAUSED", "the printer paused: {}", sim.state());
        command(farm, "resume").await?;
        wait_job_state(farm, &id, "printing").await?;
        ensure!(sim.state() == "PRINTING", "the printer resumed: {}", sim.state());
        eventually("progress past 5 %", LONG, async || sim.progress().filter(|p| *p > 5.0)).await?;

        let (s, body) = farm.post_json(&format!("/api/v1/jobs/{id}/cancel"), Value::Null).await?;
        ensure!(s == 200 || s == 202, "cancel answered {s}: {body}");
        let cancelled = wait_job_state(farm, &id, "cancelled").await?;
        ensure!(sim.state() == "STOPPED", "the printer stopped: {}", sim.state());
        // What the file holds up to the progress PrusaLink reported last, from the file itself.
        let progress = sim.progress().context("the stopped job's progress")?;
        let bytes = data("octoprint/long.gcode");
        let offset = (progress.clamp(0.0, 100.0) / 100.0 * bytes.len() as f64).floor() as u64;
        let index = ExtrusionIndex::build(&bytes[..], 4096)?;
        let want = index.consumed_at(std::io::Cursor::new(&bytes), offset)?;
        let got = mm(&cancelled["extruded_mm"]);
        ensure!(
            got.len() == want.len() && got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-9),
            "cancelled at {progress} % (byte {offset}): billed {got:?}, the file holds {want:?} up to there"
        );
        ensure!(want[0] > 0.0 && want[0] < index.total_mm[0], "a partial: {want:?} of {:?}", index.total_mm);
        wait_printer_state(farm, "idle").await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_clear_error_and_the_agent_gets_in_once_they_are_fixed() {
    run(
        Setup::default(),
        "username = \"maker\"\npassword = \"wrong\"",
        async |sim, farm| {
            let p = wait_printer_state(farm, "error").await?;
            let message = p["message"].as_str().unwrap_or_default();
            ensure!(
                message.contains("wrong user name or password")
                    && message.contains("printer.prusalink.username"),
                "status message: {message:?}"
            );
            // The operator sets the printer's password to what the agent has; the agent, still
            // retrying with backoff, gets in by itself.
            sim.set_login(None, Some(("maker".into(), "wrong".into())));
            wait_printer_state(farm, "idle").await?;
            Ok(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attention_on_the_printer_reaches_the_controller_and_the_print_goes_on_once_attended() {
    let setup = Setup {
        print_time: Duration::from_secs(20),
        ..Setup::default()
    };
    run(setup, DIGEST, async |sim, farm| {
        wait_printer_state(farm, "idle").await?;
        let id = upload(farm, "short.gcode").await?;
        wait_job_state(farm, &id, "printing").await?;
        sim.attention("Filament runout");
        let p = wait_printer_state(farm, "paused").await?;
        let message = p["message"].as_str().unwrap_or_default();
        ensure!(
            message.contains("waits for someone at it: Filament runout"),
            "status message: {message:?}"
        );
        let job = wait_job_state(farm, &id, "paused").await?;
        eventually("the firmware message", LONG, async || {
            let p = printer(farm).await?;
            p["firmware_messages"]
                .as_array()?
                .iter()
                .any(|n| {
                    n["text"]
                        .as_str()
                        .is_some_and(|t| t.contains("Filament runout"))
                })
                .then_some(())
        })
        .await?;
        // Resuming from the farm cannot clear it: someone must be at the printer.
        command(farm, "resume").await?;
        ensure!(
            sim.state() == "ATTENTION",
            "still waiting: {} (job {job})",
            sim.state()
        );
        sim.attended();
        wait_job_state(farm, &id, "printing").await?;
        let done = wait_job_state(farm, &id, "completed").await?;
        ensure!(
            mm(&done["extruded_mm"]) == mm(&done["filament_mm"]),
            "billed the whole file: {done}"
        );
        Ok(())
    })
    .await;
}

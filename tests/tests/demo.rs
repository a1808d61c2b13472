//! The demo, as the README starts it: `farm-demo` is its own binary (the server binary does
//! not link the agent), and `farm-controller demo` still runs it. Two simulated printers come
//! online and print the sample jobs, the dashboard's API answering on loopback without a token.

use anyhow::{Context, Result};
use farm_e2e::{bin, eventually, free_port, install_crypto};
use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;

/// Starts the demo through `program first_args …` and waits for the banner a newcomer reads
/// and a printer printing.
async fn demo_prints(program: &str, first_args: &[&str]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = free_port();
    let http = format!("127.0.0.1:{port}");
    let state = dir.path().join("state");
    let log = dir.path().join("demo.log");
    let out = std::fs::File::create(&log)?;
    let mut child = tokio::process::Command::new(bin(program)?)
        .args(first_args)
        .args(["--printers", "2", "--speed", "50", "--http", &http])
        .arg("--state-dir")
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out.try_clone()?))
        .stderr(Stdio::from(out))
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    install_crypto();
    let client = reqwest::Client::new();
    let url = format!("http://{http}/api/v1/printers");
    let r = eventually(
        "a demo printer printing, and the banner",
        Duration::from_secs(60),
        async || {
            let banner = std::fs::read_to_string(&log)
                .ok()?
                .contains("Print farm demo: 2 simulated printers");
            if !banner {
                return None;
            }
            let v: Value = client.get(&url).send().await.ok()?.json().await.ok()?;
            let items = v["items"].as_array()?;
            (items.len() == 2 && items.iter().any(|p| p["current_job_id"].is_string()))
                .then_some(())
        },
    )
    .await;
    let _ = child.kill().await;
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    r.with_context(|| format!("{program} {first_args:?}; its log:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn farm_demo_runs_a_printing_farm() {
    demo_prints("farm-demo", &[]).await.expect("farm-demo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn farm_controller_demo_still_runs_the_demo() {
    demo_prints("farm-controller", &["demo"])
        .await
        .expect("farm-controller demo");
}

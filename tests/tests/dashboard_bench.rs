//! Dashboard rendering on a big farm, measured in Chromium (ignored: a measurement, not a
//! test; figures in BENCHMARKS.md). Run with
//! `cargo build --workspace --bins && cargo nextest run -p farm-e2e --test dashboard_bench --run-ignored only --no-capture`.
//!
//! The same run measures 12 printers and 1,000 printers with 5 planned jobs each, so the
//! ratio shows what the farm's size costs. Data enters through the page's own entry points
//! (`tests/data/dashboard-bench.js` says how).

use anyhow::{Result, anyhow};
use farm_e2e::browser::Browser;
use farm_e2e::{Farm, FarmOptions, or_logs};
use std::time::Duration;

const SCRIPT: &str = include_str!("../data/dashboard-bench.js");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; see BENCHMARKS.md"]
async fn dashboard_rendering_with_1000_printers() {
    let farm = Farm::start(FarmOptions {
        anonymous_role: Some("viewer"),
        ..FarmOptions::default()
    })
    .await
    .expect("controller");
    let r = measure(&farm).await;
    or_logs(r, &farm);
}

async fn measure(farm: &Farm) -> Result<()> {
    let browser = Browser::launch().await?;
    for (printers, jobs_per) in [(12, 5), (1000, 5)] {
        let mut page = browser.open(&format!("{}/", farm.http)).await?;
        page.wait_for(
            "the live dashboard",
            "document.querySelector('#live')?.textContent.trim() === 'live'",
            Duration::from_secs(20),
        )
        .await?;
        let script = SCRIPT
            .replace("PRINTERS", &printers.to_string())
            .replace("JOBS_PER", &jobs_per.to_string());
        let v = page.eval(&script).await?;
        let out = v
            .as_str()
            .ok_or_else(|| anyhow!("the bench script returned {v}"))?;
        println!("{out}");
    }
    Ok(())
}

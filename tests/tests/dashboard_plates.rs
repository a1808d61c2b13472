//! The dashboard's plate choice in a real Chromium: an operator picks a `.gcode.3mf` with two
//! plates, the dashboard stores it and offers its plates, the operator picks plate 2 and
//! queues it; the job carries plate 2 (API), the simulated Bambu printer is asked to print
//! `Metadata/plate_2.gcode` of the archive, and the job is billed that plate's filament.
//!
//! The archive is assembled by `farm_e2e::plates` in the slicers' layout (the repo has no real
//! several-plate 3MF): plate 1 is a real OrcaSlicer G-code, plate 2 a four-layer job with
//! known extrusion (12 mm), so billing tells the plates apart.

use anyhow::{Context, Result, anyhow, ensure};
use farm_e2e::bambu::{SimOptions, SimPrinter, fixture_print};
use farm_e2e::browser::Browser;
use farm_e2e::{Farm, FarmOptions, eventually, or_logs, use_backend};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A four-layer job: 2 mm of purge, then 1, 2, 3 and 4 mm per layer (12 mm in all).
fn four_layers() -> Vec<u8> {
    let mut g = String::from("M83\nG1 Z5 F600\nG1 E2\n");
    for (i, e) in [1.0, 2.0, 3.0, 4.0].iter().enumerate() {
        let z = 0.2 * (i + 1) as f64;
        g.push_str(&format!(
            ";LAYER_CHANGE\nG1 Z{z:.1}\nG1 X{} Y10 E{e} F1200\n",
            10 * (i + 1)
        ));
    }
    g.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_picks_plate_2_of_a_two_plate_3mf_in_the_dashboard_and_the_printer_prints_it() {
    let mut farm = Farm::start(FarmOptions {
        anonymous_role: Some("operator"),
        ..FarmOptions::default()
    })
    .await
    .expect("controller starts");
    let r = pick_a_plate(&mut farm).await;
    or_logs(r, &farm);
}

async fn pick_a_plate(farm: &mut Farm) -> Result<()> {
    let sim = SimPrinter::start(
        SimOptions::default(),
        fixture_print(&repo("data/bambu"), "P1P.json")?,
    )
    .await?;
    let stream = farm.stream().await?;
    farm.enrol("bambu-1", true, "speed = 1.0").await?;
    let dir = farm.dir.path().to_path_buf();
    use_backend(
        &dir,
        "bambu-1",
        "bambu",
        &sim.agent_settings(&dir.join("bambu-ca.pem"))?,
    )?;
    farm.start_agent("bambu-1").await?;
    stream
        .wait_for("bambu-1 idle", LONG, |_| {
            (stream.printer_states().get("bambu-1").map(String::as_str) == Some("idle"))
                .then_some(())
        })
        .await?;

    let orca = farm_e2e::plates::slicer_gcode("orcaslicer-2.3.1-gridfinity-m83")?;
    let archive = farm_e2e::plates::gcode_3mf(&[
        (1, orca.as_slice(), 3000.0, 20.0),
        (2, &four_layers(), 60.0, 0.04),
    ])?;
    let file = dir.join("two-plates.gcode.3mf");
    std::fs::write(&file, archive)?;

    let browser = Browser::launch().await?;
    let mut page = browser.open(&format!("{}/", farm.http)).await?;
    page.wait_for(
        "the live dashboard, as an operator",
        "document.querySelector('#live')?.textContent.trim() === 'live' && document.body.classList.contains('can-operate')",
        Duration::from_secs(20),
    )
    .await?;
    // The plate picker is hidden until a file with several plates is chosen.
    let hidden = page
        .eval("document.querySelector('#upload-plate').hidden")
        .await?;
    ensure!(
        hidden == true,
        "the plate picker shows before any file: {hidden}"
    );
    page.set_files("#upload-file", &[&file]).await?;
    page.eval("document.querySelector('#upload-submit').click()")
        .await?;
    let plates = page
        .wait_for(
            "the dashboard offering the file's two plates",
            "(() => { const s = document.querySelector('#upload-plate');
                      return !s.hidden && s.options.length === 2
                        && Array.from(document.querySelectorAll('.toast')).some(t => t.textContent.includes('has 2 plates'))
                        && Array.from(s.options).map(o => [o.value, o.textContent]); })()",
            Duration::from_secs(20),
        )
        .await?;
    // The slicer's prediction per plate: 50 min and 1 min.
    ensure!(
        plates == serde_json::json!([["1", "1 (50 min)"], ["2", "2 (1 min)"]]),
        "the picker offers {plates}"
    );
    // Stored, not queued: nothing prints until the operator picks a plate.
    let jobs = farm.get("/api/v1/jobs?limit=100").await?;
    ensure!(
        jobs["items"].as_array().is_some_and(Vec::is_empty),
        "a job was queued before a plate was picked: {jobs}"
    );
    page.eval(
        "(() => { document.querySelector('#upload-plate').value = '2';
                  document.querySelector('#upload-submit').click(); })()",
    )
    .await?;
    page.wait_for(
        "the upload of plate 2 accepted",
        "Array.from(document.querySelectorAll('.toast')).some(t => t.textContent.includes('Added two-plates.gcode.3mf'))",
        Duration::from_secs(20),
    )
    .await?;
    page.wait_for(
        "the picker hidden again after the queueing",
        "document.querySelector('#upload-plate').hidden",
        Duration::from_secs(5),
    )
    .await?;

    // One job, for plate 2, with plate 2's figures.
    let jobs = farm.get("/api/v1/jobs?limit=100").await?;
    let items = jobs["items"].as_array().context("jobs")?;
    ensure!(items.len() == 1, "one job: {jobs}");
    let id = items[0]["id"].as_str().context("job id")?.to_string();
    ensure!(
        items[0]["plate"] == 2 && items[0]["name"] == "two-plates.gcode.3mf",
        "{}",
        items[0]
    );
    let job = eventually("the plate-2 job completed", LONG, async || {
        let j = farm.get(&format!("/api/v1/jobs/{id}")).await.ok()?;
        (j["state"] == "completed").then_some(j)
    })
    .await?;
    let mm = |v: &Value| -> Vec<f64> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    ensure!(
        mm(&job["filament_mm"]) == vec![12.0] && mm(&job["extruded_mm"]) == vec![12.0],
        "plate 2 takes and was billed 12 mm: {job}"
    );
    // The printer was asked to print plate 2 of the archive it was sent.
    let project = sim
        .requests()
        .into_iter()
        .find(|r| r["print"]["command"] == "project_file")
        .ok_or_else(|| anyhow!("no project_file among {:?}", sim.commands()))?;
    ensure!(
        project["print"]["param"] == "Metadata/plate_2.gcode"
            && project["print"]["url"]
                .as_str()
                .is_some_and(|u| u.ends_with(".gcode.3mf")),
        "{project}"
    );
    Ok(())
}

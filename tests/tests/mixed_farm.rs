//! Issue 15's farm: one controller and five printers on five back ends, run as one queue from
//! the dashboard in a real Chromium.
//!
//! - `bambu-1`: the Bambu Lab LAN back end against the simulated printer (`farm_e2e::bambu`);
//! - `prusa-1`: PrusaLink against the simulated printer built from its OpenAPI document;
//! - `octo-1`: real OctoPrint 1.11.8 with its Virtual Printer;
//! - `klipper-1`: Moonraker against the replay of a captured real Moonraker + Klipper print
//!   (`b-print-complete`: Klippy cannot run here, so a printing Moonraker is only available
//!   as a capture; the real Moonraker 0.11.0 process answers `klippy_state: disconnected`
//!   and could never take a job, see `tests/moonraker.rs`);
//! - `serial-1`: the serial back end on OctoPrint's Virtual Printer over a pty.
//!
//! Each printer has its own spool (PLA in five colours). The operator uploads three files
//! through the dashboard's picker: the Klipper capture's `.gcode` for PLA red (only `klipper-1`
//! has it), a PrusaSlicer `.bgcode` for PLA orange (only `prusa-1`), and a short `.gcode` in
//! three copies for any filament, which the scheduler spreads over the three printers left.
//! No printer ejects its part, so each takes exactly one job. Every card shows its printer
//! printing and then waiting for its bed to be cleared; every job completes with the file's
//! filament, booked once to its printer's spool.

use anyhow::{Context, Result, anyhow, ensure};
use farm_e2e::bambu::{SimOptions, SimPrinter, fixture_print};
use farm_e2e::browser::{Browser, Page};
use farm_e2e::moonraker::{Replay, Transcript};
use farm_e2e::octoprint::{APP_KEY, OctoPrint, use_octoprint};
use farm_e2e::prusalink::{PrusaLinkSim, Setup, use_prusalink};
use farm_e2e::vprinter::{VPrinter, use_serial};
use farm_e2e::{Farm, FarmOptions, eventually, or_logs, use_backend};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// OctoPrint alone starts in 3–6 s; on a loaded 2-core CI every peer is slower.
const LONG: Duration = Duration::from_secs(120);

/// Printer, its back end's spool colour (all PLA).
const PRINTERS: [(&str, &str); 5] = [
    ("bambu-1", "black"),
    ("prusa-1", "orange"),
    ("octo-1", "white"),
    ("klipper-1", "red"),
    ("serial-1", "blue"),
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The five printers' peers, kept alive for the test.
struct Peers {
    _bambu: SimPrinter,
    _prusa: PrusaLinkSim,
    octoprint: OctoPrint,
    klipper: Replay,
    _serial: VPrinter,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_queue_from_the_dashboard_prints_on_bambu_prusalink_octoprint_moonraker_and_serial() {
    // The floor's own browser may act without a token, as an operator.
    let (farm, octoprint) = tokio::join!(
        Farm::start(FarmOptions {
            anonymous_role: Some("operator"),
            ..FarmOptions::default()
        }),
        OctoPrint::start_temp()
    );
    let mut farm = farm.expect("controller starts");
    let octoprint = octoprint.expect("OctoPrint starts");
    let peers = match start_peers(&mut farm, octoprint).await {
        Ok(p) => p,
        Err(e) => or_logs(Err(e.context("starting the printers")), &farm),
    };
    let r = one_queue(&farm).await.map_err(|e| {
        e.context(format!(
            "replay calls: {:?}\nOctoPrint log:\n{}",
            peers.klipper.calls(),
            peers.octoprint.log_tail()
        ))
    });
    or_logs(r, &farm);
}

/// Starts every printer and its agent (none ejects its part by itself).
async fn start_peers(farm: &mut Farm, octoprint: OctoPrint) -> Result<Peers> {
    let (bambu, prusa, klipper) = tokio::join!(
        // Slow enough layers that the 1 Hz status shows the print.
        SimPrinter::start(
            SimOptions {
                layer_time: Duration::from_millis(1500),
                ..SimOptions::default()
            },
            fixture_print(&repo("data/bambu"), "P1P.json")?,
        ),
        PrusaLinkSim::start(Setup {
            print_time: Duration::from_secs(5),
            ..Setup::default()
        }),
        async {
            Replay::start(
                Transcript::load("b-print-complete")?,
                vec![Transcript::load("a3-connect-idle-after-print-cooling")?],
                3.0,
            )
            .await
        },
    );
    let (bambu, prusa, klipper) = (bambu?, prusa?, klipper?);
    let serial = VPrinter::start(farm.dir.path(), "vp", &[]).await?;
    for (id, _) in PRINTERS {
        farm.enrol(id, false, "speed = 1.0").await?;
    }
    let dir = farm.dir.path().to_path_buf();
    use_backend(
        &dir,
        "bambu-1",
        "bambu",
        &bambu.agent_settings(&dir.join("bambu-ca.pem"))?,
    )?;
    use_prusalink(
        &dir,
        "prusa-1",
        &prusa.url,
        "username = \"maker\"\npassword = \"farm-test-pass\"",
    )?;
    use_octoprint(&dir, "octo-1", &octoprint.url, APP_KEY)?;
    use_backend(
        &dir,
        "klipper-1",
        "moonraker",
        &format!("url = {:?}", klipper.url),
    )?;
    use_serial(&dir, "serial-1", &serial.link)?;
    for (id, _) in PRINTERS {
        farm.start_agent(id).await?;
    }
    Ok(Peers {
        _bambu: bambu,
        _prusa: prusa,
        octoprint,
        klipper,
        _serial: serial,
    })
}

async fn post(farm: &Farm, path: &str, body: Value) -> Result<Value> {
    let (s, v) = farm.post_json(path, body).await?;
    ensure!((200..300).contains(&s), "POST {path} answered {s}: {v}");
    Ok(v)
}

/// A spool of PLA `colour` (1 kg) on each printer's tool 0; spool ids by printer.
async fn load_spools(farm: &Farm) -> Result<BTreeMap<String, String>> {
    let mut spools = BTreeMap::new();
    for (printer, colour) in PRINTERS {
        post(
            farm,
            "/api/v1/materials",
            json!({"material": "PLA", "colour": colour, "cost_per_kg": 20.0}),
        )
        .await?;
        let made = post(
            farm,
            "/api/v1/spools",
            json!({"material": format!("pla-{colour}"), "initial_g": 1000.0}),
        )
        .await?;
        let id = made["items"][0]["id"]
            .as_str()
            .with_context(|| format!("a spool id in {made}"))?
            .to_string();
        post(
            farm,
            &format!("/api/v1/spools/{id}/load"),
            json!({"printer": printer, "tool": 0}),
        )
        .await?;
        spools.insert(printer.to_string(), id);
    }
    Ok(spools)
}

/// Records, in the page, every state each printer card shows: `[state, activity, job name]`
/// in order, from the DOM's own change notifications (nothing is missed between polls).
const RECORD_CARDS: &str = "(() => {
  window.cardLog = {};
  const note = () => {
    for (const el of document.querySelectorAll('article.printer')) {
      const now = [el.dataset.state || '', el.querySelector('.activity')?.textContent || '',
                   el.querySelector('.job-name')?.textContent || ''];
      const log = (window.cardLog[el.dataset.printerId] ||= []);
      const last = log[log.length - 1];
      if (!last || last.join('|') !== now.join('|')) log.push(now);
    }
  };
  new MutationObserver(note).observe(document.querySelector('#grid'),
    { subtree: true, childList: true, characterData: true, attributes: true });
  note();
  return true;
})()";

/// True in the page once every card showed its job printing and, after that, the bed to clear.
const EVERY_CARD_PRINTED: &str = "(() => {
  const ids = IDS;
  return ids.every((id) => {
    const log = window.cardLog[id] || [];
    const printing = log.findIndex(([s, a, j]) => s === 'busy' && a.startsWith('printing') && j !== '');
    return printing >= 0 && log.slice(printing + 1).some(([s]) => s === 'awaiting_clear')
        && log[log.length - 1][0] === 'awaiting_clear';
  });
})()";

/// Chooses `file` in the upload picker, the filament (`""`: any) and copies, and uploads.
async fn upload(page: &mut Page, file: &Path, filament: &str, copies: u32) -> Result<()> {
    page.set_files("#upload-file", &[file]).await?;
    if !filament.is_empty() {
        // The picker reads the inventory's materials when it is opened.
        page.eval("document.querySelector('#upload-filament').dispatchEvent(new Event('focus'))")
            .await?;
        page.wait_for(
            &format!("{filament} in the filament picker"),
            &format!("!!document.querySelector('#upload-filament option[value=\"{filament}\"]')"),
            Duration::from_secs(10),
        )
        .await?;
    }
    page.eval(&format!(
        "(() => {{ document.querySelector('#upload-filament').value = {filament:?};
                  document.querySelector('#upload-copies').value = '{copies}';
                  document.querySelector('#upload-submit').click(); }})()"
    ))
    .await?;
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    page.wait_for(
        &format!("the upload of {name} accepted"),
        &format!(
            "Array.from(document.querySelectorAll('.toast')).some(t => t.textContent.includes('{name}'))"
        ),
        Duration::from_secs(20),
    )
    .await?;
    let refused = page
        .eval(&format!(
            "Array.from(document.querySelectorAll('.toast.error')).map(t => t.textContent).filter(t => t.includes('{name}'))"
        ))
        .await?;
    ensure!(
        refused.as_array().is_some_and(Vec::is_empty),
        "the dashboard refused {name}: {refused}"
    );
    Ok(())
}

/// Every job named `name`, from the API.
async fn jobs_named(farm: &Farm, name: &str) -> Result<Vec<Value>> {
    let all = farm.get("/api/v1/jobs?limit=1000").await?;
    Ok(all["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|j| j["name"] == name)
        .cloned()
        .collect())
}

/// Waits until the job named `name` left the queue for a printer; returns that printer.
async fn placed(farm: &Farm, name: &str) -> Result<String> {
    eventually(&format!("{name} placed on a printer"), LONG, async || {
        let jobs = jobs_named(farm, name).await.ok()?;
        jobs.first()?["printer_id"].as_str().map(str::to_string)
    })
    .await
}

fn mm(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Grams of `mm` of PLA at 1.75 mm (the inventory's default diameter, PLA's 1.24 g/cm³).
fn pla_grams(mm: f64) -> f64 {
    std::f64::consts::PI * (1.75f64 / 2.0).powi(2) / 1000.0 * 1.24 * mm
}

async fn one_queue(farm: &Farm) -> Result<()> {
    let stream = farm.stream().await?;
    let spools = load_spools(farm).await?;
    // A filament the API cannot take is refused before the file is read, saying what to send.
    let (status, body) = farm
        .post_file(
            "/api/v1/jobs?name=x.gcode&material=P%0ALA",
            b"G28\n".to_vec(),
        )
        .await?;
    ensure!(
        status == 400 && body.to_string().contains("material must be"),
        "a material with a line break: {status} {body}"
    );
    let browser = Browser::launch().await?;
    let mut page = browser.open(&format!("{}/", farm.http)).await?;
    page.wait_for(
        "the live dashboard, as an operator",
        "document.querySelector('#live')?.textContent.trim() === 'live' && document.body.classList.contains('can-operate')",
        Duration::from_secs(20),
    )
    .await?;
    page.eval(RECORD_CARDS).await?;
    stream
        .wait_for("five idle printers", LONG, |_| {
            let s = stream.printer_states();
            (s.len() == 5 && s.values().all(|v| v == "idle")).then_some(())
        })
        .await
        .map_err(|e| e.context(format!("printers: {:?}", stream.printer_states())))?;

    // The files the operator picks. The Klipper capture prints exactly its own file.
    let square = repo("data/moonraker/fixture-square.gcode");
    let bgcode = repo("../protocol/tests/data/bgcode/prusaslicer-2.8.1-mini-cube.bgcode");
    let short = repo("data/octoprint/short.gcode");
    upload(&mut page, &square, "pla-red", 1).await?;
    ensure!(
        placed(farm, "fixture-square.gcode").await? == "klipper-1",
        "PLA red is only on klipper-1"
    );
    upload(&mut page, &bgcode, "pla-orange", 1).await?;
    ensure!(
        placed(farm, "prusaslicer-2.8.1-mini-cube.bgcode").await? == "prusa-1",
        "PLA orange is only on prusa-1"
    );
    // Any filament: the scheduler spreads the copies over the printers still idle.
    upload(&mut page, &short, "", 3).await?;

    let every = EVERY_CARD_PRINTED.replace("IDS", &json!(PRINTERS.map(|(p, _)| p)).to_string());
    if let Err(e) = page
        .wait_for(
            "every card showing its print, then its bed to clear",
            &every,
            LONG,
        )
        .await
    {
        let log = page.eval("JSON.stringify(window.cardLog)").await;
        return Err(e.context(format!("the cards showed {log:?}")));
    }
    page.wait_for(
        "five jobs Done in the queue's recent list",
        "Array.from(document.querySelectorAll('#recent tr[data-state=\"completed\"]')).filter(tr => tr.querySelector('.jstate').textContent === 'Done').length === 5",
        Duration::from_secs(10),
    )
    .await?;
    shot(&mut page, "mixed-farm.png").await?;

    // Every job completed on its own printer, billed the file's filament.
    let jobs = farm.get("/api/v1/jobs?limit=1000").await?;
    let jobs = jobs["items"].as_array().context("jobs")?.clone();
    ensure!(jobs.len() == 5, "five jobs: {jobs:?}");
    let mut by_printer = BTreeMap::new();
    for j in &jobs {
        let id = j["id"].as_str().unwrap_or_default();
        ensure!(j["state"] == "completed", "job {id}: {j}");
        let (got, want) = (mm(&j["extruded_mm"]), mm(&j["filament_mm"]));
        ensure!(
            !want.is_empty()
                && got.len() == want.len()
                && got.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6),
            "job {id} ({}) billed {got:?}, the file takes {want:?}",
            j["name"]
        );
        let p = j["printer_id"].as_str().unwrap_or_default().to_string();
        ensure!(
            by_printer.insert(p.clone(), j.clone()).is_none(),
            "{p} printed two jobs"
        );
    }
    let printers: BTreeSet<&str> = by_printer.keys().map(String::as_str).collect();
    ensure!(
        printers == PRINTERS.iter().map(|(p, _)| *p).collect(),
        "one job on every printer: {printers:?}"
    );
    for p in ["bambu-1", "octo-1", "serial-1"] {
        let j = &by_printer[p];
        ensure!(
            j["name"] == "short.gcode" && j["material"].is_null(),
            "{p}: {j}"
        );
    }
    for (p, colour) in [("klipper-1", "red"), ("prusa-1", "orange")] {
        let j = &by_printer[p];
        ensure!(
            j["material"] == "PLA" && j["colour"] == colour,
            "{p}'s job asks for its filament: {j}"
        );
    }

    // Each job's grams are on its printer's spool, booked once per report.
    for (printer, job) in &by_printer {
        booked_once(farm, &spools[printer], printer, job).await?;
    }
    // Back ends as each agent reported them.
    for (printer, backend) in [
        ("bambu-1", "bambu"),
        ("prusa-1", "prusalink"),
        ("octo-1", "octoprint"),
        ("klipper-1", "moonraker"),
        ("serial-1", "serial"),
    ] {
        let p = farm.get(&format!("/api/v1/printers/{printer}")).await?;
        ensure!(
            p["agent"]["backend"] == backend,
            "{printer}: {}",
            p["agent"]
        );
    }

    // The operator clears every bed from its card; the farm is idle again.
    for (p, _) in PRINTERS {
        page.eval(&format!(
            "document.querySelector('article.printer[data-printer-id=\"{p}\"] button[data-action=\"clear\"]').click()"
        ))
        .await?;
    }
    page.wait_for(
        "every card idle",
        "Array.from(document.querySelectorAll('article.printer')).every(c => c.dataset.state === 'idle')",
        Duration::from_secs(20),
    )
    .await?;
    Ok(())
}

/// The spool's ledger has the job's consumption and nothing else: its millimetres add up to
/// what the job extruded, each report booked in one row, and the spool lost exactly that.
async fn booked_once(farm: &Farm, spool: &str, printer: &str, job: &Value) -> Result<()> {
    let ledger = farm.get(&format!("/api/v1/spools/{spool}/ledger")).await?;
    let rows = ledger["items"].as_array().context("ledger rows")?;
    let used: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "consumption").collect();
    ensure!(
        !used.is_empty()
            && used
                .iter()
                .all(|r| r["job_id"] == job["id"] && r["printer"] == printer && r["tool"] == 0),
        "{printer}'s spool {spool} has rows of its job only: {ledger}"
    );
    let sources: BTreeSet<String> = used.iter().map(|r| r["source"].to_string()).collect();
    ensure!(
        sources.len() == used.len(),
        "one row per report on {spool}: {ledger}"
    );
    let mm_sum: f64 = used.iter().filter_map(|r| r["mm"].as_f64()).sum();
    let want_mm: f64 = mm(&job["extruded_mm"]).iter().sum();
    ensure!(
        (mm_sum - want_mm).abs() < 1e-6,
        "{spool} booked {mm_sum} mm, {printer}'s job extruded {want_mm} mm: {ledger}"
    );
    let grams: f64 = used.iter().filter_map(|r| r["grams"].as_f64()).sum();
    ensure!(
        (grams + pla_grams(want_mm)).abs() < 1e-6,
        "{spool} lost {grams} g for {want_mm} mm of PLA"
    );
    let left = farm.get(&format!("/api/v1/spools/{spool}")).await?["remaining_g"]
        .as_f64()
        .ok_or_else(|| anyhow!("{spool} has no remaining_g"))?;
    ensure!(
        (left - (1000.0 + grams)).abs() < 1e-6,
        "{spool} holds {left} g after losing {grams} g of 1000 g"
    );
    Ok(())
}

/// With `FARM_SCREENSHOT_DIR` set, saves a PNG of the page (for a person to look at).
async fn shot(page: &mut Page, name: &str) -> Result<()> {
    if let Some(dir) = std::env::var_os("FARM_SCREENSHOT_DIR") {
        page.screenshot(&Path::new(&dir).join(name)).await?;
    }
    Ok(())
}

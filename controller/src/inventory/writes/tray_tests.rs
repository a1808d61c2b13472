//! Booking through a filament changer: each tool's grams land on the spool in the tray the
//! agent said fed it (`job_started`'s `tool_trays`), not on the spool numbered like the tool.

use crate::farm::Farm;
use crate::inventory::ledger::RowKind;
use crate::inventory::{NewMaterial, NewSpool};
use farm_protocol::messages::{Activity, Event, Outcome, Tray};

use crate::farm::open_for_tests as open;

fn ev(farm: &Farm, seq: u64, e: Event) {
    tokio::task::block_in_place(|| farm.apply_event("bambu", seq, &e)).expect("apply");
}

fn tray(slot: u32, material: &str, colour: &str) -> Tray {
    Tray {
        slot,
        material: Some(material.into()),
        colour: Some(colour.into()),
        remain_pct: Some(90),
        preset: None,
        active: false,
    }
}

/// A 1 kg spool of `material` `colour` on `tool` of the printer `bambu`; its id and g/mm.
async fn spool_on(farm: &Farm, material: &str, colour: &str, tool: u32) -> (String, f64) {
    let m = crate::inventory::new_material(
        NewMaterial {
            id: None,
            material: material.into(),
            colour: colour.into(),
            diameter_mm: None,
            density_g_cm3: None,
            cost_per_kg: 20.0,
            low_stock_g: None,
        },
        1.75,
    )
    .expect("material");
    let (id, gpm) = (m.id.clone(), m.grams_per_mm());
    farm.put_material(m, false).await.expect("put");
    let s = farm
        .add_spools(NewSpool {
            material: id,
            initial_g: 1000.0,
            tare_g: None,
            lot: None,
            location: None,
            count: None,
        })
        .await
        .expect("spool")
        .remove(0);
    farm.load_spool(&s.spool.id, "bambu", tool, 8, "test")
        .await
        .expect("load");
    (s.spool.id, gpm)
}

/// The real two-colour plate's shape: filaments 1 and 4 (tools 0 and 3), fed from trays 0
/// (white) and 1 (black). The red spool on tool 3 sits in tray 3 and must not be charged.
#[tokio::test(flavor = "multi_thread")]
async fn each_tool_is_booked_to_the_spool_in_its_tray_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let farm = open(dir.path());
    farm.add_printer("bambu", None, true)
        .await
        .expect("printer");
    let (white, gpm) = spool_on(&farm, "PLA", "white", 0).await;
    let (black, _) = spool_on(&farm, "PLA", "black", 1).await;
    let (petg, _) = spool_on(&farm, "PETG", "black", 2).await;
    let (red, _) = spool_on(&farm, "PLA", "red", 3).await;
    let analysis =
        farm_protocol::gcode::analyze(&b"M83\nG1 X1 E100\nT3\nG1 X2 E50\n"[..]).expect("analysis");
    let stored = crate::catalog::files::Stored {
        sha256: "cd".repeat(32),
        size: 30,
        analysis,
        plates: vec![],
    };
    let job = farm
        .add_jobs("two-colour", &stored, 1, 0)
        .await
        .expect("job")
        .remove(0);
    let mut status = crate::printers::fleet::status(Activity::Idle);
    status.trays = vec![
        tray(0, "PLA", "#FFFFFF"),
        tray(1, "PLA", "#161616"),
        tray(2, "PETG", "#161616"),
        tray(3, "PLA", "#C12E1F"),
    ];
    farm.apply_status("bambu", status);
    assert_eq!(farm.schedule().await.expect("schedule"), 1);
    let id = job.id.clone();
    ev(&farm, 1, Event::JobAccepted { job_id: id.clone() });
    ev(
        &farm,
        2,
        Event::JobStarted {
            job_id: id.clone(),
            tool_trays: vec![Some(0), None, None, Some(1)],
        },
    );
    let material = |mm: Vec<f64>| Event::Material {
        job_id: id.clone(),
        extruded_mm: mm,
    };
    ev(&farm, 3, material(vec![60.0, 0.0, 0.0, 20.0]));
    ev(&farm, 4, material(vec![60.0, 0.0, 0.0, 20.0]));
    ev(
        &farm,
        5,
        Event::JobFinished {
            job_id: id.clone(),
            outcome: Outcome::Completed,
            reason: None,
            extruded_mm: vec![100.0, 0.0, 0.0, 50.0],
            duration_s: 1.0,
        },
    );
    let left = |s: &str| farm.spool(s).expect("spool").remaining_g;
    assert!((left(&white) - (1000.0 - 100.0 * gpm)).abs() < 1e-9);
    assert!((left(&black) - (1000.0 - 50.0 * gpm)).abs() < 1e-9);
    assert_eq!(left(&petg), 1000.0, "black PETG untouched");
    assert_eq!(
        left(&red),
        1000.0,
        "the spool on tool 3 sits in another tray"
    );
    let rows = farm.spool_ledger(&black, 0, 100).expect("ledger");
    let used: Vec<_> = rows
        .iter()
        .filter(|r| r.kind == RowKind::Consumption)
        .map(|r| (r.tool, r.tray, r.mm))
        .collect();
    assert_eq!(
        used,
        vec![
            (Some(3), Some(1), Some(20.0)),
            (Some(3), Some(1), Some(30.0))
        ],
        "one row per new report, each saying which tool and tray"
    );
    let job = farm.job(&id).expect("job");
    assert_eq!(job.tool_trays, vec![Some(0), None, None, Some(1)]);
}

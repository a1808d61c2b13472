//! The pure core on real captured reports (`tests/data/bambu/`, see its README).

use super::job::{JobChange, JobWatch};
use super::report::{Incoming, Report};
use farm_protocol::messages::{Activity, Outcome, Tray};
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/bambu")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text).expect("fixture json")
}

/// The full push of a fixture as the printer sends it on the wire (`{"print": …}`).
fn push_all(name: &str) -> Vec<u8> {
    let f = fixture(name);
    let p = f
        .get("push_all")
        .or(f.get("pushall"))
        .expect("push")
        .clone();
    let p = if p.get("print").is_some() {
        p
    } else {
        json!({ "print": p })
    };
    p.to_string().into_bytes()
}

fn report_of(name: &str) -> Report {
    let mut r = Report::default();
    match Incoming::parse(&push_all(name)) {
        Some(Incoming::Status(s)) => r.merge(&s),
        other => panic!("not a status: {other:?}"),
    }
    r
}

#[test]
fn a_p1p_full_report_reads_as_the_farm_needs_it() {
    let r = report_of("P1P.json");
    // FAILED stays after a job: the printer is free.
    assert_eq!(r.activity(), Activity::Idle);
    assert_eq!(r.layer(), (Some(1), Some(70)));
    assert_eq!(r.remaining_s(), Some(759.0 * 60.0));
    assert_eq!(r.progress(), Some(0.0));
    let t = r.temps();
    assert_eq!(t[0].name, "tool0");
    assert_eq!((t[0].actual, t[0].target), (21.25, 0.0));
    assert_eq!(t[1].name, "bed");
    assert_eq!(t[2].name, "chamber");
    let trays = r.trays();
    assert_eq!(trays.len(), 5, "four AMS trays and the external spool");
    assert_eq!(
        trays[0],
        Tray {
            slot: 0,
            material: Some("PLA".into()),
            colour: Some("#D357FE".into()),
            remain_pct: None,
            preset: Some("GFL96".into()),
            active: true,
        }
    );
    assert_eq!(trays[4].slot, 254);
    assert_eq!(trays[4].colour.as_deref(), Some("#161616"));
    assert!(!r.signature_required(), "no `fun` field: no sign of it");
}

#[test]
fn packed_device_temperatures_win_and_deltas_merge_into_the_full_state() {
    let f = fixture("H2D.json");
    let mut r = Report::default();
    r.merge(&f["push_all"]);
    assert_eq!(r.activity(), Activity::Printing);
    let t = r.temps();
    let get = |n: &str| t.iter().find(|h| h.name == n).map(|h| (h.actual, h.target));
    // bed 0x00640064, chamber 0x003C0030, nozzle 0 0x00E10108 (264 °C of 225: PA-GF).
    assert_eq!(get("bed"), Some((100.0, 100.0)));
    assert_eq!(get("chamber"), Some((48.0, 60.0)));
    assert_eq!(get("tool0"), Some((264.0, 225.0)));
    assert_eq!(get("tool1"), Some((40.0, 0.0)));
    // An AMS HT unit (id 128) holds one tray whose absolute id is the unit's.
    let trays = r.trays();
    let ht = trays.iter().find(|t| t.slot == 128).expect("AMS HT tray");
    assert_eq!(
        (ht.material.as_deref(), ht.remain_pct),
        (Some("PA-GF"), Some(100))
    );
    assert!(
        trays.iter().any(|t| t.slot == 3
            && t.material.as_deref() == Some("PETG")
            && t.remain_pct == Some(26))
    );
    assert!(
        r.signature_required(),
        "fun 41AFFF9CFF has the signature bit"
    );

    // Partial deltas (what P1/A1 and H2D send) change only what they carry.
    let before = r.clone();
    r.merge(&f["push_door_opened"]);
    assert_eq!(r.get("stat"), "46A58008");
    assert_eq!(r.temps(), before.temps());
    r.merge(&f["push_left_extruder"]);
    assert_eq!(r.get("device")["extruder"]["state"], 274);
    assert_eq!(
        r.temps(),
        before.temps(),
        "extruder info kept beside the new state"
    );
    assert_eq!(r.trays(), before.trays());
    // A tray delta by id updates that tray only.
    r.merge(&json!({"ams": {"ams": [{"id": "0", "tray": [{"id": "1", "remain": 30}]}]}}));
    let t1 = r.trays().into_iter().find(|t| t.slot == 1).expect("tray 1");
    assert_eq!(
        (t1.material.as_deref(), t1.remain_pct),
        (Some("PLA"), Some(30))
    );
    assert_eq!(r.trays().len(), before.trays().len());
}

#[test]
fn hms_entries_become_error_text_and_a_fatal_one_an_error_state() {
    let mut r = report_of("MOCK-MISC.json");
    let text = r.problems().expect("hms");
    assert!(text.contains("0C00_0300_0003_0007"), "{text}");
    assert!(text.contains("wiki.bambulab.com"), "{text}");
    assert_ne!(r.activity(), Activity::Error, "a common entry is no stop");
    r.merge(&json!({"hms": [{"attr": 0x0300_0100, "code": 0x0001_0007}]}));
    assert_eq!(r.activity(), Activity::Error);
    assert!(
        r.problems()
            .expect("hms")
            .contains("0300_0100_0001_0007 (fatal, motion control)")
    );
}

#[test]
fn replies_and_the_developer_mode_refusal_are_recognised() {
    let refused = br#"{"print":{"command":"pause","sequence_id":"4","result":"failed","reason":"","err_code":84033543}}"#;
    let Some(Incoming::Reply(r)) = Incoming::parse(refused) else {
        panic!("not a reply")
    };
    assert_eq!(
        (r.command.as_str(), r.sequence_id.as_str(), r.ok),
        ("pause", "4", false)
    );
    assert_eq!(r.err_code, Some(0x0502_4007));
    let ok = br#"{"print":{"command":"resume","sequence_id":"5","result":"SUCCESS"}}"#;
    assert!(matches!(Incoming::parse(ok), Some(Incoming::Reply(r)) if r.ok));
    let f = fixture("MOCK-A1.json");
    let v = json!({"info": f["get_version"]["info"]}).to_string();
    assert_eq!(
        Incoming::parse(v.as_bytes()),
        Some(Incoming::Version("01.05.00.00".into()))
    );
    assert_eq!(Incoming::parse(b"not json"), None);
}

/// A print evolved from the P1P's real full report by the deltas a P1 sends.
#[test]
fn a_job_is_confirmed_and_ended_only_by_fresh_news_after_our_start() {
    let mut r = report_of("P1P.json");
    let mut job = JobWatch::new("cube.gcode.3mf");
    let feed = |r: &mut Report, job: &mut JobWatch, d: Value| {
        r.merge(&d);
        job.observe(&d, r)
    };
    // The last job's FAILED repeats (an X1 sends it in every push): not ours, not news.
    assert!(
        feed(
            &mut r,
            &mut job,
            json!({"gcode_state": "FAILED", "subtask_name": "Fidget Collection"})
        )
        .is_empty()
    );
    assert!(!job.confirmed);
    assert_eq!(
        feed(
            &mut r,
            &mut job,
            json!({"gcode_state": "PREPARE", "subtask_name": "cube.gcode.3mf", "layer_num": 1})
        ),
        vec![JobChange::Confirmed]
    );
    assert_eq!(job.max_layer, 0, "layers count only while running");
    feed(
        &mut r,
        &mut job,
        json!({"gcode_state": "RUNNING", "layer_num": 3, "total_layer_num": 10}),
    );
    assert_eq!(job.max_layer, 3);
    assert_eq!(
        feed(&mut r, &mut job, json!({"gcode_state": "PAUSE"})),
        vec![JobChange::Paused]
    );
    assert_eq!(
        feed(&mut r, &mut job, json!({"gcode_state": "RUNNING"})),
        vec![JobChange::Resumed]
    );
    feed(&mut r, &mut job, json!({"layer_num": 5}));
    feed(&mut r, &mut job, json!({"layer_num": 4}));
    assert_eq!(job.max_layer, 5, "high-water");
    let end = feed(
        &mut r,
        &mut job,
        json!({"gcode_state": "FAILED", "print_error": 0x0700_8011, "hms": [{"attr": 0x0700_0100, "code": 0x0002_8011}]}),
    );
    match &end[..] {
        [
            JobChange::Finished {
                outcome: Outcome::Failed,
                reason: Some(why),
            },
        ] => {
            assert!(why.contains("0700_0100_0002_8011"), "{why}");
            assert!(why.contains("0700_8011"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        feed(&mut r, &mut job, json!({"gcode_state": "FAILED"})).is_empty(),
        "ends once"
    );
}

#[test]
fn a_stop_ends_as_cancelled_and_a_finish_as_completed() {
    let mut r = report_of("MOCK-A1.json");
    let mut job = JobWatch::new("part.gcode");
    let d = json!({"gcode_state": "RUNNING", "gcode_file": "/cache/part.gcode", "subtask_name": "part"});
    r.merge(&d);
    assert_eq!(job.observe(&d, &r), vec![JobChange::Confirmed]);
    let mut cancel = job.clone();
    let d = json!({"gcode_state": "FAILED", "print_error": 50_348_044});
    let mut rc = r.clone();
    rc.merge(&d);
    assert_eq!(
        cancel.observe(&d, &rc),
        vec![JobChange::Finished {
            outcome: Outcome::Cancelled,
            reason: None
        }]
    );
    let d = json!({"gcode_state": "FINISH", "mc_percent": 100});
    r.merge(&d);
    assert_eq!(
        job.observe(&d, &r),
        vec![JobChange::Finished {
            outcome: Outcome::Completed,
            reason: None
        }]
    );
}

#[test]
fn material_is_billed_at_layer_boundaries_and_exactly_at_completion() {
    let starts = vec![vec![3.0], vec![4.0], vec![6.0]];
    let total = vec![7.5];
    let mut job = JobWatch::new("x");
    assert_eq!(
        job.billed_mm(&starts, &total, false, &[]),
        Vec::<f64>::new()
    );
    job.max_layer = 2;
    assert_eq!(
        job.billed_mm(&starts, &total, false, &[]),
        vec![4.0],
        "what was used before layer 2"
    );
    assert_eq!(
        job.billed_mm(&starts, &total, false, &[5.0]),
        vec![5.0],
        "never decreases"
    );
    job.max_layer = 9;
    assert_eq!(
        job.billed_mm(&starts, &total, false, &[]),
        vec![6.0],
        "past our last layer: its start"
    );
    assert_eq!(job.billed_mm(&starts, &total, true, &[6.0]), vec![7.5]);
}

#[test]
fn every_kind_of_tray_is_read_empty_slots_and_external_holders_included() {
    // AMS (unit 0), AMS 2 Pro (units 1, 2), AMS HT (128); nothing loaded (`tray_now` 255).
    let r = report_of("2AMS1-1AMS2-1AMSHT.json");
    let trays = r.trays();
    let ids: Vec<u32> = trays.iter().map(|t| t.slot).collect();
    assert_eq!(ids, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 128, 255]);
    assert!(trays.iter().all(|t| !t.active), "tray_now 255: none feeds");
    let t = |id: u32| trays.iter().find(|t| t.slot == id).expect("tray");
    assert_eq!(
        (
            t(0).material.as_deref(),
            t(0).colour.as_deref(),
            t(0).remain_pct,
            t(0).preset.as_deref()
        ),
        (Some("PLA"), Some("#000000"), Some(93), Some("GFA01"))
    );
    assert_eq!(
        t(4).colour.as_deref(),
        Some("#D32941"),
        "RRGGBBAA read as #RRGGBB"
    );
    assert_eq!(t(8).material, None, "an empty AMS 2 slot");
    assert_eq!((t(8).colour.as_deref(), t(8).remain_pct), (None, None));
    assert_eq!(t(128).material.as_deref(), Some("PA-CF"));
    assert_eq!(t(255).material, None, "an empty external holder");

    // An H2D: four AMS, two AMS HT, two external holders (`vir_slot`), tray 0 feeding.
    let r = report_of("MOCK-H2DEXTSPOOLACTIVE.json");
    let trays = r.trays();
    assert_eq!(trays.len(), 16 + 2 + 2);
    let t = |id: u32| trays.iter().find(|t| t.slot == id).expect("tray");
    assert!(t(0).active && trays.iter().filter(|t| t.active).count() == 1);
    assert_eq!(
        t(0).remain_pct,
        None,
        "remain -1: a spool without RFID, unknown"
    );
    assert_eq!(t(1).material, None);
    assert_eq!(t(129).material.as_deref(), Some("PETG"));
    assert_eq!(
        (
            t(254).material.as_deref(),
            t(255).material.as_deref(),
            t(255).colour.as_deref()
        ),
        (Some("PLA"), Some("TPU"), Some("#9B9EA0"))
    );
    // `remain` moves as a print uses filament: a delta by id changes that tray only.
    let mut r = r;
    r.merge(&json!({"ams": {"ams": [{"id": "2", "tray": [{"id": "1", "remain": 38}]}]}}));
    let after = r.trays();
    assert_eq!(
        after
            .iter()
            .find(|t| t.slot == 9)
            .and_then(|t| t.remain_pct),
        Some(38)
    );
    assert_eq!(after.len(), trays.len());
}

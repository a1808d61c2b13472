//! Unit and property tests of the scheduler: each hard constraint, the queue order, the soft
//! preference, the power budget, working hours and the timeline.

use super::*;
use proptest::prelude::*;

const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

fn pla(colour: &str, g: Option<f64>) -> Tool {
    Tool {
        nozzle_mm: Some(0.4),
        loaded: Some(Loaded {
            material: "PLA".into(),
            colour: colour.into(),
            remaining_g: g,
        }),
    }
}

fn printer(id: &str, tools: Vec<Tool>) -> PrinterInput {
    PrinterInput {
        id: id.into(),
        state: PrinterState::Idle,
        blocked: false,
        auto_eject: true,
        build_volume_mm: Some([250.0, 210.0, 210.0]),
        tools,
        trays: vec![],
        busy_remaining_s: 0.0,
    }
}

fn job(id: &str, position: i64) -> JobInput {
    JobInput {
        id: id.into(),
        priority: 0,
        due: None,
        position,
        material: Some("PLA".into()),
        colour: Some("black".into()),
        nozzle_mm: None,
        size_mm: Some([20.0, 20.0, 20.0]),
        grams: smallvec::smallvec![10.0],
        estimated_s: 3600.0,
        pinned: None,
        hold: None,
    }
}

fn input(printers: Vec<PrinterInput>, jobs: Vec<JobInput>) -> PlanInput {
    PlanInput {
        printers,
        jobs: jobs.into_iter().collect(),
        ..PlanInput::default()
    }
}

fn starts(p: &Plan) -> Vec<(&str, &str)> {
    p.starts
        .iter()
        .map(|s| (&*s.job_id, s.printer_id.as_str()))
        .collect()
}

#[test]
fn each_hard_constraint_refuses_with_its_reason() {
    let r = Rules::default();
    let p = printer("p", vec![pla("black", Some(100.0))]);
    let j = job("j", 1);
    assert_eq!(fits(&p, &j, &r), Ok(()));

    let blocked = PrinterInput {
        blocked: true,
        ..p.clone()
    };
    assert_eq!(fits(&blocked, &j, &r), Err(Misfit::Blocked));

    let pinned = JobInput {
        pinned: Some("other".into()),
        ..j.clone()
    };
    assert_eq!(fits(&p, &pinned, &r), Err(Misfit::Pinned));

    let red = JobInput {
        colour: Some("red".into()),
        ..j.clone()
    };
    assert!(matches!(
        fits(&p, &red, &r),
        Err(Misfit::Material { tool: 0, .. })
    ));
    let petg = JobInput {
        material: Some("PETG".into()),
        ..j.clone()
    };
    assert!(matches!(fits(&p, &petg, &r), Err(Misfit::Material { .. })));
    // Case and spaces do not matter.
    let loose = JobInput {
        material: Some(" pla".into()),
        colour: Some("Black ".into()),
        ..j.clone()
    };
    assert_eq!(fits(&p, &loose, &r), Ok(()));

    let nozzle = JobInput {
        nozzle_mm: Some(0.6),
        ..j.clone()
    };
    assert!(matches!(
        fits(&p, &nozzle, &r),
        Err(Misfit::Nozzle { want: 0.6, .. })
    ));

    let big = JobInput {
        size_mm: Some([300.0, 10.0, 10.0]),
        ..j.clone()
    };
    assert!(matches!(fits(&p, &big, &r), Err(Misfit::TooBig { .. })));

    let heavy = JobInput {
        grams: smallvec::smallvec![96.0],
        ..j.clone()
    };
    assert!(matches!(
        fits(&p, &heavy, &r),
        Err(Misfit::NotEnough { tool: 0, .. })
    ));
    // Unknown remaining weight: no quantity check.
    let unknown = printer("p", vec![pla("black", None)]);
    assert_eq!(fits(&unknown, &heavy, &r), Ok(()));

    // A second tool the job uses must be loaded too.
    let two = JobInput {
        grams: smallvec::smallvec![1.0, 1.0],
        ..j.clone()
    };
    assert_eq!(fits(&p, &two, &r), Err(Misfit::NothingLoaded { tool: 1 }));
    let bare = printer("p", vec![Tool::default()]);
    assert_eq!(fits(&bare, &j, &r), Err(Misfit::NothingLoaded { tool: 0 }));
}

#[test]
fn a_job_without_material_requirements_prints_anywhere_even_undeclared() {
    let mut any = job("j", 1);
    any.material = None;
    any.colour = None;
    let bare = PrinterInput {
        build_volume_mm: None,
        ..printer("p", vec![])
    };
    assert_eq!(fits(&bare, &any, &Rules::default()), Ok(()));
}

#[test]
fn only_idle_unblocked_printers_start_work_and_only_matching_ones() {
    let mut petg = printer("petg", vec![pla("black", None)]);
    petg.tools[0].loaded = Some(Loaded {
        material: "PETG".into(),
        colour: "black".into(),
        remaining_g: None,
    });
    let busy = PrinterInput {
        state: PrinterState::Busy,
        busy_remaining_s: 60.0,
        ..printer("busy", vec![pla("black", None)])
    };
    let off = PrinterInput {
        state: PrinterState::Offline,
        ..printer("off", vec![pla("black", None)])
    };
    let maint = PrinterInput {
        blocked: true,
        ..printer("maint", vec![pla("black", None)])
    };
    let clear = PrinterInput {
        state: PrinterState::AwaitingClear,
        ..printer("clear", vec![pla("black", None)])
    };
    let ok = printer("ok", vec![pla("black", None)]);
    let plan = plan(
        &input(
            vec![petg, busy, off, maint, clear, ok],
            vec![job("a", 1), job("b", 2)],
        ),
        NOW,
    );
    assert_eq!(starts(&plan), vec![("a", "ok")]);
    // "b" is on the timeline after the busy printer's job (60 s), not on the offline one.
    let b = plan
        .timeline
        .iter()
        .find(|s| &*s.job_id == "b")
        .expect("b planned");
    assert_eq!(b.printer_id, "busy");
    assert_eq!(b.start, NOW + time::Duration::seconds(60));
}

#[test]
fn queue_order_is_priority_then_due_date_then_position() {
    let mut a = job("a", 1);
    let mut b = job("b", 2);
    let c = job("c", 3);
    let mut d = job("d", 4);
    b.due = Some(NOW + time::Duration::hours(5));
    a.due = Some(NOW + time::Duration::hours(9));
    d.priority = 1;
    let one = vec![printer("p", vec![pla("black", None)])];
    let p = plan(&input(one, vec![a, b, c, d]), NOW);
    let order: Vec<&str> = p.timeline.iter().map(|s| &*s.job_id).collect();
    assert_eq!(order, vec!["d", "b", "a", "c"]);
    // Back to back on one printer: each starts when the previous ends.
    for w in p.timeline.windows(2) {
        assert_eq!(w[0].end, w[1].start);
    }
}

#[test]
fn held_and_pinned_jobs() {
    let mut held = job("held", 1);
    held.hold = Some(crate::jobs::HELD_BY_OPERATOR.into());
    let mut unreleased = job("unreleased", 2);
    unreleased.hold = Some(crate::jobs::AWAITING_RELEASE.into());
    let mut pinned = job("pinned", 3);
    pinned.pinned = Some("p2".into());
    let ps = vec![
        printer("p1", vec![pla("black", None)]),
        printer("p2", vec![pla("black", None)]),
    ];
    let p = plan(&input(ps, vec![held, unreleased, pinned]), NOW);
    assert_eq!(starts(&p), vec![("pinned", "p2")]);
    // Each held job waits with its own hold as the reason.
    assert_eq!(
        p.waiting,
        vec![
            Waiting {
                job_id: "held".into(),
                index: 0,
                reason: crate::jobs::HELD_BY_OPERATOR.into()
            },
            Waiting {
                job_id: "unreleased".into(),
                index: 1,
                reason: crate::jobs::AWAITING_RELEASE.into()
            }
        ]
    );
}

#[test]
fn jobs_that_print_anywhere_leave_the_scarce_printer_to_jobs_that_need_it() {
    let mut any = job("any", 1);
    any.material = None;
    any.colour = None;
    let mut petg = job("petg", 2);
    petg.material = Some("PETG".into());
    let mut petg_printer = printer("a-petg", vec![pla("black", None)]);
    petg_printer.tools[0].loaded = Some(Loaded {
        material: "PETG".into(),
        colour: "black".into(),
        remaining_g: None,
    });
    let ps = vec![petg_printer, printer("b-pla", vec![pla("black", None)])];
    let p = plan(&input(ps, vec![any, petg]), NOW);
    assert_eq!(starts(&p), vec![("any", "b-pla"), ("petg", "a-petg")]);
}

#[test]
fn the_timeline_spends_the_spool_so_it_is_never_promised_twice() {
    let ps = vec![printer("p", vec![pla("black", Some(41.0))])];
    let jobs = vec![job("a", 1), job("b", 2), job("c", 3)];
    let p = plan(&input(ps, jobs), NOW);
    // Each needs 10 g + 5 % + 10 g margin = 20.5 g on the spool: 41 → 31 → 21 → 11.
    let planned: Vec<&str> = p.timeline.iter().map(|s| &*s.job_id).collect();
    assert_eq!(planned, vec!["a", "b", "c"]);
    // 35 → 25 → 15: the third no longer fits and waits, saying why.
    let ps = vec![printer("p", vec![pla("black", Some(35.0))])];
    let p = plan(&input(ps, vec![job("a", 1), job("b", 2), job("c", 3)]), NOW);
    assert_eq!(p.timeline.len(), 2);
    assert_eq!(p.waiting.len(), 1);
    assert!(
        p.waiting[0].reason.contains("enough filament"),
        "{}",
        p.waiting[0].reason
    );
}

#[test]
fn the_power_budget_staggers_starts() {
    let ps: Vec<_> = (0..4)
        .map(|i| printer(&format!("p{i}"), vec![pla("black", None)]))
        .collect();
    let jobs: Vec<_> = (0..4).map(|i| job(&format!("j{i}"), i)).collect();
    let mut inp = input(ps, jobs);
    inp.rules.max_heating = Some(2);
    inp.rules.heat_s = 300.0;
    let p = plan(&inp, NOW);
    assert_eq!(p.starts.len(), 1, "one start now, the next 150 s later");
    let mut t: Vec<i64> = p
        .timeline
        .iter()
        .map(|s| (s.start - NOW).whole_seconds())
        .collect();
    t.sort();
    assert_eq!(t, vec![0, 150, 300, 450]);
    // A heat-up under way since 100 s ago takes the slot now; the first start is the next slot.
    inp.heating_since = vec![NOW - time::Duration::seconds(100)];
    let p = plan(&inp, NOW);
    assert!(p.starts.is_empty());
    assert_eq!((p.timeline[0].start - NOW).whole_seconds(), 150);
}

#[test]
fn beds_are_cleared_only_in_working_hours() {
    let w = WorkingHours::parse("08:00-18:00").expect("hours");
    assert!(WorkingHours::parse("18:00-08:00").is_err());
    assert!(WorkingHours::parse("8-18").is_err());
    // 1970-01-01 00:00 is before opening: the clear happens at 08:00 + clear time.
    let mut p = printer("p", vec![pla("black", None)]);
    p.auto_eject = false;
    p.state = PrinterState::AwaitingClear;
    let mut inp = input(vec![p], vec![job("a", 1), job("b", 2)]);
    inp.rules.working_hours = Some(w);
    inp.rules.clear_s = 600.0;
    let plan = plan(&inp, NOW);
    let a = &plan.timeline[0];
    assert_eq!((a.start - NOW).whole_seconds(), 8 * 3600 + 600);
    // a ends at 09:10; inside hours, so b starts ten minutes later.
    assert_eq!(plan.timeline[1].start, a.end + time::Duration::seconds(600));
    assert_eq!(
        w.next_open(NOW + time::Duration::hours(19)),
        NOW + time::Duration::hours(32)
    );
}

#[test]
fn learnt_corrections_stretch_the_timeline() {
    let mut inp = input(
        vec![printer("p", vec![pla("black", None)])],
        vec![job("a", 1)],
    );
    for _ in 0..20 {
        inp.corrections.observe("p", "PLA", 1000.0, 1500.0);
    }
    let p = plan(&inp, NOW);
    let run = (p.timeline[0].end - p.timeline[0].start).whole_seconds();
    assert!((5390..=5410).contains(&run), "{run}");
}

fn arb_printer() -> impl Strategy<Value = PrinterInput> {
    (
        0usize..5,
        prop::sample::select(vec!["PLA", "PETG"]),
        prop::sample::select(vec!["black", "red"]),
        prop::option::of(0.0f64..200.0),
        any::<bool>(),
        0.0f64..5000.0,
    )
        .prop_map(|(s, m, c, g, eject, busy)| PrinterInput {
            id: String::new(),
            state: PrinterState::ALL[s],
            blocked: s == 4,
            auto_eject: eject,
            build_volume_mm: Some([200.0, 200.0, 200.0]),
            tools: vec![Tool {
                nozzle_mm: Some(0.4),
                loaded: Some(Loaded {
                    material: m.into(),
                    colour: c.into(),
                    remaining_g: g,
                }),
            }],
            trays: vec![],
            busy_remaining_s: busy,
        })
}

/// Queue order as the module doc states it, field by field: the oracle for the plan's numeric
/// sort key (`QueueKey`).
fn queue_order(a: &JobInput, b: &JobInput) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| match (a.due, b.due) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
        .then_with(|| a.position.cmp(&b.position))
}

fn arb_job() -> impl Strategy<Value = JobInput> {
    (
        -2i32..3,
        prop::option::of(prop::sample::select(vec!["PLA", "PETG"])),
        prop::option::of(prop::sample::select(vec!["black", "red"])),
        1.0f64..100.0,
        10.0f64..300.0,
        any::<bool>(),
    )
        .prop_map(|(prio, m, c, g, size, held)| JobInput {
            id: "".into(),
            priority: prio,
            due: None,
            position: 0,
            material: m.map(Into::into),
            colour: c.map(Into::into),
            nozzle_mm: None,
            size_mm: Some([size, 10.0, 10.0]),
            grams: smallvec::smallvec![g],
            estimated_s: 600.0,
            pinned: None,
            hold: held.then(|| crate::jobs::HELD_BY_OPERATOR.into()),
        })
}

proptest! {
    #[test]
    fn every_plan_respects_the_hard_constraints(
        ps in prop::collection::vec(arb_printer(), 0..12),
        js in prop::collection::vec(arb_job(), 0..40),
        budget in prop::option::of(1u32..4),
    ) {
        let mut inp = PlanInput {
            printers: ps.into_iter().enumerate().map(|(i, mut p)| { p.id = format!("p{i}"); p }).collect(),
            jobs: js.into_iter().enumerate().map(|(i, mut j)| { j.id = format!("j{i}").into(); j.position = i as i64; j }).collect(),
            ..PlanInput::default()
        };
        inp.rules.max_heating = budget;
        let plan = plan(&inp, NOW);
        let printer = |id: &str| inp.printers.iter().find(|p| p.id == id).expect("printer");
        let job = |id: &str| inp.jobs.iter().find(|j| &*j.id == id).expect("job");
        let mut used = std::collections::HashSet::new();
        for s in &plan.starts {
            let p = printer(&s.printer_id);
            prop_assert_eq!(p.state, PrinterState::Idle);
            prop_assert!(used.insert(s.printer_id.clone()), "two starts on one printer");
            prop_assert!(fits(p, job(&s.job_id), &inp.rules).is_ok());
        }
        if let Some(k) = budget {
            prop_assert!(plan.starts.len() <= k as usize);
        }
        // Every job is either on the timeline or waiting, never both, never lost.
        prop_assert_eq!(plan.timeline.len() + plan.waiting.len(), inp.jobs.len());
        // Each entry names its job's place in the input, once.
        let ids: Vec<&str> = inp.jobs.iter().map(|j| &*j.id).collect();
        let mut seen = std::collections::HashSet::new();
        for (id, index) in plan.timeline.iter().map(|s| (&s.job_id, s.index))
            .chain(plan.waiting.iter().map(|w| (&w.job_id, w.index)))
        {
            prop_assert_eq!(ids.get(index as usize).copied(), Some(&**id));
            prop_assert!(seen.insert(index));
        }
        for s in &plan.timeline {
            prop_assert!(job(&s.job_id).hold.is_none());
            prop_assert!(fits(printer(&s.printer_id), job(&s.job_id), &inp.rules).is_ok());
            prop_assert!(s.start >= NOW && s.end >= s.start);
        }
        // Slots on one printer never overlap.
        let mut by_printer: std::collections::HashMap<&str, Vec<&Slot>> = Default::default();
        for s in &plan.timeline {
            by_printer.entry(&s.printer_id).or_default().push(s);
        }
        for slots in by_printer.values_mut() {
            slots.sort_by_key(|s| s.start);
            for w in slots.windows(2) {
                prop_assert!(w[0].end <= w[1].start);
            }
        }
    }
    /// The plan sorts numeric keys, not the jobs: with nothing to place on, every job waits,
    /// and the waiting list must be the queue in exactly `queue_order` (ties in input order,
    /// as a stable sort keeps them).
    #[test]
    fn the_plan_walks_the_queue_in_queue_order(
        js in prop::collection::vec((arb_job(), prop::option::of(-3i64..3), -5i64..5), 0..60),
    ) {
        let jobs: Vec<JobInput> = js
            .into_iter()
            .enumerate()
            .map(|(i, (mut j, due, position))| {
                j.id = format!("j{i}").into();
                j.due = due.map(|h| NOW + time::Duration::hours(h));
                j.position = position;
                j
            })
            .collect();
        let mut expected: Vec<&JobInput> = jobs.iter().collect();
        expected.sort_by(|a, b| queue_order(a, b));
        let expected: Vec<&str> = expected.iter().map(|j| &*j.id).collect();
        let inp = PlanInput { jobs: jobs.iter().cloned().collect(), ..PlanInput::default() };
        let plan = plan(&inp, NOW);
        let got: Vec<&str> = plan.waiting.iter().map(|w| &*w.job_id).collect();
        prop_assert_eq!(got, expected);
    }
}

fn ams_slot(slot: u32, material: &str, colour: &str, g: Option<f64>) -> ChangerSlot {
    ChangerSlot {
        slot,
        loaded: Loaded {
            material: material.into(),
            colour: colour.into(),
            remaining_g: g,
        },
        reported_colour: Some(colour.into()),
    }
}

#[test]
fn a_job_goes_to_the_printer_whose_ams_holds_its_material_and_waits_when_none_does() {
    let r = Rules::default();
    // A Bambu: one nozzle declared, nothing mounted on it; the AMS holds white PLA, black PETG.
    let mut bambu = printer("bambu", vec![Tool::default()]);
    bambu.tools[0].nozzle_mm = Some(0.4);
    bambu.trays = vec![
        ams_slot(0, "PLA", "#FFFFFF", None),
        ams_slot(2, "PETG", "#000000", None),
    ];
    let other = printer("mk4", vec![pla("black", None)]);
    let mut petg = job("petg", 1);
    petg.material = Some("PETG".into());
    // Two filament slots in the file: both fed from the AMS through the one nozzle.
    petg.grams = smallvec::smallvec![5.0, 5.0];
    petg.nozzle_mm = Some(0.4);
    assert_eq!(fits(&bambu, &petg, &r), Ok(()));
    assert_eq!(matching_trays(&bambu, &petg), vec![2]);
    let mut red = job("red", 2);
    red.material = Some("PETG".into());
    red.colour = Some("red".into());
    let plan = plan(
        &input(vec![other.clone(), bambu.clone()], vec![petg, red]),
        NOW,
    );
    assert_eq!(starts(&plan), vec![("petg", "bambu")]);
    let why = &plan.waiting[0].reason;
    assert!(
        why.contains("bambu: no AMS tray holds PETG red (it holds PLA #FFFFFF, PETG #000000)"),
        "{why}"
    );
    // A tray matched to an inventory spool brings its grams: too few refuses the job.
    bambu.trays[1] = ams_slot(2, "PETG", "black", Some(8.0));
    let mut big = job("big", 3);
    big.material = Some("PETG".into());
    assert!(matches!(
        fits(&bambu, &big, &r),
        Err(Misfit::NotEnough { .. })
    ));
    // A PLA black job: the MK4's spool, not the AMS's white PLA.
    assert_eq!(
        fits(&bambu, &job("pla", 4), &r).map_err(|e| e.to_string()),
        Err("no AMS tray holds PLA black (it holds PLA #FFFFFF, PETG black)".into())
    );
}

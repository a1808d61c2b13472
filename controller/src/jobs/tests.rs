use super::*;

const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

fn on_printer() -> Job {
    let mut j = sample(1);
    assign(&mut j, "p-1", "c-1".into(), NOW);
    j
}

fn finished(outcome: Outcome, mm: f64) -> Event {
    Event::JobFinished {
        job_id: "job-1".into(),
        outcome,
        reason: Some("why".into()),
        extruded_mm: vec![mm],
        duration_s: 1.0,
    }
}

#[test]
fn the_happy_path() {
    let mut j = on_printer();
    assert_eq!(j.attempts, 1);
    apply(
        &mut j,
        "p-1",
        &Event::JobAccepted {
            job_id: "job-1".into(),
        },
        NOW,
    )
    .expect("accepted");
    assert_eq!(j.state, JobState::Transferring);
    apply(&mut j, "p-1", &Event::job_started("job-1"), NOW).expect("started");
    apply(
        &mut j,
        "p-1",
        &Event::JobPaused {
            job_id: "job-1".into(),
            reason: None,
        },
        NOW,
    )
    .expect("paused");
    apply(
        &mut j,
        "p-1",
        &Event::JobResumed {
            job_id: "job-1".into(),
        },
        NOW,
    )
    .expect("resumed");
    apply(
        &mut j,
        "p-1",
        &Event::Material {
            job_id: "job-1".into(),
            extruded_mm: vec![40.0],
        },
        NOW,
    )
    .expect("material");
    let e = apply(&mut j, "p-1", &finished(Outcome::Completed, 100.0), NOW).expect("finished");
    assert_eq!(
        e,
        Effect::Finished {
            outcome: Outcome::Completed,
            printed: true
        }
    );
    assert_eq!(j.state, JobState::Completed);
    assert_eq!(j.extruded_mm, vec![100.0]);
    assert_eq!(j.failure_reason, None);
}

#[test]
fn refused_transitions() {
    let mut j = on_printer();
    assert!(
        apply(
            &mut j,
            "p-1",
            &Event::JobResumed {
                job_id: "job-1".into()
            },
            NOW
        )
        .is_err()
    );
    assert!(
        apply(
            &mut j,
            "p-1",
            &Event::JobPaused {
                job_id: "job-1".into(),
                reason: None
            },
            NOW
        )
        .is_err()
    );
    assert!(matches!(
        apply(&mut j, "p-2", &Event::job_started("job-1"), NOW),
        Err(Refused::WrongPrinter { .. })
    ));
    apply(&mut j, "p-1", &finished(Outcome::Cancelled, 5.0), NOW).expect("cancel");
    // A replayed finish or a late material report changes nothing.
    assert!(apply(&mut j, "p-1", &finished(Outcome::Completed, 9.0), NOW).is_err());
    assert!(
        apply(
            &mut j,
            "p-1",
            &Event::Material {
                job_id: "job-1".into(),
                extruded_mm: vec![9.0]
            },
            NOW
        )
        .is_err()
    );
    assert_eq!(j.state, JobState::Cancelled);
    assert_eq!(j.extruded_mm, vec![5.0]);
}

#[test]
fn material_is_monotonic_per_tool() {
    let mut have = vec![10.0];
    merge_material(&mut have, &[8.0, 3.0]);
    assert_eq!(have, vec![10.0, 3.0]);
    merge_material(&mut have, &[f64::NAN, 4.0]);
    assert_eq!(have, vec![10.0, 4.0]);
}

#[test]
fn a_download_failure_leaves_nothing_printed() {
    let mut j = on_printer();
    let e = apply(&mut j, "p-1", &finished(Outcome::Failed, 0.0), NOW).expect("failed");
    assert_eq!(
        e,
        Effect::Finished {
            outcome: Outcome::Failed,
            printed: false
        }
    );
    assert_eq!(j.failure_reason.as_deref(), Some("why"));
}

#[test]
fn queued_jobs_cancel_directly_and_refused_assignments_requeue() {
    let mut j = sample(2);
    cancel_queued(&mut j, NOW).expect("cancel");
    assert!(cancel_queued(&mut j, NOW).is_err());
    let mut k = on_printer();
    unassign(&mut k, "printer busy");
    assert_eq!((k.state, k.printer_id.clone()), (JobState::Queued, None));
}

#[test]
fn a_retry_is_a_new_job_for_the_same_copy_keeping_its_place() {
    let mut failed = on_printer();
    failed.material = Some("PETG".into());
    failed.plate = Some(2);
    failed.order = Some(OrderRef {
        order_id: "ord-1".into(),
        item: 0,
        copy: 2,
        part: 0,
    });
    apply(&mut failed, "p-1", &finished(Outcome::Failed, 30.0), NOW).expect("failed");
    let r = retry(&mut failed, 9, NOW);
    assert_eq!(
        (r.id.as_str(), r.state, r.attempt),
        ("job-9", JobState::Queued, 2)
    );
    assert_eq!(r.order, failed.order);
    assert_eq!(r.material.as_deref(), Some("PETG"));
    assert_eq!(r.plate, Some(2), "a retry prints the same plate");
    assert_eq!(r.position, Some(failed.queue_position()));
    assert!(r.extruded_mm.is_empty() && r.printer_id.is_none());
    assert_eq!(r.retry_of.as_deref(), Some("job-1"));
    assert_eq!(failed.retried_by.as_deref(), Some("job-9"));
    // The failed job keeps its reason and what it used.
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.extruded_mm, vec![30.0]);
    assert_eq!(failed.failure_reason.as_deref(), Some("why"));
}

#[test]
fn an_uploads_filament_choice_is_trimmed_blank_is_any_and_junk_is_refused() {
    let n = Needs::new(Some(" PLA ".into()), Some("".into())).expect("valid");
    assert_eq!(n.material.as_deref(), Some("PLA"));
    assert_eq!(n.colour, None);
    assert_eq!(Needs::new(None, None), Ok(Needs::default()));
    let e = Needs::new(None, Some("x".repeat(65))).expect_err("too long");
    assert!(e.contains("colour") && e.contains("left out"), "{e}");
    assert!(Needs::new(Some("PL\nA".into()), None).is_err());
}

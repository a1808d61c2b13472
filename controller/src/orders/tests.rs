//! Every order transition, valid and refused; progress from jobs; request validation.

use super::*;
use crate::jobs::{OrderRef, sample};

const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

#[test]
fn every_transition_is_either_in_the_table_or_refused() {
    use OrderEvent as E;
    use OrderState as S;
    let events = [
        E::Started,
        E::AllPrinted,
        E::Exhausted,
        E::Cancel,
        E::Fulfil,
    ];
    let allowed = [
        (S::Received, E::Started, S::InProduction),
        (S::Received, E::AllPrinted, S::Ready),
        (S::Received, E::Exhausted, S::Failed),
        (S::Received, E::Cancel, S::Cancelled),
        (S::InProduction, E::AllPrinted, S::Ready),
        (S::InProduction, E::Exhausted, S::Failed),
        (S::InProduction, E::Cancel, S::Cancelled),
        (S::Ready, E::Fulfil, S::Fulfilled),
    ];
    let mut checked = 0;
    for s in OrderState::ALL {
        for e in events {
            let want = allowed
                .iter()
                .find(|(a, b, _)| *a == s && *b == e)
                .map(|(_, _, n)| *n);
            match (transition(s, e), want) {
                (Ok(n), Some(w)) => assert_eq!(n, w, "{s:?} + {e:?}"),
                (Err(r), None) => {
                    assert_eq!((r.state, r.event), (s, e));
                    assert!(!r.to_string().is_empty());
                }
                (got, want) => panic!("{s:?} + {e:?}: got {got:?}, want {want:?}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 30);
    // Final states accept nothing.
    for s in OrderState::ALL.into_iter().filter(|s| s.is_final()) {
        assert!(events.iter().all(|e| transition(s, *e).is_err()));
    }
    let r = transition(S::Ready, E::Cancel).expect_err("refused");
    assert_eq!(
        r.to_string(),
        "an order that is ready cannot be cancelled (cancel only orders not yet printed)"
    );
}

fn order(quantities: &[u32], parts: usize) -> Order {
    Order {
        id: "ord-1".into(),
        number: 1,
        shop: "shop".into(),
        customer_ref: "A-1".into(),
        state: OrderState::Received,
        items: quantities
            .iter()
            .map(|q| Item {
                sku: None,
                files: (0..parts)
                    .map(|p| ItemFile {
                        sha256: format!("{p}"),
                        name: "f".into(),
                        plate: None,
                    })
                    .collect(),
                quantity: *q,
                material: None,
                colour: None,
                nozzle_mm: None,
            })
            .collect(),
        priority: 0,
        due: None,
        price: None,
        max_attempts: 3,
        released: true,
        created_at: NOW,
        updated_at: NOW,
        history: vec![],
    }
}

fn job(n: u64, item: u32, copy: u32, part: u32, state: JobState, attempt: u32) -> Job {
    let mut j = sample(n);
    j.order = Some(OrderRef {
        order_id: "ord-1".into(),
        item,
        copy,
        part,
    });
    j.state = state;
    j.attempt = attempt;
    j
}

#[test]
fn progress_follows_the_copies() {
    use JobState as J;
    let mut o = order(&[2], 1);
    let a = job(1, 0, 1, 0, J::Queued, 1);
    let b = job(2, 0, 2, 0, J::Queued, 1);
    assert_eq!(progress(&o, &[&a, &b]), None);
    let a = job(1, 0, 1, 0, J::Printing, 1);
    assert_eq!(progress(&o, &[&a, &b]), Some(OrderEvent::Started));
    o.apply(OrderEvent::Started, NOW).expect("started");
    assert_eq!(progress(&o, &[&a, &b]), None, "no event repeats");
    // Copy 1 failed once and was retried; the retry completed. Copy 2 completed.
    let a1 = job(1, 0, 1, 0, J::Failed, 1);
    let a2 = job(3, 0, 1, 0, J::Completed, 2);
    let b = job(2, 0, 2, 0, J::Completed, 1);
    assert_eq!(
        copy_states(&o, &[&a1, &b, &a2]),
        vec![vec![CopyState::Printed, CopyState::Printed]]
    );
    assert_eq!(progress(&o, &[&a1, &b, &a2]), Some(OrderEvent::AllPrinted));
    // The latest attempt failed and nothing retries it: the copy is out of attempts.
    let a3 = job(3, 0, 1, 0, J::Failed, 2);
    assert_eq!(progress(&o, &[&a1, &b, &a3]), Some(OrderEvent::Exhausted));
    // A retry queued after a failure keeps the copy queued.
    let a4 = job(4, 0, 1, 0, J::Queued, 3);
    assert_eq!(
        copy_states(&o, &[&a1, &a3, &a4, &b])[0][0],
        CopyState::Queued
    );
}

#[test]
fn a_copy_of_a_multi_file_item_is_printed_when_every_file_is() {
    let o = order(&[1], 2);
    let p0 = job(1, 0, 1, 0, JobState::Completed, 1);
    let p1 = job(2, 0, 1, 1, JobState::Queued, 1);
    assert_eq!(copy_states(&o, &[&p0, &p1])[0][0], CopyState::Printing);
    let p1 = job(2, 0, 1, 1, JobState::Completed, 1);
    assert_eq!(copy_states(&o, &[&p0, &p1])[0][0], CopyState::Printed);
}

fn request() -> OrderRequest {
    OrderRequest {
        customer_ref: "A-100".into(),
        items: vec![ItemRequest {
            sku: Some("cube".into()),
            sha256: None,
            name: None,
            quantity: 2,
            material: None,
            colour: Some("red".into()),
            nozzle_mm: None,
            plate: None,
        }],
        priority: 0,
        due: Some(NOW + time::Duration::days(1)),
        price: Some(Money {
            amount_minor: 1250,
            currency: "EUR".into(),
        }),
    }
}

fn catalog(it: &ItemRequest) -> Result<Resolved, String> {
    match it.sku.as_deref() {
        Some("cube") => Ok(Resolved {
            files: vec![ItemFile {
                sha256: "ab".into(),
                name: "cube.gcode".into(),
                plate: None,
            }],
            material: Some("PLA".into()),
            colour: Some("black".into()),
            nozzle_mm: None,
        }),
        Some(s) => Err(format!("no catalog entry {s:?}")),
        None => Err("no file".into()),
    }
}

#[test]
fn a_good_request_resolves_with_item_values_over_catalog_defaults() {
    let items = validate(&request(), NOW, catalog).expect("valid");
    assert_eq!(items[0].quantity, 2);
    assert_eq!(items[0].material.as_deref(), Some("PLA"));
    assert_eq!(items[0].colour.as_deref(), Some("red"));
    assert_eq!(items[0].files[0].name, "cube.gcode");
}

#[test]
fn every_mistake_is_reported_with_its_field() {
    let mut r = request();
    r.customer_ref = " ".into();
    r.due = Some(NOW - time::Duration::hours(1));
    r.price = Some(Money {
        amount_minor: -1,
        currency: "eur".into(),
    });
    r.items[0].quantity = 0;
    r.items.push(ItemRequest {
        sku: Some("nope".into()),
        ..r.items[0].clone()
    });
    r.items.push(ItemRequest {
        sku: None,
        quantity: -3,
        ..r.items[0].clone()
    });
    let errs = validate(&r, NOW, catalog).expect_err("invalid");
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "customer_ref",
            "due",
            "price.amount_minor",
            "price.currency",
            "items[0].quantity",
            "items[1].quantity",
            "items[1].sku",
            "items[2].quantity",
            "items[2].sku",
        ]
    );
    assert!(errs[6].problem.contains("nope"));
    assert!(errs[1].problem.contains("past"));
    let mut empty = request();
    empty.items.clear();
    assert_eq!(
        validate(&empty, NOW, catalog).expect_err("no items")[0].field,
        "items"
    );
}

//! Whether an order's items fit the farm: refused (422) when no enrolled printer could ever
//! print one (larger than every declared build volume), a warning when none has its
//! material, colour or nozzle loaded right now (an operator can load it).
//!
//! The verdict depends only on the file's plate and what the item asks for, so a batch of
//! orders checks each such class against the printers once, not once per order: with
//! thousands of printers that check was most of an order's cost.

use crate::farm::{Farm, Mirror};
use crate::jobs::scheduler::{JobInput, Misfit, PrinterInput, Rules, fits};
use crate::orders::{self, FieldError};
use std::collections::HashMap;

impl Farm {
    /// The field errors and warnings of an order's items; `seen` holds the verdicts already
    /// reached in this batch.
    pub(crate) fn check_printable(
        &self,
        m: &Mirror,
        items: &[orders::Item],
        printers: &[PrinterInput],
        rules: &Rules,
        seen: &mut HashMap<FitClass, Fit>,
    ) -> (Vec<FieldError>, Vec<String>) {
        let (mut errs, mut warnings) = (vec![], vec![]);
        for (i, item) in items.iter().enumerate() {
            for f in &item.files {
                let Some((_, meta)) = m
                    .book
                    .files
                    .get(&f.sha256)
                    .and_then(|m| m.for_plate(f.plate).ok())
                else {
                    continue;
                };
                let class = FitClass {
                    sha256: f.sha256.clone(),
                    plate: f.plate,
                    material: item.material.clone(),
                    colour: item.colour.clone(),
                    nozzle_mm: item.nozzle_mm.map(f64::to_bits),
                };
                let fit = *seen
                    .entry(class)
                    .or_insert_with(|| fit(&self.job_input_for(&meta, item), printers, rules));
                match fit {
                    Fit::TooBig => errs.push(FieldError {
                        field: format!("items[{i}]"),
                        problem: format!(
                            "{} measures {:?} mm, larger than the build volume of every printer in the farm; send a smaller part or split it",
                            f.name,
                            meta.size_mm.unwrap_or_default()
                        ),
                    }),
                    Fit::NotLoadedNow => warnings.push(format!(
                        "items[{i}]: no printer has {} {}{} loaded now; the copies wait until an operator loads it",
                        item.material.as_deref().unwrap_or("any material"),
                        item.colour.as_deref().unwrap_or("any colour"),
                        item.nozzle_mm.map(|n| format!(" with a {n} mm nozzle")).unwrap_or_default(),
                    )),
                    Fit::Fits => {}
                }
            }
        }
        (errs, warnings)
    }
}

/// What decides whether an item's file fits the farm: the plate and what the item asks for.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct FitClass {
    sha256: String,
    plate: Option<u32>,
    material: Option<String>,
    colour: Option<String>,
    nozzle_mm: Option<u64>,
}

/// An item's file against the farm's printers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Larger than every printer that declares its build volume: refused.
    TooBig,
    /// Some printer could take it, but none has its material, colour or nozzle now: a warning.
    NotLoadedNow,
    Fits,
}

fn fit(j: &JobInput, printers: &[PrinterInput], rules: &Rules) -> Fit {
    let (mut declared, mut too_big, mut could) = (0, 0, false);
    for p in printers {
        let r = fits(p, j, rules);
        declared += usize::from(p.build_volume_mm.is_some());
        too_big += usize::from(matches!(r, Err(Misfit::TooBig { .. })));
        could |= r.is_ok() || matches!(r, Err(Misfit::NotEnough { .. } | Misfit::Blocked));
    }
    if declared > 0 && too_big == declared {
        Fit::TooBig
    } else if !could {
        Fit::NotLoadedNow
    } else {
        Fit::Fits
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::FileMeta;
    use crate::orders::follow_up::OrderError;
    use crate::orders::intake::Intake;
    use crate::orders::{ItemRequest, OrderRequest};
    use crate::printers::fleet::ToolSlot;
    use crate::printers::registry::ProfilePatch;

    use crate::farm::open_for_tests as open;

    fn file(sha: &str, size_mm: [f64; 3]) -> FileMeta {
        FileMeta {
            sha256: sha.into(),
            size: 100,
            name: "part.gcode".into(),
            filament_mm: vec![500.0],
            estimated_s: 600.0,
            size_mm: Some(size_mm),
            plates: vec![],
        }
    }

    fn order(n: usize, sha: &str, material: &str, colour: &str) -> Intake {
        Intake {
            shop: "acme".into(),
            idempotency_key: None,
            body_sha256: format!("body-{n}"),
            request: OrderRequest {
                customer_ref: format!("c-{n}"),
                items: vec![ItemRequest {
                    sku: None,
                    sha256: Some(sha.into()),
                    name: Some(format!("part-{n}.gcode")),
                    quantity: 1,
                    material: Some(material.into()),
                    colour: Some(colour.into()),
                    nozzle_mm: None,
                    plate: None,
                }],
                priority: 0,
                due: None,
                price: None,
            },
        }
    }

    /// One batch, checked once per class: each order still gets its own verdict, by what it
    /// asks for, with its own file name in the message.
    #[tokio::test(flavor = "multi_thread")]
    async fn each_order_of_a_batch_gets_the_verdict_of_what_it_asks_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let farm = open(dir.path());
        farm.add_printer("p-1", None, true).await.expect("printer");
        let patch = ProfilePatch {
            tools: Some(vec![ToolSlot {
                nozzle_mm: Some(0.4),
                material: Some("PLA".into()),
                colour: Some("black".into()),
            }]),
            build_volume_mm: Some([250.0, 210.0, 210.0]),
            ..ProfilePatch::default()
        };
        farm.set_profile("p-1", patch).await.expect("profile");
        let (small, big) = ("ab".repeat(32), "cd".repeat(32));
        farm.record_file(file(&small, [20.0, 20.0, 5.0]))
            .await
            .expect("file");
        farm.record_file(file(&big, [400.0, 20.0, 5.0]))
            .await
            .expect("file");
        let batch = vec![
            order(0, &small, "PLA", "black"),
            order(1, &small, "PETG", "white"),
            order(2, &big, "PLA", "black"),
            order(3, &small, "PETG", "white"),
            order(4, &small, "PLA", "black"),
            order(5, &big, "PLA", "black"),
        ];
        let answers = farm.place_orders(batch).await;
        let warned = |i: usize| match &answers[i] {
            Ok(p) => p.warnings.clone(),
            Err(e) => panic!("order {i} refused: {e:?}"),
        };
        assert!(
            warned(0).is_empty() && warned(4).is_empty(),
            "PLA black is loaded"
        );
        for i in [1, 3] {
            let w = warned(i);
            assert!(
                w.len() == 1 && w[0].contains("PETG white"),
                "order {i}: {w:?}"
            );
        }
        for i in [2, 5] {
            match &answers[i] {
                Err(OrderError::Invalid(errs)) => assert!(
                    errs[0].problem.contains(&format!("part-{i}.gcode"))
                        && errs[0].problem.contains("build volume"),
                    "order {i}: {errs:?}"
                ),
                other => panic!("order {i} should be refused as too big: {other:?}"),
            }
        }
        assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 4);
    }
}

//! The catalog and analysed files in the farm: what is kept about each stored file, and the
//! operator's SKU → files map.

use crate::catalog::{CatalogEntry, FileMeta, valid_sku};
use crate::farm::{Farm, FarmError};

impl Farm {
    /// Records what the analyzer said about a stored file, so orders can name it by hash.
    pub async fn record_file(&self, meta: FileMeta) -> Result<(), FarmError> {
        if self.lock().book.files.get(&meta.sha256) == Some(&meta) {
            return Ok(());
        }
        self.write(move |_, s| {
            if s.m.book.files.get(&meta.sha256) != Some(&meta) {
                s.put(|_, tx| tx.put_file_meta(&meta));
                s.m.book.files.insert(meta.sha256.clone(), meta);
            }
            Ok(())
        })
        .await
    }

    pub fn file_meta(&self, sha256: &str) -> Option<FileMeta> {
        self.lock().book.files.get(sha256).cloned()
    }

    pub async fn put_catalog(&self, mut e: CatalogEntry) -> Result<CatalogEntry, FarmError> {
        if !valid_sku(&e.sku) {
            return Err(FarmError::Invalid(
                "a SKU is 1 to 64 letters, digits, '-', '_' or '.'".into(),
            ));
        }
        if e.files.is_empty() || e.files.len() > 32 {
            return Err(FarmError::Invalid(
                "a catalog entry names 1 to 32 files".into(),
            ));
        }
        self.write(move |_, s| {
            for f in &mut e.files {
                let Some(meta) = s.m.book.files.get(&f.sha256) else {
                    return Err(FarmError::Invalid(format!(
                        "no uploaded file with sha256 {:?}; upload it first with POST /api/v1/files",
                        f.sha256
                    )));
                };
                f.name.get_or_insert_with(|| meta.name.clone());
                f.plate = meta
                    .for_plate(f.plate)
                    .map_err(|e| FarmError::Invalid(format!("file {}: {e}", f.sha256)))?
                    .0;
            }
            s.put(|_, tx| tx.put_catalog(&e));
            s.m.book.catalog.insert(e.sku.clone(), e.clone());
            Ok(e)
        })
        .await
    }

    pub async fn delete_catalog(&self, sku: &str) -> Result<(), FarmError> {
        let sku = sku.to_string();
        self.write(move |_, s| {
            if !s.m.book.catalog.contains_key(&sku) {
                return Err(FarmError::Invalid(format!("no catalog entry {sku:?}")));
            }
            s.put(|_, tx| tx.delete_catalog(&sku));
            s.m.book.catalog.remove(&sku);
            Ok(())
        })
        .await
    }

    pub fn catalog(&self) -> Vec<CatalogEntry> {
        self.lock().book.catalog.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::{CatalogEntry, CatalogFile, FileMeta, PlateMeta};
    use crate::farm::FarmError;
    use crate::orders::intake::Intake;
    use crate::orders::{ItemRequest, OrderRequest};

    use crate::farm::open_for_tests as open;

    fn plate(n: u32, mm: f64) -> PlateMeta {
        PlateMeta {
            plate: n,
            name: None,
            filament_mm: vec![mm],
            estimated_s: mm,
            size_mm: Some([10.0, 10.0, 2.0]),
            slicer_estimated_s: None,
            slicer_weight_g: None,
            slots: vec![],
            thumbnails: vec![],
        }
    }

    fn order(sku: Option<&str>, sha: Option<&str>, plate: Option<u32>) -> Intake {
        Intake {
            shop: "acme".into(),
            idempotency_key: None,
            body_sha256: "b".into(),
            request: OrderRequest {
                customer_ref: "r".into(),
                items: vec![ItemRequest {
                    sku: sku.map(Into::into),
                    sha256: sha.map(Into::into),
                    name: None,
                    quantity: 1,
                    material: None,
                    colour: None,
                    nozzle_mm: None,
                    plate,
                }],
                priority: 0,
                due: None,
                price: None,
            },
        }
    }

    /// A SKU and an order line name a plate of a `.gcode.3mf`; its jobs print that plate with
    /// its own figures, and a missing or unknown plate is refused with the plates there are.
    #[tokio::test(flavor = "multi_thread")]
    async fn catalog_entries_and_order_lines_name_a_plate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let farm = open(dir.path());
        let sha = "cd".repeat(32);
        farm.record_file(FileMeta {
            sha256: sha.clone(),
            size: 100,
            name: "two.gcode.3mf".into(),
            filament_mm: vec![100.0],
            estimated_s: 100.0,
            size_mm: None,
            plates: vec![plate(1, 100.0), plate(2, 250.0)],
        })
        .await
        .expect("file");
        let entry = |plate| CatalogEntry {
            sku: "kit".into(),
            description: None,
            files: vec![CatalogFile {
                sha256: sha.clone(),
                name: None,
                plate,
            }],
            material: None,
            colour: None,
            nozzle_mm: None,
        };
        let which = farm.put_catalog(entry(None)).await.expect_err("two plates");
        assert!(
            matches!(&which, FarmError::Invalid(m) if m.contains("(1, 2)")),
            "{which:?}"
        );
        assert!(farm.put_catalog(entry(Some(3))).await.is_err());
        farm.put_catalog(entry(Some(2))).await.expect("plate 2");

        let answers = farm
            .place_orders(vec![
                order(Some("kit"), None, None),
                order(None, Some(&sha), Some(1)),
                order(None, Some(&sha), None),
            ])
            .await;
        assert!(answers[0].is_ok() && answers[1].is_ok(), "{answers:?}");
        assert!(
            matches!(&answers[2], Err(e) if format!("{e:?}").contains("(1, 2)")),
            "{:?}",
            answers[2]
        );
        let jobs = farm.jobs(None, 0, 10);
        let got: Vec<(Option<u32>, Vec<f64>)> = jobs
            .iter()
            .map(|j| (j.plate, j.filament_mm.clone()))
            .collect();
        assert_eq!(got, vec![(Some(2), vec![250.0]), (Some(1), vec![100.0])]);
    }
}

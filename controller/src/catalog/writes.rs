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

//! The controller's durable state: one redb file behind a narrow interface.
//!
//! Everything the controller acknowledges is committed here first (DESIGN §4): an API write
//! answers 2xx only after its transaction commits, and an event's effect and its
//! `(printer, seq)` mark are written in the same transaction, so a replay is recognised.
//! Records are JSON values in redb tables: readable with any redb tool, and a schema change is
//! a serde default or a migration in [`Store::open`].

use crate::jobs::Job;
use crate::printers::fleet::PrinterRecord;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Serialize, de::DeserializeOwned};
use std::path::Path;

mod stock;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const PRINTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("printers");
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
const APPLIED_SEQ: TableDefinition<&str, u64> = TableDefinition::new("applied_seq");
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const COMMANDS: TableDefinition<&str, &[u8]> = TableDefinition::new("commands");
// Orders (part A of the production core): orders by number, idempotency keys by
// "<shop>\n<key>", catalog by SKU, analysed files by sha256, the webhook outbox by delivery number.
const ORDERS: TableDefinition<u64, &[u8]> = TableDefinition::new("orders");
const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog");
const FILE_META: TableDefinition<&str, &[u8]> = TableDefinition::new("file_meta");
const WEBHOOKS: TableDefinition<u64, &[u8]> = TableDefinition::new("webhook_outbox");

/// Bumped when a record's meaning changes; [`Store::open`] migrates older files in place.
pub const SCHEMA_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the state store {0} is in use by another process (is `farm-controller serve` running? stop it, or use the API instead)"
    )]
    Locked(String),
    #[error("state store error: {0}")]
    Db(#[from] redb::Error),
    #[error("state store record {key} is unreadable: {err}")]
    Record { key: String, err: serde_json::Error },
    #[error(
        "state store {path} has schema version {found}, newer than this controller understands ({SCHEMA_VERSION}); upgrade farm-controller"
    )]
    TooNew { path: String, found: u64 },
}

trait Db<T> {
    fn db(self) -> Result<T, StoreError>;
}

impl<T, E: Into<redb::Error>> Db<T> for Result<T, E> {
    fn db(self) -> Result<T, StoreError> {
        self.map_err(|e| StoreError::Db(e.into()))
    }
}

fn decode<T: DeserializeOwned>(key: impl ToString, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|err| StoreError::Record {
        key: key.to_string(),
        err,
    })
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own records always serialise (no maps with non-string keys, no failing Serialize impls).
    serde_json::to_vec(v).unwrap_or_default()
}

/// A stored API token: who it is and what it may do. The token itself is never stored.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct TokenRecord {
    pub name: String,
    pub role: crate::auth::Role,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
}

/// A command sent to an agent, kept so its result can be matched and shown.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CommandRecord {
    pub id: String,
    pub printer_id: String,
    pub kind: String,
    #[serde(default)]
    pub job_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub sent_at: time::OffsetDateTime,
    #[serde(default)]
    pub result: Option<(bool, String)>,
}

/// An `Idempotency-Key` the shop used: the request it came with and the order it made.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct IdempotencyRecord {
    /// sha256 of the request body, so the same key with another body is refused.
    pub request_sha256: String,
    pub order_id: String,
}

pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store file, creating tables and checking the schema version.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(StoreError::Locked(path.display().to_string()));
            }
            Err(e) => return Err(StoreError::Db(e.into())),
        };
        let txn = db.begin_write().db()?;
        {
            let mut meta = txn.open_table(META).db()?;
            let found = meta.get("schema_version").db()?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(StoreError::TooNew {
                        path: path.display().to_string(),
                        found: v,
                    });
                }
                Some(_) => {} // version 1 is the first; later versions migrate here
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION).db()?;
                }
            }
            txn.open_table(PRINTERS).db()?;
            txn.open_table(JOBS).db()?;
            txn.open_table(APPLIED_SEQ).db()?;
            txn.open_table(TOKENS).db()?;
            txn.open_table(COMMANDS).db()?;
            stock::create_tables(&txn)?;
            txn.open_table(ORDERS).db()?;
            txn.open_table(IDEMPOTENCY).db()?;
            txn.open_table(CATALOG).db()?;
            txn.open_table(FILE_META).db()?;
            txn.open_table(WEBHOOKS).db()?;
        }
        txn.commit().db()?;
        Ok(Self { db })
    }

    pub fn printers(&self) -> Result<Vec<PrinterRecord>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(PRINTERS).db()?;
        let mut out = vec![];
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn jobs(&self) -> Result<Vec<Job>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(JOBS).db()?;
        let mut out = vec![];
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn tokens(&self) -> Result<Vec<(String, TokenRecord)>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(TOKENS).db()?;
        let mut out = vec![];
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            out.push((k.value().to_string(), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    pub fn applied_seqs(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(APPLIED_SEQ).db()?;
        let mut out = vec![];
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    pub fn command(&self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(COMMANDS).db()?;
        t.get(id).db()?.map(|v| decode(id, v.value())).transpose()
    }

    /// Every record of a table keyed by number (orders, webhook deliveries), in key order.
    fn all_u64<T: DeserializeOwned>(
        &self,
        table: TableDefinition<u64, &[u8]>,
        after: u64,
        limit: usize,
    ) -> Result<Vec<T>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(table).db()?;
        let mut out = vec![];
        for row in t.range(after.saturating_add(1)..).db()?.take(limit) {
            let (k, v) = row.db()?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    fn all_str<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(table).db()?;
        let mut out = vec![];
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            out.push((k.value().to_string(), decode(k.value(), v.value())?));
        }
        Ok(out)
    }

    pub fn orders(&self) -> Result<Vec<crate::orders::Order>, StoreError> {
        self.all_u64(ORDERS, 0, usize::MAX)
    }

    pub fn idempotency_keys(&self) -> Result<Vec<(String, IdempotencyRecord)>, StoreError> {
        self.all_str(IDEMPOTENCY)
    }

    pub fn catalog(&self) -> Result<Vec<crate::catalog::CatalogEntry>, StoreError> {
        Ok(self.all_str(CATALOG)?.into_iter().map(|(_, v)| v).collect())
    }

    pub fn file_metas(&self) -> Result<Vec<crate::catalog::FileMeta>, StoreError> {
        Ok(self
            .all_str(FILE_META)?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Webhook deliveries after number `after` (the delivery log, and the outbox at startup).
    pub fn deliveries(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::orders::webhooks::Delivery>, StoreError> {
        self.all_u64(WEBHOOKS, after, limit)
    }

    /// Runs `f` in one write transaction and commits it durably; nothing is written if `f` fails.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_write().db()?;
        let out = {
            let mut tx = Tx { txn: &txn };
            f(&mut tx)?
        };
        txn.commit().db()?;
        Ok(out)
    }
}

/// Typed access inside one write transaction.
pub struct Tx<'a> {
    txn: &'a redb::WriteTransaction,
}

impl Tx<'_> {
    pub fn put_printer(&mut self, p: &PrinterRecord) -> Result<(), StoreError> {
        self.txn
            .open_table(PRINTERS)
            .db()?
            .insert(p.id.as_str(), encode(p).as_slice())
            .db()?;
        Ok(())
    }

    pub fn put_job(&mut self, j: &Job) -> Result<(), StoreError> {
        self.txn
            .open_table(JOBS)
            .db()?
            .insert(j.number, encode(j).as_slice())
            .db()?;
        Ok(())
    }

    /// Allocates the next job number (1, 2, …), never reused.
    pub fn next_job_number(&mut self) -> Result<u64, StoreError> {
        let mut meta = self.txn.open_table(META).db()?;
        let n = meta.get("next_job").db()?.map_or(1, |v| v.value());
        meta.insert("next_job", n + 1).db()?;
        Ok(n)
    }

    pub fn applied_seq(&mut self, printer: &str) -> Result<u64, StoreError> {
        Ok(self
            .txn
            .open_table(APPLIED_SEQ)
            .db()?
            .get(printer)
            .db()?
            .map_or(0, |v| v.value()))
    }

    pub fn set_applied_seq(&mut self, printer: &str, seq: u64) -> Result<(), StoreError> {
        self.txn
            .open_table(APPLIED_SEQ)
            .db()?
            .insert(printer, seq)
            .db()?;
        Ok(())
    }

    pub fn put_token(&mut self, hash: &str, t: &TokenRecord) -> Result<(), StoreError> {
        self.txn
            .open_table(TOKENS)
            .db()?
            .insert(hash, encode(t).as_slice())
            .db()?;
        Ok(())
    }

    pub fn put_command(&mut self, c: &CommandRecord) -> Result<(), StoreError> {
        self.txn
            .open_table(COMMANDS)
            .db()?
            .insert(c.id.as_str(), encode(c).as_slice())
            .db()?;
        Ok(())
    }

    pub fn command(&mut self, id: &str) -> Result<Option<CommandRecord>, StoreError> {
        let t = self.txn.open_table(COMMANDS).db()?;
        let v = t.get(id).db()?;
        v.map(|v| decode(id, v.value())).transpose()
    }

    /// Next number of a named counter in `meta` (1, 2, …), never reused.
    pub fn next_number(&mut self, counter: &str) -> Result<u64, StoreError> {
        let mut meta = self.txn.open_table(META).db()?;
        let n = meta.get(counter).db()?.map_or(1, |v| v.value());
        meta.insert(counter, n + 1).db()?;
        Ok(n)
    }

    pub fn put_order(&mut self, o: &crate::orders::Order) -> Result<(), StoreError> {
        self.txn
            .open_table(ORDERS)
            .db()?
            .insert(o.number, encode(o).as_slice())
            .db()?;
        Ok(())
    }

    pub fn put_idempotency(&mut self, key: &str, r: &IdempotencyRecord) -> Result<(), StoreError> {
        self.txn
            .open_table(IDEMPOTENCY)
            .db()?
            .insert(key, encode(r).as_slice())
            .db()?;
        Ok(())
    }

    pub fn put_catalog(&mut self, e: &crate::catalog::CatalogEntry) -> Result<(), StoreError> {
        self.txn
            .open_table(CATALOG)
            .db()?
            .insert(e.sku.as_str(), encode(e).as_slice())
            .db()?;
        Ok(())
    }

    pub fn delete_catalog(&mut self, sku: &str) -> Result<bool, StoreError> {
        Ok(self
            .txn
            .open_table(CATALOG)
            .db()?
            .remove(sku)
            .db()?
            .is_some())
    }

    pub fn put_file_meta(&mut self, f: &crate::catalog::FileMeta) -> Result<(), StoreError> {
        self.txn
            .open_table(FILE_META)
            .db()?
            .insert(f.sha256.as_str(), encode(f).as_slice())
            .db()?;
        Ok(())
    }

    pub fn put_delivery(
        &mut self,
        d: &crate::orders::webhooks::Delivery,
    ) -> Result<(), StoreError> {
        self.txn
            .open_table(WEBHOOKS)
            .db()?
            .insert(d.number, encode(d).as_slice())
            .db()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_marks_and_job_numbers_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("farm.redb");
        {
            let s = Store::open(&path).expect("open");
            s.write(|tx| {
                assert_eq!(tx.next_job_number()?, 1);
                assert_eq!(tx.next_job_number()?, 2);
                tx.set_applied_seq("p-1", 7)?;
                Ok::<_, StoreError>(())
            })
            .expect("write");
        }
        let s = Store::open(&path).expect("reopen");
        assert_eq!(
            s.applied_seqs().expect("seqs"),
            vec![("p-1".to_string(), 7)]
        );
        s.write(|tx| {
            assert_eq!(tx.next_job_number()?, 3);
            Ok::<_, StoreError>(())
        })
        .expect("write");
    }

    #[test]
    fn a_failed_closure_writes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Store::open(&dir.path().join("farm.redb")).expect("open");
        let r: Result<(), StoreError> = s.write(|tx| {
            tx.set_applied_seq("p", 5)?;
            Err(StoreError::Locked("simulated failure".into()))
        });
        assert!(r.is_err());
        assert!(s.applied_seqs().expect("seqs").is_empty());
    }

    #[test]
    fn a_second_opener_is_told_the_store_is_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("farm.redb");
        let _first = Store::open(&path).expect("open");
        assert!(matches!(Store::open(&path), Err(StoreError::Locked(_))));
    }
}

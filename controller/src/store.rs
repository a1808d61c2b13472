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
    /// `(printer, seq)` marks being committed (kept as a list so the commit order holds).
    staged_marks: std::sync::Mutex<Vec<(String, u64)>>,
    /// The highest applied seq per printer that a durable commit holds: what the disk would
    /// give back after a crash. Kept so the writer's ordering (ack after commit) is checkable.
    durable_marks: std::sync::Mutex<std::collections::HashMap<String, u64>>,
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
        Ok(Self {
            db,
            staged_marks: Default::default(),
            durable_marks: Default::default(),
        })
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
        self.commit(f)
    }

    /// Opens one write transaction that many calls fill ([`Batch::stage`]) before one
    /// durable commit ([`Store::commit_batch`]): the writer's group commit. Dropping the
    /// batch writes nothing.
    pub fn begin(&self) -> Result<Batch, StoreError> {
        Ok(Batch {
            txn: self.db.begin_write().db()?,
            marks: vec![],
        })
    }

    /// Commits a batch durably: one fsync for everything staged in it.
    pub fn commit_batch(&self, batch: Batch) -> Result<(), StoreError> {
        let mut staged = lock(&self.staged_marks);
        batch.txn.commit().db()?;
        staged.extend(batch.marks);
        self.made_durable(&mut staged);
        Ok(())
    }

    /// The highest seq of `printer` whose applied mark a durable commit holds.
    pub fn durable_applied_seq(&self, printer: &str) -> u64 {
        lock(&self.durable_marks).get(printer).copied().unwrap_or(0)
    }

    fn commit<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let txn = self.db.begin_write().db()?;
        let (out, marks) = {
            let mut tx = Tx {
                txn: &txn,
                marks: vec![],
                open: OpenTables::default(),
            };
            let out = f(&mut tx)?;
            (out, tx.marks)
        };
        // Write transactions are serialised by redb, so holding the marks' lock across the
        // commit keeps them in commit order (a durable commit includes every staged one).
        let mut staged = lock(&self.staged_marks);
        txn.commit().db()?;
        staged.extend(marks);
        self.made_durable(&mut staged);
        Ok(out)
    }

    fn made_durable(&self, staged: &mut Vec<(String, u64)>) {
        let mut d = lock(&self.durable_marks);
        for (printer, seq) in staged.drain(..) {
            let e = d.entry(printer).or_default();
            *e = (*e).max(seq);
        }
    }
}

/// One write transaction filled by many calls, committed once ([`Store::begin`]).
pub struct Batch {
    txn: redb::WriteTransaction,
    marks: Vec<(String, u64)>,
}

impl Batch {
    /// Writes with `f` into the batch's transaction. If `f` fails, what it wrote stays in the
    /// transaction: the caller must then drop the whole batch.
    pub fn stage<T, E>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, E>) -> Result<T, E> {
        let mut tx = Tx {
            txn: &self.txn,
            marks: vec![],
            open: OpenTables::default(),
        };
        let out = f(&mut tx);
        self.marks.append(&mut tx.marks);
        out
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Typed access inside one write transaction.
pub struct Tx<'a> {
    txn: &'a redb::WriteTransaction,
    /// Applied marks written in this transaction (see [`Store::durable_applied_seq`]).
    marks: Vec<(String, u64)>,
    /// The tables an order writes, opened once per staging and kept open until it ends:
    /// opening and closing a redb table costs more than writing a row to it, and a batch of
    /// orders writes four rows to these per order. (A table open here must not be opened
    /// again in the same staging: redb refuses; every use goes through these.)
    open: OpenTables<'a>,
}

#[derive(Default)]
struct OpenTables<'a> {
    meta: Option<redb::Table<'a, &'static str, u64>>,
    jobs: Option<redb::Table<'a, u64, &'static [u8]>>,
    orders: Option<redb::Table<'a, u64, &'static [u8]>>,
    idempotency: Option<redb::Table<'a, &'static str, &'static [u8]>>,
}

/// The table in `slot`, opened on first use.
fn opened<'s, 'a, K: redb::Key + 'static, V: redb::Value + 'static>(
    slot: &'s mut Option<redb::Table<'a, K, V>>,
    txn: &'a redb::WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<&'s mut redb::Table<'a, K, V>, StoreError> {
    let t = match slot.take() {
        Some(t) => t,
        None => txn.open_table(def).db()?,
    };
    Ok(slot.insert(t))
}

impl<'a> Tx<'a> {
    fn meta(&mut self) -> Result<&mut redb::Table<'a, &'static str, u64>, StoreError> {
        opened(&mut self.open.meta, self.txn, META)
    }

    /// Adds one to a counter in `meta`; returns its value before (1 for a new counter).
    fn bump(&mut self, counter: &str) -> Result<u64, StoreError> {
        let meta = self.meta()?;
        let n = meta.get(counter).db()?.map_or(1, |v| v.value());
        meta.insert(counter, n + 1).db()?;
        Ok(n)
    }

    pub fn put_printer(&mut self, p: &PrinterRecord) -> Result<(), StoreError> {
        self.txn
            .open_table(PRINTERS)
            .db()?
            .insert(p.id.as_str(), encode(p).as_slice())
            .db()?;
        Ok(())
    }

    pub fn put_job(&mut self, j: &Job) -> Result<(), StoreError> {
        opened(&mut self.open.jobs, self.txn, JOBS)?
            .insert(j.number, encode(j).as_slice())
            .db()?;
        Ok(())
    }

    /// Allocates the next job number (1, 2, …), never reused.
    pub fn next_job_number(&mut self) -> Result<u64, StoreError> {
        self.bump("next_job")
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
        self.marks.push((printer.to_string(), seq));
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
        self.bump(counter)
    }

    pub fn put_order(&mut self, o: &crate::orders::Order) -> Result<(), StoreError> {
        opened(&mut self.open.orders, self.txn, ORDERS)?
            .insert(o.number, encode(o).as_slice())
            .db()?;
        Ok(())
    }

    pub fn put_idempotency(&mut self, key: &str, r: &IdempotencyRecord) -> Result<(), StoreError> {
        opened(&mut self.open.idempotency, self.txn, IDEMPOTENCY)?
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

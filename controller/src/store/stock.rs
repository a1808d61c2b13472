//! The store's tables for inventory and maintenance: materials, spools, the ledger, job
//! bookings, maintenance tasks and their log. Same rules as the rest of the store: JSON
//! records, written only inside [`Store::write`], so a booking and its event's `(printer, seq)`
//! mark commit together.

use super::{Db, Store, StoreError, Tx, decode, encode};
use crate::inventory::ledger::{JobBooking, LedgerRow};
use crate::inventory::{Material, Spool};
use crate::maintenance::{Completion, Task};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::BTreeMap;

const MATERIALS: TableDefinition<&str, &[u8]> = TableDefinition::new("materials");
const SPOOLS: TableDefinition<u64, &[u8]> = TableDefinition::new("spools");
/// Key: (spool number, ledger row n), so one spool's rows are one range.
const LEDGER: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("ledger");
/// Key: `job#attempt`.
const BOOKINGS: TableDefinition<&str, &[u8]> = TableDefinition::new("bookings");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("maintenance_tasks");
/// Key: completion number; every time a task was done.
const TASK_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("maintenance_log");

/// Creates the tables (called from [`Store::open`]).
pub(super) fn create_tables(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(MATERIALS).db()?;
    txn.open_table(SPOOLS).db()?;
    txn.open_table(LEDGER).db()?;
    txn.open_table(BOOKINGS).db()?;
    txn.open_table(TASKS).db()?;
    txn.open_table(TASK_LOG).db()?;
    Ok(())
}

impl Store {
    pub fn materials(&self) -> Result<Vec<Material>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(MATERIALS).db()?;
        let mut out = vec![];
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn spools(&self) -> Result<Vec<Spool>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(SPOOLS).db()?;
        let mut out = vec![];
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Σ grams of every spool's ledger rows (remaining = initial + this), by spool number.
    pub fn ledger_sums(&self) -> Result<BTreeMap<u64, f64>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(LEDGER).db()?;
        let mut out = BTreeMap::new();
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            let (spool, n) = k.value();
            let r: LedgerRow = decode(format!("ledger {spool}/{n}"), v.value())?;
            *out.entry(spool).or_insert(0.0) += r.grams;
        }
        Ok(out)
    }

    /// One spool's ledger rows with `n > after`, oldest first, at most `limit`.
    pub fn ledger(
        &self,
        spool: u64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LedgerRow>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(LEDGER).db()?;
        let mut out = vec![];
        for row in t
            .range((spool, after.saturating_add(1))..=(spool, u64::MAX))
            .db()?
        {
            let (k, v) = row.db()?;
            let (s, n) = k.value();
            out.push(decode(format!("ledger {s}/{n}"), v.value())?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn bookings(&self) -> Result<Vec<JobBooking>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(BOOKINGS).db()?;
        let mut out = vec![];
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    pub fn maintenance_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(TASKS).db()?;
        let mut out = vec![];
        for row in t.iter().db()? {
            let (k, v) = row.db()?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(out)
    }

    /// Completions of one task, newest first, at most `limit`.
    pub fn maintenance_log(&self, task: &str, limit: usize) -> Result<Vec<Completion>, StoreError> {
        let txn = self.db.begin_read().db()?;
        let t = txn.open_table(TASK_LOG).db()?;
        let mut out = vec![];
        for row in t.iter().db()?.rev() {
            let (k, v) = row.db()?;
            let c: Completion = decode(k.value(), v.value())?;
            if c.task_id == task {
                out.push(c);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

impl Tx<'_> {
    fn next(&mut self, counter: &str) -> Result<u64, StoreError> {
        self.bump(counter)
    }

    pub fn next_spool_number(&mut self) -> Result<u64, StoreError> {
        self.next("next_spool")
    }

    pub fn put_material(&mut self, m: &Material) -> Result<(), StoreError> {
        self.txn
            .open_table(MATERIALS)
            .db()?
            .insert(m.id.as_str(), encode(m).as_slice())
            .db()?;
        Ok(())
    }

    pub fn put_spool(&mut self, s: &Spool) -> Result<(), StoreError> {
        self.txn
            .open_table(SPOOLS)
            .db()?
            .insert(s.number, encode(s).as_slice())
            .db()?;
        Ok(())
    }

    /// Appends a ledger row to spool `spool`, numbering it; returns the row as written.
    pub fn add_ledger_row(
        &mut self,
        spool: u64,
        mut row: LedgerRow,
    ) -> Result<LedgerRow, StoreError> {
        row.n = self.next("next_ledger_row")?;
        self.txn
            .open_table(LEDGER)
            .db()?
            .insert((spool, row.n), encode(&row).as_slice())
            .db()?;
        Ok(row)
    }

    pub fn put_booking(&mut self, key: &str, b: &JobBooking) -> Result<(), StoreError> {
        self.txn
            .open_table(BOOKINGS)
            .db()?
            .insert(key, encode(b).as_slice())
            .db()?;
        Ok(())
    }

    pub fn put_task(&mut self, t: &Task) -> Result<(), StoreError> {
        self.txn
            .open_table(TASKS)
            .db()?
            .insert(t.id.as_str(), encode(t).as_slice())
            .db()?;
        Ok(())
    }

    pub fn next_task_number(&mut self) -> Result<u64, StoreError> {
        self.next("next_task")
    }

    pub fn add_completion(&mut self, c: &Completion) -> Result<(), StoreError> {
        let n = self.next("next_completion")?;
        self.txn
            .open_table(TASK_LOG)
            .db()?
            .insert(n, encode(c).as_slice())
            .db()?;
        Ok(())
    }
}

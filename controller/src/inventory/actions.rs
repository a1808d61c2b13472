//! Operators' spool actions, decided (pure): loading onto a tool, unloading, and an
//! adjustment, each as the spool and the ledger row to write, or why not. Like
//! [`crate::inventory::ledger::book`], they read the stock as it is and return what to write;
//! `inventory/writes.rs` stages it.

use crate::inventory::ledger::{self, Adjust, LedgerRow, RowKind};
use crate::inventory::{Mount, Spool, Stock, StockError};
use time::OffsetDateTime;

fn no_spool(id: &str) -> StockError {
    StockError::NotFound(format!(
        "no spool {id:?}; list spools with GET /api/v1/spools"
    ))
}

/// Loading spool `id` onto `printer`'s `tool`: `None` if it is already there (nothing to
/// write), else the spool and its `load` row.
pub fn decide_load(
    stock: &Stock,
    printer_known: bool,
    id: &str,
    here: Mount,
    max_tools: u32,
    by: &str,
    t: OffsetDateTime,
) -> Result<Option<(Spool, LedgerRow)>, StockError> {
    let (printer, tool) = (here.printer.clone(), here.tool);
    if !printer_known {
        return Err(StockError::NotFound(format!(
            "no printer {printer:?}; list printers with GET /api/v1/printers"
        )));
    }
    if tool >= max_tools {
        return Err(StockError::Invalid(format!(
            "printer {printer} has no tool {tool}: tools are numbered 0 to {} (`[inventory] max_tools`)",
            max_tools.saturating_sub(1)
        )));
    }
    let mut s = stock.spool_by_id(id).ok_or_else(|| no_spool(id))?.clone();
    match &s.loaded {
        Some(l) if *l == here => return Ok(None),
        Some(l) => {
            return Err(StockError::Conflict(format!(
                "spool {id} is loaded on {} tool {}: unload it first (POST /api/v1/spools/{id}/unload)",
                l.printer, l.tool
            )));
        }
        None => {}
    }
    if let Some(other) = stock.on_tool(&printer, tool) {
        return Err(StockError::Conflict(format!(
            "{printer} tool {tool} already holds spool {}: unload it first (POST /api/v1/spools/{}/unload)",
            other.id, other.id
        )));
    }
    s.loaded = Some(here);
    let mut row = LedgerRow::new(0, &s.id, t, RowKind::Load, 0.0);
    row.printer = Some(printer);
    row.tool = Some(tool);
    row.by = Some(by.into());
    Ok(Some((s, row)))
}

/// Taking spool `id` off whatever it is loaded on: the spool and its `unload` row.
pub fn decide_unload(
    stock: &Stock,
    id: &str,
    by: &str,
    t: OffsetDateTime,
) -> Result<(Spool, LedgerRow), StockError> {
    let mut s = stock.spool_by_id(id).ok_or_else(|| no_spool(id))?.clone();
    let Some(was) = s.loaded.take() else {
        return Err(StockError::Conflict(format!(
            "spool {id} is not loaded on any printer"
        )));
    };
    let mut row = LedgerRow::new(0, &s.id, t, RowKind::Unload, 0.0);
    row.printer = Some(was.printer);
    row.tool = Some(was.tool);
    row.by = Some(by.into());
    Ok((s, row))
}

/// An operator's correction as one ledger row on spool `id` (`note` already checked).
pub fn decide_adjust(
    stock: &Stock,
    id: &str,
    a: Adjust,
    note: Option<String>,
    by: &str,
    t: OffsetDateTime,
) -> Result<(Spool, LedgerRow), StockError> {
    let s = stock.spool_by_id(id).ok_or_else(|| no_spool(id))?.clone();
    let delta =
        ledger::adjustment(&a, stock.remaining_g(&s), s.tare_g).map_err(StockError::Invalid)?;
    let mut row = LedgerRow::new(0, &s.id, t, RowKind::Adjustment, delta);
    row.reason = Some(a.reason);
    row.note = note;
    row.by = Some(by.into());
    Ok((s, row))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::ledger::Reason;

    fn t() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    fn stock() -> Stock {
        let mut st = Stock::default();
        for n in 1..=2 {
            st.spools.insert(
                n,
                Spool {
                    id: crate::inventory::spool_id(n),
                    number: n,
                    material_id: "pla-black".into(),
                    initial_g: 1000.0,
                    tare_g: 200.0,
                    lot: None,
                    location: None,
                    loaded: None,
                    created_at: t(),
                },
            );
        }
        st
    }

    fn at(tool: u32) -> Mount {
        Mount {
            printer: "p-1".into(),
            tool,
        }
    }

    #[test]
    fn load_mounts_once_and_refuses_a_taken_tool_or_a_missing_printer() {
        let mut st = stock();
        let id = crate::inventory::spool_id(1);
        let (s, row) = decide_load(&st, true, &id, at(0), 4, "op", t())
            .expect("load")
            .expect("something to write");
        assert_eq!(s.loaded, Some(at(0)));
        assert_eq!(
            (row.kind, row.tool, row.grams),
            (RowKind::Load, Some(0), 0.0)
        );
        st.spools.insert(s.number, s);
        assert!(
            matches!(decide_load(&st, true, &id, at(0), 4, "op", t()), Ok(None)),
            "already there"
        );
        let other = crate::inventory::spool_id(2);
        assert!(matches!(
            decide_load(&st, true, &other, at(0), 4, "op", t()),
            Err(StockError::Conflict(_))
        ));
        assert!(matches!(
            decide_load(&st, true, &other, at(4), 4, "op", t()),
            Err(StockError::Invalid(_))
        ));
        assert!(matches!(
            decide_load(&st, false, &other, at(1), 4, "op", t()),
            Err(StockError::NotFound(_))
        ));
    }

    #[test]
    fn unload_takes_it_off_and_refuses_a_spool_not_loaded() {
        let mut st = stock();
        let id = crate::inventory::spool_id(1);
        assert!(decide_unload(&st, &id, "op", t()).is_err());
        st.spools.get_mut(&1).expect("spool").loaded = Some(at(1));
        let (s, row) = decide_unload(&st, &id, "op", t()).expect("unload");
        assert_eq!(s.loaded, None);
        assert_eq!(
            (row.kind, row.printer.as_deref()),
            (RowKind::Unload, Some("p-1"))
        );
    }

    #[test]
    fn adjust_weighs_to_the_net_weight() {
        let st = stock();
        let id = crate::inventory::spool_id(1);
        let a = Adjust {
            reason: Reason::Weighed,
            gross_g: Some(700.0),
            net_g: None,
            delta_g: None,
            note: None,
        };
        let (_, row) = decide_adjust(&st, &id, a, Some("scale".into()), "op", t()).expect("adjust");
        assert_eq!(row.grams, -500.0, "1000 g → 700 − 200 tare");
        assert_eq!(row.note.as_deref(), Some("scale"));
    }
}

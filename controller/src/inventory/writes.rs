//! Inventory writes and reads: materials, spools, loading, adjustments, and booking material
//! reports into the ledger inside the event transaction (called from [`crate::printers::agents`]).
//!
//! Same rule as every farm write: decided (`inventory::actions`), then staged on the writer
//! thread ([`Farm::write`]): rows, then the mirror; answered after the commit.

use crate::farm::writer::Staging;
use crate::farm::{Farm, Mirror, now};
use crate::inventory::forecast::{SpoolStock, StockLevel, stock_levels};
use crate::inventory::ledger::{
    self, Adjust, JobBooking, LedgerRow, OnTool, RowKind, Source, booking_key,
};
use crate::inventory::{
    LoadedSpool, Material, Mount, NewSpool, Spool, SpoolView, StockError, clean_text, non_negative,
    spool_id, spool_number,
};
use crate::inventory::{actions, loadout};
use crate::jobs::Job;
use crate::store::{StoreError, Tx};
use time::OffsetDateTime;

/// Why an inventory write did not happen: the rules refused it, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Refused(#[from] StockError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn no_spool(id: &str) -> StockError {
    StockError::NotFound(format!(
        "no spool {id:?}; list spools with GET /api/v1/spools"
    ))
}

/// A booking to write in an event's transaction: the job attempt's new booking and its rows.
pub(crate) struct BookingWrite {
    key: String,
    booking: JobBooking,
    rows: Vec<(u64, LedgerRow)>,
}

/// What the event's cumulative totals (already merged into `job.extruded_mm`) add to the
/// ledger; `None` when nothing new was extruded (replays, late or refused reports).
pub(crate) fn plan_booking(
    m: &Mirror,
    job: &Job,
    printer: &str,
    seq: u64,
    at: OffsetDateTime,
) -> Option<BookingWrite> {
    if job.printer_id.as_deref() != Some(printer) {
        return None;
    }
    let key = booking_key(&job.id, job.attempts);
    let mut booking = m
        .stock
        .bookings
        .get(&key)
        .cloned()
        .unwrap_or_else(|| JobBooking::new(&job.id, job.attempts, printer));
    let before = booking.clone();
    // A changer's job (Bambu AMS) names the tray that fed each tool: its grams go to the spool
    // in that tray, matched as the scheduler matches it; every other job's to the tool's spool.
    let (trays, spools) = if job.tool_trays.is_empty() {
        (&[][..], vec![])
    } else {
        let trays = m
            .printers
            .get(printer)
            .and_then(|e| e.live.status.as_ref())
            .map_or(&[][..], |s| &s.trays[..]);
        (trays, m.stock.loaded_spools(printer))
    };
    let drafts = ledger::book(&mut booking, &job.extruded_mm, |tool| {
        let (s, tray) = if job.tool_trays.is_empty() {
            (m.stock.on_tool(printer, tool)?, None)
        } else {
            let (i, tray) = loadout::feeding(tool, &job.tool_trays, trays, &spools);
            let id = &spools.get(i?)?.as_ref()?.spool_id;
            (m.stock.spool_by_id(id)?, tray)
        };
        let mat = m.stock.materials.get(&s.material_id)?;
        Some(OnTool {
            spool_id: s.id.clone(),
            tray,
            material_id: mat.id.clone(),
            grams_per_mm: mat.grams_per_mm(),
            cost_per_kg: mat.cost_per_kg,
        })
    });
    if booking == before {
        return None;
    }
    let rows = drafts
        .into_iter()
        .filter_map(|d| {
            let number = spool_number(&d.spool_id)?;
            let mut r = LedgerRow::new(0, &d.spool_id, at, RowKind::Consumption, -d.grams);
            r.mm = Some(d.mm);
            r.job_id = Some(job.id.clone());
            r.attempt = Some(job.attempts);
            r.printer = Some(printer.into());
            r.tool = Some(d.tool);
            r.tray = d.tray;
            r.source = Some(Source {
                printer: printer.into(),
                seq,
            });
            Some((number, r))
        })
        .collect();
    Some(BookingWrite { key, booking, rows })
}

/// Writes a booking inside the event's transaction (rows get their ledger numbers here).
pub(crate) fn write_booking(tx: &mut Tx<'_>, w: &mut BookingWrite) -> Result<(), StoreError> {
    tx.put_booking(&w.key, &w.booking)?;
    for (spool, row) in &mut w.rows {
        *row = tx.add_ledger_row(*spool, row.clone())?;
    }
    Ok(())
}

/// After the commit: the mirror learns the booking and the spools' new sums.
pub(crate) fn commit_booking(m: &mut Mirror, w: BookingWrite) {
    for (spool, row) in &w.rows {
        *m.stock.ledger_sum_g.entry(*spool).or_insert(0.0) += row.grams;
    }
    m.stock.bookings.insert(w.key, w.booking);
}

impl Farm {
    // ---- reads -------------------------------------------------------------------------

    pub fn materials(&self) -> Vec<Material> {
        self.lock().stock.materials.values().cloned().collect()
    }

    pub fn material(&self, id: &str) -> Option<Material> {
        self.lock().stock.materials.get(id).cloned()
    }

    /// Spools in number order after `after`, at most `limit`; optionally only one material id.
    pub fn spools(&self, after: u64, limit: usize, material: Option<&str>) -> Vec<SpoolView> {
        let m = self.lock();
        m.stock
            .spools
            .range(after.saturating_add(1)..)
            .map(|(_, s)| s)
            .filter(|s| material.is_none_or(|id| s.material_id == id))
            .take(limit)
            .map(|s| m.stock.view(s))
            .collect()
    }

    pub fn spool(&self, id: &str) -> Option<SpoolView> {
        let m = self.lock();
        m.stock.spool_by_id(id).map(|s| m.stock.view(s))
    }

    /// What is loaded on each tool of `printer` (index = tool). The scheduler's input.
    pub fn loaded_spools(&self, printer: &str) -> Vec<Option<LoadedSpool>> {
        self.lock().stock.loaded_spools(printer)
    }

    /// One spool's ledger, oldest first, rows after `after`.
    pub fn spool_ledger(
        &self,
        id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LedgerRow>, WriteError> {
        let number = {
            let m = self.lock();
            m.stock.spool_by_id(id).ok_or_else(|| no_spool(id))?.number
        };
        Ok(self.store.ledger(number, after, limit)?)
    }

    /// Stock per material + colour with low-stock flags.
    pub fn stock_levels(&self, default_threshold_g: f64) -> Vec<StockLevel> {
        let m = self.lock();
        let st = &m.stock;
        let spools = st.spools.values().filter_map(|s| {
            let mat = st.materials.get(&s.material_id)?;
            Some(SpoolStock {
                material: &mat.material,
                colour: &mat.colour,
                remaining_g: st.remaining_g(s),
                threshold_g: mat.low_stock_g,
            })
        });
        let known = st
            .materials
            .values()
            .map(|m| (m.material.as_str(), m.colour.as_str(), m.low_stock_g));
        stock_levels(spools, known, default_threshold_g)
    }

    /// Every attempt's booking of a job (usually one).
    pub fn bookings_of(&self, job_id: &str) -> Vec<JobBooking> {
        let m = self.lock();
        let prefix = format!("{job_id}#");
        m.stock
            .bookings
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, b)| b.clone())
            .collect()
    }

    /// Jobs that finished in `[from, to)` (or are running, with `running`), each with the
    /// bookings of all its attempts: the input of the cost report.
    pub fn jobs_with_bookings(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Vec<(Job, Vec<JobBooking>)> {
        let m = self.lock();
        m.jobs
            .values()
            .filter(|j| j.finished_at.is_some_and(|f| f >= from && f < to))
            .map(|j| {
                let prefix = format!("{}#", j.id);
                let b = m
                    .stock
                    .bookings
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, b)| b.clone())
                    .collect();
                (j.clone(), b)
            })
            .collect()
    }

    // ---- writes ------------------------------------------------------------------------

    /// Adds a material, or replaces one (`replace`); spools keep their ledger either way.
    pub async fn put_material(&self, mat: Material, replace: bool) -> Result<Material, WriteError> {
        self.write(move |_, s| {
            let m = &mut *s.m;
            if !replace && m.stock.materials.contains_key(&mat.id) {
                return Err(StockError::Conflict(format!(
                    "material {:?} already exists; change it with PUT /api/v1/materials/{}",
                    mat.id, mat.id
                ))
                .into());
            }
            if replace && !m.stock.materials.contains_key(&mat.id) {
                return Err(StockError::NotFound(format!(
                    "no material {:?}; create it with POST /api/v1/materials",
                    mat.id
                ))
                .into());
            }
            s.put(|_, tx| tx.put_material(&mat));
            s.m.stock.materials.insert(mat.id.clone(), mat.clone());
            Ok(mat)
        })
        .await
    }

    /// Registers `count` new spools of a known material.
    pub async fn add_spools(&self, n: NewSpool) -> Result<Vec<SpoolView>, WriteError> {
        let initial_g = non_negative("initial_g", n.initial_g)?;
        let tare_g = non_negative("tare_g", n.tare_g.unwrap_or(0.0))?;
        let lot = n
            .lot
            .as_deref()
            .map(|l| clean_text("lot", l, 64))
            .transpose()?;
        let location = n
            .location
            .as_deref()
            .map(|l| clean_text("location", l, 64))
            .transpose()?;
        let count = n.count.unwrap_or(1);
        if !(1..=100).contains(&count) {
            return Err(StockError::Invalid(format!(
                "count must be between 1 and 100 (got {count})"
            ))
            .into());
        }
        self.write(move |_, s| {
            let m = &*s.m;
            if !m.stock.materials.contains_key(&n.material) {
                let known: Vec<&str> = m.stock.materials.keys().map(String::as_str).collect();
                return Err(StockError::Invalid(format!(
                    "no material {:?}; create it first with POST /api/v1/materials{}",
                    n.material,
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(", or use one of: {}", known.join(", "))
                    }
                ))
                .into());
            }
            let t = now();
            let spools = s.put(|_, tx| {
                let mut out = vec![];
                for _ in 0..count {
                    let number = tx.next_spool_number()?;
                    let s = Spool {
                        id: spool_id(number),
                        number,
                        material_id: n.material.clone(),
                        initial_g,
                        tare_g,
                        lot: lot.clone(),
                        location: location.clone(),
                        loaded: None,
                        created_at: t,
                    };
                    tx.put_spool(&s)?;
                    out.push(s);
                }
                Ok::<_, WriteError>(out)
            });
            let mut views = vec![];
            for sp in spools {
                views.push(s.m.stock.view(&sp));
                s.m.stock.spools.insert(sp.number, sp);
            }
            Ok(views)
        })
        .await
    }

    /// Mounts a spool on a printer's tool. Loading it where it already is changes nothing.
    pub async fn load_spool(
        &self,
        id: &str,
        printer: &str,
        tool: u32,
        max_tools: u32,
        by: &str,
    ) -> Result<SpoolView, WriteError> {
        let (id, by) = (id.to_string(), by.to_string());
        let here = Mount {
            printer: printer.into(),
            tool,
        };
        self.write(move |_, s| {
            let known = s.m.printers.contains_key(&here.printer);
            match actions::decide_load(&s.m.stock, known, &id, here, max_tools, &by, now())? {
                None => Ok(s
                    .m
                    .stock
                    .view(s.m.stock.spool_by_id(&id).ok_or_else(|| no_spool(&id))?)),
                Some((spool, row)) => Ok(s.stage_spool_row(spool, row).0),
            }
        })
        .await
    }

    /// Takes a spool off whatever it is loaded on.
    pub async fn unload_spool(&self, id: &str, by: &str) -> Result<SpoolView, WriteError> {
        let (id, by) = (id.to_string(), by.to_string());
        self.write(move |_, s| {
            let (spool, row) = actions::decide_unload(&s.m.stock, &id, &by, now())?;
            Ok(s.stage_spool_row(spool, row).0)
        })
        .await
    }

    /// An operator's correction (weighed, scrapped, delivery, correction), as one ledger row.
    pub async fn adjust_spool(
        &self,
        id: &str,
        a: Adjust,
        by: &str,
    ) -> Result<(SpoolView, LedgerRow), WriteError> {
        let note = a
            .note
            .as_deref()
            .map(|n| clean_text("note", n, 500))
            .transpose()?;
        let (id, by) = (id.to_string(), by.to_string());
        self.write(move |_, s| {
            let (spool, row) = actions::decide_adjust(&s.m.stock, &id, a, note, &by, now())?;
            Ok(s.stage_spool_row(spool, row))
        })
        .await
    }
}

impl Staging<'_> {
    /// Writes a decided spool and its ledger row; the mirror learns both.
    fn stage_spool_row(&mut self, spool: Spool, row: LedgerRow) -> (SpoolView, LedgerRow) {
        let row = self.put(|_, tx| {
            tx.put_spool(&spool)?;
            tx.add_ledger_row(spool.number, row)
        });
        let st = &mut self.m.stock;
        *st.ledger_sum_g.entry(spool.number).or_insert(0.0) += row.grams;
        let v = st.view(&spool);
        st.spools.insert(spool.number, spool);
        (v, row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::farm::Applied;
    use crate::inventory::NewMaterial;
    use farm_protocol::messages::{Activity, Event, Outcome};

    use crate::farm::open_for_tests as open;

    fn ev(farm: &Farm, seq: u64, e: Event) -> Applied {
        // The test runs on the runtime; applying one event waits for its commit.
        tokio::task::block_in_place(|| farm.apply_event("p-1", seq, &e)).expect("apply")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn material_reports_are_booked_once_even_when_replayed_reordered_and_restarted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let farm = open(dir.path());
        farm.add_printer("p-1", None, true).await.expect("printer");
        let pla = crate::inventory::new_material(
            NewMaterial {
                id: None,
                material: "PLA".into(),
                colour: "black".into(),
                diameter_mm: None,
                density_g_cm3: None,
                cost_per_kg: 20.0,
                low_stock_g: None,
            },
            1.75,
        )
        .expect("material");
        let gpm = pla.grams_per_mm();
        farm.put_material(pla, false).await.expect("put");
        let spool = farm
            .add_spools(NewSpool {
                material: "pla-black".into(),
                initial_g: 1000.0,
                tare_g: Some(200.0),
                lot: None,
                location: None,
                count: None,
            })
            .await
            .expect("spool")
            .remove(0);
        farm.load_spool(&spool.spool.id, "p-1", 0, 8, "test")
            .await
            .expect("load");
        let analysis = farm_protocol::gcode::analyze(&b"M83\nG1 X1 E100\n"[..]).expect("analysis");
        let stored = crate::catalog::files::Stored {
            sha256: "ab".repeat(32),
            size: 16,
            analysis,
            plates: vec![],
        };
        let job = farm
            .add_jobs("cube", &stored, 1, 0)
            .await
            .expect("job")
            .remove(0);
        farm.apply_status("p-1", crate::printers::fleet::status(Activity::Idle));
        assert_eq!(farm.schedule().await.expect("schedule"), 1);
        let id = job.id.clone();
        let material = |mm: f64| Event::Material {
            job_id: id.clone(),
            extruded_mm: vec![mm],
        };
        ev(&farm, 1, Event::JobAccepted { job_id: id.clone() });
        ev(&farm, 2, Event::job_started(id.clone()));
        assert_eq!(ev(&farm, 3, material(40.0)), Applied::Applied(3));
        // The same event again (redelivery): recognised, nothing booked.
        assert_eq!(ev(&farm, 3, material(40.0)), Applied::Replay(3));
        // An older report arriving late: applied, books nothing.
        ev(&farm, 4, material(30.0));
        // Cancelled part-way: the final cumulative figure.
        ev(
            &farm,
            5,
            Event::JobFinished {
                job_id: id.clone(),
                outcome: Outcome::Cancelled,
                reason: Some("operator".into()),
                extruded_mm: vec![55.0],
                duration_s: 1.0,
            },
        );
        // A replay of the finish and a material report after it: nothing.
        ev(&farm, 5, material(99.0));
        ev(&farm, 6, material(99.0));
        let want = 1000.0 - 55.0 * gpm;
        let left = farm.spool(&spool.spool.id).expect("spool").remaining_g;
        assert!((left - want).abs() < 1e-9, "{left} g left, want {want} g");
        let rows = farm.spool_ledger(&spool.spool.id, 0, 100).expect("ledger");
        let consumption: Vec<_> = rows
            .iter()
            .filter(|r| r.kind == RowKind::Consumption)
            .collect();
        assert_eq!(consumption.len(), 2, "{rows:?}");
        assert_eq!(
            consumption[0].source,
            Some(Source {
                printer: "p-1".into(),
                seq: 3
            })
        );
        assert_eq!(
            consumption[1].source,
            Some(Source {
                printer: "p-1".into(),
                seq: 5
            })
        );
        let sum: f64 = rows.iter().map(|r| r.grams).sum();
        assert!(
            (1000.0 + sum - left).abs() < 1e-9,
            "remaining = initial + Σ rows"
        );
        drop(farm);

        // After a restart the sums come back from the ledger, and old seqs stay replays.
        let farm = open(dir.path());
        let again = farm.spool(&spool.spool.id).expect("spool").remaining_g;
        assert!((again - want).abs() < 1e-9);
        assert_eq!(ev(&farm, 5, material(99.0)), Applied::Replay(6));
        assert_eq!(farm.bookings_of(&id).len(), 1);
        assert_eq!(
            farm.loaded_spools("p-1")[0]
                .as_ref()
                .map(|l| l.spool_id.clone()),
            Some(spool.spool.id.clone())
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn bad_spool_operations_say_what_to_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let farm = open(dir.path());
        farm.add_printer("p-1", None, true).await.expect("printer");
        let e = farm
            .add_spools(NewSpool {
                material: "nobody-has-this".into(),
                initial_g: 1.0,
                tare_g: None,
                lot: None,
                location: None,
                count: None,
            })
            .await
            .expect_err("unknown material");
        assert!(e.to_string().contains("POST /api/v1/materials"), "{e}");
        assert!(matches!(
            farm.load_spool("s-9", "p-1", 0, 8, "t").await,
            Err(WriteError::Refused(StockError::NotFound(_)))
        ));
        assert!(matches!(
            farm.unload_spool("s-9", "t").await,
            Err(WriteError::Refused(StockError::NotFound(_)))
        ));
    }
}

#[cfg(test)]
mod tray_tests;

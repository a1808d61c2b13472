//! The ledger: every gram that leaves (or joins) a spool is one row, and booking cumulative
//! material reports exactly once (DESIGN §4).
//!
//! Agents report cumulative mm per job and tool. For each job attempt the farm keeps a
//! [`JobBooking`]: per tool, the mm already booked and the segments they went to. A report
//! books `new_total − booked_mm` to the spool feeding that tool now, in grams from that
//! spool's material: the spool mounted on the tool, or on a printer with a filament changer
//! the spool in the tray the agent said fed it (`inventory::loadout::feeding`); if the spool
//! was changed mid-job, the new spool gets the rest. A replayed
//! or late (lower) report books nothing, so replays, reorderings and partial prints can neither
//! lose nor double a gram. The farm writes the booking, the rows and the event's
//! `(printer, seq)` mark in one store transaction.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Which event a consumption row came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Source {
    pub printer: String,
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// Filament a job extruded (negative grams).
    Consumption,
    /// An operator's correction: weighed, scrapped, delivery, correction.
    Adjustment,
    /// Mounted on a printer / taken off (0 g; for the audit trail).
    Load,
    Unload,
}

/// Why an operator changed a spool's weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Put on a scale: set to the measured weight.
    Weighed,
    /// Thrown away (tangled, wet, brittle): set to zero.
    Scrapped,
    /// More filament added to this spool's stock.
    Delivery,
    /// Anything else; say why in `note`.
    Correction,
}

/// One ledger row. `remaining_g(spool) = initial_g + Σ grams`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerRow {
    /// Ledger-wide sequence number (audit order).
    pub n: u64,
    pub spool_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: RowKind,
    /// Change to the spool's remaining filament, g (consumption is negative).
    pub grams: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mm: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<u32>,
    /// The changer tray (Bambu AMS slot) the tool drew this filament from, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tray: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

impl LedgerRow {
    /// A row with only the required fields; callers fill in the rest.
    pub fn new(n: u64, spool_id: &str, at: OffsetDateTime, kind: RowKind, grams: f64) -> Self {
        Self {
            n,
            spool_id: spool_id.into(),
            at,
            kind,
            grams,
            mm: None,
            job_id: None,
            attempt: None,
            printer: None,
            tool: None,
            tray: None,
            source: None,
            reason: None,
            note: None,
            by: None,
        }
    }
}

/// Part of one tool's use that went to one spool (or to none: nothing was mounted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Segment {
    /// `None`: no spool was mounted on the tool; the mm are recorded, no spool is charged.
    pub spool_id: Option<String>,
    pub material_id: Option<String>,
    pub mm: f64,
    pub grams: f64,
    /// The material's price when booked, so later price changes do not rewrite history.
    pub cost_per_kg: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolBooking {
    /// Cumulative mm already booked for this tool.
    pub booked_mm: f64,
    pub segments: Vec<Segment>,
}

/// What has been booked for one attempt of one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobBooking {
    pub job_id: String,
    pub attempt: u32,
    pub printer: String,
    pub tools: Vec<ToolBooking>,
}

impl JobBooking {
    pub fn new(job_id: &str, attempt: u32, printer: &str) -> Self {
        Self {
            job_id: job_id.into(),
            attempt,
            printer: printer.into(),
            tools: vec![],
        }
    }

    /// Grams charged to spools, all tools.
    pub fn grams(&self) -> f64 {
        self.segments().map(|s| s.grams).sum()
    }

    pub fn mm(&self) -> f64 {
        self.tools.iter().map(|t| t.booked_mm).sum()
    }

    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.tools.iter().flat_map(|t| t.segments.iter())
    }
}

/// The key of a job attempt's booking: a requeued job's next attempt books afresh.
pub fn booking_key(job_id: &str, attempt: u32) -> String {
    format!("{job_id}#{attempt}")
}

/// The spool feeding a tool, as booking needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct OnTool {
    pub spool_id: String,
    /// The changer tray it feeds from, if any (recorded on the row).
    pub tray: Option<u32>,
    pub material_id: String,
    pub grams_per_mm: f64,
    pub cost_per_kg: f64,
}

/// One consumption to write as a ledger row.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub tool: u32,
    pub tray: Option<u32>,
    pub spool_id: String,
    pub mm: f64,
    /// Consumed, g (positive; the row carries it negated).
    pub grams: f64,
}

/// Books a cumulative report: per tool, `cumulative − booked` goes to the spool feeding that
/// tool now (`on_tool`). Lower, equal, or non-finite figures book nothing. Returns the rows to write.
pub fn book(
    b: &mut JobBooking,
    cumulative_mm: &[f64],
    on_tool: impl Fn(u32) -> Option<OnTool>,
) -> Vec<Draft> {
    let mut drafts = vec![];
    if b.tools.len() < cumulative_mm.len() {
        b.tools.resize(cumulative_mm.len(), ToolBooking::default());
    }
    for (i, (t, &total)) in b.tools.iter_mut().zip(cumulative_mm).enumerate() {
        if !total.is_finite() || total <= t.booked_mm {
            continue;
        }
        let tool = i as u32;
        let mm = total - t.booked_mm;
        t.booked_mm = total;
        let spool = on_tool(tool);
        let grams = spool.as_ref().map_or(0.0, |s| mm * s.grams_per_mm);
        match t.segments.last_mut() {
            Some(last) if last.spool_id == spool.as_ref().map(|s| s.spool_id.clone()) => {
                last.mm += mm;
                last.grams += grams;
            }
            _ => t.segments.push(Segment {
                spool_id: spool.as_ref().map(|s| s.spool_id.clone()),
                material_id: spool.as_ref().map(|s| s.material_id.clone()),
                mm,
                grams,
                cost_per_kg: spool.as_ref().map(|s| s.cost_per_kg),
            }),
        }
        if let Some(s) = spool {
            drafts.push(Draft {
                tool,
                tray: s.tray,
                spool_id: s.spool_id,
                mm,
                grams,
            });
        }
    }
    drafts
}

/// What an operator asks to change on a spool.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adjust {
    pub reason: Reason,
    /// Weighed with the spool: the scale's reading, g.
    #[serde(default)]
    pub gross_g: Option<f64>,
    /// The filament alone, g.
    #[serde(default)]
    pub net_g: Option<f64>,
    /// Add (or with a minus, remove) this much, g.
    #[serde(default)]
    pub delta_g: Option<f64>,
    #[serde(default)]
    pub note: Option<String>,
}

/// The signed change an adjustment makes to a spool with `remaining_g` left and `tare_g`.
pub fn adjustment(a: &Adjust, remaining_g: f64, tare_g: f64) -> Result<f64, String> {
    let finite = |what: &str, v: f64| {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("{what} must be a number"))
        }
    };
    let target = match (a.reason, a.gross_g, a.net_g, a.delta_g) {
        (Reason::Scrapped, None, None, None) => 0.0,
        (Reason::Scrapped, ..) => {
            return Err(
                "a scrapped spool goes to 0 g: send no weight with reason \"scrapped\"".into(),
            );
        }
        (Reason::Delivery, None, None, Some(d)) if finite("delta_g", d)? > 0.0 => remaining_g + d,
        (Reason::Delivery, ..) => {
            return Err("a delivery adds filament: send only a positive delta_g".into());
        }
        (_, Some(g), None, None) => {
            let g = finite("gross_g", g)?;
            if g < 0.0 {
                return Err(format!("gross_g cannot be negative (got {g})"));
            }
            if g < tare_g {
                return Err(format!(
                    "gross_g {g} g is less than this spool's tare of {tare_g} g: weigh again, or send net_g"
                ));
            }
            g - tare_g
        }
        (_, None, Some(n), None) => finite("net_g", n)?,
        (_, None, None, Some(d)) => remaining_g + finite("delta_g", d)?,
        // None or several of them.
        _ => {
            return Err(
                "send exactly one of gross_g (scale reading with the spool), net_g (filament only) or delta_g (change)"
                    .into(),
            );
        }
    };
    if target < 0.0 {
        return Err(format!(
            "that would leave {target:.2} g on a spool that has {remaining_g:.2} g; a spool cannot go below 0 g (use reason \"scrapped\" to empty it)"
        ));
    }
    Ok(target - remaining_g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GPM: f64 = 0.002_982_2;

    fn spool(id: &str, gpm: f64) -> OnTool {
        OnTool {
            spool_id: id.into(),
            tray: None,
            material_id: "pla".into(),
            grams_per_mm: gpm,
            cost_per_kg: 20.0,
        }
    }

    #[test]
    fn books_the_difference_once() {
        let mut b = JobBooking::new("job-1", 1, "p-1");
        let on = |_| Some(spool("s-1", GPM));
        let d = book(&mut b, &[100.0], on);
        assert_eq!(d.len(), 1);
        assert!((d[0].grams - 100.0 * GPM).abs() < 1e-12);
        // Replay and a late, lower report: nothing.
        assert!(book(&mut b, &[100.0], on).is_empty());
        assert!(book(&mut b, &[60.0], on).is_empty());
        assert!(book(&mut b, &[f64::NAN], on).is_empty());
        let d = book(&mut b, &[250.0], on);
        assert!((d[0].mm - 150.0).abs() < 1e-12);
        assert_eq!(b.tools[0].segments.len(), 1, "same spool: one segment");
        assert!((b.grams() - 250.0 * GPM).abs() < 1e-12);
    }

    #[test]
    fn a_spool_changed_mid_job_gets_the_rest() {
        let mut b = JobBooking::new("job-1", 1, "p-1");
        book(&mut b, &[100.0], |_| Some(spool("s-1", GPM)));
        let d = book(&mut b, &[180.0], |_| Some(spool("s-2", 2.0 * GPM)));
        assert_eq!(d[0].spool_id, "s-2");
        assert!((d[0].grams - 80.0 * 2.0 * GPM).abs() < 1e-12);
        assert_eq!(b.tools[0].segments.len(), 2);
    }

    #[test]
    fn nothing_mounted_records_the_mm_and_charges_no_spool() {
        let mut b = JobBooking::new("job-1", 1, "p-1");
        assert!(book(&mut b, &[0.0, 40.0], |_| None).is_empty());
        assert_eq!(b.tools[1].booked_mm, 40.0);
        assert_eq!(b.tools[1].segments[0].spool_id, None);
        // Mounting later does not charge the new spool for what was printed before.
        let d = book(&mut b, &[0.0, 50.0], |_| Some(spool("s-9", GPM)));
        assert!((d[0].mm - 10.0).abs() < 1e-12);
    }

    fn adj(reason: Reason, gross: Option<f64>, net: Option<f64>, delta: Option<f64>) -> Adjust {
        Adjust {
            reason,
            gross_g: gross,
            net_g: net,
            delta_g: delta,
            note: None,
        }
    }

    #[test]
    fn adjustments() {
        let w = Reason::Weighed;
        assert_eq!(
            adjustment(&adj(w, Some(700.0), None, None), 800.0, 200.0),
            Ok(-300.0)
        );
        assert_eq!(
            adjustment(&adj(w, None, Some(450.0), None), 400.0, 200.0),
            Ok(50.0)
        );
        assert_eq!(
            adjustment(&adj(Reason::Scrapped, None, None, None), 321.0, 200.0),
            Ok(-321.0)
        );
        assert_eq!(
            adjustment(&adj(Reason::Delivery, None, None, Some(1000.0)), 10.0, 0.0),
            Ok(1000.0)
        );
        for bad in [
            adj(w, Some(100.0), None, None),                   // below tare
            adj(w, None, Some(-1.0), None),                    // negative
            adj(w, Some(1.0), Some(1.0), None),                // two figures
            adj(w, None, None, None),                          // none
            adj(Reason::Correction, None, None, Some(-500.0)), // below zero
            adj(Reason::Delivery, None, None, Some(-5.0)),
            adj(Reason::Scrapped, None, Some(3.0), None),
            adj(w, None, Some(f64::INFINITY), None),
        ] {
            let e = adjustment(&bad, 400.0, 200.0).expect_err("refused");
            assert!(!e.is_empty());
        }
    }

    /// One step of a job as the controller may see it.
    #[derive(Debug, Clone)]
    enum Step {
        /// Deliver the report with this index in the agent's sequence (replays and
        /// reorderings are indices seen again or out of order).
        Deliver(usize),
        /// The operator swaps the spool on a tool (spool number, its g/mm variant).
        Swap(u32, u8, bool),
        /// The operator takes the spool off a tool.
        Unmount(u32),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            6 => (0usize..40).prop_map(Step::Deliver),
            1 => (0u32..2, 1u8..5, any::<bool>()).prop_map(|(t, s, d)| Step::Swap(t, s, d)),
            1 => (0u32..2).prop_map(Step::Unmount),
        ]
    }

    proptest! {
        /// The agent's reports are cumulative and grow; the controller may get them in any
        /// order, repeated, and only some of them (a cancelled print stops early). Whatever
        /// happens, per tool the mm booked equal the largest report delivered, and the grams
        /// charged equal Σ mm × g/mm of the spool mounted when each part was booked: with one
        /// density, exactly grams(max mm). Nothing is booked twice, nothing is lost.
        #[test]
        fn booking_neither_loses_nor_doubles_a_gram(
            increments in prop::collection::vec((0.0f64..500.0, 0.0f64..500.0), 1..40),
            steps in prop::collection::vec(step(), 1..120),
            one_density in any::<bool>(),
        ) {
            // The agent's cumulative reports, per tool.
            let mut reports = vec![];
            let (mut a, mut b) = (0.0, 0.0);
            for (da, db) in &increments {
                a += da;
                b += db;
                reports.push(vec![a, b]);
            }
            let mut mounted: [Option<OnTool>; 2] = [Some(spool("s-1", GPM)), Some(spool("s-2", GPM))];
            let mut booking = JobBooking::new("job-1", 1, "p-1");
            let mut max = [0.0f64, 0.0];
            let mut charged = std::collections::BTreeMap::<String, f64>::new();
            let mut expected_g = [0.0f64, 0.0];
            for s in &steps {
                match s {
                    Step::Deliver(i) => {
                        let r = &reports[i % reports.len()];
                        let before = booking.tools.iter().map(|t| t.booked_mm).collect::<Vec<_>>();
                        let m = mounted.clone();
                        let drafts = book(&mut booking, r, |t| m[t as usize].clone());
                        for (t, v) in r.iter().enumerate() {
                            let had = before.get(t).copied().unwrap_or(0.0);
                            if *v > had {
                                expected_g[t] += (v - had) * m[t].as_ref().map_or(0.0, |s| s.grams_per_mm);
                            }
                            max[t] = max[t].max(*v);
                        }
                        for d in drafts {
                            prop_assert!(d.grams >= 0.0 && d.mm > 0.0);
                            *charged.entry(d.spool_id).or_default() += d.grams;
                        }
                    }
                    Step::Swap(t, n, dense) => {
                        let gpm = if *dense && !one_density { 1.7 * GPM } else { GPM };
                        mounted[*t as usize] = Some(spool(&format!("s-{}{n}", t + 10), gpm));
                    }
                    Step::Unmount(t) => mounted[*t as usize] = None,
                }
            }
            for (t, &most) in max.iter().enumerate() {
                let tb = booking.tools.get(t);
                let booked = tb.map_or(0.0, |x| x.booked_mm);
                prop_assert!((booked - most).abs() < 1e-6, "tool {t}: booked {booked} mm, max {most}");
                let seg_mm: f64 = tb.map_or(0.0, |x| x.segments.iter().map(|s| s.mm).sum());
                prop_assert!((seg_mm - most).abs() < 1e-6, "segments cover every mm once");
            }
            let total: f64 = charged.values().sum();
            let want: f64 = expected_g.iter().sum();
            prop_assert!((total - want).abs() < 1e-6, "charged {total} g, expected {want} g");
            prop_assert!((booking.grams() - total).abs() < 1e-6, "booking and ledger rows agree");
            let all_mounted = steps.iter().all(|s| !matches!(s, Step::Unmount(_)));
            if one_density && all_mounted {
                let grams_of_max = (max[0] + max[1]) * GPM;
                prop_assert!((total - grams_of_max).abs() < 1e-6, "{total} g vs grams(max) {grams_of_max} g");
            }
            // Replaying every report once more books nothing.
            for r in &reports {
                let m = mounted.clone();
                let d = book(&mut booking, r, |t| m[t as usize].clone());
                prop_assert!(d.is_empty() || r.iter().zip(&max).any(|(v, mx)| v > mx));
            }
        }
    }
}

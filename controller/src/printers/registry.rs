//! The printer registry: facts an operator declares about a printer (model, build volume,
//! tools, tags, location, power, auto-eject, maintenance flag).

use crate::farm::{Farm, FarmError};
use crate::printers::fleet::{PrinterView, ToolSlot};
use serde::Deserialize;

/// `PATCH /api/v1/printers/{id}/profile`: registry facts an operator declares.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    pub model: Option<String>,
    pub build_volume_mm: Option<[f64; 3]>,
    pub tools: Option<Vec<ToolSlot>>,
    pub tags: Option<Vec<String>>,
    pub location: Option<String>,
    pub power_w: Option<f64>,
    pub auto_eject: Option<bool>,
    pub maintenance: Option<bool>,
}

impl Farm {
    pub async fn set_profile(&self, id: &str, p: ProfilePatch) -> Result<PrinterView, FarmError> {
        let bad = |s: &str| Err(FarmError::Invalid(s.to_string()));
        if let Some(v) = p.build_volume_mm
            && v.iter()
                .any(|x| !(x.is_finite() && *x > 0.0 && *x < 10_000.0))
        {
            return bad("build_volume_mm is [x, y, z] in mm, each above 0, e.g. [250, 210, 210]");
        }
        if let Some(tools) = &p.tools {
            if tools.len() > 16 {
                return bad("at most 16 tools");
            }
            if tools.iter().any(|t| {
                t.nozzle_mm
                    .is_some_and(|n| !(n.is_finite() && (0.1..=2.0).contains(&n)))
            }) {
                return bad("a tool's nozzle_mm is 0.1 to 2.0, e.g. 0.4");
            }
        }
        if p.power_w.is_some_and(|w| !(w.is_finite() && w >= 0.0)) {
            return bad("power_w is watts, 0 or more");
        }
        let id = id.to_string();
        self.write(move |farm, s| {
            let e =
                s.m.printers
                    .get(&id)
                    .ok_or_else(|| FarmError::NoPrinter(id.clone()))?;
            let rec = apply_profile(e.rec.clone(), p);
            s.put(|_, tx| tx.put_printer(&rec));
            let e = s.m.printers.get_mut(&id).expect("checked above");
            e.rec = rec;
            farm.announce_printer(e);
            farm.kick.notify_one();
            Ok(e.view.clone())
        })
        .await
    }
}

/// A printer's record with an operator's declared facts over it (pure; checked before).
pub(crate) fn apply_profile(
    mut rec: crate::printers::fleet::PrinterRecord,
    p: ProfilePatch,
) -> crate::printers::fleet::PrinterRecord {
    rec.model = p.model.or(rec.model);
    rec.build_volume_mm = p.build_volume_mm.or(rec.build_volume_mm);
    rec.tools = p.tools.unwrap_or(rec.tools);
    rec.tags = p.tags.unwrap_or(rec.tags);
    rec.location = p.location.or(rec.location);
    rec.power_w = p.power_w.or(rec.power_w);
    rec.auto_eject = p.auto_eject.unwrap_or(rec.auto_eject);
    rec.maintenance = p.maintenance.unwrap_or(rec.maintenance);
    rec
}

/// The operator confirms the bed is empty: the printer's record after it, or why not (pure).
pub(crate) fn decide_bed_clear(
    rec: &crate::printers::fleet::PrinterRecord,
) -> Result<crate::printers::fleet::PrinterRecord, String> {
    if !rec.awaiting_clear {
        return Err(format!(
            "printer {} is not waiting for its bed to be cleared",
            rec.id
        ));
    }
    let mut rec = rec.clone();
    rec.awaiting_clear = false;
    Ok(rec)
}

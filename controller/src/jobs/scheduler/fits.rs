//! The hard constraints of [`super::plan`]: may this printer ever print this job (material,
//! colour, nozzle, build volume, maintenance, pin, filament on the spool)? Time is not
//! considered here.

use super::{ChangerSlot, JobInput, PrinterInput, Rules};
use farm_protocol::materials::same_colour;

/// Why a printer cannot take a job (ignoring whether it is free right now).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Misfit {
    #[error("blocked by maintenance")]
    Blocked,
    #[error("pinned to another printer")]
    Pinned,
    #[error("tool {tool} has no filament declared loaded")]
    NothingLoaded { tool: usize },
    #[error("tool {tool} has {have}, the job needs {want}")]
    Material {
        tool: usize,
        have: String,
        want: String,
    },
    #[error("tool {tool} has a {have:?} mm nozzle, the job needs {want} mm")]
    Nozzle {
        tool: usize,
        have: Option<f64>,
        want: f64,
    },
    #[error("the part ({size:?} mm) does not fit the build volume {volume:?} mm")]
    TooBig { size: [f64; 3], volume: [f64; 3] },
    #[error("tool {tool} holds {have:.0} g, the job needs {need:.0} g with margin")]
    NotEnough { tool: usize, have: f64, need: f64 },
    #[error("no AMS tray holds {want} (it holds {have})")]
    NoTray { want: String, have: String },
}

fn same(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Grams the spool must hold for `grams` of print.
pub fn needed_g(grams: f64, rules: &Rules) -> f64 {
    grams * (1.0 + rules.margin_fraction) + rules.margin_g
}

/// The hard constraints that do not depend on time: may `p` ever print `j`?
/// `remaining` overrides the spools' remaining grams (the timeline spends them).
pub fn fits(p: &PrinterInput, j: &JobInput, rules: &Rules) -> Result<(), Misfit> {
    fits_static(p, j)?;
    fits_quantity(p, j, rules, None)
}

fn fits_static(p: &PrinterInput, j: &JobInput) -> Result<(), Misfit> {
    fits_size(p, j)?;
    fits_class(p, j)
}

pub(super) fn fits_size(p: &PrinterInput, j: &JobInput) -> Result<(), Misfit> {
    if let (Some(size), Some(volume)) = (j.size_mm, p.build_volume_mm)
        && size.iter().zip(volume).any(|(s, v)| *s > v + 0.01)
    {
        return Err(Misfit::TooBig { size, volume });
    }
    Ok(())
}

/// The static constraints shared by every job of a [`Class`] (all but size).
pub(super) fn fits_class(p: &PrinterInput, j: &JobInput) -> Result<(), Misfit> {
    if p.blocked {
        return Err(Misfit::Blocked);
    }
    if j.pinned.as_deref().is_some_and(|pin| pin != p.id) {
        return Err(Misfit::Pinned);
    }
    let constrained = j.material.is_some() || j.colour.is_some() || j.nozzle_mm.is_some();
    if !constrained {
        return Ok(());
    }
    for (tool, g) in j.grams.iter().enumerate() {
        if *g <= 0.0 {
            continue;
        }
        // With a changer, a job's tool is a filament slot fed through the one nozzle.
        let t = p
            .tools
            .get(tool)
            .or_else(|| p.trays.first().and(p.tools.first()));
        if let Some(want) = j.nozzle_mm {
            let have = t.and_then(|t| t.nozzle_mm);
            if have.is_none_or(|h| (h - want).abs() > 0.001) {
                return Err(Misfit::Nozzle { tool, have, want });
            }
        }
        if j.material.is_none() && j.colour.is_none() {
            continue;
        }
        if !p.trays.is_empty() {
            if !p.trays.iter().any(|s| holds(s, j)) {
                return Err(Misfit::NoTray {
                    want: wanted(j),
                    have: p
                        .trays
                        .iter()
                        .map(|s| format!("{} {}", s.loaded.material, s.loaded.colour))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            continue;
        }
        let Some(l) = t.and_then(|t| t.loaded.as_ref()) else {
            return Err(Misfit::NothingLoaded { tool });
        };
        let material_ok = j.material.as_deref().is_none_or(|m| same(m, &l.material));
        let colour_ok = j.colour.as_deref().is_none_or(|c| same(c, &l.colour));
        if !(material_ok && colour_ok) {
            return Err(Misfit::Material {
                tool,
                have: format!("{} {}", l.material, l.colour),
                want: wanted(j),
            });
        }
    }
    Ok(())
}

fn wanted(j: &JobInput) -> String {
    format!(
        "{} {}",
        j.material.as_deref().unwrap_or("any material"),
        j.colour.as_deref().unwrap_or("any colour")
    )
}

/// Does a changer slot hold the job's material and colour? The colour may match the
/// inventory's name for the spool or the colour the printer reports.
fn holds(s: &ChangerSlot, j: &JobInput) -> bool {
    let material_ok = j
        .material
        .as_deref()
        .is_none_or(|m| same(m, &s.loaded.material));
    let colour_ok = j.colour.as_deref().is_none_or(|c| {
        same_colour(c, &s.loaded.colour)
            || s.reported_colour
                .as_deref()
                .is_some_and(|r| same_colour(c, r))
    });
    material_ok && colour_ok
}

/// The changer slots of `p` that hold the job's material and colour: those matched to an
/// inventory spool first (most grams first), then the rest by slot. What the assignment
/// tells the agent to map the job onto.
pub fn matching_trays(p: &PrinterInput, j: &JobInput) -> Vec<u32> {
    let mut fit: Vec<&ChangerSlot> = p.trays.iter().filter(|s| holds(s, j)).collect();
    fit.sort_by(|a, b| {
        let g = |s: &ChangerSlot| s.loaded.remaining_g.unwrap_or(f64::NEG_INFINITY);
        g(b).total_cmp(&g(a)).then(a.slot.cmp(&b.slot))
    });
    fit.iter().map(|s| s.slot).collect()
}

pub(super) fn fits_quantity(
    p: &PrinterInput,
    j: &JobInput,
    rules: &Rules,
    remaining: Option<&[Option<f64>]>,
) -> Result<(), Misfit> {
    if !p.trays.is_empty() {
        // The fullest matching tray must hold the whole job; a tray of unknown weight (no
        // inventory spool matched to it) is not checked. Not spent along the timeline.
        let total: f64 = j.grams.iter().filter(|g| **g > 0.0).sum();
        let mut have: Option<f64> = None;
        for s in p.trays.iter().filter(|s| holds(s, j)) {
            match s.loaded.remaining_g {
                None => return Ok(()),
                Some(g) => have = Some(have.map_or(g, |h: f64| h.max(g))),
            }
        }
        let need = needed_g(total, rules);
        return match have {
            Some(have) if have < need && total > 0.0 => Err(Misfit::NotEnough {
                tool: 0,
                have,
                need,
            }),
            _ => Ok(()),
        };
    }
    for (tool, g) in j.grams.iter().enumerate() {
        if *g <= 0.0 {
            continue;
        }
        let have = match remaining {
            Some(r) => r.get(tool).copied().flatten(),
            None => p
                .tools
                .get(tool)
                .and_then(|t| t.loaded.as_ref())
                .and_then(|l| l.remaining_g),
        };
        let need = needed_g(*g, rules);
        if let Some(have) = have
            && have < need
        {
            return Err(Misfit::NotEnough { tool, have, need });
        }
    }
    Ok(())
}

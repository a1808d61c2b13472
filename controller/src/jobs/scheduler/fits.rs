//! The hard constraints of [`super::plan`]: may this printer ever print this job (material,
//! colour, nozzle, build volume, maintenance, pin, filament on the spool)? Time is not
//! considered here.

use super::{JobInput, PrinterInput, Rules};

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
        let t = p.tools.get(tool);
        if let Some(want) = j.nozzle_mm {
            let have = t.and_then(|t| t.nozzle_mm);
            if have.is_none_or(|h| (h - want).abs() > 0.001) {
                return Err(Misfit::Nozzle { tool, have, want });
            }
        }
        if j.material.is_none() && j.colour.is_none() {
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
                want: format!(
                    "{} {}",
                    j.material.as_deref().unwrap_or("any material"),
                    j.colour.as_deref().unwrap_or("any colour")
                ),
            });
        }
    }
    Ok(())
}

pub(super) fn fits_quantity(
    p: &PrinterInput,
    j: &JobInput,
    rules: &Rules,
    remaining: Option<&[Option<f64>]>,
) -> Result<(), Misfit> {
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

//! `farm-agent analyze FILE [--plate N] [--printer-model M]`: what the analyzer makes of a
//! G-code file (ASCII or
//! Prusa binary `.bgcode`, told apart by its first bytes) or of one plate of a `.gcode.3mf`
//! (read in place), as a table for people or JSON for scripts —
//! filament per tool (mm and g), our time estimate beside the slicer's, layers, bounds, and
//! what was skipped; for a 3MF plate also the slicer's own per-plate figures.

use anyhow::Context;
use farm_protocol::gcode::{
    Analysis, Limits, Metadata, analyze_seekable_with, filament_grams, read_metadata,
    read_metadata_seekable,
};
use farm_protocol::materials::DEFAULT_DENSITY_G_CM3;
use farm_protocol::threemf::{PlateFacts, ThreeMf, looks_like_zip};
use std::fmt::Write;
use std::io::{BufReader, Read};
use std::path::Path;

const DEFAULT_DIAMETER: f64 = 1.75;

/// The analyzer's starting limits: the printer-model profile named (`bambu-p1`, `C12`, `MK4S`;
/// see `firmware-profiles/printers/`), else the defaults. The file's own statements win.
fn base_limits(model: Option<&str>) -> anyhow::Result<Limits> {
    farm_agent::model_profile::base_limits(model).map_err(anyhow::Error::msg)
}

pub fn run(file: &Path, plate: Option<u32>, model: Option<&str>, json: bool) -> anyhow::Result<()> {
    let base = base_limits(model)?;
    let open =
        || std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()));
    let mut head = [0u8; 4];
    let got = open()?.read(&mut head).context("reading the file")?;
    if looks_like_zip(&head[..got]) {
        return run_3mf(file, plate, base, json);
    }
    if plate.is_some() {
        anyhow::bail!(
            "{} is plain G-code, which has no plates; --plate is for .gcode.3mf files",
            file.display()
        );
    }
    let t0 = std::time::Instant::now();
    let analysis = analyze_seekable_with(BufReader::with_capacity(1 << 16, open()?), base)
        .context("reading the file")?;
    let secs = t0.elapsed().as_secs_f64();
    let meta = read_metadata_seekable(BufReader::with_capacity(1 << 16, open()?))
        .context("reading the file")?;
    print_out(file, &analysis, &meta, None, secs, json)
}

/// One plate of a `.gcode.3mf`, read from the zip without extracting it.
fn run_3mf(file: &Path, plate: Option<u32>, base: Limits, json: bool) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let f = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut archive = ThreeMf::open(BufReader::with_capacity(1 << 16, f))
        .with_context(|| format!("cannot read {}", file.display()))?;
    let n = archive.choose_plate(plate)?;
    let plate_gcode = archive.plate(n)?;
    let analysis = analyze_seekable_with(BufReader::with_capacity(1 << 16, plate_gcode), base)
        .map_err(farm_protocol::threemf::ThreeMfError::from)
        .with_context(|| format!("reading plate {n}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let meta = read_metadata(BufReader::with_capacity(1 << 16, archive.plate(n)?))
        .map_err(farm_protocol::threemf::ThreeMfError::from)
        .with_context(|| format!("reading plate {n}"))?;
    let facts = archive.plate_facts(n)?;
    let plates = archive.plates().to_vec();
    print_out(file, &analysis, &meta, Some((&facts, &plates)), secs, json)
}

fn print_out(
    file: &Path,
    analysis: &Analysis,
    meta: &Metadata,
    plate: Option<(&PlateFacts, &[u32])>,
    secs: f64,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        let mut meta_json = serde_json::to_value(meta)?;
        // Thumbnails are listed by size here; their bytes are for the dashboard, not a terminal.
        if let Some(t) = meta_json.get_mut("thumbnails") {
            *t = thumbs_json(&meta.thumbnails);
        }
        let mut out = serde_json::json!({ "file": file.display().to_string(), "analysis": analysis, "metadata": meta_json, "grams": grams(analysis, meta) });
        if let Some((facts, plates)) = plate {
            let mut facts_json = serde_json::to_value(facts)?;
            facts_json["thumbnails"] = thumbs_json(&facts.thumbnails);
            out["plate"] = facts.plate.into();
            out["plates"] = serde_json::to_value(plates)?;
            out["plate_facts"] = facts_json;
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let mut t = table(file, analysis, meta, secs);
        if let Some((facts, plates)) = plate {
            t.push_str(&plate_table(facts, plates));
        }
        print!("{t}");
    }
    Ok(())
}

fn thumbs_json(t: &[farm_protocol::gcode::Thumbnail]) -> serde_json::Value {
    t.iter()
        .map(|t| serde_json::json!({"format": t.format, "width": t.width, "height": t.height, "bytes": t.data.len()}))
        .collect()
}

/// What the slicer wrote beside the plate's G-code (`slice_info.config`, previews).
fn plate_table(f: &PlateFacts, plates: &[u32]) -> String {
    let mut o = String::new();
    let row = |o: &mut String, k: &str, v: String| {
        let _ = writeln!(o, "{k:<22} {v}");
    };
    let all: Vec<String> = plates.iter().map(u32::to_string).collect();
    row(
        &mut o,
        "plate",
        format!("{} (plates: {})", f.plate, all.join(", ")),
    );
    if let Some(s) = &f.slice {
        if let Some(p) = s.prediction_s {
            row(&mut o, "slicer prediction", hms(p));
        }
        if let Some(w) = s.weight_g {
            row(&mut o, "slicer weight", format!("{w:.2} g"));
        }
        if let Some(m) = &s.printer_model_id {
            row(&mut o, "printer model", m.clone());
        }
        for fl in &s.filaments {
            row(
                &mut o,
                &format!("slicer filament {}", fl.id),
                format!(
                    "{} {}  {:.2} m, {:.2} g",
                    fl.material.as_deref().unwrap_or("?"),
                    fl.color.as_deref().unwrap_or(""),
                    fl.used_m.unwrap_or(0.0),
                    fl.used_g.unwrap_or(0.0)
                ),
            );
        }
    }
    if !f.thumbnails.is_empty() {
        let t: Vec<String> = f
            .thumbnails
            .iter()
            .map(|t| format!("{}x{}", t.width, t.height))
            .collect();
        row(&mut o, "plate previews", t.join(", "));
    }
    o
}

fn grams(a: &Analysis, m: &Metadata) -> Vec<f64> {
    a.filament_mm
        .iter()
        .enumerate()
        .map(|(t, mm)| {
            let d = m
                .filament_diameters_mm
                .get(t)
                .or(m.filament_diameters_mm.first())
                .copied()
                .unwrap_or(DEFAULT_DIAMETER);
            let rho = m
                .filament_densities_g_cm3
                .get(t)
                .or(m.filament_densities_g_cm3.first())
                .copied()
                .unwrap_or(DEFAULT_DENSITY_G_CM3);
            filament_grams(*mm, d, rho)
        })
        .collect()
}

fn hms(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}h {:02}m {:02}s", s / 3600, s / 60 % 60, s % 60)
}

fn table(file: &Path, a: &Analysis, m: &Metadata, secs: f64) -> String {
    let mut o = String::new();
    let row = |o: &mut String, k: &str, v: String| {
        let _ = writeln!(o, "{k:<22} {v}");
    };
    row(&mut o, "file", file.display().to_string());
    row(
        &mut o,
        "size",
        format!("{} bytes, {} lines", a.bytes, a.lines),
    );
    if let Some(s) = &m.slicer {
        row(
            &mut o,
            "slicer",
            format!("{} {}", s.name, s.version.as_deref().unwrap_or("")),
        );
    }
    let g = grams(a, m);
    for (t, mm) in a.filament_mm.iter().enumerate() {
        let stated = m
            .filament_mm
            .get(t)
            .map(|s| format!("   (slicer: {s:.2} mm)"))
            .unwrap_or_default();
        row(
            &mut o,
            &format!("filament tool {t}"),
            format!("{mm:.2} mm, {:.2} g{stated}", g[t]),
        );
    }
    let slicer_time = m.estimated_time_s.or(m.model_time_s);
    let cmp = slicer_time
        .map(|s| {
            format!(
                "   (slicer: {}, {:+.1} %)",
                hms(s),
                (a.estimated_s - s) / s * 100.0
            )
        })
        .unwrap_or_default();
    row(&mut o, "print time", format!("{}{cmp}", hms(a.estimated_s)));
    row(&mut o, "heat-up (extra)", hms(a.heat_s));
    row(&mut o, "first layer", hms(a.first_layer_s));
    row(&mut o, "layers", a.layers.to_string());
    if let Some(b) = a.bounds {
        row(
            &mut o,
            "extruded bounds (mm)",
            format!(
                "X {:.1}..{:.1}  Y {:.1}..{:.1}  Z {:.2}..{:.2}",
                b.min[0], b.max[0], b.min[1], b.max[1], b.min[2], b.max[2]
            ),
        );
    }
    if !m.thumbnails.is_empty() {
        let t: Vec<String> = m
            .thumbnails
            .iter()
            .map(|t| format!("{}x{} {:?}", t.width, t.height, t.format))
            .collect();
        row(&mut o, "thumbnails", t.join(", "));
    }
    if a.overlong_lines + a.binary_lines > 0 {
        row(
            &mut o,
            "skipped lines",
            format!("{} overlong, {} binary", a.overlong_lines, a.binary_lines),
        );
    }
    row(
        &mut o,
        "analysed in",
        format!(
            "{:.3} s ({:.0} MB/s)",
            secs,
            a.bytes as f64 / 1e6 / secs.max(1e-9)
        ),
    );
    o
}

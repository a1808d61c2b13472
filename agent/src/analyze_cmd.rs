//! `farm-agent analyze FILE`: what the analyzer makes of a G-code file, as a table for people
//! or JSON for scripts — filament per tool (mm and g), our time estimate beside the slicer's,
//! layers, bounds, and what was skipped.

use anyhow::Context;
use farm_protocol::gcode::{Analysis, Metadata, analyze_seekable, filament_grams, read_metadata};
use farm_protocol::materials::DEFAULT_DENSITY_G_CM3;
use std::fmt::Write;
use std::io::BufReader;
use std::path::Path;

const DEFAULT_DIAMETER: f64 = 1.75;

pub fn run(file: &Path, json: bool) -> anyhow::Result<()> {
    let open =
        || std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()));
    let t0 = std::time::Instant::now();
    let analysis =
        analyze_seekable(BufReader::with_capacity(1 << 16, open()?)).context("reading the file")?;
    let secs = t0.elapsed().as_secs_f64();
    let meta =
        read_metadata(BufReader::with_capacity(1 << 16, open()?)).context("reading the file")?;
    if json {
        let mut meta_json = serde_json::to_value(&meta)?;
        // Thumbnails are listed by size here; their bytes are for the dashboard, not a terminal.
        if let Some(t) = meta_json.get_mut("thumbnails") {
            *t = meta.thumbnails.iter().map(|t| serde_json::json!({"format": t.format, "width": t.width, "height": t.height, "bytes": t.data.len()})).collect();
        }
        let out = serde_json::json!({ "file": file.display().to_string(), "analysis": analysis, "metadata": meta_json, "grams": grams(&analysis, &meta) });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", table(file, &analysis, &meta, secs));
    }
    Ok(())
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

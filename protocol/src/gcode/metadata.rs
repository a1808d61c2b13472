//! What the slicer wrote about its own file: name and version, its time and filament estimates,
//! material and temperature settings, object names, progress markers and thumbnails.
//!
//! Streaming and pure: [`MetadataReader`] is fed one line at a time (split by the same
//! [`LineSplitter`](super::LineSplitter) as everything else) and keeps only what it extracts, so
//! a header-plus-footer file of any size costs bounded memory: strings are cut at
//! [`MAX_TEXT`] bytes, per-extruder lists at [`MAX_LIST`] entries, object names at
//! [`MAX_OBJECTS`], thumbnails as [`super::thumbnails`] bounds them.
//!
//! Everything is an estimate stated by the slicer (protocols.md §4.4), never recomputed here;
//! a field the file does not state stays `None`/empty. Numbers are never NaN or infinite.
//! A value stated twice (PrusaSlicer 2.8 repeats its estimates in header and footer) is
//! replaced, not added.

use super::thumbnails::{Thumbnail, ThumbnailCollector};
use serde::{Deserialize, Serialize};

/// Longest string kept (names, colours, types); longer ones are cut at a char boundary.
pub const MAX_TEXT: usize = 256;
/// Most entries kept in a per-extruder list.
pub const MAX_LIST: usize = 64;
/// Most distinct object names kept.
pub const MAX_OBJECTS: usize = 1024;

/// The slicer that wrote the file, e.g. `PrusaSlicer` `2.6.1+MacOS-x64`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slicer {
    pub name: String,
    pub version: Option<String>,
}

/// A bounding box the slicer states (Cura `;MINX:`…`;MAXZ:`, ideaMaker `;Bounding Box:`), mm.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatedBounds {
    pub min: [f64; 3],
    pub max: [f64; 3],
}

/// Everything a slicer states about its file. All fields optional; lists are per extruder
/// (index = tool) unless said otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub slicer: Option<Slicer>,
    /// G-code flavour as stated (Cura `;FLAVOR:`, PrusaSlicer `gcode_flavor`).
    pub flavor: Option<String>,
    pub printer_model: Option<String>,
    /// Total print time, s: normal mode (PrusaSlicer family), "total estimated time"
    /// (Orca/Bambu), `;TIME:` (Cura), build/print time (Simplify3D, ideaMaker, legacy Cura).
    pub estimated_time_s: Option<f64>,
    /// PrusaSlicer's silent (stealth) mode estimate, where given.
    pub estimated_time_silent_s: Option<f64>,
    /// Orca/Bambu "model printing time": the total without the start/end sequences.
    pub model_time_s: Option<f64>,
    pub first_layer_time_s: Option<f64>,
    pub first_layer_time_silent_s: Option<f64>,
    pub filament_mm: Vec<f64>,
    pub filament_cm3: Vec<f64>,
    pub filament_g: Vec<f64>,
    pub filament_total_g: Option<f64>,
    pub filament_cost: Vec<f64>,
    pub filament_total_cost: Option<f64>,
    pub filament_types: Vec<String>,
    pub filament_colours: Vec<String>,
    pub filament_diameters_mm: Vec<f64>,
    /// g/cm³ (ideaMaker's kg/m³ are converted).
    pub filament_densities_g_cm3: Vec<f64>,
    pub nozzle_diameters_mm: Vec<f64>,
    pub nozzle_temps_c: Vec<f64>,
    pub first_layer_nozzle_temps_c: Vec<f64>,
    pub bed_temp_c: Option<f64>,
    pub first_layer_bed_temp_c: Option<f64>,
    pub layer_height_mm: Option<f64>,
    pub first_layer_height_mm: Option<f64>,
    pub layer_count: Option<u32>,
    pub max_z_mm: Option<f64>,
    pub stated_bounds: Option<StatedBounds>,
    /// Distinct object names in order of appearance (`EXCLUDE_OBJECT_DEFINE NAME=`, `M486 A`,
    /// `; printing object`, PrusaSlicer `objects_info`, Cura `;MESH:`, ideaMaker `;PRINTING:`).
    pub objects: Vec<String>,
    /// `M73` progress commands in the body (0 = the printer shows no slicer progress).
    pub m73_markers: u64,
    pub has_m73_progress: bool,
    pub thumbnails: Vec<Thumbnail>,
    /// Thumbnail blocks dropped: broken base64, no end, wrong magic or size, over the budget.
    pub thumbnails_skipped: u32,
}

/// Reads a whole stream's metadata (lines split by the shared [`LineSplitter`](super::LineSplitter)).
pub fn read_metadata(r: impl std::io::BufRead) -> std::io::Result<Metadata> {
    let mut reader = MetadataReader::default();
    super::lines::for_each_line(r, |content, _| {
        if let super::Content::Text(t) = content {
            reader.line(t);
        }
    })?;
    Ok(reader.finish())
}

/// Parses a slicer duration: `1d 2h 3m 4s`, `38m 43s`, `52s`, `0 hours 26 minutes`,
/// `33 minutes`, or a bare number of seconds (`1958`, `3485.1`). `None` for anything else.
pub fn parse_duration(text: &str) -> Option<f64> {
    let t = text.trim();
    if let Some(v) = number(t) {
        return (v >= 0.0).then_some(v);
    }
    let mut total = 0.0;
    let mut parts = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let v: f64 = rest[..n_end].parse().ok()?;
        rest = rest[n_end..].trim_start();
        let u_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = match rest[..u_end].to_ascii_lowercase().as_str() {
            "d" | "day" | "days" => 86_400.0,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3_600.0,
            "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            _ => return None,
        };
        total += v * unit;
        parts += 1;
        rest = rest[u_end..].trim_start_matches([' ', ',', '\t']);
    }
    (parts > 0 && total.is_finite()).then_some(total)
}

type ListField = fn(&mut Metadata) -> &mut Vec<f64>;
type NumberField = fn(&mut Metadata) -> &mut Option<f64>;
type TextListField = fn(&mut Metadata) -> &mut Vec<String>;

// Tables: one row per field, its keys as each slicer spells them (kept on one line each).
/// Per-extruder number lists (`1.75,1.75` or `220;220`), replaced when stated again.
#[rustfmt::skip]
const LISTS: &[(&[&str], ListField)] = &[
    (&["filament used [mm]", "total filament length [mm]"], |m| &mut m.filament_mm),
    (&["filament used [cm3]"], |m| &mut m.filament_cm3),
    (&["filament used [g]"], |m| &mut m.filament_g),
    (&["filament cost"], |m| &mut m.filament_cost),
    (&["filament_diameter", "filamentDiameter"], |m| &mut m.filament_diameters_mm),
    (&["filament_density", "filamentDensity"], |m| &mut m.filament_densities_g_cm3),
    (&["nozzle_diameter", "extruderDiameter", "Nozzle diameter"], |m| &mut m.nozzle_diameters_mm),
    (&["temperature", "nozzle_temperature"], |m| &mut m.nozzle_temps_c),
    (&["first_layer_temperature", "nozzle_temperature_initial_layer"],
        |m| &mut m.first_layer_nozzle_temps_c),
];

/// Durations ([`parse_duration`]).
#[rustfmt::skip]
const DURATIONS: &[(&[&str], NumberField)] = &[
    (&["estimated printing time (normal mode)", "total estimated time", "Print time", "Print Time",
        "Build time", "Build Time"], |m| &mut m.estimated_time_s),
    (&["estimated printing time (silent mode)"], |m| &mut m.estimated_time_silent_s),
    (&["model printing time"], |m| &mut m.model_time_s),
    (&["estimated first layer printing time (normal mode)"], |m| &mut m.first_layer_time_s),
    (&["estimated first layer printing time (silent mode)"], |m| &mut m.first_layer_time_silent_s),
];

/// Single numbers, possibly followed by a unit (`4.98 g (0.01 lb)`).
#[rustfmt::skip]
const NUMBERS: &[(&[&str], NumberField)] = &[
    (&["total filament used [g]", "total filament weight [g]", "Plastic weight", "Material Weight"],
        |m| &mut m.filament_total_g),
    (&["total filament cost", "Material cost"], |m| &mut m.filament_total_cost),
    (&["max_z_height", "max_layer_z"], |m| &mut m.max_z_mm),
    (&["Layer height", "layer_height", "layerHeight"], |m| &mut m.layer_height_mm),
];

/// Per-extruder strings (`PLA;PETG`, `#FF6A13;#F5FF00`).
#[rustfmt::skip]
const TEXT_LISTS: &[(&[&str], TextListField)] = &[
    (&["filament_type", "Filament type", "printMaterial"], |m| &mut m.filament_types),
    (&["filament_colour"], |m| &mut m.filament_colours),
];

/// The field a table gives for key `k`.
fn field<F: Copy>(table: &[(&[&str], F)], k: &str) -> Option<F> {
    table
        .iter()
        .find(|(keys, _)| keys.contains(&k))
        .map(|(_, f)| *f)
}

/// Feed every line (without its newline) in order, then [`MetadataReader::finish`].
#[derive(Debug, Default)]
pub struct MetadataReader {
    meta: Metadata,
    line_no: u64,
    thumbs: ThumbnailCollector,
    /// Line of the last Slic3r 1.x `; filament used = …mm` line: a new run restarts the list.
    slic3r_filament_line: u64,
    /// `firstLayerHeightPercentage` (Simplify3D) or `first_layer_height = 75%` (Slic3r).
    first_layer_percent: Option<f64>,
    cura_bounds: [Option<f64>; 6],
    /// Orca/Bambu give bed temperatures per plate type; the plate in use picks one at the end.
    bed_type: Option<String>,
    plate_temps: Vec<(String, f64)>,
    s3d_heated_bed: Vec<f64>,
    s3d_temps: Vec<f64>,
}

impl MetadataReader {
    pub fn line(&mut self, text: &[u8]) {
        self.line_no += 1;
        let t = text.trim_ascii();
        if let Some(rest) = t.strip_prefix(b";") {
            match std::str::from_utf8(rest) {
                Ok(c) => self.comment(c.trim()),
                Err(_) => self.thumbs.mark_broken(),
            }
            return;
        }
        if t.is_empty() {
            return;
        }
        // Code inside a thumbnail block means the block never ended properly.
        self.thumbs.interrupt();
        self.command(t);
    }

    pub fn finish(mut self) -> Metadata {
        (self.meta.thumbnails, self.meta.thumbnails_skipped) =
            std::mem::take(&mut self.thumbs).finish();
        let m = &mut self.meta;
        if let Some(p) = self.first_layer_percent
            && m.first_layer_height_mm.is_none()
        {
            m.first_layer_height_mm = m.layer_height_mm.map(|h| h * p / 100.0);
        }
        if let [Some(x0), Some(y0), Some(z0), Some(x1), Some(y1), Some(z1)] = self.cura_bounds {
            m.stated_bounds = Some(StatedBounds {
                min: [x0, y0, z0],
                max: [x1, y1, z1],
            });
        }
        if m.max_z_mm.is_none() {
            m.max_z_mm = m.stated_bounds.map(|b| b.max[2]);
        }
        // A slicer without a density writes 0 g / density 0: that is "unknown", not "weightless".
        for list in [&mut m.filament_g, &mut m.filament_densities_g_cm3] {
            if list.iter().all(|v| *v == 0.0) {
                list.clear();
            }
        }
        m.filament_total_g = m.filament_total_g.filter(|g| *g > 0.0);
        if let Some(bed) = &self.bed_type {
            let plate = plate_key(bed);
            let find = |k: &str| {
                self.plate_temps
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| *v)
            };
            if let Some(p) = plate {
                m.bed_temp_c = m.bed_temp_c.or(find(p));
                m.first_layer_bed_temp_c = m
                    .first_layer_bed_temp_c
                    .or(find(&format!("{p}_initial_layer")));
            }
        }
        // Simplify3D lists one setpoint per heater with a heated-bed flag beside it.
        if self.s3d_temps.len() == self.s3d_heated_bed.len() {
            for (t, bed) in self.s3d_temps.iter().zip(&self.s3d_heated_bed) {
                if *bed != 0.0 {
                    m.bed_temp_c = m.bed_temp_c.or(Some(*t));
                } else if m.nozzle_temps_c.len() < MAX_LIST {
                    m.nozzle_temps_c.push(*t);
                }
            }
        }
        m.has_m73_progress = m.m73_markers > 0;
        self.meta
    }

    fn command(&mut self, code: &[u8]) {
        let upper = |n: usize| code.get(..n).map(<[u8]>::to_ascii_uppercase);
        if upper(3).as_deref() == Some(b"M73") && !code.get(3).is_some_and(u8::is_ascii_digit) {
            self.meta.m73_markers += 1;
        } else if upper(4).as_deref() == Some(b"M486")
            && !code.get(4).is_some_and(u8::is_ascii_digit)
        {
            // `M486 A<name>` names the object the next `M486 S<n>` refers to.
            let code = std::str::from_utf8(code).unwrap_or("");
            let args = code
                .split(';')
                .next()
                .and_then(|c| c.get(4..))
                .unwrap_or("");
            if let Some((_, name)) = args.split_once(['A', 'a']) {
                self.object(name);
            }
        } else if upper(21).as_deref() == Some(b"EXCLUDE_OBJECT_DEFINE") {
            // `NAME=cube_1` or `NAME="part 2"` (Klipper allows quoted values with spaces).
            let code = std::str::from_utf8(code).unwrap_or("");
            let upper = code.to_ascii_uppercase();
            if let Some(p) = upper.find(" NAME=") {
                let v = code.get(p + 6..).unwrap_or("");
                let name = match v.strip_prefix('"') {
                    Some(q) => q.split('"').next().unwrap_or(""),
                    None => v.split_whitespace().next().unwrap_or(""),
                };
                self.object(name);
            }
        }
    }

    fn comment(&mut self, c: &str) {
        if self.thumbs.in_block() {
            self.thumbs.line(c);
            return;
        }
        if self.thumbs.begin(c) || self.identify(c) {
            return;
        }
        if let Some(name) = c.strip_prefix("printing object ") {
            self.object(name);
            return;
        }
        // Orca/Bambu put two estimates on one line: `model printing time: …; total estimated time: …`.
        if c.starts_with("model printing time:") {
            for part in c.split(';') {
                self.key_value(part.trim());
            }
            return;
        }
        self.key_value(c);
    }

    /// Slicer name and version, from the first line that states one.
    fn identify(&mut self, c: &str) -> bool {
        let found = if let Some(r) = c.strip_prefix("generated by ") {
            // `PrusaSlicer 2.6.1+MacOS-x64 on 2023-10-31 at …`; the version is the last word.
            let r = r.split(" on ").next().unwrap_or(r).trim();
            Some(match r.rsplit_once(' ') {
                Some((n, v)) if v.starts_with(|c: char| c.is_ascii_digit()) => (n, Some(v)),
                _ => (r, None),
            })
        } else if let Some(r) = c.strip_prefix("Generated with Cura_SteamEngine ") {
            Some(("Cura", Some(r.trim())))
        } else if let Some((_, v)) = c.split_once("Simplify3D(R) Version ") {
            Some(("Simplify3D", Some(v.trim())))
        } else if let Some(r) = c.strip_prefix("Sliced by ideaMaker ") {
            Some(("ideaMaker", r.split(',').next().map(str::trim)))
        } else if let Some(r) = c.strip_prefix("BambuStudio ") {
            Some(("Bambu Studio", Some(r.trim())))
        } else if c.starts_with("Sliced at:") || c.starts_with("CURA_PROFILE_STRING:") {
            // Legacy Cura 15.x writes no version; these two lines are its signature.
            Some(("Cura legacy", None))
        } else {
            None
        };
        let Some((name, version)) = found else {
            return false;
        };
        if self.meta.slicer.is_none() {
            self.meta.slicer = Some(Slicer {
                name: text(name),
                version: version.filter(|v| !v.is_empty()).map(text),
            });
        }
        true
    }

    fn key_value(&mut self, c: &str) {
        let (k, v) = if let Some((k, v)) = c.split_once(" = ") {
            (k.trim(), v.trim())
        } else if let Some((k, v)) = c.split_once(':') {
            (k.trim(), v.trim())
        } else if let Some((k, v)) = c.split_once(',').filter(|(k, _)| !k.contains(' ')) {
            (k, v.trim()) // Simplify3D settings summary: `;   layerHeight,0.2`
        } else {
            return;
        };
        let m = &mut self.meta;
        if let Some(f) = field(LISTS, k) {
            if let Some(n) = numbers(v) {
                *f(m) = n;
            }
        } else if let Some(f) = field(DURATIONS, k) {
            *f(m) = parse_duration(v);
        } else if let Some(f) = field(NUMBERS, k) {
            *f(m) = leading_number(v);
        } else if let Some(f) = field(TEXT_LISTS, k) {
            *f(m) = v.split([';', ',']).take(MAX_LIST).map(text).collect();
        } else {
            self.special(k, v);
        }
    }

    /// Keys whose value needs more than one parse.
    fn special(&mut self, k: &str, v: &str) {
        let m = &mut self.meta;
        match k {
            // Cura may write `;TIME:` more than once (a placeholder first): the largest counts.
            "TIME" => {
                if let Some(t) = parse_duration(v) {
                    m.estimated_time_s = Some(m.estimated_time_s.map_or(t, |old| old.max(t)));
                }
            }
            // Slic3r 1.x: one `; filament used = 3487.6mm (8.4cm3)` line per extruder.
            "filament used" => {
                if self.line_no != self.slic3r_filament_line + 1 {
                    m.filament_mm.clear();
                    m.filament_cm3.clear();
                }
                self.slic3r_filament_line = self.line_no;
                if let Some(mm) = leading_number(v) {
                    push(&mut m.filament_mm, mm);
                }
                if let Some(cm3) = v.split_once('(').and_then(|(_, r)| leading_number(r)) {
                    push(&mut m.filament_cm3, cm3);
                }
            }
            // Cura: `0.992736m` (metres, one per extruder); legacy Cura: `2.88m 8.0g`.
            "Filament used" => {
                m.filament_mm.clear();
                for word in v.split([',', ' ']).map(str::trim) {
                    // `4.09264m` → parse `4.09264e3`: the decimal shift is exact, `× 1000` is not.
                    let mm = word
                        .strip_suffix('m')
                        .and_then(|w| number(&format!("{w}e3")));
                    if let Some(mm) = mm.filter(|_| !word.contains(['e', 'E'])) {
                        push(&mut m.filament_mm, mm);
                    } else if let Some(g) = word.strip_suffix('g').and_then(number) {
                        m.filament_total_g = Some(g);
                    }
                }
            }
            "Filament length" | "Material Length" => {
                m.filament_mm = leading_number(v).into_iter().collect();
            }
            "Plastic volume" => {
                m.filament_cm3 = leading_number(v)
                    .map(|mm3| mm3 / 1000.0)
                    .into_iter()
                    .collect();
            }
            "Bounding Box" => {
                let n: Vec<f64> = v.split_whitespace().filter_map(number).collect();
                if let [x0, x1, y0, y1, z0, z1] = n[..] {
                    m.stated_bounds = Some(StatedBounds {
                        min: [x0, y0, z0],
                        max: [x1, y1, z1],
                    });
                }
            }
            "MINX" | "MINY" | "MINZ" | "MAXX" | "MAXY" | "MAXZ" => {
                let axes = ["MINX", "MINY", "MINZ", "MAXX", "MAXY", "MAXZ"];
                if let Some(i) = axes.iter().position(|a| *a == k) {
                    self.cura_bounds[i] = number(v);
                }
            }
            "LAYER_COUNT" | "Layer count" | "total layer number" => m.layer_count = v.parse().ok(),
            "first_layer_height" | "initial_layer_print_height" => match v.strip_suffix('%') {
                Some(p) => self.first_layer_percent = number(p),
                None => m.first_layer_height_mm = number(v),
            },
            "firstLayerHeightPercentage" => self.first_layer_percent = number(v),
            "Basic settings" => {
                let h = v.split_once("Layer height:").map(|(_, r)| r);
                if let Some(h) = h.and_then(leading_number) {
                    m.layer_height_mm = Some(h);
                }
            }
            "bed_temperature" => m.bed_temp_c = first_number(v),
            "first_layer_bed_temperature" => m.first_layer_bed_temp_c = first_number(v),
            "curr_bed_type" => self.bed_type = Some(text(v)),
            "temperatureSetpointTemperatures" => self.s3d_temps = numbers(v).unwrap_or_default(),
            "temperatureHeatedBed" => self.s3d_heated_bed = numbers(v).unwrap_or_default(),
            "FLAVOR" | "gcode_flavor" => m.flavor = Some(text(v)),
            "printer_model" | "TARGET_MACHINE.NAME" if !v.is_empty() => {
                m.printer_model = Some(text(v));
            }
            "objects_info" => {
                let names = serde_json::from_str::<serde_json::Value>(v).ok();
                let objects = names.as_ref().and_then(|j| j["objects"].as_array());
                for o in objects.into_iter().flatten() {
                    if let Some(n) = o["name"].as_str() {
                        self.object(n);
                    }
                }
            }
            "MESH" if v != "NONMESH" => self.object(v),
            "PRINTING" if v != "NON-OBJECT" => self.object(v),
            _ => self.indexed_or_plate(k, v),
        }
    }

    /// ideaMaker's numbered keys (`Material#1 Used`, `Filament Diameter #2`) and the
    /// Orca/Bambu per-plate bed temperatures.
    fn indexed_or_plate(&mut self, k: &str, v: &str) {
        if plate_key(k).is_some() || k.ends_with("plate_temp_initial_layer") {
            if let Some(t) = first_number(v) {
                self.plate_temps.push((text(k), t));
            }
            return;
        }
        let Some((name, n)) = k.rsplit_once('#') else {
            return;
        };
        let (n, field) = match n.split_once(' ') {
            Some((n, field)) => (n, field), // `Material#1 Used`
            None => (n, name.trim()),       // `Filament Diameter #1`
        };
        let Some(i) = n.parse::<usize>().ok().and_then(|n| n.checked_sub(1)) else {
            return;
        };
        let Some(v) = number(v) else { return };
        let m = &mut self.meta;
        let list = match (name.trim(), field) {
            ("Material", "Used") => &mut m.filament_mm,
            ("Material", "Cost") => &mut m.filament_cost,
            (_, "Filament Diameter") => &mut m.filament_diameters_mm,
            (_, "Filament Density") => {
                // ideaMaker states kg/m³.
                set_at(&mut m.filament_densities_g_cm3, i, v / 1000.0);
                return;
            }
            _ => return,
        };
        set_at(list, i, v);
    }

    fn object(&mut self, name: &str) {
        let name = name.trim();
        let objects = &mut self.meta.objects;
        if name.is_empty() || objects.len() >= MAX_OBJECTS || objects.iter().any(|o| o == name) {
            return;
        }
        objects.push(text(name));
    }
}

/// Orca/Bambu plate type (`curr_bed_type`) or plate key → the config key holding its bed temperature.
fn plate_key(s: &str) -> Option<&'static str> {
    const PLATES: [(&str, &str); 6] = [
        ("Textured Cool Plate", "textured_cool_plate_temp"),
        ("Cool Plate", "cool_plate_temp"),
        ("Engineering Plate", "eng_plate_temp"),
        ("High Temp Plate", "hot_plate_temp"),
        ("Textured PEI Plate", "textured_plate_temp"),
        ("Supertack Plate", "supertack_plate_temp"),
    ];
    PLATES
        .iter()
        .find(|(plate, key)| s == *plate || s == *key)
        .map(|(_, key)| *key)
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// The number a value starts with: `3487.6mm (8.4cm3)` → 3487.6.
fn leading_number(s: &str) -> Option<f64> {
    let s = s.trim_start();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+')))
        .unwrap_or(s.len());
    number(&s[..end])
}

/// A per-extruder list (`1.75,1.75` or `PLA;PETG`); `None` if any entry is not a number, so
/// entries never shift to the wrong extruder.
fn numbers(v: &str) -> Option<Vec<f64>> {
    v.split([',', ';'])
        .take(MAX_LIST)
        .map(|x| number(x.trim_matches('"')))
        .collect()
}

fn first_number(v: &str) -> Option<f64> {
    v.split([',', ';']).next().and_then(number)
}

fn push(list: &mut Vec<f64>, v: f64) {
    if list.len() < MAX_LIST {
        list.push(v);
    }
}

fn set_at(list: &mut Vec<f64>, i: usize, v: f64) {
    if i < MAX_LIST {
        if list.len() <= i {
            list.resize(i + 1, 0.0);
        }
        list[i] = v;
    }
}

/// A kept string: trimmed, unquoted, cut at [`MAX_TEXT`] bytes on a char boundary.
fn text(s: &str) -> String {
    let s = s.trim().trim_matches('"');
    let mut end = s.len().min(MAX_TEXT);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

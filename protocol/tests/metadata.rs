//! Slicer metadata against the real files in tests/data/slicers (values from MANIFEST.md).

mod common;

use farm_protocol::gcode::metadata::Slicer;
use farm_protocol::gcode::thumbnails::MAX_THUMBNAIL_BYTES;
use farm_protocol::gcode::{
    Content, LineSplitter, Metadata, MetadataReader, ThumbnailFormat, parse_duration,
};

fn fixture(name: &str) -> Vec<u8> {
    common::slicer_fixture(name)
}

/// Splits like the analyzer does and feeds text lines to the reader.
fn extract(mut bytes: &[u8]) -> Metadata {
    let mut lines = LineSplitter::default();
    let mut reader = MetadataReader::default();
    let emit = |l: &LineSplitter, r: &mut MetadataReader| {
        if let Content::Text(t) = l.content() {
            r.line(t);
        }
    };
    while !bytes.is_empty() {
        let (take, eol) = lines.feed(bytes);
        bytes = &bytes[take..];
        if eol {
            emit(&lines, &mut reader);
            lines.clear();
        }
    }
    if lines.pending() {
        emit(&lines, &mut reader);
    }
    reader.finish()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn close_all(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(*x, *y))
}

/// One fixture's MANIFEST.md row: slicer, total time (s), filament per extruder (mm), grams.
struct Expect {
    file: &'static str,
    name: &'static str,
    version: Option<&'static str>,
    time_s: Option<f64>,
    filament_mm: &'static [f64],
    total_g: Option<f64>,
}

const MANIFEST: &[Expect] = &[
    Expect {
        file: "prusaslicer-2.6.1-benchy-m83",
        name: "PrusaSlicer",
        version: Some("2.6.1+MacOS-x64"),
        time_s: Some(2323.0),
        filament_mm: &[4282.06],
        total_g: Some(12.77),
    },
    Expect {
        file: "prusaslicer-2.8.1-mini-cube-m83",
        name: "PrusaSlicer",
        version: Some("2.8.1"),
        time_s: Some(221.0),
        filament_mm: &[252.22],
        total_g: Some(0.75),
    },
    // Density 0: the slicer wrote 0.00 g, which means "not computed".
    Expect {
        file: "prusaslicer-2.9.2-xyz-cube-m82",
        name: "PrusaSlicer",
        version: Some("2.9.2"),
        time_s: Some(1120.0),
        filament_mm: &[1389.54],
        total_g: None,
    },
    Expect {
        file: "superslicer-2.3.55-benchy-klipper-m83",
        name: "SuperSlicer",
        version: Some("2.3.55"),
        time_s: Some(678.0),
        filament_mm: &[3517.22],
        total_g: Some(10.49),
    },
    Expect {
        file: "orcaslicer-2.3.1-gridfinity-m83",
        name: "OrcaSlicer",
        version: Some("2.3.1"),
        time_s: Some(7525.0),
        filament_mm: &[4757.68],
        total_g: None,
    },
    Expect {
        file: "bambustudio-01.08.04-eline-4filament-m83",
        name: "Bambu Studio",
        version: Some("01.08.04.51"),
        time_s: Some(3962.0),
        filament_mm: &[],
        total_g: None,
    },
    Expect {
        file: "cura-5.9.0-benchy-ender3-m82",
        name: "Cura",
        version: Some("5.9.0"),
        time_s: Some(1958.0),
        filament_mm: &[992.736],
        total_g: None,
    },
    Expect {
        file: "cura-4.11.0-benchy-ender3-m82",
        name: "Cura",
        version: Some("4.11.0"),
        time_s: Some(5462.0),
        filament_mm: &[4092.64],
        total_g: None,
    },
    Expect {
        file: "cura-2.3.1-puzzle-m82",
        name: "Cura",
        version: Some("2.3.1"),
        time_s: Some(3485.0),
        filament_mm: &[],
        total_g: None,
    },
    Expect {
        file: "simplify3d-3.1.1-xyz-cube-m82",
        name: "Simplify3D",
        version: Some("3.1.1"),
        time_s: Some(1560.0),
        filament_mm: &[1656.3],
        total_g: Some(4.98),
    },
    Expect {
        file: "ideamaker-4.2.2-benchy-absolute-e",
        name: "ideaMaker",
        version: Some("4.2.2.5450"),
        time_s: Some(1283.0),
        filament_mm: &[3479.8, 0.0],
        total_g: None,
    },
    Expect {
        file: "slic3r-1.2.9-benchy-4extruder-m83",
        name: "Slic3r",
        version: Some("1.2.9"),
        time_s: None,
        filament_mm: &[3487.6, 318.6, 315.1, 859.7],
        total_g: None,
    },
    Expect {
        file: "cura-legacy-15.x-cable-chain-ends-absolute-e",
        name: "Cura legacy",
        version: None,
        time_s: Some(1980.0),
        filament_mm: &[2880.0],
        total_g: Some(8.0),
    },
    Expect {
        file: "slic3r-1.2.9-cube-3mm-filament-m82",
        name: "Slic3r",
        version: Some("1.2.9"),
        time_s: None,
        filament_mm: &[679.0],
        total_g: None,
    },
];

#[test]
fn every_fixture_states_what_the_manifest_says() {
    for e in MANIFEST {
        let m = extract(&fixture(e.file));
        let want = Slicer {
            name: e.name.into(),
            version: e.version.map(Into::into),
        };
        assert_eq!(m.slicer.as_ref(), Some(&want), "{}", e.file);
        match (m.estimated_time_s, e.time_s) {
            (Some(a), Some(b)) => assert!(close(a, b), "{}: time {a} vs {b}", e.file),
            (a, b) => assert_eq!(a, b, "{}: time", e.file),
        }
        assert!(
            close_all(&m.filament_mm, e.filament_mm),
            "{}: filament {:?} vs {:?}",
            e.file,
            m.filament_mm,
            e.filament_mm
        );
        match (m.filament_total_g, e.total_g) {
            (Some(a), Some(b)) => assert!(close(a, b), "{}: grams {a} vs {b}", e.file),
            (a, b) => assert_eq!(a, b, "{}: grams", e.file),
        }
        // Every number that came out must be usable.
        let json = serde_json::to_string(&m).expect("serialises");
        let back: Metadata = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back.slicer, m.slicer);
        assert_eq!(back.thumbnails, m.thumbnails);
    }
}

#[test]
fn secondary_estimates_and_settings() {
    let p28 = extract(&fixture("prusaslicer-2.8.1-mini-cube-m83"));
    assert_eq!(p28.estimated_time_silent_s, Some(227.0));
    assert_eq!(p28.first_layer_time_s, Some(20.0));
    assert_eq!(p28.first_layer_time_silent_s, Some(20.0));
    assert_eq!(p28.filament_g, vec![0.75]); // header and footer: replaced, not summed
    assert_eq!(p28.objects, vec!["Shape-Box".to_string()]);
    assert!(p28.has_m73_progress && p28.m73_markers == 204);
    assert_eq!(p28.max_z_mm, Some(6.2));
    assert_eq!(p28.printer_model.as_deref(), Some("MK4S"));
    let qoi: Vec<_> = p28
        .thumbnails
        .iter()
        .map(|t| (t.format, t.width, t.height))
        .collect();
    assert_eq!(
        qoi,
        vec![
            (ThumbnailFormat::Qoi, 16, 16),
            (ThumbnailFormat::Qoi, 313, 173)
        ]
    );

    let p29 = extract(&fixture("prusaslicer-2.9.2-xyz-cube-m82"));
    assert_eq!(p29.estimated_time_silent_s, Some(1176.0));
    assert_eq!(
        (p29.first_layer_time_s, p29.first_layer_time_silent_s),
        (Some(80.0), Some(81.0))
    );
    assert!(p29.filament_g.is_empty() && p29.filament_densities_g_cm3.is_empty());
    assert_eq!(p29.filament_cm3, vec![3.34]);

    let p26 = extract(&fixture("prusaslicer-2.6.1-benchy-m83"));
    assert_eq!(p26.first_layer_time_s, Some(52.0));
    assert_eq!(p26.filament_types, vec!["PLA".to_string()]);
    assert_eq!(p26.filament_colours, vec!["#29B2B2".to_string()]);
    assert_eq!(p26.filament_diameters_mm, vec![1.75]);
    assert_eq!(p26.filament_densities_g_cm3, vec![1.24]);
    assert_eq!(p26.nozzle_diameters_mm, vec![0.4]);
    assert_eq!(p26.bed_temp_c, Some(50.0));
    assert_eq!(
        (p26.layer_height_mm, p26.first_layer_height_mm),
        (Some(0.3), Some(0.3))
    );
    assert_eq!(p26.objects, vec!["3DBenchy.stl id:0 copy 0".to_string()]);

    let orca = extract(&fixture("orcaslicer-2.3.1-gridfinity-m83"));
    assert_eq!(orca.model_time_s, Some(7141.0));
    assert_eq!(orca.first_layer_time_s, Some(383.0));
    assert_eq!(orca.layer_count, Some(224));
    assert_eq!(orca.max_z_mm, Some(44.8));
    assert_eq!(orca.first_layer_bed_temp_c, Some(35.0));
    assert_eq!(orca.bed_temp_c, Some(35.0)); // Cool Plate
    assert_eq!(orca.nozzle_temps_c, vec![200.0]);

    let bambu = extract(&fixture("bambustudio-01.08.04-eline-4filament-m83"));
    assert_eq!(bambu.model_time_s, Some(3601.0));
    assert_eq!(bambu.filament_types, vec!["PLA"; 4]);
    assert_eq!(bambu.filament_colours.len(), 4);
    assert_eq!(bambu.filament_densities_g_cm3, vec![1.24; 4]);
    assert_eq!(bambu.bed_temp_c, Some(55.0)); // Textured PEI Plate
    assert_eq!(bambu.layer_count, Some(40));

    // Metres to mm without a binary rounding step.
    let c4 = extract(&fixture("cura-4.11.0-benchy-ender3-m82"));
    assert_eq!(c4.filament_mm, vec![4092.64]);

    let cura = extract(&fixture("cura-5.9.0-benchy-ender3-m82"));
    assert_eq!(cura.layer_count, Some(144));
    let b = cura.stated_bounds.expect("cura states a bounding box");
    assert_eq!(
        (b.min, b.max),
        ([83.269, 93.841, 0.2], [129.403, 126.161, 28.8])
    );
    assert_eq!(cura.max_z_mm, Some(28.8));
    assert_eq!(cura.flavor.as_deref(), Some("Marlin"));
    assert_eq!(cura.objects, vec!["3DBenchy.stl".to_string()]);

    let s3d = extract(&fixture("simplify3d-3.1.1-xyz-cube-m82"));
    assert_eq!(s3d.filament_densities_g_cm3, vec![1.25]);
    assert_eq!(s3d.filament_total_cost, Some(0.23));
    assert_eq!(
        (s3d.nozzle_temps_c.clone(), s3d.bed_temp_c),
        (vec![206.0], Some(60.0))
    );
    assert!(close(s3d.first_layer_height_mm.unwrap_or(0.0), 0.18));

    let idea = extract(&fixture("ideamaker-4.2.2-benchy-absolute-e"));
    assert_eq!(idea.filament_densities_g_cm3, vec![1.12, 1.24]);
    assert_eq!(idea.filament_cost, vec![1.41, 0.0]);
    assert!(idea.stated_bounds.is_some_and(|b| b.max[2] == 48.05));

    let legacy = extract(&fixture("cura-legacy-15.x-cable-chain-ends-absolute-e"));
    assert_eq!(
        (legacy.layer_count, legacy.layer_height_mm),
        (Some(67), Some(0.2))
    );

    let slic3r = extract(&fixture("slic3r-1.2.9-benchy-4extruder-m83"));
    assert_eq!(slic3r.filament_cm3, vec![8.4, 0.8, 0.8, 2.1]);
}

#[test]
fn prusaslicer_benchy_thumbnails_are_valid_pngs_of_the_stated_sizes() {
    let m = extract(&fixture("prusaslicer-2.6.1-benchy-m83"));
    assert_eq!(m.thumbnails_skipped, 0);
    let sizes: Vec<_> = m.thumbnails.iter().map(|t| (t.width, t.height)).collect();
    assert_eq!(sizes, vec![(16, 16), (220, 124)]);
    for t in &m.thumbnails {
        assert_eq!(t.format, ThumbnailFormat::Png);
        assert!(t.data.starts_with(b"\x89PNG\r\n\x1a\n"));
        assert_eq!(&t.data[12..16], b"IHDR");
        let w = u32::from_be_bytes([t.data[16], t.data[17], t.data[18], t.data[19]]);
        let h = u32::from_be_bytes([t.data[20], t.data[21], t.data[22], t.data[23]]);
        assert_eq!((w, h), (t.width, t.height));
        assert!(t.data.ends_with(b"IEND\xaeB`\x82"), "PNG ends with IEND");
    }
    // 808 and 15684 base64 characters decode to 3/4 of that, less padding.
    assert_eq!(m.thumbnails[0].data.len(), 808 / 4 * 3 - 1);
    let ss = extract(&fixture("superslicer-2.3.55-benchy-klipper-m83"));
    let sizes: Vec<_> = ss.thumbnails.iter().map(|t| (t.width, t.height)).collect();
    assert_eq!(sizes, vec![(64, 64), (400, 300)]);
}

#[test]
fn durations() {
    for (text, s) in [
        ("1d 2h 3m 4s", 93_784.0),
        ("38m 43s", 2323.0),
        ("52s", 52.0),
        ("1h 0m 1s", 3601.0),
        ("1958", 1958.0),
        ("3485.137790", 3485.13779),
        ("0 hours 26 minutes", 1560.0),
        ("33 minutes", 1980.0),
        ("1 hour 2 min 3 sec", 3723.0),
        (" 2h ", 7200.0),
    ] {
        assert_eq!(parse_duration(text), Some(s), "{text:?}");
    }
    for junk in [
        "",
        "abc",
        "-5",
        "12x",
        "5 parsecs",
        "NaN",
        "inf",
        "1e999",
        "h",
        "1h 2",
    ] {
        assert_eq!(parse_duration(junk), None, "{junk:?}");
    }
}

fn feed(lines: &[&[u8]]) -> Metadata {
    let mut r = MetadataReader::default();
    for l in lines {
        r.line(l);
    }
    r.finish()
}

#[test]
fn broken_thumbnails_are_counted_not_returned() {
    // Broken base64, then a block that never ends (code follows), then one cut by a new block,
    // then one whose PNG header lies about the size, then one at end of file.
    let png_16 = "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQ";
    let m = feed(&[
        b"; thumbnail begin 16x16 12",
        b"; !!!not base64!!!",
        b"; thumbnail end",
        b"; thumbnail begin 16x16 808",
        b"; iVBORw0KGgo=",
        b"G1 X10 E1",
        b"; thumbnail_JPG begin 8x8 100",
        b"; /9j/4AAQ",
        b"; thumbnail begin 32x32 32",
        format!("; {png_16}").as_bytes(),
        b"; thumbnail end",
        b"; thumbnail begin 2x2",
        b"; AAAA",
        b"; thumbnail end",
        b"; png begin 16*16 44",
        b"; \xff\xfe",
        b"; png end",
        b"; thumbnail begin axb 10",
        b"; thumbnail_QOI begin 1x1 8",
    ]);
    assert!(m.thumbnails.is_empty());
    assert_eq!(m.thumbnails_skipped, 8);
}

#[test]
fn small_valid_thumbnail_and_budget() {
    let jpg = "/9j/4AAQSkZJRgABAQ=="; // FF D8 FF E0 …
    let m = feed(&[
        b"; thumbnail_JPG begin 8x8 20",
        format!("; {jpg}").as_bytes(),
        b"; thumbnail_JPG end",
    ]);
    assert_eq!(m.thumbnails.len(), 1);
    assert_eq!(m.thumbnails[0].format, ThumbnailFormat::Jpg);
    assert!(m.thumbnails[0].data.starts_with(&[0xFF, 0xD8, 0xFF]));

    // A block that does not fit the rest of the 2 MiB budget is dropped without holding its
    // text: 1.2 MiB fits once, not twice.
    let first = format!("; /9j/{}", "A".repeat(72));
    let rest = format!("; {}", "A".repeat(76));
    let mut r = MetadataReader::default();
    for _ in 0..3 {
        r.line(b"; thumbnail_JPG begin 9x9 99999999");
        r.line(first.as_bytes());
        for _ in 0..(MAX_THUMBNAIL_BYTES * 6 / 10 / 57) {
            r.line(rest.as_bytes());
        }
        r.line(b"; thumbnail_JPG end");
    }
    let m = r.finish();
    assert_eq!(m.thumbnails.len(), 1);
    assert!(m.thumbnails[0].data.len() > MAX_THUMBNAIL_BYTES / 2);
    assert_eq!(m.thumbnails_skipped, 2);
}

#[test]
fn objects_progress_and_junk_lines() {
    let m = feed(&[
        b"EXCLUDE_OBJECT_DEFINE NAME=cube_1 CENTER=10,10 POLYGON=[[0,0]]",
        b"exclude_object_define name=\"part 2\"",
        b"M486 S0",
        b"M486 AShape-Box",
        b"M486 AShape-Box",
        b"M73 P10 R5",
        b"M73 Q10 S5",
        b"M730",
        b"M486",
        b"\xff\xfe\x00;",
        b";\xff\xfe",
        b"; estimated printing time (normal mode) = NaN",
        b"; filament used [mm] = 1.0,inf",
        b"; filament used [g] = 1e400",
        b";TIME:-1",
        b"; layer_height = 0.2",
        b"; first_layer_height = 150%",
        b"; generated by",
        b"; LAYER_COUNT:",
        b"; model printing time: 1h; total estimated time: 2h",
    ]);
    assert_eq!(m.objects, vec!["cube_1", "part 2", "Shape-Box"]);
    assert_eq!(m.m73_markers, 2);
    assert!(m.has_m73_progress);
    assert_eq!(m.estimated_time_s, Some(7200.0));
    assert_eq!(m.model_time_s, Some(3600.0));
    assert!(m.filament_mm.is_empty() && m.filament_g.is_empty());
    assert!(close(m.first_layer_height_mm.unwrap_or(0.0), 0.3));
    assert_eq!(m.slicer, None);
    let json = serde_json::to_string(&m).expect("serialises");
    assert!(!json.contains("NaN") && !json.contains("inf"));
}

//! `.gcode.3mf`: plates, the slicer's per-plate figures, a plate's G-code analysed in place, and
//! every refusal.
//!
//! No real `.gcode.3mf` with a licence that allows copying was found in a public repository (see
//! `tests/data/slicers/MANIFEST.md`, "`.gcode.3mf`"), so the archives are built here around the
//! repo's real Bambu Studio and OrcaSlicer G-code fixtures, with a `slice_info.config` in the
//! shape BambuStudio's `src/libslic3r/Format/bbs_3mf.cpp` writes. Malicious archives are built
//! with the zip crate's writer where it can express them, and by hand (`raw_zip`) where it
//! refuses to (duplicate names, an encryption flag, a size that lies).

mod common;

use common::slicer_fixture;
use farm_protocol::gcode::{ExtrusionIndex, Limits, analyze_seekable, read_metadata};
use farm_protocol::threemf::{ArchiveLimits, ThreeMf, ThreeMfError};
use std::io::{BufReader, Cursor, Read, Write};
use zip::write::SimpleFileOptions;

const BAMBU: &str = "bambustudio-01.08.04-eline-4filament-m83";
const ORCA: &str = "orcaslicer-2.3.1-gridfinity-m83";

/// `slice_info.config` as BambuStudio writes it (element and key names from bbs_3mf.cpp). Plate 1's
/// prediction is the fixture's own "total estimated time: 1h 6m 2s"; colours, types and preset ids
/// are the fixture's `filament_colour`, `filament_type`, `filament_ids`; used_m/used_g are this
/// test's values (the G-code does not state them).
const SLICE_INFO: &str = r##"<?xml version="1.0" encoding="UTF-8"?>
<config>
  <header>
    <header_item key="X-BBL-Client-Type" value="slicer"/>
    <header_item key="X-BBL-Client-Version" value="01.08.04.51"/>
  </header>
  <plate>
    <metadata key="index" value="1"/>
    <metadata key="printer_model_id" value="C12"/>
    <metadata key="nozzle_diameters" value="0.4"/>
    <metadata key="timelapse_type" value="0"/>
    <metadata key="prediction" value="3962"/>
    <metadata key="weight" value="10.21"/>
    <metadata key="outside" value="false"/>
    <metadata key="support_used" value="false"/>
    <metadata key="label_object_enabled" value="true"/>
    <object identify_id="112" name="eline.stl" skipped="false" />
    <filament id="1" tray_info_idx="GFL99" type="PLA" color="#FF6A13" used_m="1.10" used_g="3.30"/>
    <filament id="2" tray_info_idx="GFL99" type="PLA" color="#F5FF00" used_m="0.70" used_g="2.10"/>
    <filament id="3" tray_info_idx="GFL99" type="PLA" color="#368CF9" used_m="0.60" used_g="1.80"/>
    <filament id="4" tray_info_idx="GFL99" type="PLA" color="#00F600" used_m="1.00" used_g="3.01"/>
  </plate>
  <plate>
    <metadata key="index" value="2"/>
    <metadata key="prediction" value="1234"/>
    <filament id="1" type="PLA" color="#FFFFFF" used_m="2.5" used_g="7.5"/>
  </plate>
</config>
"##;

/// `model_settings.config`'s plate part (bbs_3mf.cpp `PLATERID_ATTR`, `PLATER_NAME_ATTR`).
const MODEL_SETTINGS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<config>
  <plate>
    <metadata key="plater_id" value="1"/>
    <metadata key="plater_name" value="Eline, four colours"/>
    <metadata key="locked" value="false"/>
  </plate>
</config>
"#;

const PLATE_JSON: &str = r##"{"bed_type":"textured_plate","filament_colors":["#FF6A13","#F5FF00","#368CF9","#00F600"],"filament_ids":[0,1,2,3],"first_extruder":0,"nozzle_diameter":0.4,"version":2}"##;

/// A real (tiny, decodable) PNG: 3×2 pixels, RGB.
fn png(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend(kind);
        out.extend(data);
        out.extend(crc.sum().to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = vec![];
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let raw: Vec<u8> = (0..h)
        .flat_map(|_| std::iter::once(0).chain(std::iter::repeat_n(200, w as usize * 3)))
        .collect();
    let mut z = flate2::write::ZlibEncoder::new(vec![], flate2::Compression::default());
    z.write_all(&raw).expect("zlib");
    chunk(&mut out, b"IDAT", &z.finish().expect("zlib"));
    chunk(&mut out, b"IEND", &[]);
    out
}

/// A zip made by the zip crate's writer.
fn zip_of(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(vec![]));
    let opts = SimpleFileOptions::default()
        .compression_method(method)
        .large_file(false);
    for (name, data) in entries {
        w.start_file(*name, opts).expect("start_file");
        w.write_all(data).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

/// A two-plate sliced file: plate 1 the Bambu Studio 4-colour fixture, plate 2 the OrcaSlicer one.
fn sliced(method: zip::CompressionMethod) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (bambu, orca) = (slicer_fixture(BAMBU), slicer_fixture(ORCA));
    let thumb = png(3, 2);
    let small = png(1, 1);
    let zip = zip_of(
        &[
            ("[Content_Types].xml", b"<Types/>"),
            ("3D/3dmodel.model", b"<model/>"),
            ("Metadata/plate_1.gcode", &bambu),
            ("Metadata/plate_1.json", PLATE_JSON.as_bytes()),
            ("Metadata/plate_1.png", &thumb),
            ("Metadata/plate_1_small.png", &small),
            ("Metadata/plate_2.gcode", &orca),
            ("Metadata/plate_2.png", b"\x89PNG\r\n\x1a\nnot really"),
            ("Metadata/slice_info.config", SLICE_INFO.as_bytes()),
            ("Metadata/model_settings.config", MODEL_SETTINGS.as_bytes()),
        ],
        method,
    );
    (zip, bambu, orca)
}

fn open(bytes: Vec<u8>) -> Result<ThreeMf<Cursor<Vec<u8>>>, ThreeMfError> {
    ThreeMf::open(Cursor::new(bytes))
}

fn refusal(r: Result<impl Sized, ThreeMfError>) -> ThreeMfError {
    match r {
        Ok(_) => panic!("expected a refusal"),
        Err(e) => e,
    }
}

#[test]
fn lists_plates_and_reads_the_slicers_figures() {
    let (zip, bambu, _) = sliced(zip::CompressionMethod::Deflated);
    let mut f = open(zip).expect("opens");
    assert_eq!(f.plates(), &[1, 2]);
    let info = f.slice_info().expect("slice info").expect("present");
    assert_eq!(info.header["X-BBL-Client-Version"], "01.08.04.51");

    let facts = f.plate_facts(1).expect("plate 1");
    assert_eq!(facts.gcode_bytes, bambu.len() as u64);
    assert_eq!(facts.name.as_deref(), Some("Eline, four colours"));
    let slice = facts.slice.expect("plate 1 in slice_info");
    assert_eq!(slice.prediction_s, Some(3962.0));
    assert_eq!(slice.weight_g, Some(10.21));
    assert_eq!(slice.printer_model_id.as_deref(), Some("C12"));
    assert_eq!(slice.nozzle_diameters_mm, vec![0.4]);
    let colours: Vec<_> = slice.filaments.iter().map(|f| f.color.clone()).collect();
    assert_eq!(
        colours,
        ["#FF6A13", "#F5FF00", "#368CF9", "#00F600"].map(|c| Some(c.to_owned()))
    );
    assert_eq!(slice.filaments[3].used_g, Some(3.01));
    assert_eq!(slice.filaments[0].material.as_deref(), Some("PLA"));
    assert_eq!(slice.objects[0].identify_id, Some(112));
    let json = facts.json.expect("plate_1.json");
    assert_eq!(json.bed_type.as_deref(), Some("textured_plate"));
    assert_eq!(json.filament_ids, vec![0, 1, 2, 3]);
    let dims: Vec<_> = facts
        .thumbnails
        .iter()
        .map(|t| (t.width, t.height))
        .collect();
    assert_eq!(dims, vec![(3, 2), (1, 1)]);
    assert_eq!(facts.thumbnails[0].data, png(3, 2));

    // Plate 2: its own slice_info plate; its PNG is broken, so no thumbnail; no JSON.
    let facts = f.plate_facts(2).expect("plate 2");
    assert_eq!(facts.slice.and_then(|s| s.prediction_s), Some(1234.0));
    assert!(facts.thumbnails.is_empty());
    assert!(facts.json.is_none());
    assert!(facts.name.is_none());
}

#[test]
fn a_plate_analyses_exactly_like_the_extracted_file() {
    for method in [
        zip::CompressionMethod::Deflated,
        zip::CompressionMethod::Stored,
    ] {
        let (zip, bambu, orca) = sliced(method);
        let mut f = open(zip).expect("opens");
        for (n, plain) in [(1, &bambu), (2, &orca)] {
            let from_zip = analyze_seekable(BufReader::new(f.plate(n).expect("plate")))
                .expect("analyse plate");
            let from_file = analyze_seekable(Cursor::new(plain)).expect("analyse file");
            assert_eq!(from_zip, from_file, "plate {n}, {method:?}");
            assert!(from_zip.filament_mm.iter().sum::<f64>() > 100.0);

            let meta_zip = read_metadata(BufReader::new(f.plate(n).expect("plate"))).expect("meta");
            let meta_file = read_metadata(Cursor::new(plain)).expect("meta");
            assert_eq!(meta_zip, meta_file, "plate {n} metadata");
        }
        let meta = read_metadata(BufReader::new(f.plate(1).expect("plate"))).expect("meta");
        assert_eq!(meta.estimated_time_s, Some(3962.0));
    }
}

#[test]
fn the_extrusion_index_answers_the_same_at_any_offset_of_the_plate() {
    let (zip, bambu, _) = sliced(zip::CompressionMethod::Deflated);
    let stride = 64 * 1024;
    let plain = ExtrusionIndex::build_seekable(Cursor::new(&bambu), Limits::default(), stride)
        .expect("index file");
    let mut f = open(zip.clone()).expect("opens");
    let in_zip = ExtrusionIndex::build_seekable(
        BufReader::new(f.plate(1).expect("plate")),
        Limits::default(),
        stride,
    )
    .expect("index plate");
    // An owned plate stream, queried out of order: backward seeks re-inflate from the start.
    let mut plate = open(zip).expect("opens").into_plate(1).expect("plate");
    let len = bambu.len() as u64;
    for offset in [len / 2, 1000, len - 1, 0, len / 3, len] {
        let a = in_zip.consumed_at(&mut plate, offset).expect("zip query");
        let b = plain
            .consumed_at(Cursor::new(&bambu), offset)
            .expect("file query");
        assert_eq!(a, b, "consumed at {offset}");
        let a = in_zip.elapsed_at(&mut plate, offset).expect("zip query");
        let b = plain.elapsed_at(Cursor::new(&bambu), offset).expect("file");
        assert_eq!(a, b, "elapsed at {offset}");
    }
}

#[test]
fn a_missing_plate_names_the_plates_there_are() {
    let (zip, _, _) = sliced(zip::CompressionMethod::Deflated);
    let mut f = open(zip).expect("opens");
    let e = refusal(f.plate(3));
    assert!(matches!(e, ThreeMfError::NoPlate { plate: 3, ref plates } if plates == &[1, 2]));
    assert!(e.to_string().contains("plates are 1, 2"), "{e}");
    let e = refusal(f.choose_plate(None));
    assert!(e.to_string().contains("name the one to print"), "{e}");

    let project = zip_of(
        &[("3D/3dmodel.model", b"<model/>")],
        zip::CompressionMethod::Deflated,
    );
    let f = open(project).expect("a project opens");
    assert!(matches!(
        refusal(f.choose_plate(Some(1))),
        ThreeMfError::NoPlates
    ));
}

#[test]
fn junk_and_truncated_archives_are_not_zips() {
    let e = refusal(open(slicer_fixture(BAMBU)));
    assert!(matches!(e, ThreeMfError::NotZip(_)), "{e}");
    assert!(e.to_string().contains("Export plate sliced file"), "{e}");
    let (zip, _, _) = sliced(zip::CompressionMethod::Deflated);
    let e = refusal(open(zip[..zip.len() / 2].to_vec()));
    assert!(matches!(e, ThreeMfError::NotZip(_)), "{e}");
}

#[test]
fn names_that_escape_the_folder_are_refused() {
    for name in [
        "../evil",
        "Metadata/../../evil",
        "/etc/cron.d/evil",
        "Metadata\\plate_1.gcode",
    ] {
        let zip = zip_of(
            &[("Metadata/plate_1.gcode", b"G28\n"), (name, b"x")],
            zip::CompressionMethod::Deflated,
        );
        let e = refusal(open(zip));
        assert!(matches!(e, ThreeMfError::UnsafeName { .. }), "{name}: {e}");
        assert!(
            e.to_string().contains(name.replace('\\', "\\\\").as_str()),
            "{e}"
        );
    }
}

#[test]
fn duplicate_names_are_refused() {
    let exact = raw_zip(&[
        Raw::stored("Metadata/plate_1.gcode", b"G28\n"),
        Raw::stored("Metadata/plate_1.gcode", b"M112\n"),
    ]);
    assert!(matches!(
        refusal(open(exact)),
        ThreeMfError::DuplicateName(_)
    ));
    let folded = zip_of(
        &[
            ("Metadata/plate_1.gcode", b"G28\n"),
            ("METADATA/PLATE_1.GCODE", b"M112\n"),
        ],
        zip::CompressionMethod::Deflated,
    );
    let e = refusal(open(folded));
    assert!(matches!(e, ThreeMfError::DuplicateName(ref n) if n == "METADATA/PLATE_1.GCODE"));
}

#[test]
fn encrypted_entries_are_refused() {
    let mut e = Raw::stored("Metadata/plate_1.gcode", b"G28\n");
    e.flags |= 1; // "traditional PKWARE encryption"
    let err = refusal(open(raw_zip(&[e])));
    assert!(matches!(err, ThreeMfError::Encrypted(_)), "{err}");
    assert!(err.to_string().contains("without a password"));
}

#[test]
fn zip_bombs_are_refused_by_ratio_size_and_while_streaming() {
    // 16 MiB of one byte deflates about 1000:1.
    let zeros = vec![b'0'; 16 << 20];
    let bomb = zip_of(
        &[("Metadata/plate_1.gcode", &zeros)],
        zip::CompressionMethod::Deflated,
    );
    let e = refusal(open(bomb.clone()));
    assert!(
        matches!(e, ThreeMfError::RatioTooHigh { ratio, .. } if ratio > 100),
        "{e}"
    );
    assert_eq!(e.reason(), "zip_bomb");

    // A declared size over the limit.
    let limits = ArchiveLimits {
        max_entry_bytes: 1 << 20,
        max_ratio: 10_000,
        ..ArchiveLimits::default()
    };
    let e = refusal(ThreeMf::open_with(Cursor::new(bomb), limits));
    assert!(
        matches!(e, ThreeMfError::TooLarge { size, .. } if size == 16 << 20),
        "{e}"
    );

    // A header that lies: it declares 4 KiB (under the ratio floor, so the header alone looks
    // fine) while the data inflates to 8 MiB. Reading stops at the declared size.
    let mut out = vec![];
    let mut plate = open_liar_plate();
    let e = plate
        .read_to_end(&mut out)
        .expect_err("must not inflate past 4 KiB");
    assert!(out.len() <= 4096);
    let e = ThreeMfError::from(e);
    assert!(
        matches!(e, ThreeMfError::LongerThanDeclared { declared: 4096, .. }),
        "{e}"
    );
}

/// A plate whose header declares 4 KiB but whose data inflates to 8 MiB of G-code comments.
fn open_liar_plate() -> farm_protocol::threemf::EntryReader<Cursor<Vec<u8>>> {
    let big: Vec<u8> = b"; padding\n".repeat(800 << 10);
    let mut liar = Raw::deflated("Metadata/plate_1.gcode", &big);
    liar.size = 4096;
    open(raw_zip(&[liar]))
        .expect("opens")
        .into_plate(1)
        .expect("starts like G-code")
}

#[test]
fn too_many_entries_are_refused() {
    let names: Vec<String> = (0..10).map(|i| format!("3D/Objects/o{i}.model")).collect();
    let entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"x"[..])).collect();
    let zip = zip_of(&entries, zip::CompressionMethod::Deflated);
    let limits = ArchiveLimits {
        max_entries: 9,
        ..ArchiveLimits::default()
    };
    let e = refusal(ThreeMf::open_with(Cursor::new(zip), limits));
    assert!(
        matches!(
            e,
            ThreeMfError::TooManyEntries {
                count: 10,
                limit: 9
            }
        ),
        "{e}"
    );
}

#[test]
fn a_plate_that_is_not_gcode_is_refused() {
    for (body, why) in [
        (png(3, 2), "NUL"),
        (b"hello world\n".to_vec(), "first line"),
        (vec![], "empty"),
    ] {
        let zip = zip_of(
            &[("Metadata/plate_1.gcode", &body)],
            zip::CompressionMethod::Deflated,
        );
        let mut f = open(zip).expect("opens");
        let e = refusal(f.plate(1));
        assert!(matches!(e, ThreeMfError::NotGcode { plate: 1, .. }), "{e}");
        assert!(e.to_string().contains(why), "{e}");
    }
}

#[test]
fn a_corrupt_entry_is_refused_when_read() {
    let mut e = Raw::stored("Metadata/plate_1.gcode", b"G28\nG1 X10 E1\n");
    e.crc ^= 1;
    // The plate is shorter than the head `plate()` checks, so the CRC is checked right there.
    let mut f = open(raw_zip(&[e])).expect("opens");
    let err = refusal(f.plate(1));
    assert!(matches!(err, ThreeMfError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("CRC-32"), "{err}");
}

/// One entry of a hand-built zip: what the writer would refuse to produce.
struct Raw {
    name: String,
    method: u16,
    flags: u16,
    data: Vec<u8>,
    crc: u32,
    size: u32,
}

impl Raw {
    fn stored(name: &str, data: &[u8]) -> Self {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        Self {
            name: name.into(),
            method: 0,
            flags: 0,
            data: data.to_vec(),
            crc: crc.sum(),
            size: data.len() as u32,
        }
    }

    fn deflated(name: &str, data: &[u8]) -> Self {
        let mut e = Self::stored(name, data);
        let mut z = flate2::write::DeflateEncoder::new(vec![], flate2::Compression::best());
        z.write_all(data).expect("deflate");
        e.data = z.finish().expect("deflate");
        e.method = 8;
        e
    }
}

/// Local headers, central directory and end record, nothing more (no zip64, no extra fields).
fn raw_zip(entries: &[Raw]) -> Vec<u8> {
    let mut out = vec![];
    let mut central = vec![];
    for e in entries {
        let offset = out.len() as u32;
        let fixed = |b: &mut Vec<u8>| {
            b.extend(20u16.to_le_bytes()); // version needed
            b.extend(e.flags.to_le_bytes());
            b.extend(e.method.to_le_bytes());
            b.extend([0u8; 4]); // time, date
            b.extend(e.crc.to_le_bytes());
            b.extend((e.data.len() as u32).to_le_bytes());
            b.extend(e.size.to_le_bytes());
            b.extend((e.name.len() as u16).to_le_bytes());
            b.extend(0u16.to_le_bytes()); // extra length
        };
        out.extend(0x0403_4b50u32.to_le_bytes());
        fixed(&mut out);
        out.extend(e.name.as_bytes());
        out.extend(&e.data);
        central.extend(0x0201_4b50u32.to_le_bytes());
        central.extend(20u16.to_le_bytes()); // version made by
        fixed(&mut central);
        central.extend([0u8; 6]); // comment length, disk, internal attrs
        central.extend(0u32.to_le_bytes()); // external attrs
        central.extend(offset.to_le_bytes());
        central.extend(e.name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend(&central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]); // disk numbers
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((central.len() as u32).to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// Every single-byte corruption and every truncation of a small sliced file is either read or
/// refused with a `ThreeMfError` — never a panic, never a read past a declared size.
#[test]
fn every_corruption_of_a_small_archive_is_read_or_refused() {
    let gcode =
        b"; HEADER_BLOCK_START\n; HEADER_BLOCK_END\nM83\nG1 Z0.2 F600\nG1 X10 E1 F600\nG1 X20 E1\n";
    let zip = zip_of(
        &[
            ("Metadata/plate_1.gcode", &gcode[..]),
            ("Metadata/slice_info.config", SLICE_INFO.as_bytes()),
            ("Metadata/plate_1.png", &png(2, 2)),
        ],
        zip::CompressionMethod::Deflated,
    );
    let mut variants: Vec<Vec<u8>> = (0..zip.len())
        .map(|i| {
            let mut z = zip.clone();
            z[i] ^= 0xA5;
            z
        })
        .collect();
    variants.extend((0..zip.len()).step_by(7).map(|n| zip[..n].to_vec()));
    let (mut read, mut refused) = (0, 0);
    for z in variants {
        let outcome = open(z).and_then(|mut f| {
            let plates = f.plates().to_vec();
            for n in plates {
                let facts = f.plate_facts(n)?;
                assert!(facts.gcode_bytes <= 1 << 20);
                let mut plate = f.plate(n)?;
                let mut out = vec![];
                plate.read_to_end(&mut out)?;
                assert!(out.len() as u64 <= facts.gcode_bytes);
            }
            Ok(())
        });
        match outcome {
            Ok(()) => read += 1,
            Err(_) => refused += 1,
        }
    }
    // Most corruptions are caught (CRC, sizes, names, structure); some land in bytes that do
    // not matter (timestamps, the XML's text, unused header fields).
    assert!(refused > read, "{refused} refused, {read} read");
    assert!(read > 0);
}

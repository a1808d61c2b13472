//! What the slicer says about each plate: `Metadata/slice_info.config` (XML) and
//! `Metadata/plate_<N>.json`.
//!
//! Names are BambuStudio's own (`src/libslic3r/Format/bbs_3mf.cpp`: `SLICE_PREDICTION_ATTR =
//! "prediction"`, `SLICE_WEIGHT_ATTR = "weight"`, `PRINTER_MODEL_ID_ATTR`, `NOZZLE_DIAMETERS_ATTR`,
//! `FILAMENT_ID_TAG = "id"`, `"type"`, `"color"`, `"used_m"`, `"used_g"`, `"tray_info_idx"`): a
//! `<config>` with `<header><header_item key= value=/>` and one `<plate>` per sliced plate, each
//! holding `<metadata key= value=/>`, `<object identify_id= name= skipped=/>` and `<filament/>`.
//! Parsing is lenient: an unknown element or key is kept or skipped, an unparsable number is
//! `None`; only XML that does not parse at all is an error.

use quick_xml::events::{BytesStart, Event};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `Metadata/slice_info.config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SliceInfo {
    /// `<header_item>`s, e.g. `X-BBL-Client-Type = slicer`, `X-BBL-Client-Version = 01.08.04.51`.
    pub header: BTreeMap<String, String>,
    pub plates: Vec<PlateSlice>,
}

/// One `<plate>` of `slice_info.config`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlateSlice {
    /// `index`: the plate number N of `Metadata/plate_<N>.gcode`.
    pub index: Option<u32>,
    /// `prediction`: the slicer's estimated print time, s.
    pub prediction_s: Option<f64>,
    /// `weight`: the slicer's filament weight for the plate, g.
    pub weight_g: Option<f64>,
    /// `printer_model_id`, e.g. `BL-P001` (X1 Carbon), `N1` (A1 mini).
    pub printer_model_id: Option<String>,
    /// `nozzle_diameters`, mm (one per extruder, space-separated in the file).
    pub nozzle_diameters_mm: Vec<f64>,
    pub objects: Vec<PlateObject>,
    pub filaments: Vec<PlateFilament>,
    /// Every `<metadata key= value=/>` of the plate, the ones above included.
    pub metadata: BTreeMap<String, String>,
}

/// `<object identify_id= name= skipped=/>`: the ids `skip_objects` takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlateObject {
    pub identify_id: Option<u64>,
    pub name: String,
    pub skipped: bool,
}

/// `<filament id= tray_info_idx= type= color= used_m= used_g=/>`: one filament slot the plate uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlateFilament {
    /// 1-based slot in the slicer's filament list (what an AMS mapping maps onto trays).
    pub id: u32,
    /// Bambu's filament preset id, e.g. `GFA00` (Bambu PLA Basic).
    pub tray_info_idx: Option<String>,
    #[serde(rename = "type")]
    pub material: Option<String>,
    /// `#RRGGBB` (or `#RRGGBBAA`) as the slicer wrote it.
    pub color: Option<String>,
    pub used_m: Option<f64>,
    pub used_g: Option<f64>,
}

/// `Metadata/plate_<N>.json`, the fields the farm reads (the file has more).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlateJson {
    pub bed_type: Option<String>,
    pub nozzle_diameter: Option<f64>,
    pub filament_colors: Vec<String>,
    pub filament_ids: Vec<u32>,
    pub first_extruder: Option<i64>,
    pub version: Option<i64>,
}

impl PlateJson {
    /// Lenient: a field of the wrong type is left empty; `None` only if this is not JSON.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let str_of = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
        let list = |k: &str| v.get(k).and_then(|x| x.as_array()).cloned();
        Some(Self {
            bed_type: str_of("bed_type"),
            nozzle_diameter: v.get("nozzle_diameter").and_then(|x| x.as_f64()),
            filament_colors: list("filament_colors")
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c.as_str().map(str::to_owned))
                .collect(),
            filament_ids: list("filament_ids")
                .unwrap_or_default()
                .iter()
                .filter_map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
                .collect(),
            first_extruder: v.get("first_extruder").and_then(|x| x.as_i64()),
            version: v.get("version").and_then(|x| x.as_i64()),
        })
    }
}

impl SliceInfo {
    /// The `<plate>` whose `index` is `n`.
    pub fn plate(&self, n: u32) -> Option<&PlateSlice> {
        self.plates.iter().find(|p| p.index == Some(n))
    }

    /// Parses the XML; `Err` carries quick-xml's description of what is malformed.
    pub fn parse(xml: &[u8]) -> Result<Self, String> {
        let mut reader = quick_xml::Reader::from_reader(xml);
        let mut info = SliceInfo::default();
        let mut plate: Option<PlateSlice> = None;
        let mut buf = Vec::new();
        loop {
            let ev = reader
                .read_event_into(&mut buf)
                .map_err(|e| format!("{e} at byte {}", reader.error_position()))?;
            match ev {
                Event::Eof => break,
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let empty = matches!(ev, Event::Empty(_));
                    let a = attrs(e)?;
                    match (e.local_name().as_ref(), &mut plate) {
                        ("plate", None) if !empty => plate = Some(PlateSlice::default()),
                        ("header_item", _) => {
                            if let (Some(k), Some(v)) = (a.get("key"), a.get("value")) {
                                info.header.insert(k.clone(), v.clone());
                            }
                        }
                        ("metadata", Some(p)) => {
                            if let (Some(k), Some(v)) = (a.get("key"), a.get("value")) {
                                p.metadata.insert(k.clone(), v.clone());
                            }
                        }
                        ("object", Some(p)) => p.objects.push(PlateObject {
                            identify_id: a.get("identify_id").and_then(|v| v.parse().ok()),
                            name: a.get("name").cloned().unwrap_or_default(),
                            skipped: a.get("skipped").is_some_and(|v| v == "true"),
                        }),
                        ("filament", Some(p)) => {
                            let Some(id) = a.get("id").and_then(|v| v.parse().ok()) else {
                                continue;
                            };
                            p.filaments.push(PlateFilament {
                                id,
                                tray_info_idx: a.get("tray_info_idx").cloned(),
                                material: a.get("type").cloned(),
                                color: a.get("color").cloned(),
                                used_m: a.get("used_m").and_then(|v| v.parse().ok()),
                                used_g: a.get("used_g").and_then(|v| v.parse().ok()),
                            })
                        }
                        _ => {}
                    }
                }
                Event::End(ref e) if e.local_name().as_ref() == "plate" => {
                    if let Some(p) = plate.take() {
                        info.plates.push(p.finish());
                    }
                }
                _ => {}
            }
            buf.clear();
        }
        Ok(info)
    }
}

/// Plate names from `Metadata/model_settings.config`: each `<plate>`'s `plater_id` and
/// `plater_name` metadata (bbs_3mf.cpp `PLATERID_ATTR`, `PLATER_NAME_ATTR`). Unnamed plates and
/// XML that does not parse give nothing: a name is a label, never a reason to refuse a file.
pub fn plate_names(xml: &[u8]) -> BTreeMap<u32, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut names = BTreeMap::new();
    let (mut depth_in_plate, mut id, mut name) = (None::<u32>, None, None);
    let mut depth = 0u32;
    let mut buf = Vec::new();
    while let Ok(ev) = reader.read_event_into(&mut buf) {
        match ev {
            Event::Eof => break,
            Event::Start(ref e) => {
                depth += 1;
                if e.local_name().as_ref() == "plate" && depth_in_plate.is_none() {
                    (depth_in_plate, id, name) = (Some(depth), None, None);
                }
            }
            // Only the plate's own metadata, not that of the objects listed inside it.
            Event::Empty(ref e)
                if e.local_name().as_ref() == "metadata" && depth_in_plate == Some(depth) =>
            {
                let Ok(a) = attrs(e) else { continue };
                match a.get("key").map(String::as_str) {
                    Some("plater_id") => id = a.get("value").and_then(|v| v.parse().ok()),
                    Some("plater_name") => name = a.get("value").cloned(),
                    _ => {}
                }
            }
            Event::End(_) => {
                if depth_in_plate == Some(depth) {
                    if let (Some(i), Some(n)) = (id.take(), name.take().filter(|n| !n.is_empty())) {
                        names.insert(i, n);
                    }
                    depth_in_plate = None;
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        buf.clear();
    }
    names
}

impl PlateSlice {
    /// Fills the typed fields from the `<metadata>` keys.
    fn finish(mut self) -> Self {
        let m = &self.metadata;
        let num = |k: &str| m.get(k).and_then(|v| v.trim().parse::<f64>().ok());
        self.index = m.get("index").and_then(|v| v.trim().parse().ok());
        self.prediction_s = num("prediction");
        self.weight_g = num("weight");
        self.printer_model_id = m.get("printer_model_id").filter(|v| !v.is_empty()).cloned();
        self.nozzle_diameters_mm = m
            .get("nozzle_diameters")
            .map(|v| {
                v.split_whitespace()
                    .filter_map(|d| d.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        self
    }
}

fn attrs(e: &BytesStart<'_>) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for a in e.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let key = a.key.local_name().as_ref().to_owned();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| e.to_string())?;
        out.insert(key, value.into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plates_objects_and_filaments() {
        let xml = br##"<?xml version="1.0" encoding="UTF-8"?>
<config>
  <header>
    <header_item key="X-BBL-Client-Type" value="slicer"/>
    <header_item key="X-BBL-Client-Version" value="01.08.04.51"/>
  </header>
  <plate>
    <metadata key="index" value="2"/>
    <metadata key="printer_model_id" value="BL-P001"/>
    <metadata key="nozzle_diameters" value="0.4"/>
    <metadata key="prediction" value="3962"/>
    <metadata key="weight" value="12.34"/>
    <object identify_id="99" name="A &amp; B" skipped="false" />
    <filament id="1" tray_info_idx="GFA00" type="PLA" color="#FFFFFF" used_m="1.5" used_g="4.47"/>
    <filament id="3" type="PETG" color="#00AE42" used_m="x" used_g="2"/>
    <warning msg="bed_temperature_too_high_than_filament" level="1" error_code="1000C001"/>
  </plate>
</config>"##;
        let info = SliceInfo::parse(xml).expect("parses");
        assert_eq!(info.header["X-BBL-Client-Version"], "01.08.04.51");
        let p = info.plate(2).expect("plate 2");
        assert_eq!(p.prediction_s, Some(3962.0));
        assert_eq!(p.weight_g, Some(12.34));
        assert_eq!(p.printer_model_id.as_deref(), Some("BL-P001"));
        assert_eq!(p.nozzle_diameters_mm, vec![0.4]);
        assert_eq!(p.objects[0].name, "A & B");
        assert_eq!(p.objects[0].identify_id, Some(99));
        assert_eq!(p.filaments.len(), 2);
        assert_eq!(p.filaments[0].tray_info_idx.as_deref(), Some("GFA00"));
        assert_eq!(p.filaments[1].id, 3);
        assert_eq!(p.filaments[1].used_m, None);
        assert!(info.plate(1).is_none());
    }

    #[test]
    fn plate_names_come_from_the_plates_own_metadata() {
        let xml = br#"<config><object id="2"><metadata key="name" value="cube"/></object>
  <plate>
    <metadata key="plater_id" value="2"/>
    <metadata key="plater_name" value="2 - Mast, Feeders"/>
    <model_instance><metadata key="object_id" value="2"/></model_instance>
  </plate>
  <plate><metadata key="plater_id" value="3"/><metadata key="plater_name" value=""/></plate>
</config>"#;
        let names = plate_names(xml);
        assert_eq!(names.len(), 1);
        assert_eq!(names[&2], "2 - Mast, Feeders");
        assert!(plate_names(b"<config><plate>").is_empty());
    }

    #[test]
    fn broken_xml_is_an_error() {
        assert!(SliceInfo::parse(b"<config><plate></config>").is_err());
    }

    #[test]
    fn plate_json_is_lenient() {
        let j = PlateJson::parse(br##"{"bed_type":"textured_plate","filament_colors":["#FF0000",3],"filament_ids":[0,2],"nozzle_diameter":0.4,"version":2}"##).expect("json");
        assert_eq!(j.filament_colors, vec!["#FF0000"]);
        assert_eq!(j.filament_ids, vec![0, 2]);
        assert_eq!(j.bed_type.as_deref(), Some("textured_plate"));
        assert!(PlateJson::parse(b"not json").is_none());
    }
}

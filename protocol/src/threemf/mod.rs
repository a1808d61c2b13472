//! Bambu Studio / OrcaSlicer `.gcode.3mf`: a zip holding one G-code file per sliced plate
//! (`Metadata/plate_<N>.gcode`, N from 1) and the slicer's own figures for each
//! (`Metadata/slice_info.config`, `Metadata/plate_<N>.json`, `Metadata/plate_<N>.png`, the
//! plate's name in `Metadata/model_settings.config`).
//!
//! Read in place, never extracted: the zip crate parses the central directory; each entry is
//! inflated by [`EntryReader`] as it is read, so a plate's G-code goes to the analyzer and the
//! extrusion index unchanged, and offsets are offsets in the plate's G-code (a Bambu printer
//! reports no file position; it is billed by layer).
//!
//! Refused on open, before anything is inflated: not a zip, too many entries, an entry name
//! that could escape a folder (`..`, absolute, backslash, drive letter) or that two entries
//! share, encryption, a compression method the slicers do not use, a declared size or
//! compression ratio over [`ArchiveLimits`]. While reading, an entry may never inflate past its
//! declared size (so the checked size is the real one) and its CRC-32 must match.

mod entry;
mod slice_info;

pub use entry::EntryReader;
pub use slice_info::{PlateFilament, PlateJson, PlateObject, PlateSlice, SliceInfo};

use crate::gcode::thumbnails::{MAX_THUMBNAIL_BYTES, Thumbnail, png_thumbnail};
use entry::Entry;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::io::{self, Read, Seek};

/// How much an archive may hold before it is refused as a zip bomb or not a sliced plate file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Entries in the central directory (a sliced plate file has tens).
    pub max_entries: usize,
    /// Uncompressed size of any one entry, bytes.
    pub max_entry_bytes: u64,
    /// Uncompressed size of all entries together, bytes.
    pub max_total_bytes: u64,
    /// Uncompressed : compressed, for entries larger than [`RATIO_FLOOR_BYTES`]. G-code
    /// deflates about 3–8 : 1; deflate's own maximum is about 1032 : 1.
    pub max_ratio: u64,
    /// Uncompressed size of a metadata entry the farm reads (XML, JSON), bytes.
    pub max_metadata_bytes: u64,
}

/// Entries smaller than this are not ratio-checked: a tiny file of zeros is not a bomb.
pub const RATIO_FLOOR_BYTES: u64 = 1024 * 1024;

impl Default for ArchiveLimits {
    fn default() -> Self {
        Self {
            max_entries: 4096,
            max_entry_bytes: 2 << 30,
            max_total_bytes: 4 << 30,
            max_ratio: 100,
            max_metadata_bytes: 16 << 20,
        }
    }
}

/// Why a `.gcode.3mf` is refused or could not be read. Each says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ThreeMfError {
    #[error(
        "this is not a .gcode.3mf: it is not a readable zip archive ({0}); export the plate with the slicer's \"Export plate sliced file\""
    )]
    NotZip(String),
    #[error(
        "the archive lists {count} entries, more than the {limit} a sliced plate file can have; refusing it — export the plate sliced file again"
    )]
    TooManyEntries { count: usize, limit: usize },
    #[error(
        "the archive has an entry named {name:?}, which {problem}; refusing it (slicers never write such names) — export the plate sliced file again"
    )]
    UnsafeName { name: String, problem: &'static str },
    #[error(
        "two entries in the archive are named {0:?}; refusing it because which one is read would be a guess — export the plate sliced file again"
    )]
    DuplicateName(String),
    #[error(
        "entry {0:?} is encrypted; the farm reads only unencrypted files — export the plate sliced file without a password"
    )]
    Encrypted(String),
    #[error(
        "entry {name:?} is compressed with {method}; the farm reads stored and deflated entries, as the slicers write them — export the plate sliced file again"
    )]
    UnsupportedMethod { name: String, method: String },
    #[error(
        "entry {name:?} unpacks to {size} bytes, over the {limit}-byte limit; refusing it as a zip bomb or not a sliced plate file"
    )]
    TooLarge { name: String, size: u64, limit: u64 },
    #[error(
        "entry {name:?} is compressed {ratio}:1, over the {limit}:1 limit; refusing it as a zip bomb (G-code compresses about 5:1)"
    )]
    RatioTooHigh {
        name: String,
        ratio: u64,
        limit: u64,
    },
    #[error(
        "entry {name:?} unpacks to more than the {declared} bytes its header declares; refusing it as a zip bomb or a corrupt file — upload it again"
    )]
    LongerThanDeclared { name: String, declared: u64 },
    #[error("entry {name:?} is corrupt: {problem}; upload the file again or export it again")]
    Corrupt { name: String, problem: String },
    #[error(
        "this .3mf has no sliced plate (no Metadata/plate_<N>.gcode): it is a project, not a print file; slice it and use \"Export plate sliced file\" (.gcode.3mf)"
    )]
    NoPlates,
    #[error("there is no plate {plate} in this file; its plates are {}; name one of those", list(.plates))]
    NoPlate { plate: u32, plates: Vec<u32> },
    #[error(
        "this file has {} plates ({}); name the one to print",
        .0.len(),
        list(.0)
    )]
    WhichPlate(Vec<u32>),
    #[error(
        "plate {plate}'s G-code does not start like G-code ({why}); export the plate sliced file again"
    )]
    NotGcode { plate: u32, why: String },
    #[error(
        "Metadata/slice_info.config is not readable XML ({0}); the plate can still be printed, but export the file again to get the slicer's estimates"
    )]
    BadSliceInfo(String),
    #[error("could not read the archive: {0}")]
    Io(io::Error),
}

fn list(plates: &[u32]) -> String {
    let v: Vec<String> = plates.iter().map(u32::to_string).collect();
    v.join(", ")
}

impl ThreeMfError {
    /// A short label for logs and API problem types.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotZip(_) => "not_zip",
            Self::TooManyEntries { .. } => "too_many_entries",
            Self::UnsafeName { .. } => "unsafe_name",
            Self::DuplicateName(_) => "duplicate_name",
            Self::Encrypted(_) => "encrypted",
            Self::UnsupportedMethod { .. } => "unsupported_compression",
            Self::TooLarge { .. } | Self::RatioTooHigh { .. } | Self::LongerThanDeclared { .. } => {
                "zip_bomb"
            }
            Self::Corrupt { .. } => "corrupt",
            Self::NoPlates => "no_plates",
            Self::NoPlate { .. } => "no_such_plate",
            Self::WhichPlate(_) => "plate_required",
            Self::NotGcode { .. } => "not_gcode",
            Self::BadSliceInfo(_) => "bad_slice_info",
            Self::Io(_) => "io",
        }
    }
}

impl From<io::Error> for ThreeMfError {
    /// An entry reader's refusal travels inside an `io::Error`; take it back out.
    fn from(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|i| i.is::<ThreeMfError>()) {
            if let Some(Ok(t)) = e.into_inner().map(|i| i.downcast::<ThreeMfError>()) {
                return *t;
            }
            return Self::Io(io::Error::other("unreadable entry"));
        }
        Self::Io(e)
    }
}

/// The sliced plates' facts the farm shows and plans with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlateFacts {
    pub plate: u32,
    /// The plate's name in the slicer (`model_settings.config`), if it was given one.
    pub name: Option<String>,
    /// Uncompressed size of the plate's G-code, bytes.
    pub gcode_bytes: u64,
    /// This plate's `<plate>` of `slice_info.config`, if the file has one for it.
    pub slice: Option<PlateSlice>,
    /// `Metadata/plate_<N>.json`, if present and JSON.
    pub json: Option<PlateJson>,
    /// `Metadata/plate_<N>.png` and `plate_<N>_small.png` that are valid PNGs, within
    /// [`MAX_THUMBNAIL_BYTES`] together.
    pub thumbnails: Vec<Thumbnail>,
}

/// An opened `.gcode.3mf`.
pub struct ThreeMf<R> {
    file: R,
    entries: Vec<Entry>,
    plates: Vec<u32>,
    limits: ArchiveLimits,
}

impl<R: Read + Seek> ThreeMf<R> {
    /// Opens with [`ArchiveLimits::default`].
    pub fn open(file: R) -> Result<Self, ThreeMfError> {
        Self::open_with(file, ArchiveLimits::default())
    }

    /// Reads the central directory and every local header, and refuses what the module doc
    /// lists. Nothing is inflated yet.
    pub fn open_with(file: R, limits: ArchiveLimits) -> Result<Self, ThreeMfError> {
        let mut zip = zip::ZipArchive::new(file).map_err(|e| match e {
            zip::result::ZipError::Io(e) => ThreeMfError::Io(e),
            e => ThreeMfError::NotZip(e.to_string()),
        })?;
        if zip.len() > limits.max_entries {
            return Err(ThreeMfError::TooManyEntries {
                count: zip.len(),
                limit: limits.max_entries,
            });
        }
        // The zip crate keys entries by name, so an exact duplicate never reaches the loop below.
        if zip.has_duplicate_names() {
            return Err(ThreeMfError::DuplicateName(
                "(a name its central directory lists twice)".into(),
            ));
        }
        let mut entries = Vec::with_capacity(zip.len());
        let mut seen = HashSet::new();
        let mut total = 0u64;
        for i in 0..zip.len() {
            let f = zip
                .by_index_raw(i)
                .map_err(|e| ThreeMfError::NotZip(e.to_string()))?;
            let name = String::from_utf8_lossy(f.name_raw()).into_owned();
            check_name(&name)?;
            // Case-folded: on a case-insensitive disk or printer these are one file.
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(ThreeMfError::DuplicateName(name));
            }
            if f.encrypted() {
                return Err(ThreeMfError::Encrypted(name));
            }
            // `DEFLATE` is a constant: the crate's `Deflated` variant exists only with its inflater.
            let method = f.compression();
            let deflated = if method == zip::CompressionMethod::Stored {
                false
            } else if method == zip::CompressionMethod::DEFLATE {
                true
            } else {
                return Err(ThreeMfError::UnsupportedMethod {
                    name,
                    method: format!("{method:?}"),
                });
            };
            let (size, compressed) = (f.size(), f.compressed_size());
            if size > limits.max_entry_bytes {
                return Err(ThreeMfError::TooLarge {
                    name,
                    size,
                    limit: limits.max_entry_bytes,
                });
            }
            if size > RATIO_FLOOR_BYTES && size / compressed.max(1) > limits.max_ratio {
                return Err(ThreeMfError::RatioTooHigh {
                    ratio: size / compressed.max(1),
                    name,
                    limit: limits.max_ratio,
                });
            }
            if !deflated && size != compressed {
                return Err(ThreeMfError::Corrupt {
                    name,
                    problem: "it is stored uncompressed but its two sizes differ".into(),
                });
            }
            total = total.saturating_add(size);
            if total > limits.max_total_bytes {
                return Err(ThreeMfError::TooLarge {
                    name: "(all entries together)".into(),
                    size: total,
                    limit: limits.max_total_bytes,
                });
            }
            let data_start = f.data_start().ok_or_else(|| ThreeMfError::Corrupt {
                name: name.clone(),
                problem: "its local header could not be found".into(),
            })?;
            entries.push(Entry {
                name,
                deflated,
                data_start,
                compressed,
                size,
                crc32: f.crc32(),
            });
        }
        let mut plates: Vec<u32> = entries
            .iter()
            .filter_map(|e| plate_number(&e.name))
            .collect();
        plates.sort_unstable();
        Ok(Self {
            file: zip.into_inner(),
            entries,
            plates,
            limits,
        })
    }

    /// The plate numbers N with a `Metadata/plate_<N>.gcode`, ascending.
    pub fn plates(&self) -> &[u32] {
        &self.plates
    }

    /// Every entry name, in central-directory order.
    pub fn entry_names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// `plate`, or the only plate when `None`; an error lists the plates there are.
    pub fn choose_plate(&self, plate: Option<u32>) -> Result<u32, ThreeMfError> {
        match (plate, self.plates.as_slice()) {
            (_, []) => Err(ThreeMfError::NoPlates),
            (None, [only]) => Ok(*only),
            (None, many) => Err(ThreeMfError::WhichPlate(many.to_vec())),
            (Some(n), all) if all.contains(&n) => Ok(n),
            (Some(n), all) => Err(ThreeMfError::NoPlate {
                plate: n,
                plates: all.to_vec(),
            }),
        }
    }

    /// The plate's G-code as a `Read + Seek` stream, after checking it starts like G-code.
    pub fn plate(&mut self, n: u32) -> Result<EntryReader<&mut R>, ThreeMfError> {
        let e = self.plate_entry(n)?;
        let mut r = EntryReader::new(&mut self.file, e)?;
        check_starts_like_gcode(&mut r, n)?;
        r.seek(io::SeekFrom::Start(0))?;
        Ok(r)
    }

    /// [`plate`](Self::plate), owning the file (for a job that keeps the stream).
    pub fn into_plate(mut self, n: u32) -> Result<EntryReader<R>, ThreeMfError> {
        let e = self.plate_entry(n)?;
        check_starts_like_gcode(&mut EntryReader::new(&mut self.file, e.clone())?, n)?;
        Ok(EntryReader::new(self.file, e)?)
    }

    /// `Metadata/slice_info.config`, if the archive has one.
    pub fn slice_info(&mut self) -> Result<Option<SliceInfo>, ThreeMfError> {
        let Some(xml) = self.read_small("Metadata/slice_info.config")? else {
            return Ok(None);
        };
        SliceInfo::parse(&xml)
            .map(Some)
            .map_err(ThreeMfError::BadSliceInfo)
    }

    /// What the slicer says about plate `n`: its `slice_info.config` plate, its JSON and
    /// thumbnails. A thumbnail that is not a valid PNG is left out.
    pub fn plate_facts(&mut self, n: u32) -> Result<PlateFacts, ThreeMfError> {
        let gcode_bytes = self.plate_entry(n)?.size;
        let slice = self.slice_info()?.and_then(|s| s.plate(n).cloned());
        let name = match self.read_small("Metadata/model_settings.config") {
            Ok(xml) => xml.and_then(|x| slice_info::plate_names(&x).remove(&n)),
            // Only a label: a project too large to read for it still prints.
            Err(ThreeMfError::TooLarge { .. }) => None,
            Err(e) => return Err(e),
        };
        let json = self
            .read_small(&format!("Metadata/plate_{n}.json"))?
            .and_then(|b| PlateJson::parse(&b));
        let mut thumbnails = Vec::new();
        let mut budget = MAX_THUMBNAIL_BYTES as u64;
        for name in [
            format!("Metadata/plate_{n}.png"),
            format!("Metadata/plate_{n}_small.png"),
        ] {
            let Some(e) = self.entry(&name).filter(|e| e.size <= budget).cloned() else {
                continue;
            };
            let mut data = Vec::with_capacity(e.size as usize);
            EntryReader::new(&mut self.file, e)?.read_to_end(&mut data)?;
            if let Some(t) = png_thumbnail(data) {
                budget -= t.data.len() as u64;
                thumbnails.push(t);
            }
        }
        Ok(PlateFacts {
            plate: n,
            name,
            gcode_bytes,
            slice,
            json,
            thumbnails,
        })
    }

    fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    fn plate_entry(&self, n: u32) -> Result<Entry, ThreeMfError> {
        self.choose_plate(Some(n))?;
        self.entry(&format!("Metadata/plate_{n}.gcode"))
            .cloned()
            .ok_or(ThreeMfError::NoPlates)
    }

    /// A metadata entry, whole, if present; over `max_metadata_bytes` is refused.
    fn read_small(&mut self, name: &str) -> Result<Option<Vec<u8>>, ThreeMfError> {
        let Some(e) = self.entry(name).cloned() else {
            return Ok(None);
        };
        if e.size > self.limits.max_metadata_bytes {
            return Err(ThreeMfError::TooLarge {
                name: e.name,
                size: e.size,
                limit: self.limits.max_metadata_bytes,
            });
        }
        let mut out = Vec::with_capacity(e.size as usize);
        EntryReader::new(&mut self.file, e)?.read_to_end(&mut out)?;
        Ok(Some(out))
    }
}

/// True if the bytes start like a zip archive (a local file header).
pub fn looks_like_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04")
}

/// `Metadata/plate_<N>.gcode` → N (1-based, no leading zero).
fn plate_number(name: &str) -> Option<u32> {
    let n = name
        .strip_prefix("Metadata/plate_")?
        .strip_suffix(".gcode")?;
    if n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|n| *n >= 1)
}

fn check_name(name: &str) -> Result<(), ThreeMfError> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.contains('\\') {
        Some("contains a backslash (a Windows path that could escape its folder)")
    } else if name.starts_with('/') {
        Some("is an absolute path")
    } else if name.as_bytes().get(1) == Some(&b':') {
        Some("starts with a drive letter")
    } else if name.split('/').any(|c| c == "..") {
        Some("climbs out of the archive with `..`")
    } else if name.chars().any(char::is_control) {
        Some("contains control characters")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ThreeMfError::UnsafeName {
            name: name.to_owned(),
            problem,
        }),
        None => Ok(()),
    }
}

/// The first bytes of a plate must be text whose first line is a comment or a command:
/// a slicer's G-code starts `; HEADER_BLOCK_START`.
fn check_starts_like_gcode<R: Read>(r: &mut R, plate: u32) -> Result<(), ThreeMfError> {
    let mut head = Vec::with_capacity(4096);
    r.by_ref().take(4096).read_to_end(&mut head)?;
    let why = if head.is_empty() {
        Some("it is empty".to_owned())
    } else if head.contains(&0) {
        Some("it contains NUL bytes: a binary file".to_owned())
    } else {
        let first = head
            .split(|b| *b == b'\n')
            .map(|l| l.trim_ascii())
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        match first.first() {
            Some(b';' | b'G' | b'M' | b'T' | b'g' | b'm' | b't') => None,
            _ => Some(format!(
                "its first line is {:?}",
                String::from_utf8_lossy(&first[..first.len().min(40)])
            )),
        }
    };
    match why {
        Some(why) => Err(ThreeMfError::NotGcode { plate, why }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plate_names() {
        assert_eq!(plate_number("Metadata/plate_1.gcode"), Some(1));
        assert_eq!(plate_number("Metadata/plate_12.gcode"), Some(12));
        for bad in [
            "Metadata/plate_0.gcode",
            "Metadata/plate_01.gcode",
            "Metadata/plate_1.gcode.md5",
            "Metadata/plate_x.gcode",
            "metadata/plate_1.gcode",
        ] {
            assert_eq!(plate_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_that_escape_are_refused() {
        for bad in [
            "../evil",
            "a/../../b",
            "/etc/passwd",
            "C:/x",
            "a\\b",
            "",
            "a\u{0}b",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "Metadata/plate_1.gcode",
            "3D/3dmodel.model",
            "[Content_Types].xml",
            "a..b",
        ] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
    }
}

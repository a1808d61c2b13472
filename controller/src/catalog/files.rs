//! Content-addressed G-code store: each uploaded file is kept once, named by its sha256.
//!
//! Uploads stream to a temporary file while being hashed and size-checked, are checked to be
//! G-code (text with commands, not a binary), analysed, and only then renamed into place, so a
//! half-written or refused upload never appears under a hash.
//!
//! A Bambu Studio / OrcaSlicer `.gcode.3mf` (told by its zip magic) is read in place
//! (`farm_protocol::threemf`: zip bombs, path tricks and archives without a sliced plate are
//! refused before anything is inflated): every plate's G-code is analysed and the slicer's
//! per-plate figures read, and the archive is kept as uploaded under `<sha256>.gcode.3mf`. A
//! job names its plate; the agent prints it (Bambu: the archive and `project_file`; others:
//! the plate's G-code, extracted).
//!
//! A Prusa binary G-code file (`.bgcode`, told by its magic `GCDE`) is accepted: it is
//! decoded and checked (CRC32, block sizes) while being analysed, kept as uploaded under
//! `<sha256>.bgcode`, and served to agents unchanged.

use crate::catalog::{PlateMeta, PlateSlot, ThumbnailInfo};
use farm_protocol::gcode::{Analysis, analyze_seekable};
use farm_protocol::threemf::{PlateFacts, ThreeMf, ThreeMfError, looks_like_zip};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(
        "the file is larger than the {limit}-byte upload limit; raise `max_upload_bytes` in the controller config if this is intended"
    )]
    TooLarge { limit: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("this is not G-code: {0}")]
    NotGcode(String),
    #[error("this binary G-code (.bgcode) file cannot be read: {0}")]
    BadBgcode(String),
    /// A `.gcode.3mf` the archive reader refused (zip bomb, path trick, no plates, a plate
    /// that is not G-code…); the text says what to do.
    #[error("{0}")]
    ThreeMf(String),
    #[error("could not read the upload: {0}")]
    Body(String),
    #[error("could not store the file: {0}")]
    Io(#[from] std::io::Error),
}

impl UploadError {
    pub fn reason(&self) -> &'static str {
        match self {
            UploadError::TooLarge { .. } => "too_large",
            UploadError::Empty => "empty",
            UploadError::NotGcode(_) => "not_gcode",
            UploadError::BadBgcode(_) => "bad_bgcode",
            UploadError::ThreeMf(_) => "gcode_3mf",
            UploadError::Body(_) => "body",
            UploadError::Io(_) => "io",
        }
    }
}

/// Every plate of a `.gcode.3mf`: its G-code analysed in place, and what the slicer says.
fn read_plates(path: &Path) -> Result<Vec<StoredPlate>, ThreeMfError> {
    let open = || -> Result<_, ThreeMfError> {
        Ok(std::io::BufReader::with_capacity(
            1 << 16,
            std::fs::File::open(path)?,
        ))
    };
    let mut archive = ThreeMf::open(open()?)?;
    let numbers = archive.plates().to_vec();
    if numbers.is_empty() {
        return Err(ThreeMfError::NoPlates);
    }
    let mut plates = Vec::with_capacity(numbers.len());
    for n in numbers {
        let gcode = std::io::BufReader::with_capacity(1 << 16, archive.plate(n)?);
        let analysis = analyze_seekable(gcode)?;
        if analysis.commands == 0 {
            return Err(ThreeMfError::NotGcode {
                plate: n,
                why: "it has no G/M/T commands".into(),
            });
        }
        let facts = match archive.plate_facts(n) {
            Ok(f) => f,
            // The slicer's figures are unreadable, the plate is not: it still prints.
            Err(ThreeMfError::BadSliceInfo(_)) => PlateFacts {
                plate: n,
                ..PlateFacts::default()
            },
            Err(e) => return Err(e),
        };
        plates.push(StoredPlate {
            meta: plate_meta(&analysis, &facts),
            analysis,
        });
    }
    Ok(plates)
}

fn plate_meta(a: &Analysis, facts: &PlateFacts) -> PlateMeta {
    let slice = facts.slice.as_ref();
    PlateMeta {
        plate: facts.plate,
        name: facts.name.clone(),
        filament_mm: a.filament_mm.clone(),
        estimated_s: a.estimated_s,
        size_mm: crate::orders::follow_up::extent(a),
        slicer_estimated_s: slice.and_then(|s| s.prediction_s),
        slicer_weight_g: slice.and_then(|s| s.weight_g),
        slots: slice
            .map(|s| {
                s.filaments
                    .iter()
                    .map(|f| PlateSlot {
                        slot: f.id,
                        material: f.material.clone(),
                        colour: f.color.clone(),
                        used_g: f.used_g,
                        used_m: f.used_m,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        thumbnails: facts
            .thumbnails
            .iter()
            .map(|t| ThumbnailInfo {
                format: format!("{:?}", t.format).to_ascii_lowercase(),
                width: t.width,
                height: t.height,
                bytes: t.data.len() as u64,
            })
            .collect(),
    }
}

/// What the analyzer says about a file: plain or binary G-code, or each plate of a 3MF.
fn analyse_file(path: &Path, kind: Kind) -> Result<(Analysis, Vec<StoredPlate>), UploadError> {
    if kind == Kind::ThreeMf {
        let plates = read_plates(path).map_err(|e| UploadError::ThreeMf(e.to_string()))?;
        // The first plate's figures stand for the file where one number is asked for.
        let first = plates[0].analysis.clone();
        return Ok((first, plates));
    }
    // Seekable: PrusaSlicer and SuperSlicer state machine limits at the end of the file.
    let analysis = analyze_seekable(std::io::BufReader::with_capacity(
        1 << 16,
        std::fs::File::open(path)?,
    ))
    .map_err(|e| match e.kind() {
        // The decoder's errors say what is wrong with the file and what to do.
        std::io::ErrorKind::InvalidData if kind == Kind::Bgcode => {
            UploadError::BadBgcode(e.to_string())
        }
        _ => UploadError::Io(e),
    })?;
    if analysis.commands == 0 {
        return Err(UploadError::NotGcode("no G/M/T commands found".into()));
    }
    if analysis.binary_lines * 10 > analysis.lines.max(1) {
        return Err(UploadError::NotGcode(format!(
            "{} of {} lines are binary",
            analysis.binary_lines, analysis.lines
        )));
    }
    Ok((analysis, vec![]))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gcode,
    Bgcode,
    ThreeMf,
}

impl Kind {
    fn ext(self) -> &'static str {
        match self {
            Kind::Gcode => "gcode",
            Kind::Bgcode => "bgcode",
            Kind::ThreeMf => "gcode.3mf",
        }
    }
}

/// One sliced plate of a stored `.gcode.3mf`.
#[derive(Debug, Clone)]
pub struct StoredPlate {
    pub meta: PlateMeta,
    pub analysis: Analysis,
}

/// A stored file and what the analyzer says about it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
    /// For a `.gcode.3mf`, its first plate's; use [`Stored::plate`] for a job's.
    pub analysis: Analysis,
    /// A `.gcode.3mf`'s plates, ascending; empty otherwise.
    pub plates: Vec<StoredPlate>,
}

impl Stored {
    /// The plate a job prints ([`crate::catalog::choose_plate`]) and its analysis.
    pub fn plate(&self, plate: Option<u32>) -> Result<(Option<u32>, &Analysis), String> {
        let numbers: Vec<u32> = self.plates.iter().map(|p| p.meta.plate).collect();
        let chosen = crate::catalog::choose_plate(&numbers, plate)?;
        let analysis = self
            .plates
            .iter()
            .find(|p| Some(p.meta.plate) == chosen)
            .map_or(&self.analysis, |p| &p.analysis);
        Ok((chosen, analysis))
    }
}

pub struct FileStore {
    dir: PathBuf,
    max_bytes: u64,
}

impl FileStore {
    pub fn open(dir: PathBuf, max_bytes: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("incoming"))?;
        Ok(Self { dir, max_bytes })
    }

    /// Where the file with this hash lives, if the hash is well-formed and the file exists.
    pub fn path(&self, sha256: &str) -> Option<PathBuf> {
        let ok = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return None;
        }
        [Kind::Gcode, Kind::Bgcode, Kind::ThreeMf]
            .into_iter()
            .map(|k| self.dir.join(format!("{sha256}.{}", k.ext())))
            .find(|p| p.is_file())
    }

    /// Streams an upload in, verifies it is G-code, and stores it under its hash.
    pub async fn store<S, E>(&self, mut body: S) -> Result<Stored, UploadError>
    where
        S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures_util::StreamExt;
        let tmp = self.dir.join("incoming").join(crate::auth::random_hex(12));
        let guard = RemoveOnDrop(tmp.clone());
        let mut f = tokio::fs::File::create(&tmp).await?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            if size > self.max_bytes {
                drain(&mut body, DRAIN_BYTES).await;
                return Err(UploadError::TooLarge {
                    limit: self.max_bytes,
                });
            }
            if head.len() < 65_536 {
                head.extend_from_slice(&chunk[..chunk.len().min(65_536 - head.len())]);
            }
            hasher.update(&chunk);
            f.write_all(&chunk).await?;
        }
        f.sync_all().await?;
        drop(f);
        if size == 0 {
            return Err(UploadError::Empty);
        }
        let kind = if looks_like_zip(&head) {
            Kind::ThreeMf
        } else if head.starts_with(farm_protocol::bgcode::MAGIC) {
            Kind::Bgcode
        } else if head.contains(&0) {
            return Err(UploadError::NotGcode(
                "it contains NUL bytes (a binary file?)".into(),
            ));
        } else {
            Kind::Gcode
        };
        let path = tmp.clone();
        let (analysis, plates) = tokio::task::spawn_blocking(move || analyse_file(&path, kind))
            .await
            .map_err(|e| UploadError::Body(e.to_string()))??;
        let sha256 = hex::encode(hasher.finalize());
        let dest = self.dir.join(format!("{sha256}.{}", kind.ext()));
        tokio::fs::rename(&tmp, &dest).await?;
        sync_dir(&self.dir);
        std::mem::forget(guard);
        Ok(Stored {
            sha256,
            size,
            analysis,
            plates,
        })
    }

    /// A stored file analysed again (a quote by `sha256`), as its upload was.
    pub async fn analyse(&self, sha256: &str) -> Option<Result<Stored, UploadError>> {
        let path = self.path(sha256)?;
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        let kind = match path.to_string_lossy() {
            p if p.ends_with(".gcode.3mf") => Kind::ThreeMf,
            p if p.ends_with(".bgcode") => Kind::Bgcode,
            _ => Kind::Gcode,
        };
        let sha256 = sha256.to_owned();
        let r = tokio::task::spawn_blocking(move || analyse_file(&path, kind))
            .await
            .map_err(|e| UploadError::Body(e.to_string()))
            .and_then(|r| r)
            .map(|(analysis, plates)| Stored {
                sha256,
                size,
                analysis,
                plates,
            });
        Some(r)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// How much of a refused upload is still read (and discarded) before answering.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;

/// Reads and discards up to `cap` more bytes of a refused body. An answer sent while the client
/// is still sending is often lost: the server closes the connection and the client sees a
/// reset instead of the 413. Past `cap` the connection is closed anyway (bounded work).
async fn drain<S, E>(body: &mut S, cap: u64)
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
{
    use futures_util::StreamExt;
    let mut read = 0u64;
    while read < cap {
        match body.next().await {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            _ => break,
        }
    }
}

/// Makes a rename durable (the directory entry), best effort.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(
        parts: Vec<&'static [u8]>,
    ) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Unpin {
        futures_util::stream::iter(parts.into_iter().map(|p| Ok(bytes::Bytes::from_static(p))))
    }

    #[tokio::test]
    async fn stores_gcode_under_its_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = FileStore::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        let s = fs
            .store(stream(vec![b"M83\nG1 X1 ", b"E2\n"]))
            .await
            .expect("store");
        assert_eq!(s.sha256, hex::encode(Sha256::digest(b"M83\nG1 X1 E2\n")));
        assert_eq!(s.analysis.filament_mm, vec![2.0]);
        assert!(fs.path(&s.sha256).is_some());
        assert!(fs.path("../../etc/passwd").is_none());
    }

    #[tokio::test]
    async fn refuses_binary_oversize_empty_and_bad_archives_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = FileStore::open(dir.path().to_path_buf(), 16).expect("open");
        assert!(matches!(
            fs.store(stream(vec![b"\x89PNG\x00\x00"])).await,
            Err(UploadError::NotGcode(_))
        ));
        assert!(matches!(
            fs.store(stream(vec![b"G1 X1 E1\n", b"G1 X2 E2\nG1 X3\n"]))
                .await,
            Err(UploadError::TooLarge { .. })
        ));
        assert!(matches!(
            fs.store(stream(vec![])).await,
            Err(UploadError::Empty)
        ));
        assert!(matches!(
            fs.store(stream(vec![b"hello world\n"])).await,
            Err(UploadError::NotGcode(_))
        ));
        // A sliced plate file and a zip bomb: each refused with its own reason.
        let three_mf = |name: &str, data: &[u8]| {
            let mut w = zip::ZipWriter::new(std::io::Cursor::new(vec![]));
            let stored = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            w.start_file(name, stored).expect("entry");
            std::io::Write::write_all(&mut w, data).expect("write");
            bytes::Bytes::from(w.finish().expect("zip").into_inner())
        };
        let fs = FileStore::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        let upload = |b: bytes::Bytes| futures_util::stream::iter([Ok::<_, std::io::Error>(b)]);
        let plate = fs
            .store(upload(three_mf(
                "Metadata/plate_2.gcode",
                b"; HEADER\nM83\nG28\nG1 X5 E3\n",
            )))
            .await
            .expect("a sliced plate file is stored");
        assert_eq!(plate.plates.len(), 1);
        assert_eq!(plate.plates[0].meta.plate, 2);
        assert_eq!(plate.plates[0].meta.filament_mm, vec![3.0]);
        assert_eq!(plate.plate(None).expect("the only plate").0, Some(2));
        assert!(
            plate
                .plate(Some(1))
                .is_err_and(|e| e.contains("plates are 2"))
        );
        let kept = fs.path(&plate.sha256).expect("stored");
        assert!(kept.to_string_lossy().ends_with(".gcode.3mf"), "{kept:?}");
        let again = fs
            .analyse(&plate.sha256)
            .await
            .expect("there")
            .expect("read");
        assert_eq!(again.plates[0].meta, plate.plates[0].meta);
        let project = fs
            .store(upload(three_mf("3D/3dmodel.model", b"<model/>")))
            .await;
        assert!(
            matches!(&project, Err(UploadError::ThreeMf(m)) if m.contains("no sliced plate")),
            "{project:?}"
        );
        let evil = fs.store(upload(three_mf("../evil", b"G28\n"))).await;
        assert!(
            matches!(&evil, Err(UploadError::ThreeMf(m)) if m.contains("climbs out")),
            "{evil:?}"
        );
        let left = std::fs::read_dir(dir.path().join("incoming"))
            .expect("dir")
            .count();
        assert_eq!(left, 0, "refused uploads must not leave files behind");
    }

    /// A real PrusaSlicer `.bgcode` (farm-protocol's test data, README there).
    const BGCODE: &[u8] =
        include_bytes!("../../../protocol/tests/data/bgcode/prusaslicer-2.8.1-mini-cube.bgcode");

    #[tokio::test]
    async fn stores_bgcode_as_uploaded_and_analyses_its_gcode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = FileStore::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        let s = fs.store(stream(vec![BGCODE])).await.expect("store");
        assert_eq!(s.sha256, hex::encode(Sha256::digest(BGCODE)));
        assert!(s.analysis.filament_mm[0] > 240.0, "{:?}", s.analysis);
        let path = fs.path(&s.sha256).expect("stored");
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("bgcode"));
        assert_eq!(
            std::fs::read(path).expect("read"),
            BGCODE,
            "served unchanged"
        );

        let mut bad = BGCODE.to_vec();
        let n = bad.len();
        bad[n - 100] ^= 1;
        let bad: &'static [u8] = bad.leak();
        let e = fs.store(stream(vec![bad])).await.expect_err("damaged");
        assert_eq!(e.reason(), "bad_bgcode");
        assert!(e.to_string().contains("CRC32"), "{e}");
    }

    /// A real OrcaSlicer `.gcode.3mf` (farm-protocol's test data, MANIFEST.md there).
    const ORCA_3MF: &[u8] =
        include_bytes!("../../../protocol/tests/data/slicers/orcaslicer-2.3.1-p1s-cube.gcode.3mf");

    #[tokio::test]
    async fn stores_a_real_3mf_with_its_plates_analysis_and_the_slicers_figures() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fs = FileStore::open(dir.path().to_path_buf(), 1 << 20).expect("open");
        let s = fs.store(stream(vec![ORCA_3MF])).await.expect("store");
        let [plate] = s.plates.as_slice() else {
            panic!("one plate: {:?}", s.plates.len());
        };
        let p = &plate.meta;
        assert_eq!(p.plate, 1);
        assert_eq!(p.slicer_estimated_s, Some(686.0));
        assert_eq!(p.slots.len(), 1);
        assert_eq!(p.slots[0].material.as_deref(), Some("PETG-CF"));
        assert_eq!(p.thumbnails.len(), 2);
        // The plate's own G-code, analysed: what `farm-agent analyze` says of it.
        assert!(
            (p.filament_mm[0] - 374.33).abs() < 0.01,
            "{:?}",
            p.filament_mm
        );
        assert_eq!(p.filament_mm, plate.analysis.filament_mm);
        assert_eq!(s.analysis.filament_mm, p.filament_mm);
        let kept = std::fs::read(fs.path(&s.sha256).expect("stored")).expect("read");
        assert!(kept == ORCA_3MF, "kept as uploaded");
    }
}

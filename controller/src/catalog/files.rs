//! Content-addressed G-code store: each uploaded file is kept once, named by its sha256.
//!
//! Uploads stream to a temporary file while being hashed and size-checked, are checked to be
//! G-code (text with commands, not a binary), analysed, and only then renamed into place, so a
//! half-written or refused upload never appears under a hash.

use farm_protocol::gcode::{Analysis, analyze_seekable};
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
            UploadError::Body(_) => "body",
            UploadError::Io(_) => "io",
        }
    }
}

/// A stored file and what the analyzer says about it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sha256: String,
    pub size: u64,
    pub analysis: Analysis,
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
        let p = self.dir.join(format!("{sha256}.gcode"));
        (ok && p.is_file()).then_some(p)
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
        if head.contains(&0) {
            return Err(UploadError::NotGcode(
                "it contains NUL bytes (a binary file?)".into(),
            ));
        }
        let path = tmp.clone();
        let analysis = tokio::task::spawn_blocking(move || {
            // Seekable: PrusaSlicer and SuperSlicer state machine limits at the end of the file.
            analyze_seekable(std::io::BufReader::with_capacity(
                1 << 16,
                std::fs::File::open(path)?,
            ))
        })
        .await
        .map_err(|e| UploadError::Body(e.to_string()))??;
        if analysis.commands == 0 {
            return Err(UploadError::NotGcode("no G/M/T commands found".into()));
        }
        if analysis.binary_lines * 10 > analysis.lines.max(1) {
            return Err(UploadError::NotGcode(format!(
                "{} of {} lines are binary",
                analysis.binary_lines, analysis.lines
            )));
        }
        let sha256 = hex::encode(hasher.finalize());
        let dest = self.dir.join(format!("{sha256}.gcode"));
        tokio::fs::rename(&tmp, &dest).await?;
        sync_dir(&self.dir);
        std::mem::forget(guard);
        Ok(Stored {
            sha256,
            size,
            analysis,
        })
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
    async fn refuses_binary_oversize_and_empty_and_leaves_nothing() {
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
        let left = std::fs::read_dir(dir.path().join("incoming"))
            .expect("dir")
            .count();
        assert_eq!(left, 0, "refused uploads must not leave files behind");
    }
}

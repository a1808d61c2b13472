//! The job's file on the agent's side: hashed and indexed in one pass when the job starts,
//! then asked "how much filament up to byte N?" for every file position OctoPrint reports.
//!
//! Material is billed from this, never from OctoPrint's own analysis (that is an estimate, a
//! high-water mark that ignores the last retract, and absent while the analysis runs). The
//! [`ExtrusionIndex`] answers from the nearest checkpoint (≤ 64 KiB replayed) with exactly
//! what a full pass of the analyzer gives, so a finished job reports the file's figure and a
//! cancelled one the partial at OctoPrint's last position. The same index gives the planned
//! time left from that position (the farm's ETA; OctoPrint's own estimate is only a fallback).

use super::state::{Effect, MaterialAt};
use farm_protocol::bgcode;
use farm_protocol::gcode::index::DEFAULT_STRIDE;
use farm_protocol::gcode::{ExtrusionIndex, Limits, limits_from_tail_with};
use farm_protocol::messages::Event;
use sha2::{Digest, Sha256};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A reader that hashes what passes through it, so hashing and indexing share one read.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// The indexed job file and the last answer (positions repeat between status frames).
pub struct JobFile {
    index: Arc<ExtrusionIndex>,
    path: PathBuf,
    pub sha256: String,
    pub size: u64,
    last: Option<(u64, Vec<f64>)>,
    last_left: Option<(u64, f64)>,
}

impl JobFile {
    /// Reads the whole file once (on a blocking thread).
    pub async fn open(path: &Path) -> Result<JobFile, String> {
        JobFile::open_with(path, Limits::default()).await
    }

    /// [`JobFile::open`] for a printer whose limits are `base` (its model's profile: PrusaLink
    /// `[printer.prusalink] model`); the slicer's settings in the file still win.
    pub async fn open_with(path: &Path, base: Limits) -> Result<JobFile, String> {
        let p = path.to_path_buf();
        let built = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::open(&p)?;
            // A `.bgcode` (PrusaLink) is indexed through its decoded text and then asked by
            // offsets in the binary file, its slicer's limits read from its metadata.
            let binary = bgcode::sniff(&mut file)?;
            // The slicer's limits (PrusaSlicer writes them at the end) first, so the index's
            // time is the analyzer's.
            let limits: Limits = if binary {
                base
            } else {
                limits_from_tail_with(&mut file, base)?
            };
            let mut reader = Hashing {
                inner: file,
                hash: Sha256::new(),
            };
            let r = BufReader::with_capacity(64 * 1024, &mut reader);
            let index = if binary {
                bgcode::build_index(r, limits, DEFAULT_STRIDE)?
            } else {
                ExtrusionIndex::build_with(r, limits, DEFAULT_STRIDE)?
            };
            Ok::<_, std::io::Error>((index, hex::encode(reader.hash.finalize())))
        })
        .await
        .map_err(|e| format!("indexing the job file stopped: {e}"))?
        .map_err(|e| format!("cannot read the job file {}: {e}", path.display()))?;
        let (index, sha256) = built;
        Ok(JobFile {
            // The file's own size: positions (and progress × size) are in its bytes.
            size: index.binary.as_ref().map_or(index.bytes, |m| m.bytes),
            index: Arc::new(index),
            path: path.to_path_buf(),
            sha256,
            last: None,
            last_left: None,
        })
    }

    /// Filament of the whole file per tool, mm.
    pub fn whole(&self) -> Vec<f64> {
        self.index.total_mm.clone()
    }

    /// Filament per tool of the lines that end at or before `pos`. On a read error (the file
    /// vanished from the cache) the last good answer stands, so a report never goes down.
    pub async fn at(&mut self, pos: u64) -> Vec<f64> {
        if let Some((p, mm)) = &self.last
            && *p == pos
        {
            return mm.clone();
        }
        match self.ask(pos, ExtrusionIndex::consumed_at).await {
            Some(mm) => {
                self.last = Some((pos, mm.clone()));
                mm
            }
            None => self.last.as_ref().map(|l| l.1.clone()).unwrap_or_default(),
        }
    }

    /// Planned print time left after the lines that end at or before `pos`, s (heat-up waits
    /// not included); `None` if the file cannot be read.
    pub async fn remaining(&mut self, pos: u64) -> Option<f64> {
        if let Some((p, left)) = self.last_left
            && p == pos
        {
            return Some(left);
        }
        let left = self.ask(pos, ExtrusionIndex::remaining_at).await?;
        self.last_left = Some((pos, left));
        Some(left)
    }

    /// One index query on a blocking thread; a failure is logged and gives `None`.
    async fn ask<T: Send + 'static>(
        &self,
        pos: u64,
        query: fn(&ExtrusionIndex, std::fs::File, u64) -> std::io::Result<T>,
    ) -> Option<T> {
        let (index, path) = (self.index.clone(), self.path.clone());
        let answer = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path)?;
            query(&index, file, pos)
        })
        .await;
        match answer {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, file = %self.path.display(), "cannot read the job file; keeping the last figure");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "job file lookup stopped");
                None
            }
        }
    }
}

/// The contract event for a tracker's effect: a `Finish` becomes `job_finished` billed through
/// the job file, which the job is then done with. The OctoPrint and PrusaLink shells share it.
pub async fn event_for(effect: Effect, file: &mut Option<JobFile>) -> Event {
    match effect {
        Effect::Emit(e) => e,
        Effect::Finish {
            job_id,
            outcome,
            reason,
            at,
            duration_s,
        } => {
            let extruded_mm = match (file.as_mut(), at) {
                (Some(f), MaterialAt::Whole) => f.whole(),
                (Some(f), MaterialAt::Offset(pos)) => f.at(pos).await,
                (None, _) => vec![],
            };
            *file = None;
            tracing::info!(job = %job_id, ?outcome, ?at, ?extruded_mm, "job ended on the printer");
            Event::JobFinished {
                job_id,
                outcome,
                reason,
                extruded_mm,
                duration_s,
            }
        }
    }
}

/// The name a job's file gets on OctoPrint: job id and the start of its sha256, so a re-run
/// of the same job or another job with the same file never overwrites a file being printed.
pub fn upload_name(job_id: &str, sha256: &str) -> String {
    let id: String = job_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{id}-{}.gcode", &sha256[..sha256.len().min(12)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_are_safe_for_octoprint_and_unique_per_job_and_file() {
        assert_eq!(
            upload_name("j-42", "abcdef0123456789"),
            "j-42-abcdef012345.gcode"
        );
        assert_eq!(upload_name("a/b c", "ff"), "a_b_c-ff.gcode");
    }

    #[tokio::test]
    async fn material_at_a_position_is_the_analyzers_partial_and_the_end_is_the_whole_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.gcode");
        let gcode = "G28\nM83\nG1 X10 E1.5\nG1 X20 E2.5\nG1 E-0.5\nG1 X30 E1\n";
        std::fs::write(&path, gcode).expect("write");
        let mut f = JobFile::open(&path).await.expect("index");
        assert_eq!(f.size, gcode.len() as u64);
        assert_eq!(f.sha256, hex::encode(Sha256::digest(gcode.as_bytes())));
        // After the first extrusion line (its newline included) and in the middle of the second.
        let first_end = "G28\nM83\nG1 X10 E1.5\n".len() as u64;
        assert_eq!(f.at(first_end).await, vec![1.5]);
        assert_eq!(f.at(first_end + 3).await, vec![1.5]);
        assert_eq!(f.at(f.size).await, f.whole());
        let analysis = farm_protocol::gcode::analyze(gcode.as_bytes()).expect("analyze");
        assert_eq!(f.whole(), analysis.filament_mm);
        // Time left: all of it at the start, none at the end, in between after a move.
        let all = f.remaining(0).await.expect("readable");
        assert!(
            (all - analysis.estimated_s).abs() < 1e-9,
            "{all} vs {}",
            analysis.estimated_s
        );
        let mid = f.remaining(first_end).await.expect("readable");
        assert!(mid > 0.0 && mid < all, "{mid} of {all}");
        assert_eq!(f.remaining(f.size).await, Some(0.0));
    }

    #[tokio::test]
    async fn a_bgcode_job_file_is_indexed_by_its_binary_offsets() {
        let bin = include_bytes!(
            "../../../protocol/tests/data/bgcode/prusaslicer-2.8.1-mini-cube.bgcode"
        );
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j.bgcode");
        std::fs::write(&path, bin).expect("write");
        let mut f = JobFile::open(&path).await.expect("index");
        assert_eq!(f.size, bin.len() as u64);
        assert_eq!(f.sha256, hex::encode(Sha256::digest(bin)));
        let analysis = farm_protocol::gcode::analyze_seekable(std::io::Cursor::new(&bin[..]))
            .expect("analyze");
        assert_eq!(f.whole(), analysis.filament_mm);
        assert_eq!(f.at(f.size).await, f.whole());
        // At each G-code block's start in the binary: what the protocol's index says there.
        let cur = || std::io::Cursor::new(&bin[..]);
        let index = ExtrusionIndex::build_seekable(cur(), Limits::default(), DEFAULT_STRIDE)
            .expect("index");
        let map = index.binary.clone().expect("a binary map");
        assert!(map.spans.len() >= 2, "{map:?}");
        for s in &map.spans {
            let want = index.consumed_at(cur(), s.bin + 1).expect("query");
            assert_eq!(f.at(s.bin + 1).await, want, "inside the block at {}", s.bin);
        }
        assert_eq!(f.remaining(f.size).await, Some(0.0));
    }
}

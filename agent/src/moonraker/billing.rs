//! Material from Klipper's file position: the extrusion index of the local copy of the job
//! file turns `virtual_sdcard.file_position` into cumulative millimetres per tool.

use super::job::JobWatch;
use farm_protocol::gcode::ExtrusionIndex;
use std::path::Path;

/// Filament per tool consumed up to the job's position (with the line in flight, see
/// [`JobWatch::in_flight`]), never below what was reported already. The reads are at most one
/// index stride (64 KiB) plus one line, from the page cache: short enough to do in line.
pub(super) fn consumed(
    index: &ExtrusionIndex,
    path: &Path,
    watch: &JobWatch,
    had: &[f64],
) -> Vec<f64> {
    let got = std::fs::File::open(path).and_then(|mut f| {
        let pos = if watch.in_flight() {
            line_end(&mut f, watch.max_pos)?
        } else {
            watch.max_pos
        };
        index.consumed_at(&mut f, pos)
    });
    match got {
        Ok(mm) => {
            let n = mm.len().max(had.len());
            (0..n)
                .map(|i| {
                    mm.get(i)
                        .copied()
                        .unwrap_or(0.0)
                        .max(had.get(i).copied().unwrap_or(0.0))
                })
                .collect()
        }
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "cannot read the job file for material; keeping the last figure");
            had.to_vec()
        }
    }
}

/// Planned time left after the lines that end at or before `pos`, s; `None` (logged) when
/// the file cannot be read. Like [`consumed`], a short read: one stride plus the planner's
/// look-ahead past `pos`.
pub(super) fn remaining(index: &ExtrusionIndex, path: &Path, pos: u64) -> Option<f64> {
    match std::fs::File::open(path).and_then(|f| index.remaining_at(f, pos)) {
        Ok(left) => Some(left),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "cannot read the job file for the time left");
            None
        }
    }
}

/// The end (after its newline) of the line that starts at `pos`; `pos` itself when the line
/// is longer than the analyzer's 64 KiB line limit (such a line is junk and counts nothing).
pub(super) fn line_end(f: &mut std::fs::File, pos: u64) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    f.seek(SeekFrom::Start(pos))?;
    let mut buf = vec![0u8; 64 * 1024 + 2];
    let mut have = 0;
    while have < buf.len() {
        let n = f.read(&mut buf[have..])?;
        if n == 0 {
            // A last line without a newline ends at the end of the file.
            return Ok(pos + have as u64);
        }
        if let Some(i) = buf[have..have + n].iter().position(|b| *b == b'\n') {
            return Ok(pos + (have + i) as u64 + 1);
        }
        have += n;
    }
    Ok(pos)
}

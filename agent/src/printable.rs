//! The file a back end is given to print of a job's cached file. A back end gets the file as
//! it is if it prints that kind (a Bambu printer a `.gcode.3mf`, PrusaLink a `.bgcode`);
//! otherwise the agent writes plain G-code beside it first, streamed (bounded memory, on a
//! blocking thread), and that is what the back end prints, indexes and bills by:
//!
//! - a `.gcode.3mf`: the job's plate, extracted ([`crate::plate`]);
//! - a Prusa binary G-code (magic `GCDE`): its text, decoded by `farm_protocol::bgcode` (the
//!   text libbgcode's `from_binary_to_ascii` writes). OctoPrint, Moonraker, the serial link and
//!   Bambu's `gcode_file` all report and take positions in that text, so billing by its byte
//!   offsets is billing by theirs.
//!
//! Layout under `state_dir/files/`: `<sha256>.<what>.part` while writing, `<sha256>.<what>.gcode`
//! once whole (it only appears by rename, so a file there is whole and is reused); the cache's
//! eviction treats it like a fetched file.

use farm_protocol::bgcode::{self, BgcodeError, Decoder};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

/// Whether a back end prints a `.gcode.3mf` as it is (and is told the plate).
pub fn prints_archives(backend: &str) -> bool {
    backend == "bambu"
}

/// Whether a back end prints Prusa binary G-code (`.bgcode`) as it is.
pub fn prints_binary_gcode(backend: &str) -> bool {
    backend == "prusalink"
}

/// The file to print and the plate to name, for `backend`, of the job file at `path`.
pub async fn for_backend(
    backend: &'static str,
    path: PathBuf,
    plate: Option<u32>,
) -> Result<(PathBuf, Option<u32>), String> {
    tokio::task::spawn_blocking(move || prepare(backend, path, plate))
        .await
        .map_err(|e| format!("preparing the job file stopped: {e}"))?
}

fn prepare(
    backend: &str,
    path: PathBuf,
    plate: Option<u32>,
) -> Result<(PathBuf, Option<u32>), String> {
    if let Some(n) = plate {
        if prints_archives(backend) {
            return Ok((path, Some(n)));
        }
        let gcode = crate::plate::extract(&path, n)
            .map_err(|e| format!("cannot read plate {n} of the job's .gcode.3mf: {e}"))?;
        return Ok((gcode, None));
    }
    if prints_binary_gcode(backend) {
        return Ok((path, None));
    }
    let binary = std::fs::File::open(&path)
        .and_then(|mut f| bgcode::sniff(&mut f))
        .map_err(|e| format!("cannot read the job file {}: {e}", path.display()))?;
    if !binary {
        return Ok((path, None));
    }
    let text = decode(&path).map_err(|e| {
        format!("cannot decode the job's binary G-code (.bgcode) for the {backend} back end: {e}")
    })?;
    Ok((text, None))
}

/// The text of the `.bgcode` at `job` (a verified cached job file), as a file beside it.
pub fn decode(job: &Path) -> Result<PathBuf, BgcodeError> {
    let out = beside(job, "ascii");
    let file = std::fs::File::open(job)?;
    let text = Decoder::new(BufReader::with_capacity(1 << 16, file))?;
    write_whole(&out, None, text).map_err(BgcodeError::from_io)?;
    Ok(out)
}

/// `<sha256>.<what>.gcode` beside the cached job file `<sha256>.<ext>`.
pub fn beside(job: &Path, what: &str) -> PathBuf {
    let stem = job
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .unwrap_or("job");
    job.with_file_name(format!("{stem}.{what}.gcode"))
}

/// Writes `content` to `out` whole or not at all: into `<out>.part`, synced, then renamed.
/// Nothing is written if `out` is already there (and `len` long, when that is known). Errors
/// from `content` come back as they were raised, inside the `io::Error`.
pub fn write_whole(out: &Path, len: Option<u64>, mut content: impl Read) -> io::Result<()> {
    if std::fs::metadata(out).is_ok_and(|m| len.is_none_or(|l| m.len() == l)) {
        return Ok(());
    }
    let part = out.with_extension("part");
    let written = (|| {
        let mut w = BufWriter::with_capacity(1 << 16, std::fs::File::create(&part)?);
        io::copy(&mut content, &mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&part);
        return Err(e);
    }
    std::fs::rename(&part, out)
}

#[cfg(test)]
mod tests;

//! Job files: HTTP download with `Range` resume, size and sha256 verification, and a bounded
//! local cache named by hash.
//!
//! Layout under `state_dir/files/`: `<sha256>.part` while downloading (kept across failures
//! and restarts so the next attempt resumes), `<sha256>.gcode` once verified. Only verified
//! files ever get the `.gcode` name, so a cached one is reused without downloading. The
//! least recently used files are evicted beyond `cache_max_bytes`; the one just fetched (the
//! one about to print) never is.

use farm_protocol::messages::JobAssignment;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("job sha256 {0:?} is not 64 lower-case hex digits; the controller sent a bad job")]
    BadHash(String),
    #[error(
        "the controller refused the download of {url} (HTTP {status}); check the agent's token"
    )]
    Unauthorized { url: String, status: u16 },
    #[error("downloading {url} failed with HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("downloading {url} failed: {source}")]
    Http { url: String, source: reqwest::Error },
    #[error("the server sent {got} bytes but the job says the file has {expected}")]
    Size { expected: u64, got: u64 },
    #[error(
        "the downloaded file's sha256 is {actual}, the job says {expected}; the file was not kept"
    )]
    Mismatch { expected: String, actual: String },
    #[error("file cache error at {path}: {source}; check free space and permissions of state_dir")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FetchError {
    /// Worth another attempt: network trouble, server errors, short bodies. Not: a refusal,
    /// a missing file, or a full download that does not hash right.
    fn retryable(&self, resumed: bool) -> bool {
        match self {
            FetchError::Http { .. } | FetchError::Io { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 416,
            FetchError::Size { expected, got } => got < expected,
            // A resumed download may have joined two versions of a file: try once from zero.
            FetchError::Mismatch { .. } => resumed,
            FetchError::BadHash(_) | FetchError::Unauthorized { .. } => false,
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Downloads and caches job files.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    token: String,
    dir: PathBuf,
    cache_max_bytes: u64,
    /// Pause before each retry; the number of entries is the number of retries.
    pub retry_delays: Vec<Duration>,
}

impl Fetcher {
    /// `dir` is `state_dir/files`. Needs a rustls crypto provider installed (see `crate::run`).
    pub fn new(dir: PathBuf, token: String, cache_max_bytes: u64) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Per read, not per download: big files on slow links must still finish.
            .read_timeout(Duration::from_secs(30))
            .user_agent(concat!("farm-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| FetchError::Http {
                url: String::new(),
                source,
            })?;
        Ok(Self {
            http,
            token,
            dir,
            cache_max_bytes,
            retry_delays: vec![
                Duration::from_secs(1),
                Duration::from_secs(4),
                Duration::from_secs(15),
            ],
        })
    }

    /// Where the verified file for `sha256` lives (whether or not it is there).
    pub fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.gcode"))
    }

    /// Returns the path of the verified file, downloading it if it is not cached.
    pub async fn fetch(&self, job: &JobAssignment) -> Result<PathBuf, FetchError> {
        // The hash becomes a file name: refuse anything but hex, so no path can escape.
        let valid = job.sha256.len() == 64
            && job
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(FetchError::BadHash(job.sha256.clone()));
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(io_err(&self.dir))?;
        let done = self.path_for(&job.sha256);
        if let Ok(meta) = tokio::fs::metadata(&done).await {
            if meta.len() == job.size {
                tracing::info!(job = %job.job_id, sha256 = %job.sha256, "using the cached file");
                touch(&done);
                return Ok(done);
            }
            let _ = tokio::fs::remove_file(&done).await;
        }
        let mut attempt = 0;
        loop {
            let (result, resumed) = self.download_once(job, &done).await;
            match result {
                Ok(()) => break,
                Err(e) if e.retryable(resumed) && attempt < self.retry_delays.len() => {
                    let delay = self.retry_delays[attempt];
                    attempt += 1;
                    tracing::warn!(job = %job.job_id, error = %e, attempt, "download failed; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
        self.evict(&done).await;
        Ok(done)
    }

    /// One attempt. Returns whether it resumed a partial file (for the retry rule).
    async fn download_once(
        &self,
        job: &JobAssignment,
        done: &Path,
    ) -> (Result<(), FetchError>, bool) {
        let part = self.dir.join(format!("{}.part", job.sha256));
        let mut have = tokio::fs::metadata(&part).await.map_or(0, |m| m.len());
        if have > job.size {
            let _ = tokio::fs::remove_file(&part).await;
            have = 0;
        }
        let resumed = have > 0;
        let result = async {
            // A previous attempt may have finished the bytes but not the rename.
            if have < job.size || job.size == 0 {
                self.download_into(job, &part, have).await?;
            }
            verify(job, &part).await?;
            tokio::fs::rename(&part, done).await.map_err(io_err(done))?;
            Ok(())
        }
        .await;
        (result, resumed)
    }

    async fn download_into(
        &self,
        job: &JobAssignment,
        part: &Path,
        have: u64,
    ) -> Result<(), FetchError> {
        let url = &job.url;
        let http = |source| FetchError::Http {
            url: url.clone(),
            source,
        };
        let mut req = self.http.get(url).bearer_auth(&self.token);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut resp = req.send().await.map_err(http)?;
        let status = resp.status();
        let mut file = match status {
            StatusCode::PARTIAL_CONTENT if have > 0 && content_range_start(&resp) == Some(have) => {
                tracing::info!(job = %job.job_id, from = have, "resuming the download");
                tokio::fs::OpenOptions::new()
                    .append(true)
                    .open(part)
                    .await
                    .map_err(io_err(part))?
            }
            // A full body: the server ignored the range, or there was none.
            StatusCode::OK => tokio::fs::File::create(part).await.map_err(io_err(part))?,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Err(FetchError::Unauthorized {
                    url: url.clone(),
                    status: status.as_u16(),
                });
            }
            StatusCode::RANGE_NOT_SATISFIABLE | StatusCode::PARTIAL_CONTENT => {
                // Our partial file does not fit the server's file: start over.
                let _ = tokio::fs::remove_file(part).await;
                return Err(FetchError::Status {
                    url: url.clone(),
                    status: 416,
                });
            }
            s => {
                return Err(FetchError::Status {
                    url: url.clone(),
                    status: s.as_u16(),
                });
            }
        };
        let mut got = if status == StatusCode::OK { 0 } else { have };
        if let Some(len) = resp.content_length()
            && got.saturating_add(len) > job.size
        {
            let _ = tokio::fs::remove_file(part).await;
            return Err(FetchError::Size {
                expected: job.size,
                got: got.saturating_add(len),
            });
        }
        while let Some(chunk) = resp.chunk().await.map_err(http)? {
            got += chunk.len() as u64;
            if got > job.size {
                drop(file);
                let _ = tokio::fs::remove_file(part).await;
                return Err(FetchError::Size {
                    expected: job.size,
                    got,
                });
            }
            file.write_all(&chunk).await.map_err(io_err(part))?;
        }
        // Durable before we rely on it for a resume after a power cut.
        file.sync_all().await.map_err(io_err(part))?;
        Ok(())
    }

    /// Deletes stale partial files and the least recently used files beyond the budget.
    async fn evict(&self, keep: &Path) {
        let dir = self.dir.clone();
        let keep = keep.to_path_buf();
        let max = self.cache_max_bytes;
        let res = tokio::task::spawn_blocking(move || evict_blocking(&dir, &keep, max)).await;
        match res {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(files = n, "evicted cached files"),
            Ok(Err(e)) => tracing::warn!(error = %e, "cache eviction failed"),
            Err(e) => tracing::warn!(error = %e, "cache eviction stopped"),
        }
    }
}

fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    // `bytes 100-199/200`
    let v = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    v.strip_prefix("bytes ")?.split('-').next()?.parse().ok()
}

/// Checks size and sha256 of `part`; deletes it on a hash mismatch.
async fn verify(job: &JobAssignment, part: &Path) -> Result<(), FetchError> {
    let p = part.to_path_buf();
    let hashed = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
        let mut f = std::fs::File::open(&p)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n = 0u64;
        loop {
            let r = f.read(&mut buf)?;
            if r == 0 {
                break;
            }
            n += r as u64;
            h.update(&buf[..r]);
        }
        Ok((n, hex::encode(h.finalize())))
    })
    .await
    .map_err(|e| io_err(part)(std::io::Error::other(e)))?
    .map_err(io_err(part))?;
    let (len, actual) = hashed;
    if len != job.size {
        // Short: keep it, the next attempt resumes.
        return Err(FetchError::Size {
            expected: job.size,
            got: len,
        });
    }
    if actual != job.sha256 {
        let _ = tokio::fs::remove_file(part).await;
        return Err(FetchError::Mismatch {
            expected: job.sha256.clone(),
            actual,
        });
    }
    Ok(())
}

/// Marks a cached file as just used (eviction goes by modification time).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn evict_blocking(dir: &Path, keep: &Path, max: u64) -> std::io::Result<usize> {
    let mut files = Vec::new();
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        match path.extension().and_then(|e| e.to_str()) {
            Some("gcode") => files.push((meta.modified()?, meta.len(), path)),
            // One job at a time: any partial file left now belongs to an abandoned job.
            Some("part") => {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
            _ => {}
        }
    }
    let mut total: u64 = files.iter().map(|f| f.1).sum();
    files.sort();
    for (_, len, path) in files {
        if total <= max {
            break;
        }
        if path == keep {
            continue;
        }
        std::fs::remove_file(&path)?;
        total -= len;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests;

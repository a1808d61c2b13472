//! One zip entry read straight from the archive: inflated as it streams, never past the size
//! its header declares (which was checked against the limits when the archive was opened), CRC
//! checked at the end. `Seek` works on the *uncompressed* bytes: forward by reading on, back by
//! inflating again from the entry's start — what the analyzer's config-tail read and the
//! extrusion index's checkpoints need, at the cost of re-inflating for a backward seek.

use super::ThreeMfError;
use flate2::Crc;
use flate2::read::DeflateDecoder;
use std::io::{self, Read, Seek, SeekFrom, Take};

/// What the opened archive knows about one entry (from the central directory and local header).
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub name: String,
    pub deflated: bool,
    pub data_start: u64,
    pub compressed: u64,
    pub size: u64,
    pub crc32: u32,
}

enum Body<R> {
    Stored(Take<R>),
    Deflated(DeflateDecoder<Take<R>>),
}

impl<R: Read> Body<R> {
    fn into_file(self) -> R {
        match self {
            Body::Stored(t) => t.into_inner(),
            Body::Deflated(d) => d.into_inner().into_inner(),
        }
    }
}

/// A `Read + Seek` over one entry's uncompressed bytes.
pub struct EntryReader<R> {
    entry: Entry,
    body: Option<Body<R>>,
    pos: u64,
    crc: Crc,
}

impl<R: Read + Seek> EntryReader<R> {
    pub(super) fn new(file: R, entry: Entry) -> io::Result<Self> {
        let mut r = Self {
            entry,
            body: None,
            pos: 0,
            crc: Crc::new(),
        };
        r.restart(file)?;
        Ok(r)
    }

    /// The entry's uncompressed size, as declared (and enforced while reading).
    pub fn len(&self) -> u64 {
        self.entry.size
    }

    pub fn is_empty(&self) -> bool {
        self.entry.size == 0
    }

    /// The entry's name inside the archive (e.g. `Metadata/plate_1.gcode`).
    pub fn name(&self) -> &str {
        &self.entry.name
    }

    fn restart(&mut self, mut file: R) -> io::Result<()> {
        file.seek(SeekFrom::Start(self.entry.data_start))?;
        let raw = file.take(self.entry.compressed);
        self.body = Some(if self.entry.deflated {
            Body::Deflated(DeflateDecoder::new(raw))
        } else {
            Body::Stored(raw)
        });
        self.pos = 0;
        self.crc = Crc::new();
        Ok(())
    }

    fn rewind(&mut self) -> io::Result<()> {
        let body = self.body.take().ok_or_else(gone)?;
        self.restart(body.into_file())
    }

    fn fail(&self, e: ThreeMfError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

fn gone() -> io::Error {
    io::Error::other("the archive reader was lost after an earlier error; open the file again")
}

impl<R: Read + Seek> Read for EntryReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = match self.body.as_mut().ok_or_else(gone)? {
            Body::Stored(t) => t.read(buf)?,
            Body::Deflated(d) => d.read(buf).map_err(|e| {
                self.fail(ThreeMfError::Corrupt {
                    name: self.entry.name.clone(),
                    problem: format!("its deflate data is broken ({e})"),
                })
            })?,
        };
        // Never past the declared size: that is the size the limits were checked against.
        if self.pos + n as u64 > self.entry.size {
            return Err(self.fail(ThreeMfError::LongerThanDeclared {
                name: self.entry.name.clone(),
                declared: self.entry.size,
            }));
        }
        self.crc.update(&buf[..n]);
        self.pos += n as u64;
        if n == 0 {
            if self.pos != self.entry.size {
                return Err(self.fail(ThreeMfError::Corrupt {
                    name: self.entry.name.clone(),
                    problem: format!(
                        "it ends after {} of its {} bytes",
                        self.pos, self.entry.size
                    ),
                }));
            }
            if self.crc.sum() != self.entry.crc32 {
                return Err(self.fail(ThreeMfError::Corrupt {
                    name: self.entry.name.clone(),
                    problem: "its CRC-32 does not match".into(),
                }));
            }
        }
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for EntryReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.entry.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.filter(|t| *t <= self.entry.size).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "seek outside {} ({} bytes)",
                    self.entry.name, self.entry.size
                ),
            )
        })?;
        if target < self.pos {
            self.rewind()?;
        }
        let mut scratch = [0u8; 16 * 1024];
        while self.pos < target {
            let want = (target - self.pos).min(scratch.len() as u64) as usize;
            if self.read(&mut scratch[..want])? == 0 {
                break;
            }
        }
        Ok(self.pos)
    }

    fn stream_position(&mut self) -> io::Result<u64> {
        Ok(self.pos)
    }
}

//! The container: file header and blocks (header, parameters, data, CRC32), read one block
//! at a time with every declared size checked against a limit before anything is allocated.

use super::BgcodeError;
use super::{heatshrink, limit_for};
use flate2::read::ZlibDecoder;
use std::io::{self, Read};

pub const MAGIC: &[u8; 4] = b"GCDE";
/// The only container version libbgcode writes (`core_impl.hpp VERSION = 1`).
pub const VERSION: u32 = 1;
pub const FILE_HEADER_BYTES: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockType {
    FileMetadata,
    GCode,
    SlicerMetadata,
    PrinterMetadata,
    PrintMetadata,
    Thumbnail,
}

impl BlockType {
    fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => Self::FileMetadata,
            1 => Self::GCode,
            2 => Self::SlicerMetadata,
            3 => Self::PrinterMetadata,
            4 => Self::PrintMetadata,
            5 => Self::Thumbnail,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::FileMetadata => "file metadata",
            Self::GCode => "G-code",
            Self::SlicerMetadata => "slicer metadata",
            Self::PrinterMetadata => "printer metadata",
            Self::PrintMetadata => "print metadata",
            Self::Thumbnail => "thumbnail",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Deflate,
    Heatshrink11,
    Heatshrink12,
}

/// One block's header and parameters.
#[derive(Debug, Clone, Copy)]
pub struct BlockHeader {
    /// Counted from 0 in file order.
    pub index: u64,
    /// Byte offset of the block in the file.
    pub offset: u64,
    pub kind: BlockType,
    pub compression: Compression,
    pub uncompressed: u32,
    pub stored: u32,
    /// `encoding` for metadata and G-code blocks; `format` for thumbnails.
    pub encoding: u16,
    /// Thumbnail width and height.
    pub size: (u16, u16),
    /// Header and parameter bytes as stored (the CRC covers them).
    raw: [u8; 18],
    raw_len: usize,
}

/// Reads blocks from a stream positioned right after the file header.
#[derive(Debug)]
pub struct BlockReader<R> {
    pub r: R,
    /// Offset of the next byte `r` gives.
    pub pos: u64,
    pub crc: bool,
    pub next_index: u64,
}

fn le16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}
fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads the file header; returns whether blocks carry a CRC32.
pub fn read_file_header(r: &mut impl Read) -> Result<bool, BgcodeError> {
    let mut h = [0u8; FILE_HEADER_BYTES as usize];
    let got = read_full(r, &mut h)?;
    if got == 0 {
        return Err(BgcodeError::Empty);
    }
    if got < 4 || &h[..4] != MAGIC {
        return Err(BgcodeError::BadMagic);
    }
    if got < h.len() {
        return Err(BgcodeError::Truncated {
            block: None,
            offset: 0,
            what: "the file header",
        });
    }
    let version = le32(&h[4..8]);
    if version != VERSION {
        return Err(BgcodeError::Version(version));
    }
    match le16(&h[8..10]) {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(BgcodeError::ChecksumType(other)),
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R: Read> BlockReader<R> {
    fn exact(
        &mut self,
        buf: &mut [u8],
        h: (u64, u64),
        what: &'static str,
    ) -> Result<(), BgcodeError> {
        let got = read_full(&mut self.r, buf)?;
        self.pos += got as u64;
        if got < buf.len() {
            return Err(BgcodeError::Truncated {
                block: Some(h.0),
                offset: h.1,
                what,
            });
        }
        Ok(())
    }

    /// The next block's header and parameters; `None` at a clean end of file.
    pub fn next_header(&mut self) -> Result<Option<BlockHeader>, BgcodeError> {
        let (index, offset) = (self.next_index, self.pos);
        let at = (index, offset);
        let mut raw = [0u8; 18];
        let got = read_full(&mut self.r, &mut raw[..2])?;
        self.pos += got as u64;
        match got {
            0 => return Ok(None),
            2 => {}
            _ => {
                return Err(BgcodeError::Truncated {
                    block: Some(index),
                    offset,
                    what: "its header",
                });
            }
        }
        self.exact(&mut raw[2..8], at, "its header")?;
        let ty = le16(&raw[0..2]);
        let kind = BlockType::from_u16(ty).ok_or(BgcodeError::BlockType {
            block: index,
            offset,
            ty,
        })?;
        let compression = match le16(&raw[2..4]) {
            0 => Compression::None,
            1 => Compression::Deflate,
            2 => Compression::Heatshrink11,
            3 => Compression::Heatshrink12,
            id => {
                return Err(BgcodeError::Compression {
                    block: index,
                    offset,
                    id,
                });
            }
        };
        let uncompressed = le32(&raw[4..8]);
        let mut len = 8;
        let stored = if compression == Compression::None {
            uncompressed
        } else {
            self.exact(&mut raw[8..12], at, "its header")?;
            len = 12;
            le32(&raw[8..12])
        };
        let params = if kind == BlockType::Thumbnail { 6 } else { 2 };
        self.exact(&mut raw[len..len + params], at, "its parameters")?;
        let p = &raw[len..len + params];
        let encoding = le16(p);
        let size = if params == 6 {
            (le16(&p[2..]), le16(&p[4..]))
        } else {
            (0, 0)
        };
        let h = BlockHeader {
            index,
            offset,
            kind,
            compression,
            uncompressed,
            stored,
            encoding,
            size,
            raw,
            raw_len: len + params,
        };
        // Refuse before allocating: a hostile header can declare 4 GiB.
        let limit = limit_for(kind);
        let stored_limit = limit + limit / 4 + 1024; // heatshrink/deflate overhead on incompressible data
        if uncompressed as usize > limit || stored as usize > stored_limit {
            return Err(BgcodeError::Oversized {
                block: index,
                offset,
                kind: kind.name(),
                size: u64::from(uncompressed.max(stored)),
                limit: limit as u64,
            });
        }
        self.next_index += 1;
        Ok(Some(h))
    }

    /// Reads the block's data and CRC, checks the CRC and decompresses.
    pub fn data(&mut self, h: &BlockHeader) -> Result<Vec<u8>, BgcodeError> {
        let at = (h.index, h.offset);
        let mut stored = vec![0u8; h.stored as usize];
        self.exact(&mut stored, at, "its data")?;
        if self.crc {
            let mut c = [0u8; 4];
            self.exact(&mut c, at, "its checksum")?;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&h.raw[..h.raw_len]);
            hasher.update(&stored);
            let computed = hasher.finalize();
            let found = le32(&c);
            if computed != found {
                return Err(BgcodeError::Crc {
                    block: h.index,
                    offset: h.offset,
                    found,
                    computed,
                });
            }
        }
        let corrupt = |what: &'static str| BgcodeError::Corrupt {
            block: h.index,
            offset: h.offset,
            what,
        };
        let size = h.uncompressed as usize;
        match h.compression {
            Compression::None => Ok(stored),
            Compression::Deflate => {
                let mut out = Vec::with_capacity(size);
                // One byte more than stated: a stream that inflates past its size is refused.
                ZlibDecoder::new(&stored[..])
                    .take(size as u64 + 1)
                    .read_to_end(&mut out)
                    .map_err(|_| corrupt("its deflate data does not inflate"))?;
                if out.len() != size {
                    return Err(corrupt(
                        "its deflate data inflates to another size than stated",
                    ));
                }
                Ok(out)
            }
            Compression::Heatshrink11 => heatshrink::decode(&stored, 11, size).map_err(corrupt),
            Compression::Heatshrink12 => heatshrink::decode(&stored, 12, size).map_err(corrupt),
        }
    }
}

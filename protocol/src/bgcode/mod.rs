//! Prusa binary G-code (`.bgcode`, libbgcode format version 1), decoded as a stream.
//!
//! A file is a 10-byte header (`GCDE`, version, checksum type) and blocks: file, printer,
//! thumbnail, print and slicer metadata, then G-code blocks, each CRC32-checked and stored
//! raw, zlib-deflated or heatshrunk (window 11 or 12, look-ahead 4); G-code blocks are
//! usually MeatPacked too. [`Decoder`] reads one block at a time and gives the text
//! libbgcode's `from_binary_to_ascii` writes, byte for byte (checked against the reference
//! converter in `tests/bgcode.rs`), so the G-code analyzer, metadata and thumbnail readers run
//! unchanged on it.
//!
//! **Bounded memory**: every declared size is checked against a limit before anything is
//! allocated ([`MAX_GCODE_BLOCK_BYTES`], [`MAX_METADATA_BYTES`], [`MAX_THUMBNAIL_BYTES`]); a
//! larger one is refused, never truncated. The decoder holds one block, the text of the
//! header blocks until it is read, and the print and slicer metadata (written after the
//! G-code in the text form, as libbgcode does) until the end.
//!
//! **Machine limits**: a PrusaSlicer ASCII file states its machine limits in the config block
//! at its end, which `analyze_seekable` reads first; here that block is the slicer metadata,
//! which comes before the G-code, so the limits are known before the first move.
//!
//! **Extrusion index by binary offset**: see [`seek`]. A printer (PrusaLink) reports its
//! position in the binary file; [`BinaryMap`] turns it into an offset in the decoded text.

mod block;
mod decoder;
mod heatshrink;
mod meatpack;
pub mod seek;

pub use block::MAGIC;
pub use decoder::Decoder;
pub use seek::{AsciiView, BinaryMap, Span};

use crate::gcode::analysis::analyze_with as analyze_text;
use crate::gcode::index::{ExtrusionIndex, ExtrusionIndexBuilder};
use crate::gcode::lines::for_each_line;
use crate::gcode::machine::Machine;
use crate::gcode::metadata::{Metadata, MetadataReader};
use crate::gcode::{Analysis, Content, Limits};
use block::BlockType;
use std::io::{self, BufRead, Read, Seek, SeekFrom};

/// Largest stated (MeatPacked) size of a G-code block. libbgcode fills 64 KiB of text per
/// block; MeatPack shrinks G-lines but can grow unpackable text by half, so 96 KiB plus slack.
pub const MAX_GCODE_BLOCK_BYTES: usize = 128 * 1024;
/// Largest metadata block (PrusaSlicer's full configuration is ~50 KiB).
pub const MAX_METADATA_BYTES: usize = 2 * 1024 * 1024;
/// Largest thumbnail block: the whole per-file thumbnail budget of the text reader.
pub const MAX_THUMBNAIL_BYTES: usize = crate::gcode::thumbnails::MAX_THUMBNAIL_BYTES;

fn limit_for(kind: BlockType) -> usize {
    match kind {
        BlockType::GCode => MAX_GCODE_BLOCK_BYTES,
        BlockType::Thumbnail => MAX_THUMBNAIL_BYTES,
        _ => MAX_METADATA_BYTES,
    }
}

const REEXPORT: &str = "re-export the file from the slicer";

/// What is wrong with a binary G-code file; each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BgcodeError {
    #[error("the file is empty: upload it again or re-export it from the slicer")]
    Empty,
    #[error(
        "not a binary G-code file (it does not start with \"GCDE\"): upload a .bgcode or .gcode file made by a slicer"
    )]
    BadMagic,
    #[error(
        "binary G-code version {0} is not supported (this reader knows version 1): {REEXPORT} with binary G-code version 1, or as plain .gcode"
    )]
    Version(u32),
    #[error("binary G-code checksum type {0} is unknown (known: 0 none, 1 CRC32): {REEXPORT}")]
    ChecksumType(u16),
    #[error("the file ends inside {} at byte {offset} (in {what}): the upload or copy was cut short; upload the file again", block.map_or("the file header".to_string(), |b| format!("block {b}")))]
    Truncated {
        block: Option<u64>,
        offset: u64,
        what: &'static str,
    },
    #[error(
        "block {block} at byte {offset} fails its CRC32 check (stored {found:08x}, computed {computed:08x}): the file is damaged; upload it again or {REEXPORT}"
    )]
    Crc {
        block: u64,
        offset: u64,
        found: u32,
        computed: u32,
    },
    #[error(
        "block {block} at byte {offset} has unknown type {ty}: {REEXPORT}, or update farm if the format gained a block type"
    )]
    BlockType { block: u64, offset: u64, ty: u16 },
    #[error(
        "block {block} at byte {offset} uses unknown compression {id} (known: 0 none, 1 deflate, 2 and 3 heatshrink): {REEXPORT}"
    )]
    Compression { block: u64, offset: u64, id: u16 },
    #[error("block {block} at byte {offset} has unknown {what} encoding {encoding}: {REEXPORT}")]
    Encoding {
        block: u64,
        offset: u64,
        what: &'static str,
        encoding: u16,
    },
    #[error(
        "block {block} at byte {offset} is corrupt ({what}): upload the file again or {REEXPORT}"
    )]
    Corrupt {
        block: u64,
        offset: u64,
        what: &'static str,
    },
    #[error(
        "block {block} at byte {offset} has a broken MeatPack stream ({what}): upload the file again or {REEXPORT}"
    )]
    MeatPack {
        block: u64,
        offset: u64,
        what: &'static str,
    },
    #[error(
        "block {block} at byte {offset} declares {size} bytes of {kind}, over the {limit}-byte limit: no slicer writes such a block; {REEXPORT}"
    )]
    Oversized {
        block: u64,
        offset: u64,
        kind: &'static str,
        size: u64,
        limit: u64,
    },
    #[error(
        "block {block} at byte {offset} is a {found} block where {expected} was expected: {REEXPORT}"
    )]
    Order {
        block: u64,
        offset: u64,
        found: &'static str,
        expected: &'static str,
    },
    #[error("reading the file: {0}")]
    Io(#[from] io::Error),
}

impl BgcodeError {
    /// Gets back the error a [`Decoder`] passed through `Read` as an `io::Error`.
    pub fn from_io(e: io::Error) -> Self {
        if !e.get_ref().is_some_and(|i| i.is::<BgcodeError>()) {
            return BgcodeError::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|i| i.downcast::<BgcodeError>()) {
            Some(Ok(b)) => *b,
            Some(Err(other)) => BgcodeError::Io(io::Error::new(kind, other)),
            None => BgcodeError::Io(kind.into()),
        }
    }
}

impl From<BgcodeError> for io::Error {
    fn from(e: BgcodeError) -> Self {
        match e {
            BgcodeError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// True when the stream at its current position starts with the `.bgcode` magic; the
/// position is left where it was.
pub fn sniff<R: Read + Seek>(r: &mut R) -> io::Result<bool> {
    let start = r.stream_position()?;
    let mut head = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    r.seek(SeekFrom::Start(start))?;
    Ok(got == 4 && &head == MAGIC)
}

/// The analyzer's [`Analysis`] of a `.bgcode` stream: the decoded text through the same
/// analyzer, starting from `base` (a firmware profile) with the slicer metadata's limits
/// applied, as `analyze_seekable_with` does for the ASCII twin.
pub fn analyze_with(r: impl Read, base: Limits) -> Result<Analysis, BgcodeError> {
    let mut d = Decoder::new(r)?;
    let limits = d.limits(base);
    analyze_text(&mut d, limits).map_err(BgcodeError::from_io)
}

/// What the slicer states (as `read_metadata` on the ASCII twin), thumbnails included.
pub fn read_metadata(r: impl Read) -> Result<Metadata, BgcodeError> {
    let mut reader = MetadataReader::default();
    for_each_line(Decoder::new(r)?, |content, _| {
        if let Content::Text(t) = content {
            reader.line(t);
        }
    })
    .map_err(BgcodeError::from_io)?;
    Ok(reader.finish())
}

/// [`read_metadata`] or the ASCII reader, by the file's first bytes.
pub fn read_metadata_seekable<R: BufRead + Seek>(mut r: R) -> io::Result<Metadata> {
    if sniff(&mut r)? {
        return Ok(read_metadata(r)?);
    }
    crate::gcode::read_metadata(r)
}

/// The extrusion index of a `.bgcode` file, queried by offsets in the binary file (see
/// [`seek`]). `base` as for [`analyze_with`], so `total_s` is the analysis' time.
pub fn build_index(r: impl Read, base: Limits, stride: u64) -> Result<ExtrusionIndex, BgcodeError> {
    let mut d = Decoder::new(r)?.recording();
    let limits = d.limits(base);
    let mut b = ExtrusionIndexBuilder::with_machine(Machine::new(limits), stride);
    for_each_line(&mut d, |c, len| b.line(c, len)).map_err(BgcodeError::from_io)?;
    let map = d.finish_map();
    let mut index = b.finish();
    index.binary = Some(map);
    Ok(index)
}

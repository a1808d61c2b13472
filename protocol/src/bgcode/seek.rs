//! Offsets in a `.bgcode` file ↔ offsets in its decoded text, for the extrusion index.
//!
//! A printer that prints a `.bgcode` (PrusaLink) reports how far it has read the *binary*
//! file. The extrusion index works on text offsets, so [`BinaryMap`] keeps, for each G-code
//! block, where it starts in the binary and where its text starts ([`Span`]), plus a first
//! span for the metadata blocks (binary 0 → text 0).
//!
//! **Rule** ([`BinaryMap::text_offset`]): an offset inside a block counts none of the
//! block's text; once the offset is past the block's checksum, all of it. So the answer is
//! exact at every block boundary, never ahead of what the printer can have decoded (a
//! compressed block decodes only whole, and its text is not spread evenly over its bytes,
//! so a proportional guess could bill lines not yet read), non-decreasing, and at the end of
//! the file it is the end of the text: the index's totals. Inside a block the answer lags by
//! at most one block (≤ 64 KiB of text, a few seconds to a few minutes of printing).
//!
//! **Memory**: one [`Span`] (24 bytes) per G-code block, at most [`MAX_SPANS`]; past that,
//! every other span is dropped (two blocks then count as one, the same rule applied to the
//! pair), so a hostile file of tiny blocks cannot grow the map without bound.

use super::{BgcodeError, Decoder};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, Read, Seek, SeekFrom};

/// Most spans a map keeps (6 MiB); a 200 MB G-code file has ~3 500 blocks.
pub const MAX_SPANS: usize = 1 << 18;

/// Where a G-code block (or, first, the metadata) starts in the binary file and in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub bin: u64,
    pub ascii: u64,
    /// The block's index in the file (for error messages after a resume).
    pub block: u64,
}

/// Spans over one `.bgcode` file; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BinaryMap {
    /// Size of the binary file.
    pub bytes: u64,
    /// Size of the decoded text.
    pub text_bytes: u64,
    /// In offset order; the first is the metadata at binary 0, text 0.
    pub spans: Vec<Span>,
}

impl BinaryMap {
    /// The text offset whose lines a printer at binary offset `bin` has read: see the rule.
    pub fn text_offset(&self, bin: u64) -> u64 {
        if bin >= self.bytes {
            return self.text_bytes;
        }
        let i = self
            .spans
            .partition_point(|s| s.bin <= bin)
            .saturating_sub(1);
        self.spans.get(i).map_or(0, |s| s.ascii)
    }

    /// The span to start decoding from to reach text offset `text`.
    fn start_for(&self, text: u64) -> Span {
        let i = self
            .spans
            .partition_point(|s| s.ascii <= text)
            .saturating_sub(1);
        self.spans.get(i).copied().unwrap_or(Span {
            bin: 0,
            ascii: 0,
            block: 0,
        })
    }
}

/// Builds a [`BinaryMap`] as the decoder meets G-code blocks.
#[derive(Debug)]
pub struct SpanRecorder {
    spans: Vec<Span>,
    /// Record one block in `every` (doubled each time the map is thinned).
    every: u64,
    seen: u64,
}

impl Default for SpanRecorder {
    fn default() -> Self {
        Self {
            spans: vec![Span {
                bin: 0,
                ascii: 0,
                block: 0,
            }],
            every: 1,
            seen: 0,
        }
    }
}

impl SpanRecorder {
    pub fn block(&mut self, s: Span) {
        if self.seen.is_multiple_of(self.every) {
            self.spans.push(s);
            if self.spans.len() > MAX_SPANS {
                // Keep the metadata span and every other block span, starting with the first.
                let mut i = 0;
                self.spans.retain(|_| {
                    i += 1;
                    i == 1 || i % 2 == 0
                });
                self.every = self.every.saturating_mul(2);
            }
        }
        self.seen += 1;
    }

    pub fn finish(&mut self, bytes: u64, text_bytes: u64) -> BinaryMap {
        BinaryMap {
            bytes,
            text_bytes,
            spans: std::mem::take(&mut self.spans),
        }
    }
}

/// The decoded text of a `.bgcode` file as a seekable stream (`SeekFrom::Start` only): a
/// seek decodes from the block its offset falls in. This is what the extrusion index replays.
pub struct AsciiView<'a, R> {
    file: Option<R>,
    decoder: Option<Decoder<R>>,
    map: &'a BinaryMap,
}

impl<'a, R: Read + Seek> AsciiView<'a, R> {
    pub fn new(file: R, map: &'a BinaryMap) -> Self {
        Self {
            file: Some(file),
            decoder: None,
            map,
        }
    }

    fn open_at(&mut self, text: u64) -> Result<(), BgcodeError> {
        let mut r = match (self.file.take(), self.decoder.take()) {
            (Some(f), _) => f,
            (None, Some(d)) => d.into_inner(),
            (None, None) => {
                return Err(io::Error::other("the file was lost by an earlier error").into());
            }
        };
        let span = self.map.start_for(text);
        let mut d = if span.bin == 0 {
            r.seek(SeekFrom::Start(0))?;
            Decoder::new(r)?
        } else {
            Decoder::resume(r, span)?
        };
        let mut skip = text - span.ascii;
        while skip > 0 {
            let got = d.fill_buf().map_err(BgcodeError::from_io)?.len();
            if got == 0 {
                break;
            }
            let n = got.min(usize::try_from(skip).unwrap_or(usize::MAX));
            d.consume(n);
            skip -= n as u64;
        }
        self.decoder = Some(d);
        Ok(())
    }
}

impl<R: Read + Seek> Seek for AsciiView<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let SeekFrom::Start(text) = pos else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "decoded binary G-code seeks only from the start",
            ));
        };
        self.open_at(text)?;
        Ok(text)
    }
}

impl<R: Read + Seek> Read for AsciiView<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.decoder.is_none() {
            self.open_at(0)?;
        }
        match &mut self.decoder {
            Some(d) => d.read(buf),
            None => Ok(0),
        }
    }
}

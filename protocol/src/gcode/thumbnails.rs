//! Preview images slicers embed in G-code comments (PrusaSlicer `; thumbnail begin WxH LEN`,
//! `thumbnail_JPG`/`thumbnail_QOI`, Cura/Creality `; png begin`), decoded from base64.
//!
//! Bounded: at most [`MAX_THUMBNAIL_BYTES`] decoded bytes per file, and never more base64
//! text held than that budget or the block's stated length allows. A block that is broken
//! (bad base64, no end, wrong magic bytes or size, over budget) is counted, never returned.

use base64::Engine;
use serde::{Deserialize, Serialize};

/// Decoded thumbnail bytes kept per file; blocks beyond this are counted in
/// [`Metadata::thumbnails_skipped`](super::Metadata::thumbnails_skipped) (a 2 MiB budget holds the usual 2–4 PNGs many times over).
pub const MAX_THUMBNAIL_BYTES: usize = 2 * 1024 * 1024;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThumbnailFormat {
    Png,
    Jpg,
    Qoi,
}

/// One embedded preview image, decoded from base64. `width`/`height` are as stated in the
/// block header (and checked against the image header for PNG and QOI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    pub format: ThumbnailFormat,
    pub width: u32,
    pub height: u32,
    /// Image bytes; base64 in JSON so the API does not send them as a number array.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

/// Collects thumbnail blocks from comment lines, one line at a time.
#[derive(Debug, Default)]
pub struct ThumbnailCollector {
    block: Option<ThumbBlock>,
    bytes: usize,
    kept: Vec<Thumbnail>,
    skipped: u32,
}

#[derive(Debug)]
struct ThumbBlock {
    tag: String,
    format: ThumbnailFormat,
    width: u32,
    height: u32,
    stated_len: Option<usize>,
    b64: String,
    broken: bool,
}

impl ThumbnailCollector {
    /// True while inside a `begin` … `end` block: comment lines belong to it.
    pub fn in_block(&self) -> bool {
        self.block.is_some()
    }

    /// A comment line that is not text arrived inside the block.
    pub fn mark_broken(&mut self) {
        if let Some(b) = &mut self.block {
            b.broken = true;
        }
    }

    /// Something other than a comment (code, end of file) arrived: an open block is lost.
    pub fn interrupt(&mut self) {
        if self.block.take().is_some() {
            self.skipped += 1;
        }
    }

    /// The images kept and how many blocks were dropped.
    pub fn finish(mut self) -> (Vec<Thumbnail>, u32) {
        self.interrupt();
        (self.kept, self.skipped)
    }

    /// `thumbnail begin 220x124 15684`, `thumbnail_QOI begin …`, `png begin 300*300 …`.
    pub fn begin(&mut self, c: &str) -> bool {
        let mut words = c.split_whitespace();
        let (Some(tag), Some("begin")) = (words.next(), words.next()) else {
            return false;
        };
        let format = match tag {
            "thumbnail" | "thumbnail_PNG" | "png" => ThumbnailFormat::Png,
            "thumbnail_JPG" | "jpg" => ThumbnailFormat::Jpg,
            "thumbnail_QOI" => ThumbnailFormat::Qoi,
            _ => return false,
        };
        let dims = words.next().and_then(|d| d.split_once(['x', '*']));
        let dims = dims.and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
        let stated_len = words.next().and_then(|l| l.parse().ok());
        let Some((width, height)) = dims else {
            self.skipped += 1;
            return true;
        };
        self.block = Some(ThumbBlock {
            tag: tag.to_owned(),
            format,
            width,
            height,
            stated_len,
            b64: String::new(),
            broken: false,
        });
        true
    }

    pub fn line(&mut self, c: &str) {
        let Some(b) = &mut self.block else { return };
        let mut words = c.split_whitespace();
        match (words.next(), words.next()) {
            (Some(tag), Some("end")) if tag == b.tag => {
                let done = self.block.take();
                self.end(done);
                return;
            }
            (Some(_), Some("begin")) => {
                // A new block before this one ended: this one is lost.
                self.block = None;
                self.skipped += 1;
                self.begin(c);
                return;
            }
            _ => {}
        }
        // Never hold more text than the stated length or the remaining budget allows.
        let budget = (MAX_THUMBNAIL_BYTES - self.bytes) / 3 * 4 + 4;
        let limit = b.stated_len.map_or(budget, |l| l.min(budget));
        if b.broken || b.b64.len() + c.len() > limit {
            b.broken = true;
            b.b64 = String::new();
        } else if c
            .bytes()
            .all(|x| x.is_ascii_alphanumeric() || b"+/=".contains(&x))
        {
            b.b64.push_str(c);
        } else {
            b.broken = true;
        }
    }

    fn end(&mut self, block: Option<ThumbBlock>) {
        let thumb = block.filter(|b| !b.broken).and_then(|b| {
            let data = base64::engine::general_purpose::STANDARD
                .decode(b.b64.as_bytes())
                .ok()?;
            image_matches(b.format, b.width, b.height, &data).then_some(Thumbnail {
                format: b.format,
                width: b.width,
                height: b.height,
                data,
            })
        });
        match thumb {
            Some(t) if self.bytes + t.data.len() <= MAX_THUMBNAIL_BYTES => {
                self.bytes += t.data.len();
                self.kept.push(t);
            }
            _ => self.skipped += 1,
        }
    }
}

/// A PNG file as it is (a 3MF keeps plate previews as files): its size from its `IHDR`, kept only
/// if it is a whole PNG header of that size and within [`MAX_THUMBNAIL_BYTES`].
pub fn png_thumbnail(data: Vec<u8>) -> Option<Thumbnail> {
    let be = |at: usize| Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?));
    let (width, height) = (be(16)?, be(20)?);
    (data.len() <= MAX_THUMBNAIL_BYTES
        && width > 0
        && height > 0
        && image_matches(ThumbnailFormat::Png, width, height, &data))
    .then_some(Thumbnail {
        format: ThumbnailFormat::Png,
        width,
        height,
        data,
    })
}

/// Checks the magic bytes, and for PNG and QOI that the image header has the stated size.
fn image_matches(format: ThumbnailFormat, w: u32, h: u32, d: &[u8]) -> bool {
    let be = |at: usize| {
        d.get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    };
    match format {
        ThumbnailFormat::Png => {
            d.starts_with(b"\x89PNG\r\n\x1a\n")
                && d.get(12..16) == Some(b"IHDR")
                && be(16) == Some(w)
                && be(20) == Some(h)
        }
        ThumbnailFormat::Qoi => d.starts_with(b"qoif") && be(4) == Some(w) && be(8) == Some(h),
        ThumbnailFormat::Jpg => d.starts_with(&[0xFF, 0xD8, 0xFF]),
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

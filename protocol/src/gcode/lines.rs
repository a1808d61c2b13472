//! Splitting a byte stream into G-code lines with bounded memory.
//!
//! One set of rules for everyone who reads a file line by line (the analyzer, the simulated
//! printer, later the serial streamer), so that their byte offsets and totals agree exactly:
//! a line ends at LF (a CR before it is dropped), the last line may lack its LF, a line longer
//! than [`MAX_LINE_BYTES`] is skipped whole, and a line with a NUL byte is binary junk.

/// Longest line kept whole; longer lines are counted and skipped (never buffered unbounded).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// What a finished line holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content<'a> {
    /// The line's text, without CR/LF.
    Text(&'a [u8]),
    /// Longer than [`MAX_LINE_BYTES`]; its bytes were not kept.
    Overlong,
    /// Contains a NUL byte: not G-code.
    Binary,
}

/// Feed it the reader's buffered bytes; it says how many it took and when a line is complete.
#[derive(Debug, Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
    overlong: bool,
    len: u64,
}

impl LineSplitter {
    /// Takes bytes from the front of `chunk`, up to and including the first LF.
    /// Returns how many bytes it took and whether they ended a line.
    pub fn feed(&mut self, chunk: &[u8]) -> (usize, bool) {
        // memchr: the newline search is most of the splitting cost, and it vectorises.
        let (take, eol) = match memchr::memchr(b'\n', chunk) {
            Some(p) => (p + 1, true),
            None => (chunk.len(), false),
        };
        if !self.overlong {
            if self.buf.len() + take > MAX_LINE_BYTES {
                self.overlong = true;
                self.buf = Vec::new(); // give the memory back
            } else {
                self.buf.extend_from_slice(&chunk[..take]);
            }
        }
        self.len += take as u64;
        (take, eol)
    }

    /// True when bytes of an unfinished line are held (at end of input: a last line without LF).
    pub fn pending(&self) -> bool {
        self.len > 0
    }

    /// Bytes the current line occupies in the stream, newline included.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn content(&self) -> Content<'_> {
        if self.overlong {
            return Content::Overlong;
        }
        let t = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let t = t.strip_suffix(b"\r").unwrap_or(t);
        if memchr::memchr(0, t).is_some() {
            Content::Binary
        } else {
            Content::Text(t)
        }
    }

    /// Starts the next line.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.overlong = false;
        self.len = 0;
    }
}

/// Feeds a whole stream through `on_line(content, len)` with the one set of line rules
/// (`len` is the line's size in the stream, newline included).
pub fn for_each_line(
    mut r: impl std::io::BufRead,
    mut on_line: impl FnMut(Content<'_>, u64),
) -> std::io::Result<()> {
    let mut lines = LineSplitter::default();
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let (take, eol) = lines.feed(chunk);
        r.consume(take);
        if eol {
            on_line(lines.content(), lines.len());
            lines.clear();
        }
    }
    if lines.pending() {
        on_line(lines.content(), lines.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(mut input: &[u8], chunk: usize) -> Vec<(String, u64)> {
        let mut s = LineSplitter::default();
        let mut out = vec![];
        let mut emit = |s: &LineSplitter| {
            let c = match s.content() {
                Content::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Content::Overlong => "<overlong>".into(),
                Content::Binary => "<binary>".into(),
            };
            out.push((c, s.len()));
        };
        while !input.is_empty() {
            let (took, done) = s.feed(&input[..chunk.min(input.len())]);
            input = &input[took..];
            if done {
                emit(&s);
                s.clear();
            }
        }
        if s.pending() {
            emit(&s);
        }
        out
    }

    #[test]
    fn lines_offsets_and_junk_whatever_the_chunking() {
        let mut g = b"G1 X1\r\n\x00\n".to_vec();
        g.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 1));
        g.extend_from_slice(b"\nM84");
        for chunk in [1, 3, 4096, usize::MAX] {
            let got = split(&g, chunk);
            assert_eq!(
                got,
                vec![
                    ("G1 X1".into(), 7),
                    ("<binary>".into(), 2),
                    ("<overlong>".into(), MAX_LINE_BYTES as u64 + 2),
                    ("M84".into(), 3)
                ],
                "chunk {chunk}"
            );
        }
    }
}

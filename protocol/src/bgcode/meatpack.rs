//! MeatPack decoding and the text clean-up libbgcode applies to every G-code block, so our
//! decoded text is byte for byte what libbgcode's `from_binary_to_ascii` writes.
//!
//! MeatPack packs two characters of a small table (`0-9 . space \n G X`, `E` for space in
//! "no spaces" mode) into the low then high nibble of a byte; `0b1111` means the character
//! follows as a whole byte. `FF FF` followed by a command byte switches modes. The encoder
//! strips comments and spaces from G-lines, so the decoder puts a space back before each
//! parameter letter of a line that starts with `G` (libbgcode `meatpack.cpp unbinarize`).
//! Every block starts a fresh decoder: the encoder starts a fresh one per block.

const SIGNAL: u8 = 0xFF;
const ENABLE_PACKING: u8 = 251;
const DISABLE_PACKING: u8 = 250;
const RESET_ALL: u8 = 249;
const QUERY_CONFIG: u8 = 248;
const ENABLE_NO_SPACES: u8 = 247;
const DISABLE_NO_SPACES: u8 = 246;

/// Letters before which the decoder re-inserts a space on a G-line (libbgcode's list).
const G_PARAMETERS: &[u8] = b"XYZEFIJRSGPWHCA";

const fn parameter_table() -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < G_PARAMETERS.len() {
        t[G_PARAMETERS[i] as usize] = true;
        i += 1;
    }
    t
}

/// [`G_PARAMETERS`] as a lookup table (the test runs once per decoded character).
static IS_PARAMETER: [bool; 256] = parameter_table();

#[derive(Default)]
struct Unpacker {
    packing: bool,
    no_spaces: bool,
    /// Whole-byte characters still to come for the current packed byte.
    full_chars: u8,
    /// A packed second character held until the whole-byte first one arrives.
    held: Option<u8>,
    chars: [u8; 4],
    n: usize,
}

impl Unpacker {
    fn emit(&mut self, c: u8) {
        // At most two received bytes per input byte, two characters each.
        if self.n < self.chars.len() {
            self.chars[self.n] = c;
            self.n += 1;
        }
    }

    fn nibble(&self, v: u8) -> u8 {
        match v {
            0..=9 => b'0' + v,
            10 => b'.',
            11 if self.no_spaces => b'E',
            11 => b' ',
            12 => b'\n',
            13 => b'G',
            _ => b'X', // 14; 15 is "whole byte follows" and never reaches here
        }
    }

    fn receive(&mut self, c: u8) {
        if !self.packing {
            self.emit(c);
        } else if self.full_chars > 0 {
            self.emit(c);
            if let Some(h) = self.held.take() {
                self.emit(h);
            }
            self.full_chars -= 1;
        } else {
            let (lo, hi) = (c & 0x0F, c >> 4);
            if lo == 0x0F {
                self.full_chars += 1;
                if hi == 0x0F {
                    self.full_chars += 1;
                } else {
                    self.held = Some(self.nibble(hi));
                }
            } else {
                let first = self.nibble(lo);
                self.emit(first);
                // A newline ends the pair: the high nibble is padding.
                if first != b'\n' {
                    if hi == 0x0F {
                        self.full_chars += 1;
                    } else {
                        let second = self.nibble(hi);
                        self.emit(second);
                    }
                }
            }
        }
    }

    fn command(&mut self, c: u8) -> Result<(), &'static str> {
        match c {
            ENABLE_PACKING => self.packing = true,
            DISABLE_PACKING | RESET_ALL => self.packing = false,
            ENABLE_NO_SPACES => self.no_spaces = true,
            DISABLE_NO_SPACES => self.no_spaces = false,
            QUERY_CONFIG => {}
            _ => return Err("unknown MeatPack command after an FF FF signal"),
        }
        Ok(())
    }
}

/// Decodes one block's MeatPack bytes into text, spaces re-inserted as libbgcode does.
pub fn unpack(src: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut u = Unpacker::default();
    let mut out: Vec<u8> = Vec::with_capacity(src.len() * 2);
    let mut signals = 0u8;
    let mut command_next = false;
    let mut spacing = false;
    for &b in src {
        if b == SIGNAL {
            if signals > 0 {
                command_next = true;
                signals = 0;
            } else {
                signals += 1;
            }
        } else if command_next {
            u.command(b)?;
            command_next = false;
        } else {
            if signals > 0 {
                // A lone FF was a packed byte (two whole characters follow), not a signal.
                u.receive(SIGNAL);
                signals = 0;
            }
            u.receive(b);
        }
        for i in 0..std::mem::take(&mut u.n) {
            let c = u.chars[i];
            let prev = out.last().copied();
            let line_start = prev.is_none_or(|p| p == b'\n');
            let g_start = c == b'G' && line_start;
            if g_start {
                spacing = true;
            } else if c == b'\n' {
                spacing = false;
            }
            if !g_start && spacing && prev != Some(b' ') && IS_PARAMETER[usize::from(c)] {
                out.push(b' ');
            }
            // Blank lines collapse (libbgcode never writes "\n\n").
            if c != b'\n' || out.last() != Some(&b'\n') {
                out.push(c);
            }
        }
    }
    if signals > 0 || command_next {
        return Err("MeatPack data ends inside an FF FF signal");
    }
    if u.full_chars > 0 {
        return Err("MeatPack data ends before the characters its last byte announced");
    }
    Ok(out)
}

fn trim(s: &[u8]) -> &[u8] {
    let is_blank = |c: &u8| *c == b' ' || *c == b'\t';
    let start = s.iter().position(|c| !is_blank(c)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|c| !is_blank(c))
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// libbgcode's `remove_empty_lines`: keeps the lines that hold more than blanks or a bare
/// `;`, each ended by a newline (a last line without one gets one).
pub fn drop_empty_lines(text: &[u8], out: &mut Vec<u8>) {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    if text.is_empty() {
        return;
    }
    for line in body.split(|&c| c == b'\n') {
        let t = trim(line);
        let t = match t.strip_prefix(b";") {
            Some(rest) => trim(rest),
            None => t,
        };
        if !t.is_empty() {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_g_lines_get_their_spaces_back() {
        // FF FF FB (packing on), FF FF F7 (no spaces); "G1X10\n" packed; then packing off and
        // a comment line verbatim; then a lone FF = two whole characters "Y5", then "\n".
        let mut src = vec![0xFF, 0xFF, 0xFB, 0xFF, 0xFF, 0xF7, 0x1D, 0x1E, 0xC0];
        src.extend_from_slice(&[0x1D, 0xFF, b'Y', b'5', 0xCC]);
        src.extend_from_slice(&[0xFF, 0xFF, 0xFA]);
        src.extend_from_slice(b";LAYER 1\n");
        let got = unpack(&src).expect("unpack");
        assert_eq!(String::from_utf8_lossy(&got), "G1 X10\nG1 Y5\n;LAYER 1\n");
        // 0xB in no-spaces mode is `E`, and gets a space before it.
        let e = unpack(&[0xFF, 0xFF, 0xFB, 0xFF, 0xFF, 0xF7, 0x1D, 0x2B, 0x0C]).expect("e");
        assert_eq!(e, b"G1 E2\n");
    }

    #[test]
    fn broken_streams_are_refused() {
        assert!(unpack(&[0xFF, 0xFF, 0x05]).is_err(), "unknown command");
        assert!(
            unpack(&[0xFF, 0xFF, 0xFB, 0xFF]).is_err(),
            "ends in a signal"
        );
        assert!(
            unpack(&[0xFF, 0xFF, 0xFB, 0x1F]).is_err(),
            "announced char missing"
        );
    }

    #[test]
    fn empty_and_comment_only_lines_are_dropped() {
        let mut out = vec![];
        drop_empty_lines(b"G1 X1\n\n  \n;\n; \t\n;x\nM84", &mut out);
        assert_eq!(out, b"G1 X1\n;x\nM84\n");
    }
}

//! Heatshrink (LZSS) decoding, as libbgcode's G-code blocks use it: window 2^11 or 2^12
//! bytes, look-ahead 2^4, every block compressed on its own (the window starts zero-filled).
//!
//! The bit stream is read MSB first: a `1` tag bit is a literal (the next 8 bits); a `0` is a
//! back-reference, `index` (window bits) then `count` (look-ahead bits), copying `count + 1`
//! bytes from `index + 1` bytes back. The encoder pads the last byte with bits, so decoding
//! stops at the block's stated size; a stream that ends before it is corrupt.

/// Decodes `input` into exactly `size` bytes. `window_bits` is 11 or 12.
pub fn decode(input: &[u8], window_bits: u32, size: usize) -> Result<Vec<u8>, &'static str> {
    const LOOKAHEAD_BITS: u32 = 4;
    let mut out = Vec::with_capacity(size);
    let mut bits = Bits {
        input,
        at: 0,
        acc: 0,
        n: 0,
    };
    while out.len() < size {
        let Some(tag) = bits.take(1) else {
            return Err("heatshrink data ends before the block's stated size");
        };
        if tag == 1 {
            let Some(byte) = bits.take(8) else {
                return Err("heatshrink data ends inside a literal");
            };
            out.push(byte as u8);
            continue;
        }
        let (Some(index), Some(count)) = (bits.take(window_bits), bits.take(LOOKAHEAD_BITS)) else {
            return Err("heatshrink data ends inside a back-reference");
        };
        let back = index as usize + 1;
        let count = (count as usize + 1).min(size - out.len());
        for _ in 0..count {
            // Before the start of the block the window holds zeros, as heatshrink's does.
            let b = out.len().checked_sub(back).map_or(0, |i| out[i]);
            out.push(b);
        }
    }
    Ok(out)
}

/// MSB-first bit reader, refilled a byte at a time into a 64-bit accumulator.
struct Bits<'a> {
    input: &'a [u8],
    /// Next byte of `input` to load.
    at: usize,
    acc: u64,
    /// Valid low bits of `acc`.
    n: u32,
}

impl Bits<'_> {
    fn take(&mut self, n: u32) -> Option<u32> {
        while self.n < n {
            let &b = self.input.get(self.at)?;
            self.acc = self.acc << 8 | u64::from(b);
            self.n += 8;
            self.at += 1;
        }
        self.n -= n;
        Some(((self.acc >> self.n) & ((1u64 << n) - 1)) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs (tag, value, width) triples MSB first, as the encoder does.
    fn pack(fields: &[(u32, u32)]) -> Vec<u8> {
        let mut out = vec![];
        let mut acc = 0u64;
        let mut n = 0;
        for &(v, w) in fields {
            acc = acc << w | u64::from(v);
            n += w;
            while n >= 8 {
                out.push((acc >> (n - 8)) as u8);
                n -= 8;
            }
        }
        if n > 0 {
            out.push((acc << (8 - n)) as u8);
        }
        out
    }

    #[test]
    fn literals_and_a_back_reference_into_the_zero_window() {
        // "ab", then copy 4 bytes from 2 back ("abab"), then 2 bytes from 10 back (zeros).
        let data = pack(&[
            (1, 1),
            (b'a'.into(), 8),
            (1, 1),
            (b'b'.into(), 8),
            (0, 1),
            (1, 12),
            (3, 4),
            (0, 1),
            (9, 12),
            (1, 4),
        ]);
        let got = decode(&data, 12, 8).expect("decode");
        assert_eq!(got, b"ababab\0\0");
        assert!(decode(&data, 12, 9).is_err(), "short data is refused");
        let w11 = pack(&[(1, 1), (b'x'.into(), 8), (0, 1), (0, 11), (2, 4)]);
        assert_eq!(decode(&w11, 11, 4).expect("decode"), b"xxxx");
    }
}

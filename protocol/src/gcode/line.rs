//! One line of G-code, split into words without copying.

/// A parsed line. `command` is e.g. `G1`, `M104`, `T0` (upper-cased letter, number as written);
/// `None` for blank or comment-only lines and for words the model does not know (macros).
#[derive(Debug, Clone, PartialEq)]
pub struct Line<'a> {
    pub letter: Option<u8>,
    pub number: Option<u32>,
    /// Sub-code after a dot (`G29.1` → 1); rare.
    pub sub: Option<u32>,
    params: [Option<f64>; 26],
    /// Letters written as parameters, with or without a number (`G28 X` names X), bit 0 = A.
    named: u32,
    /// Text after `;` (or inside the first `( )`), trimmed.
    pub comment: Option<&'a str>,
    /// The first word when it is not a letter+number code, e.g. `PAUSE` or `SET_PRINT_STATS_INFO`.
    pub macro_name: Option<&'a str>,
    /// For a macro: the rest of the line before any comment, trimmed (e.g. `ACCEL=7000 ACCEL_TO_DECEL=3500`).
    pub macro_args: Option<&'a str>,
}

impl<'a> Line<'a> {
    /// The value of parameter `c` (`'X'`, `'E'`, …), if present with a finite number.
    pub fn get(&self, c: char) -> Option<f64> {
        let i = (c.to_ascii_uppercase() as usize).checked_sub('A' as usize)?;
        self.params.get(i).copied().flatten()
    }

    pub fn has(&self, c: char) -> bool {
        self.get(c).is_some()
    }

    /// Whether parameter `c` is written at all, even without a number (`G28 X`): what the
    /// slicers' G-code reader calls `has(axis)`.
    pub fn names(&self, c: char) -> bool {
        (c.to_ascii_uppercase() as u32)
            .checked_sub('A' as u32)
            .is_some_and(|i| i < 26 && self.named & (1 << i) != 0)
    }

    /// True when the line is exactly `letter number` (e.g. `is(b'G', 1)`).
    pub fn is(&self, letter: u8, number: u32) -> bool {
        self.letter == Some(letter) && self.number == Some(number)
    }

    /// True if no axis parameter is present at all.
    pub fn no_params(&self) -> bool {
        self.params.iter().all(Option::is_none)
    }
}

/// Exact powers of ten representable in an f64 (10^0 ..= 10^22).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Fast path for the common shape `[+-]digits[.digits]`: the digits form an integer mantissa
/// below 2^53 and at most 22 of them are decimals, so `mantissa / 10^decimals` is a single
/// correctly rounded division of two exact values, bit-identical to `str::parse::<f64>`.
/// Returns `None` (use the general path) for anything else, including a token that the general
/// scanner would extend (exponent, second dot, sign…).
#[inline]
fn parse_simple(s: &[u8]) -> Option<(f64, usize)> {
    let mut i = 0;
    let neg = match s.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let start = i;
    let mut m: u64 = 0;
    while let Some(&d) = s.get(i).filter(|d| d.is_ascii_digit()) {
        m = m.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
        i += 1;
    }
    let mut digits = i - start;
    let mut decimals = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(&d) = s.get(i).filter(|d| d.is_ascii_digit()) {
            m = m.wrapping_mul(10).wrapping_add(u64::from(d - b'0'));
            i += 1;
        }
        decimals = i - frac_start;
        digits += decimals;
    }
    // The general scanner must stop at the same byte, or the token has another shape.
    let ends_here = match s.get(i) {
        None => true,
        Some(b'0'..=b'9' | b'.' | b'-' | b'+') => false,
        Some(b'e' | b'E') => !s.get(i + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    };
    if !ends_here || digits == 0 || digits > 19 || m >= 1 << 53 || decimals >= POW10.len() {
        return None;
    }
    let v = m as f64 / POW10[decimals];
    Some((if neg { -v } else { v }, i))
}

fn parse_number(s: &[u8]) -> (Option<f64>, usize) {
    if let Some((v, used)) = parse_simple(s) {
        return (Some(v), used);
    }
    parse_number_general(s)
}

fn parse_number_general(s: &[u8]) -> (Option<f64>, usize) {
    let mut end = 0;
    while end < s.len() && matches!(s[end], b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E') {
        // 'E' is also an axis letter: only take it as exponent if digits follow and we have a mantissa.
        if matches!(s[end], b'e' | b'E')
            && !(end > 0 && s.get(end + 1).is_some_and(u8::is_ascii_digit))
        {
            break;
        }
        end += 1;
    }
    let v = std::str::from_utf8(&s[..end])
        .ok()
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|v| v.is_finite());
    (v, end)
}

/// Parses one line (without its newline). Never fails: unknown bytes are skipped.
pub fn parse_line(raw: &[u8]) -> Line<'_> {
    let mut line = Line {
        letter: None,
        number: None,
        sub: None,
        params: [None; 26],
        named: 0,
        comment: None,
        macro_name: None,
        macro_args: None,
    };
    // Cut the comment first so a ';' or '(' inside it cannot start a word.
    // The code stops at a checksum `*45` too; one search finds whichever comes first.
    let mut s = raw;
    if let Some(p) = memchr::memchr2(b';', b'*', raw) {
        s = &raw[..p];
        let semicolon = if raw[p] == b';' {
            Some(p)
        } else {
            memchr::memchr(b';', &raw[p..]).map(|q| p + q)
        };
        if let Some(c) = semicolon {
            line.comment = std::str::from_utf8(&raw[c + 1..]).ok().map(str::trim);
        }
    }
    let mut i = 0;
    let mut first = true;
    while i < s.len() {
        let b = s[i];
        if b == b'(' {
            let close = s[i..]
                .iter()
                .position(|&c| c == b')')
                .map_or(s.len(), |p| i + p + 1);
            if line.comment.is_none() {
                line.comment = std::str::from_utf8(&s[i + 1..close.saturating_sub(1).max(i + 1)])
                    .ok()
                    .map(str::trim);
            }
            i = close;
            continue;
        }
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if !b.is_ascii_alphabetic() {
            i += 1;
            continue;
        }
        let letter = b.to_ascii_uppercase();
        // A macro word: letters/underscores beyond one letter (Klipper-style commands).
        if first
            && s.get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        {
            let w_end = s[i..]
                .iter()
                .position(|c| c.is_ascii_whitespace())
                .map_or(s.len(), |p| i + p);
            line.macro_name = std::str::from_utf8(&s[i..w_end]).ok();
            line.macro_args = std::str::from_utf8(&s[w_end..]).ok().map(str::trim);
            return line;
        }
        if first && matches!(letter, b'G' | b'M' | b'T') {
            // The common `G1`, `M104`, `T0`: plain digits, no float (and no libm trunc/round).
            let digits = s[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            let ends = s
                .get(i + 1 + digits)
                .is_none_or(|c| !matches!(c, b'0'..=b'9' | b'.' | b'-' | b'+' | b'e' | b'E'));
            if (1..=9).contains(&digits) && ends {
                first = false;
                line.letter = Some(letter);
                let n = s[i + 1..i + 1 + digits]
                    .iter()
                    .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
                line.number = Some(n);
                i += 1 + digits;
                continue;
            }
        }
        let (value, used) = parse_number(&s[i + 1..]);
        i += 1 + used;
        if letter == b'N' && first {
            continue; // line number
        }
        if first {
            first = false;
            if matches!(letter, b'G' | b'M' | b'T') {
                line.letter = Some(letter);
                if let Some(v) = value.filter(|v| *v >= 0.0 && *v < 1e9) {
                    line.number = Some(v.trunc() as u32);
                    let frac = ((v - v.trunc()) * 10.0).round();
                    if frac > 0.0 {
                        line.sub = Some(frac as u32);
                    }
                }
                continue;
            }
        }
        line.params[(letter - b'A') as usize] = value;
        line.named |= 1 << (letter - b'A');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_comments_and_checksums() {
        let l = parse_line(b"N12 G1 X10.5 Y-3 E0.25 F1800*77 ; perimeter");
        assert!(l.is(b'G', 1));
        assert_eq!(l.get('X'), Some(10.5));
        assert_eq!(l.get('Y'), Some(-3.0));
        assert_eq!(l.get('E'), Some(0.25));
        assert_eq!(l.get('F'), Some(1800.0));
        assert_eq!(l.comment, Some("perimeter"));
    }

    #[test]
    fn a_bare_letter_is_named_but_has_no_value() {
        let l = parse_line(b"G28 Z P0 T140 ; home z");
        assert!(l.names('Z') && l.names('p') && !l.names('X'));
        assert!(!l.has('Z') && l.get('P') == Some(0.0));
        assert!(!parse_line(b"G28").names('X'));
    }

    #[test]
    fn lower_case_tabs_and_paren_comments() {
        let l = parse_line(b"g1\tx1 (move fast) e2");
        assert!(l.is(b'G', 1));
        assert_eq!(l.get('X'), Some(1.0));
        assert_eq!(l.get('E'), Some(2.0));
        assert!(parse_line(b"G1X5Y6E.5").get('E') == Some(0.5));
    }

    #[test]
    fn tools_macros_and_junk() {
        let t = parse_line(b"T3");
        assert!(t.is(b'T', 3));
        let m = parse_line(b"EXCLUDE_OBJECT_START NAME=cube");
        assert_eq!(m.macro_name, Some("EXCLUDE_OBJECT_START"));
        assert_eq!(m.macro_args, Some("NAME=cube"));
        assert_eq!(m.letter, None);
        let j = parse_line(b"\x00\xff\xfe G1 X");
        assert_eq!(j.get('X'), None);
        assert!(parse_line(b"G1 XNaN Einf").get('X').is_none());
        assert_eq!(parse_line(b"G29.1").sub, Some(1));
        assert_eq!(parse_line(b"G1 E1e2").get('E'), Some(100.0));
    }

    #[test]
    fn command_numbers_fast_and_general_paths_agree() {
        // (line, letter, number, sub): plain digits take the integer path, the rest the float one.
        for (t, n, sub) in [
            ("G1 X1", Some(1), None),
            ("G01", Some(1), None),
            ("M104 S200", Some(104), None),
            ("T0", Some(0), None),
            ("G29.1", Some(29), Some(1)),
            ("G1E5", Some(100_000), None), // as the general scanner reads it: 1e5
            ("G1X5", Some(1), None),
            ("G999999999", Some(999_999_999), None),
            ("G1000000000", None, None),
            ("G-1", None, None),
            ("G+2", Some(2), None),
            ("G", None, None),
            ("M73.5", Some(73), Some(5)),
        ] {
            let l = parse_line(t.as_bytes());
            assert_eq!((l.number, l.sub), (n, sub), "{t}");
            assert_eq!(l.letter, Some(t.as_bytes()[0]), "{t}");
        }
        assert_eq!(parse_line(b"G1X5").get('X'), Some(5.0));
    }

    /// The fast number path must agree with the general one (and `str::parse`) bit for bit.
    fn check_number(t: &str) {
        let fast = parse_number(t.as_bytes());
        let general = parse_number_general(t.as_bytes());
        assert_eq!(fast.1, general.1, "length of {t:?}");
        assert_eq!(
            fast.0.map(f64::to_bits),
            general.0.map(f64::to_bits),
            "value of {t:?}"
        );
        if let Some((v, used)) = parse_simple(t.as_bytes()) {
            let std = t[..used].parse::<f64>().expect("std parse");
            assert_eq!(v.to_bits(), std.to_bits(), "{t:?}");
        }
    }

    #[test]
    fn fast_numbers_match_std_parse() {
        let mut n: u64 = 0x9e37_79b9_7f4a_7c15;
        for k in 0..50_000u64 {
            // A cheap xorshift for varied magnitudes; plus a dense sweep of small integers.
            n ^= n << 13;
            n ^= n >> 7;
            n ^= n << 17;
            let int = match k % 4 {
                0 => k,
                1 => n % 1000,
                2 => n % 1_000_000,
                _ => n >> (n % 64),
            };
            for decimals in 0..=6u32 {
                let frac = n % 10u64.pow(decimals);
                for sign in ["", "-", "+"] {
                    let t = if decimals == 0 {
                        format!("{sign}{int}")
                    } else {
                        format!("{sign}{int}.{frac:0w$}", w = decimals as usize)
                    };
                    check_number(&t);
                }
            }
        }
        for t in [
            "",
            "-",
            "+",
            ".",
            "-.",
            "-0",
            "+0",
            "0",
            "-0.0",
            ".5",
            "-.5",
            "+.5",
            "5.",
            "-5.",
            "00012.3400",
            "1e5",
            "1E5",
            "1e",
            "1e-5",
            "1.5e+3",
            "2E",
            "nan",
            "inf",
            "-inf",
            "1.7976931348623157e308",
            "1e309",
            "4.9e-324",
            "1..2",
            "1.2.3",
            "1-2",
            "--1",
            "+-1",
            "9007199254740991",
            "9007199254740992",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999",
            "0.1234567890123456789",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "123456789.123456789",
            "3.14159265358979323846264338327950288",
            "000000000000000000000000001.5",
            "1.0000000000000000000000",
            "0.30000000000000004",
            "5X10",
            "12 Y3",
            "7E",
            "7E1",
            "7EX",
            "7.E2",
            "-.E2",
            "1;",
            "2*",
            "3\t",
            "12.5E0.3",
        ] {
            check_number(t);
        }
    }
}

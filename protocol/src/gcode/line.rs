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

    /// True when the line is exactly `letter number` (e.g. `is(b'G', 1)`).
    pub fn is(&self, letter: u8, number: u32) -> bool {
        self.letter == Some(letter) && self.number == Some(number)
    }

    /// True if no axis parameter is present at all.
    pub fn no_params(&self) -> bool {
        self.params.iter().all(Option::is_none)
    }
}

fn parse_number(s: &[u8]) -> (Option<f64>, usize) {
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
        comment: None,
        macro_name: None,
        macro_args: None,
    };
    // Cut the comment first so a ';' or '(' inside it cannot start a word.
    let mut code = raw;
    if let Some(p) = raw.iter().position(|&b| b == b';') {
        code = &raw[..p];
        line.comment = std::str::from_utf8(&raw[p + 1..]).ok().map(str::trim);
    }
    let mut i = 0;
    let s = code;
    // Skip a line number `N123` and stop at a checksum `*45`.
    let end = s.iter().position(|&b| b == b'*').unwrap_or(s.len());
    let s = &s[..end];
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
}

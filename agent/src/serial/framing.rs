//! Host → firmware line framing: `N<n> <command>*<checksum>\n` (protocols.md §3.1).
//!
//! * The checksum is the XOR of every byte from the leading `N` up to, not including, the
//!   `*`, printed in decimal. Marlin computes it in a `uint8_t`
//!   ([`checksum`] does exactly that; for ASCII it is 0–127).
//! * Comments and surrounding whitespace are removed **before** framing ([`clean_line`]):
//!   the firmware checksums what it receives, and a `;` inside a framed line would hide the
//!   `*checksum` from it.
//! * `N<a> M110 N<b>` sets the firmware's line counter: the second `N` wins, the next line
//!   it expects is `b + 1` ([`m110_target`], [`line_number_reset`]).
//!
//! Everything here is pure; [`frame_into`] appends to a caller-owned buffer so the streamer
//! can reuse one allocation for the whole job.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Marlin 2.x `MAX_CMD_SIZE` default: longer lines are cut silently by the firmware.
pub const MARLIN_MAX_CMD_SIZE: usize = 96;

/// XOR of all bytes, as Marlin computes it (`uint8_t checksum = 0; checksum ^= c;`).
#[must_use]
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |a, b| a ^ b)
}

/// Commands whose argument is free text: parentheses in them are data, not comments.
fn takes_free_text(line: &str) -> bool {
    let mut words = line.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return false;
    };
    // M117 Hello, M118 E1 text, M23 file.gco, M28 name, M30 name, M32 name, M928 name.
    matches!(
        first.to_ascii_uppercase().as_str(),
        "M23" | "M28" | "M30" | "M32" | "M33" | "M117" | "M118" | "M928"
    )
}

/// Removes what a host must remove before sending a G-code line: a `;` comment (to the end
/// of the line), `(...)` comments (Marlin only understands them with `PAREN_COMMENTS`; they
/// are kept in free-text commands like `M117`), a trailing `\r`, and leading/trailing
/// whitespace. Returns an empty string for a line that is only a comment or blank: such
/// lines are not sent. Borrows unless a parenthesised comment had to be cut out.
#[must_use]
pub fn clean_line(line: &str) -> Cow<'_, str> {
    let code = match line.find(';') {
        Some(i) => &line[..i],
        None => line,
    };
    let code = code.trim();
    if !code.contains('(') || takes_free_text(code) {
        return Cow::Borrowed(code);
    }
    let mut out = String::with_capacity(code.len());
    let mut depth = 0u32;
    for c in code.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    // Cutting `G1 X1 (a) Y2` leaves two spaces; collapse runs so the line stays canonical.
    let mut collapsed = String::with_capacity(out.len());
    for word in out.split_ascii_whitespace() {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    Cow::Owned(collapsed)
}

/// Appends `N<n> <cmd>*<checksum>\n` to `out`. `cmd` must already be cleaned
/// ([`clean_line`]): no comment, no line break, no `*`.
pub fn frame_into(n: u64, cmd: &str, out: &mut String) {
    debug_assert!(
        !cmd.contains(['\n', '\r', '*']),
        "command must be cleaned before framing: {cmd:?}"
    );
    let start = out.len();
    // Writing to a String cannot fail.
    let _ = write!(out, "N{n} {cmd}");
    let cs = checksum(&out.as_bytes()[start..]);
    let _ = writeln!(out, "*{cs}");
}

/// `N<n> <cmd>*<checksum>\n` as a new string (see [`frame_into`] to reuse a buffer).
#[must_use]
pub fn frame(n: u64, cmd: &str) -> String {
    let mut s = String::with_capacity(cmd.len() + 16);
    frame_into(n, cmd, &mut s);
    s
}

/// The framed `N<n> M110 N<n>` line that sets the firmware's line counter to `n`: the next
/// numbered line must be `n + 1`. `line_number_reset(0)` is the usual hello,
/// `N0 M110 N0*125\n`.
#[must_use]
pub fn line_number_reset(n: u64) -> String {
    let mut s = String::with_capacity(32);
    let _ = write!(s, "N{n} M110 N{n}");
    let cs = checksum(s.as_bytes());
    let _ = writeln!(s, "*{cs}");
    s
}

/// If the (cleaned, unframed) command is an `M110`, the line number it sets: `M110 N5` → 5,
/// a bare `M110` → 0 (Marlin's default). `None` for every other command. A streamer uses it
/// when a job file itself contains `M110`: the next line it frames must be the result + 1.
#[must_use]
pub fn m110_target(cmd: &str) -> Option<u64> {
    let mut words = cmd.split_ascii_whitespace();
    let first = words.next()?;
    if !first.eq_ignore_ascii_case("M110") {
        return None;
    }
    for w in words {
        if let Some(v) = w.strip_prefix(['N', 'n']) {
            return v.parse().ok();
        }
    }
    Some(0)
}

/// A framed line taken apart: what a streamer keeps in its resend ring, and what tests use to
/// check recorded traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed<'a> {
    /// The `N` line number.
    pub number: u64,
    /// The command between `N<n> ` and `*`.
    pub command: &'a str,
    /// The checksum the line carries.
    pub checksum: u8,
    /// The XOR of the bytes before `*`, i.e. what the firmware will compute.
    pub computed: u8,
}

impl Framed<'_> {
    /// Whether the carried checksum is the right one.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        self.checksum == self.computed
    }
}

/// Parses `N<n> <command>*<checksum>` (an optional trailing `\n`/`\r\n` is ignored).
/// `None` if the line is not in that shape (unnumbered, no `*`, non-numeric parts).
#[must_use]
pub fn parse_framed(line: &str) -> Option<Framed<'_>> {
    let line = line.trim_end_matches(['\n', '\r']);
    let star = line.rfind('*')?;
    let (body, cs) = (&line[..star], &line[star + 1..]);
    let rest = body.strip_prefix('N')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number = rest[..digits].parse().ok()?;
    let command = rest[digits..].trim_start_matches(' ');
    let carried = cs.parse::<u8>().ok()?;
    Some(Framed {
        number,
        command,
        checksum: carried,
        computed: checksum(body.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_checksums_from_protocols_md() {
        // protocols.md §3.1 table and the transcripts.
        for (body, cs) in [
            ("N0 M110 N0", 125),
            ("N1 M105", 38),
            ("N2 M114", 37),
            ("N3 G1 X10 Y10 E0.5 F1800", 11),
            ("N4 M27", 18),
            ("N5 G1 X10.5 Y20 E1.2345", 78),
            ("N10 M115", 23),
            ("N123 M110 N123", 125),
            ("N1 M115", 39),
            ("N2 M155 S2", 97),
        ] {
            assert_eq!(checksum(body.as_bytes()), cs, "{body}");
        }
    }

    #[test]
    fn frame_matches_recorded_lines() {
        assert_eq!(frame(0, "M110 N0"), "N0 M110 N0*125\n");
        assert_eq!(frame(1, "M115"), "N1 M115*39\n");
        assert_eq!(frame(10, "M117 Layer 1/2"), "N10 M117 Layer 1/2*122\n");
        let mut buf = String::from("already here|");
        frame_into(31, "M84", &mut buf);
        assert_eq!(buf, "already here|N31 M84*45\n");
    }

    #[test]
    fn line_number_reset_sets_counter() {
        assert_eq!(line_number_reset(0), "N0 M110 N0*125\n");
        assert_eq!(line_number_reset(123), "N123 M110 N123*125\n");
        assert_eq!(m110_target("M110 N0"), Some(0));
        assert_eq!(m110_target("m110 n42"), Some(42));
        assert_eq!(m110_target("M110"), Some(0));
        assert_eq!(m110_target("M1100 N3"), None);
        assert_eq!(m110_target("G1 X1"), None);
        assert_eq!(m110_target(""), None);
    }

    #[test]
    fn clean_line_strips_comments_and_whitespace() {
        assert_eq!(clean_line("M140 S60 ; bed"), "M140 S60");
        assert_eq!(clean_line("  G28\r"), "G28");
        assert_eq!(clean_line("; only a comment"), "");
        assert_eq!(clean_line(""), "");
        assert_eq!(clean_line("\t\r"), "");
        assert_eq!(clean_line("G1 X1 (move) Y2"), "G1 X1 Y2");
        assert_eq!(clean_line("(whole line)"), "");
        assert_eq!(clean_line("G1 X1 (unclosed"), "G1 X1");
        assert_eq!(clean_line("M117 Layer (1 of 2)"), "M117 Layer (1 of 2)");
        assert_eq!(clean_line("M117 Hi ; note"), "M117 Hi");
        assert!(matches!(clean_line("G1 X1 ; c"), Cow::Borrowed(_)));
        // Multi-byte text never splits a char.
        assert_eq!(clean_line("M117 Grüße (ä) ;ö"), "M117 Grüße (ä)");
        assert_eq!(clean_line("G1 (ä) X1"), "G1 X1");
    }

    #[test]
    fn parse_framed_round_trips_and_rejects() {
        let f = parse_framed("N20 G1 X45 Y15 F12000*76").expect("framed");
        assert_eq!(f.number, 20);
        assert_eq!(f.command, "G1 X45 Y15 F12000");
        assert_eq!(f.checksum, 76);
        assert_eq!(f.computed, 75);
        assert!(!f.is_valid());
        assert!(parse_framed("N0 M110 N0*125\n").expect("framed").is_valid());
        for bad in [
            "M105",
            "N M105*1",
            "N1 M105",
            "N1 M105*",
            "N1 M105*x",
            "N1 M105*300",
        ] {
            assert_eq!(parse_framed(bad), None, "{bad}");
        }
    }
}

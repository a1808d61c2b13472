//! Temperature and position reports (`M105`/`M155`, `M114`/`M154`): the values of the
//! `KEY:value[ /target]` lines [`super::reply::parse_reply`] classifies. Fixed-size results;
//! parsing does not allocate.

/// One sensor reading. `target` is `None` when the line has no `/target` part; a target of
/// 0 means "off". `power` is the heater PWM (`@:`, `B@:`, `C@:`, `@<n>:`) as reported.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Reading {
    pub actual: f32,
    pub target: Option<f32>,
    pub power: Option<f32>,
}

/// Highest tool index kept (Marlin supports up to 8 hot ends).
pub const MAX_TOOLS: usize = 8;

/// A temperature report: Marlin `T:210.00 /210.00 B:60.00 /60.00 @:127 B@:0`, multi-tool
/// `T0:… T1:…`, chamber `C:`, Prusa `P:` (PINDA probe) and `A:` (ambient), Klipper
/// `B:0.0 /0.0 T0:0.0 /0.0`, the Virtual Printer's `T:21.30/ 0.00`. Fixed size: parsing
/// does not allocate.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Temps {
    /// Plain `T:`: the active hot end.
    pub active: Option<Reading>,
    /// Indexed `T<n>:` hot ends.
    pub tools: [Option<Reading>; MAX_TOOLS],
    pub bed: Option<Reading>,
    pub chamber: Option<Reading>,
    /// `P:` (Prusa PINDA / Marlin probe).
    pub probe: Option<Reading>,
    /// `A:` (Prusa ambient).
    pub ambient: Option<Reading>,
}

impl Temps {
    /// Hot end `i`: the indexed reading, or for tool 0 the plain `T:` one when the line has
    /// no indexed readings (single-tool printers).
    #[must_use]
    pub fn hotend(&self, i: usize) -> Option<Reading> {
        let indexed = self.tools.get(i).copied().flatten();
        if indexed.is_some() || i != 0 {
            return indexed;
        }
        if self.tools.iter().all(Option::is_none) {
            self.active
        } else {
            None
        }
    }

    /// Whether any sensor was read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.active.is_none()
            && self.tools.iter().all(Option::is_none)
            && self.bed.is_none()
            && self.chamber.is_none()
            && self.probe.is_none()
            && self.ambient.is_none()
    }
}

/// A position report (`M114`, `M154`). `e` is `E:` or, on multi-extruder reports, `E0:`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Position {
    pub x: f64,
    pub y: f64,
    pub z: f64,
    pub e: Option<f64>,
}

/// Parses a float at the start of `s` (`[-+]?[0-9]*\.?[0-9]+` plus an optional exponent-less
/// tail); returns the value and the rest.
fn leading_f64(s: &str) -> Option<(f64, &str)> {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    let num = &s[digits_start..i];
    if !num.bytes().any(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((s[..i].parse().ok()?, &s[i..]))
}

/// One `KEY:value[ /target]` token of a report line.
struct Field<'a> {
    key: &'a str,
    value: Option<f64>,
    target: Option<f64>,
}

/// Iterates the `KEY:` tokens of a report line (keys start at the line start or after
/// whitespace and are made of letters, digits and `@`).
struct Fields<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        loop {
            let s = self.rest.trim_start();
            if s.is_empty() {
                return None;
            }
            let key_len = s
                .bytes()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == b'@' || *c == b'_')
                .count();
            if key_len == 0 || s.as_bytes().get(key_len) != Some(&b':') {
                // Not a key: skip this word.
                // `s` starts with a non-space, so this always makes progress.
                let w = s.find(|c: char| c.is_ascii_whitespace()).unwrap_or(s.len());
                self.rest = &s[w..];
                continue;
            }
            let key = &s[..key_len];
            let after = s[key_len + 1..].trim_start();
            let Some((value, r)) = leading_f64(after) else {
                // `W:?`, `Count:` and the like: a key without a number.
                self.rest = after;
                return Some(Field {
                    key,
                    value: None,
                    target: None,
                });
            };
            let mut target = None;
            let mut rest = r;
            let t = r.trim_start();
            if let Some(after_slash) = t.strip_prefix('/')
                && let Some((tv, r2)) = leading_f64(after_slash.trim_start())
            {
                target = Some(tv);
                rest = r2;
            }
            self.rest = rest;
            return Some(Field {
                key,
                value: Some(value),
                target,
            });
        }
    }
}

fn fields(s: &str) -> Fields<'_> {
    Fields { rest: s }
}

/// `X:… Y:… Z:…` with an optional `E:`/`E0:`; stops at `Count`.
pub(super) fn parse_position(line: &str) -> Option<Position> {
    if !line.starts_with("X:") {
        return None;
    }
    let (mut x, mut y, mut z, mut e) = (None, None, None, None);
    for f in fields(line) {
        match f.key {
            "X" if x.is_none() => x = f.value,
            "Y" if y.is_none() => y = f.value,
            "Z" if z.is_none() => z = f.value,
            "E" | "E0" if e.is_none() => e = f.value,
            "Count" => break,
            _ => {}
        }
        // Marlin's `Count X:800 …` tail: `Count` has no colon there, so its X/Y/Z keys
        // come after the ones we already hold and are ignored by the `is_none` guards.
    }
    Some(Position {
        x: x?,
        y: y?,
        z: z?,
        e,
    })
}

/// A temperature report: its first key must be `T`, `T<n>`, `B` or `C` with a number.
pub(super) fn parse_temps(line: &str) -> Option<Temps> {
    let mut it = fields(line).peekable();
    let first = it.peek()?;
    if !is_temp_sensor(first.key) || first.value.is_none() {
        return None;
    }
    let mut t = Temps::default();
    for f in it {
        let Some(actual) = f.value else { continue };
        let reading = Reading {
            actual: actual as f32,
            target: f.target.map(|v| v as f32),
            power: None,
        };
        let power = actual as f32;
        match f.key {
            "T" => t.active = Some(keep_power(t.active, reading)),
            "B" => t.bed = Some(keep_power(t.bed, reading)),
            "C" => t.chamber = Some(keep_power(t.chamber, reading)),
            "P" => t.probe = Some(reading),
            "A" => t.ambient = Some(reading),
            "@" => set_power(&mut t.active, power),
            "B@" => set_power(&mut t.bed, power),
            "C@" => set_power(&mut t.chamber, power),
            k => {
                if let Some(i) = k.strip_prefix('T').and_then(tool_index) {
                    t.tools[i] = Some(keep_power(t.tools[i], reading));
                } else if let Some(i) = k.strip_prefix('@').and_then(tool_index) {
                    set_power(&mut t.tools[i], power);
                }
                // W (residency), E (Prusa extruder index), R, L, X/Y/Z: not temperatures.
            }
        }
    }
    Some(t)
}

fn is_temp_sensor(key: &str) -> bool {
    matches!(key, "T" | "B" | "C") || key.strip_prefix('T').and_then(tool_index).is_some()
}

fn tool_index(digits: &str) -> Option<usize> {
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok().filter(|i| *i < MAX_TOOLS)
}

fn keep_power(old: Option<Reading>, new: Reading) -> Reading {
    Reading {
        power: old.and_then(|r| r.power),
        ..new
    }
}

/// Power fields come after their sensor; one without a reading is dropped.
fn set_power(slot: &mut Option<Reading>, power: f32) {
    if let Some(r) = slot {
        r.power = Some(power);
    }
}

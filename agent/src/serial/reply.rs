//! Firmware → host line grammar (protocols.md §3.2): [`parse_reply`] classifies one received
//! line.
//!
//! Evaluation order (first match wins), after trimming surrounding whitespace:
//!
//! | # | class | recognised by |
//! |---|---|---|
//! | 1 | [`Reply::CommError`] | `Error:` + checksum mismatch / Line Number is not Last Line Number+1 / No Checksum with line number / No Line Number with checksum / expected line / Missing checksum (any case) |
//! | 2 | [`Reply::Resend`] | `Resend: N`, `Resend:N`, `rs N`, `RS N:5` … (any case, optional `N`/`N:`) |
//! | 3 | [`Reply::Ok`] | `ok` as a word, then optional ` N<n>`, ` P<n>`, ` B<n>` (ADVANCED_OK) and a payload |
//! | 4 | [`Reply::Busy`] | `busy: processing`, `echo:busy: processing`, `busy:processing`, `echo:busy paused for user` … |
//! | 5 | [`Reply::Wait`] | exactly `wait` |
//! | 6 | [`Reply::Halted`] | `Error:` + Printer halted / kill() called / Thermal Runaway / Heating failed / MAXTEMP / MINTEMP / Thermal Malfunction / Watchdog / KILL caused / Printer stopped due to errors / Invalid extruder number; `!!…` (Klipper); `fatal:` (Repetier); `// Klipper state: Shutdown`; the Virtual Printer's `echo:EMERGENCY SHUTDOWN DETECTED. KILLED.` |
//! | 7 | [`Reply::Error`] | any other `Error:` |
//! | 8 | [`Reply::Start`] | exactly `start` |
//! | 9 | [`Reply::Capability`] | `Cap:NAME:0` / `Cap:NAME:1` |
//! | 10 | [`Reply::Firmware`] | a line holding `FIRMWARE_NAME:` (M115) |
//! | 11 | [`Reply::Action`] | `//action:…` / `// action:…` |
//! | 12 | [`Reply::Position`] | `X:… Y:… Z:… [E:…] [Count …]` (M114, M154) |
//! | 13 | [`Reply::Temperature`] | first key `T`, `T<n>`, `B` or `C` with a number (M105 without `ok`, M155, M109/M190 waits) |
//! | 14 | [`Reply::SdProgress`], [`Reply::Sd`] | `SD printing byte N/M`, `Not SD printing`, `Done printing file`, `File opened: … Size: n`, `File selected`, `SD card ok`, `Begin file list`, `End file list`, `Writing to file: …`, `Done saving file` |
//! | 15 | [`Reply::Progress`] | Prusa `NORMAL MODE: Percent done: …` / `SILENT MODE: …` (M73) |
//! | 16 | [`Reply::Echo`] | `echo:…` and Klipper's `// …` info lines |
//! | 17 | [`Reply::Other`] | anything else (banner text, file-list entries, line noise) |
//!
//! Nothing here allocates except [`Reply::Firmware`] (once per connection) and an `ok` that
//! carries `FIRMWARE_NAME:` (Klipper); texts borrow from the input line. No input panics.
//! Bytes that are not UTF-8 should be turned into text with `String::from_utf8_lossy` first.

pub use super::readings::{MAX_TOOLS, Position, Reading, Temps};
use super::readings::{parse_position, parse_temps};
use std::collections::BTreeMap;

/// One classified firmware line. Texts borrow from the line passed to [`parse_reply`].
///
/// [`Temps`] is stored inline (about 300 bytes) on purpose: a temperature line arrives every
/// second or more often, and a `Reply` is consumed at once, so moving it is cheaper than
/// allocating; only the rare, large [`FirmwareInfo`] is boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<'a> {
    /// `ok`: one command slot freed. `line`, `planner_free` and `buffer_free` come from
    /// Marlin's `ADVANCED_OK` form `ok N<line> P<planner blocks free> B<command slots free>`.
    /// `temps` is set for `ok T:…` (M105); any other payload is in `payload`.
    Ok {
        line: Option<u64>,
        planner_free: Option<u32>,
        buffer_free: Option<u32>,
        temps: Option<Temps>,
        payload: OkPayload<'a>,
    },
    /// The firmware asks for line `n` and everything after it again.
    Resend(u64),
    /// A transmission error that comes with (or instead of) a resend request: **not** fatal,
    /// the job goes on. `last_line` is Marlin's `Last Line: n` when present.
    CommError {
        text: &'a str,
        last_line: Option<u64>,
    },
    /// Keep-alive while a blocking command runs: reset the ok timeout, it is no ack.
    Busy(BusyReason<'a>),
    /// Idle keep-alive (Marlin `NO_TIMEOUTS`, Repetier, OctoPrint's Virtual Printer): no ack.
    Wait,
    /// Any other `Error:`; `text` is what follows `Error:` (trimmed). Informational in
    /// practice: count it, do not fail a job on it alone.
    Error(&'a str),
    /// The printer stopped (kill, thermal fault, Klipper `!!`/shutdown, e-stop): stop
    /// streaming, the job has failed. `text` is the whole line.
    Halted(&'a str),
    /// `start`: the board (re)booted; its line counter is 0 and all state is lost.
    Start,
    /// The `M115` reply line.
    Firmware(Box<FirmwareInfo>),
    /// One `Cap:NAME:0|1` line following the `M115` reply.
    Capability { name: &'a str, enabled: bool },
    /// `//action:…` host action command.
    Action(HostAction<'a>),
    /// A temperature report without `ok` (auto-report, heating-wait progress).
    Temperature(Temps),
    /// A position report without `ok`.
    Position(Position),
    /// `SD printing byte done/total` (M27).
    SdProgress { done: u64, total: u64 },
    /// Other SD card status lines.
    Sd(SdEvent<'a>),
    /// Prusa `M73` progress text.
    Progress(PrusaProgress),
    /// `echo:` text (after the prefix, trimmed) or a Klipper `//` info line (after `//`).
    Echo(&'a str),
    /// Anything else, trimmed: banner text, `M20` file-list entries, line noise.
    Other(&'a str),
}

impl Reply<'_> {
    /// Whether this line acknowledges a command (`ok`).
    #[must_use]
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Ok { .. })
    }

    /// The temperatures the line reports, with or without `ok`.
    #[must_use]
    pub fn temps(&self) -> Option<&Temps> {
        match self {
            Reply::Ok { temps, .. } => temps.as_ref(),
            Reply::Temperature(t) => Some(t),
            _ => None,
        }
    }
}

/// What an `ok` carries besides ADVANCED_OK numbers and temperatures.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OkPayload<'a> {
    #[default]
    None,
    /// `ok X:… Y:… Z:…` (M114 on the Virtual Printer and some firmwares).
    Position(Position),
    /// `ok FIRMWARE_NAME:Klipper …` (Klipper answers M115 on the ok line).
    Firmware(Box<FirmwareInfo>),
    /// Unrecognised trailing text, trimmed.
    Text(&'a str),
}

/// Why the firmware is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyReason<'a> {
    Processing,
    PausedForUser,
    PausedForInput,
    Other(&'a str),
}

/// `//action:<name> [args]` (Marlin `HOST_ACTION_COMMANDS`, `HOST_PROMPT_SUPPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostAction<'a> {
    /// The printer asks the host to pause the stream.
    Pause,
    /// The printer paused itself (runout, M600, LCD).
    Paused,
    Resume,
    Resumed,
    Cancel,
    Start,
    Disconnect,
    Shutdown,
    SdInserted,
    SdEjected,
    SdUpdated,
    ProbeFailed,
    /// User-visible message.
    Notification(&'a str),
    /// A dialog starts; the text is its title.
    PromptBegin(&'a str),
    /// A button of the dialog (`prompt_button` or `prompt_choice`), in index order; answer
    /// with `M876 S<index>`.
    PromptButton(&'a str),
    PromptShow,
    PromptEnd,
    /// Any other action name, with its arguments (possibly empty).
    Other {
        name: &'a str,
        args: &'a str,
    },
}

/// SD card status lines other than the byte progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdEvent<'a> {
    /// `SD card ok` (also `echo:SD card ok`).
    CardOk,
    /// `Not SD printing` (Klipper adds a dot).
    NotPrinting,
    /// `Done printing file`.
    DonePrinting,
    /// `File opened: <name> Size: <bytes>`.
    FileOpened {
        name: &'a str,
        size: u64,
    },
    /// `File selected`.
    FileSelected,
    /// `Begin file list`: the lines until `End file list` are entries (they classify as
    /// [`Reply::Other`]; see [`parse_file_list_entry`]).
    FileListBegin,
    FileListEnd,
    /// `Writing to file: <name>` (M28).
    WritingToFile(&'a str),
    /// `Done saving file` (M29).
    DoneSavingFile,
}

/// Prusa-Firmware `M73` text: `NORMAL MODE: Percent done: 32; print time remaining in mins: 8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrusaProgress {
    /// `SILENT MODE` line (stealth-mode estimate) rather than `NORMAL MODE`.
    pub silent: bool,
    pub percent: Option<u8>,
    pub remaining_min: Option<u32>,
}

/// What the `M115` reply and the `Cap:` lines after it say about the firmware.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FirmwareInfo {
    /// `FIRMWARE_NAME` (for Marlin this includes the version and build date).
    pub name: String,
    /// `FIRMWARE_VERSION` (RepRapFirmware, Klipper).
    pub version: Option<String>,
    pub source_code_url: Option<String>,
    pub protocol_version: Option<String>,
    pub machine_type: Option<String>,
    pub extruder_count: Option<u32>,
    pub uuid: Option<String>,
    /// Other `KEY:value` pairs of the line, in order.
    pub other: Vec<(String, String)>,
    /// `Cap:NAME:0|1` lines, added with [`FirmwareInfo::set_capability`].
    pub capabilities: BTreeMap<String, bool>,
}

impl FirmwareInfo {
    /// Splits an `M115` line into its `KEY:value` fields (OctoPrint's rule: a key is
    /// `[A-Z][A-Z0-9_]*:` at the start or after whitespace). `None` without `FIRMWARE_NAME:`.
    #[must_use]
    pub fn parse(line: &str) -> Option<FirmwareInfo> {
        let start = line.find("FIRMWARE_NAME:")?;
        let text = &line[start..];
        let mut info = FirmwareInfo::default();
        let mut fields = KeyValues { text, pos: 0 };
        while let Some((key, value)) = fields.next_pair() {
            let v = value.to_string();
            match key {
                "FIRMWARE_NAME" => info.name = v,
                "FIRMWARE_VERSION" => info.version = Some(v),
                "SOURCE_CODE_URL" => info.source_code_url = Some(v),
                "PROTOCOL_VERSION" => info.protocol_version = Some(v),
                "MACHINE_TYPE" => info.machine_type = Some(v),
                "EXTRUDER_COUNT" => info.extruder_count = value.parse().ok(),
                "UUID" => info.uuid = Some(v),
                _ => info.other.push((key.to_string(), v)),
            }
        }
        Some(info)
    }

    /// Records one `Cap:` line.
    pub fn set_capability(&mut self, name: &str, enabled: bool) {
        self.capabilities.insert(name.to_string(), enabled);
    }

    /// What the firmware reported for a capability: `None` if it did not mention it.
    #[must_use]
    pub fn capability(&self, name: &str) -> Option<bool> {
        self.capabilities.get(name).copied()
    }
}

/// Iterates `KEY:value` pairs where a key starts a line or follows whitespace.
struct KeyValues<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> KeyValues<'a> {
    /// Position and length of the next key (without `:`) at or after `from`.
    fn find_key(&self, from: usize) -> Option<(usize, usize)> {
        let b = self.text.as_bytes();
        let mut i = from;
        while i < b.len() {
            let at_boundary = i == 0 || b[i - 1].is_ascii_whitespace();
            if at_boundary && b[i].is_ascii_uppercase() {
                let len = b[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || **c == b'_')
                    .count();
                if b.get(i + len) == Some(&b':') {
                    return Some((i, len));
                }
                i += len.max(1);
            } else {
                i += 1;
            }
        }
        None
    }

    fn next_pair(&mut self) -> Option<(&'a str, &'a str)> {
        let (k, len) = self.find_key(self.pos)?;
        let value_start = k + len + 1;
        let end = self
            .find_key(value_start)
            .map_or(self.text.len(), |(next, _)| next);
        self.pos = end;
        Some((&self.text[k..k + len], self.text[value_start..end].trim()))
    }
}

/// One entry of an `M20` listing: `fixtur~1.gco 1547` or, with `M20 L T`,
/// `fixtur~1.gco 1547 0x5d7613cb "fixture-sd.gcode"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileListEntry<'a> {
    /// The 8.3 name the firmware uses in `M23`/`M30`.
    pub short_name: &'a str,
    pub size: Option<u64>,
    /// The long name, when the firmware printed one (`M20 L`).
    pub long_name: Option<&'a str>,
}

/// Parses a line between `Begin file list` and `End file list`.
#[must_use]
pub fn parse_file_list_entry(line: &str) -> Option<FileListEntry<'_>> {
    let line = line.trim();
    let mut parts = line.splitn(2, ' ');
    let short_name = parts.next().filter(|s| !s.is_empty())?;
    let rest = parts.next().unwrap_or("").trim_start();
    let mut words = rest.split_ascii_whitespace();
    let size = words.next().and_then(|w| w.parse().ok());
    let long_name = rest.find('"').and_then(|q| {
        let tail = &rest[q + 1..];
        tail.rfind('"').map(|e| &tail[..e])
    });
    Some(FileListEntry {
        short_name,
        size,
        long_name,
    })
}

/// Classifies one line received from the firmware (see the module table for the order).
#[must_use]
pub fn parse_reply(line: &str) -> Reply<'_> {
    let line = line.trim();

    if let Some(rest) = line.strip_prefix("Error:") {
        let text = rest.trim();
        if is_comm_error(text) {
            return Reply::CommError {
                text,
                last_line: last_line(text),
            };
        }
        if is_fatal(text) {
            return Reply::Halted(line);
        }
        return Reply::Error(text);
    }
    if let Some(n) = parse_resend(line) {
        return Reply::Resend(n);
    }
    if let Some(ok) = parse_ok(line) {
        return ok;
    }
    if let Some(reason) = parse_busy(line) {
        return Reply::Busy(reason);
    }
    if line == "wait" {
        return Reply::Wait;
    }
    if line.starts_with("!!") || line.starts_with("fatal:") || is_other_halt(line) {
        return Reply::Halted(line);
    }
    if line == "start" {
        return Reply::Start;
    }
    if let Some(rest) = line.strip_prefix("Cap:")
        && let Some((name, flag)) = rest.rsplit_once(':')
        && !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
        && (flag == "0" || flag == "1")
    {
        return Reply::Capability {
            name,
            enabled: flag == "1",
        };
    }
    if let Some(info) = FirmwareInfo::parse(line) {
        return Reply::Firmware(Box::new(info));
    }
    if let Some(rest) = line.strip_prefix("//")
        && let Some(action) = rest.trim_start().strip_prefix("action:")
    {
        return Reply::Action(parse_action(action));
    }
    if let Some(p) = parse_position(line) {
        return Reply::Position(p);
    }
    if let Some(t) = parse_temps(line) {
        return Reply::Temperature(t);
    }
    if let Some(r) = parse_sd(line) {
        return r;
    }
    if let Some(p) = parse_prusa_progress(line) {
        return Reply::Progress(p);
    }
    if let Some(rest) = line.strip_prefix("echo:") {
        let text = rest.trim();
        if text == "SD card ok" {
            return Reply::Sd(SdEvent::CardOk);
        }
        return Reply::Echo(text);
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Reply::Echo(rest.trim());
    }
    Reply::Other(line)
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn is_comm_error(text: &str) -> bool {
    const COMM: [&str; 6] = [
        "checksum mismatch",
        "Line Number is not Last Line Number+1",
        "No Checksum with line number",
        "No Line Number with checksum",
        "expected line",
        "Missing checksum",
    ];
    COMM.iter().any(|p| starts_with_ignore_case(text, p))
}

fn is_fatal(text: &str) -> bool {
    const FATAL: [&str; 11] = [
        "Printer halted",
        "kill() called",
        "Thermal Runaway",
        "Heating failed",
        "MAXTEMP",
        "MINTEMP",
        "Thermal Malfunction",
        "Watchdog",
        "KILL caused",
        "Printer stopped due to errors",
        "Invalid extruder number",
    ];
    FATAL.iter().any(|p| text.contains(p))
}

/// Halt lines that do not start with `Error:`/`!!`/`fatal:`.
fn is_other_halt(line: &str) -> bool {
    // Klipper's `// Klipper state: Shutdown`; the Virtual Printer's answer to M112.
    (line.starts_with("//") && line.contains("Klipper state: Shutdown"))
        || (line.starts_with("echo:") && line.contains("EMERGENCY SHUTDOWN DETECTED"))
}

/// `Last Line: 41` inside a comm error.
fn last_line(text: &str) -> Option<u64> {
    let i = text.find("Last Line:")?;
    leading_u64(text[i + "Last Line:".len()..].trim_start()).map(|(n, _)| n)
}

/// Parses leading ASCII digits; returns the number and the rest.
fn leading_u64(s: &str) -> Option<(u64, &str)> {
    let len = s.bytes().take_while(u8::is_ascii_digit).count();
    if len == 0 {
        return None;
    }
    Some((s[..len].parse().ok()?, &s[len..]))
}

/// `(?i)^(?:resend|rs)[:\s]*N?:?\s*(\d+)`.
fn parse_resend(line: &str) -> Option<u64> {
    let rest = if starts_with_ignore_case(line, "resend") {
        &line[6..]
    } else if starts_with_ignore_case(line, "rs") {
        &line[2..]
    } else {
        return None;
    };
    let rest = rest.trim_start_matches(|c: char| c == ':' || c.is_ascii_whitespace());
    let rest = rest.strip_prefix(['N', 'n']).unwrap_or(rest);
    let rest = rest.strip_prefix(':').unwrap_or(rest).trim_start();
    leading_u64(rest).map(|(n, _)| n)
}

/// ` <letter><digits>` at the start of `s` (ADVANCED_OK fields).
fn ok_field(s: &str, letter: u8) -> Option<(u64, &str)> {
    let t = s.trim_start();
    if t.len() == s.len() || t.as_bytes().first() != Some(&letter) {
        return None;
    }
    let (n, rest) = leading_u64(&t[1..])?;
    // `B3` must end the word: `B:0.0` (Klipper bed) and `B3x` are not fields.
    if rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        Some((n, rest))
    } else {
        None
    }
}

/// `^ok\b(?:\s+N(\d+))?(?:\s+P(\d+))?(?:\s+B(\d+))?(.*)$`.
fn parse_ok(line: &str) -> Option<Reply<'_>> {
    let mut rest = line.strip_prefix("ok")?;
    if rest
        .bytes()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
    {
        return None;
    }
    let mut line_no = None;
    let mut planner_free = None;
    let mut buffer_free = None;
    if let Some((n, r)) = ok_field(rest, b'N') {
        line_no = Some(n);
        rest = r;
    }
    if let Some((n, r)) = ok_field(rest, b'P') {
        planner_free = u32::try_from(n).ok();
        rest = r;
    }
    if let Some((n, r)) = ok_field(rest, b'B') {
        buffer_free = u32::try_from(n).ok();
        rest = r;
    }
    let rest = rest.trim();
    let mut temps = None;
    let payload = if rest.is_empty() {
        OkPayload::None
    } else if let Some(p) = parse_position(rest) {
        OkPayload::Position(p)
    } else if let Some(t) = parse_temps(rest) {
        temps = Some(t);
        OkPayload::None
    } else if let Some(info) = FirmwareInfo::parse(rest) {
        OkPayload::Firmware(Box::new(info))
    } else {
        OkPayload::Text(rest)
    };
    Some(Reply::Ok {
        line: line_no,
        planner_free,
        buffer_free,
        temps,
        payload,
    })
}

/// `^(?:echo:\s*)?busy[:\s]\s*(.*)`.
fn parse_busy(line: &str) -> Option<BusyReason<'_>> {
    let l = line.strip_prefix("echo:").map_or(line, str::trim_start);
    let rest = l.strip_prefix("busy")?;
    if !rest.starts_with(|c: char| c == ':' || c.is_ascii_whitespace()) {
        return None;
    }
    let reason = rest[1..].trim();
    Some(if reason.eq_ignore_ascii_case("processing") {
        BusyReason::Processing
    } else if reason.eq_ignore_ascii_case("paused for user") {
        BusyReason::PausedForUser
    } else if reason.eq_ignore_ascii_case("paused for input") {
        BusyReason::PausedForInput
    } else {
        BusyReason::Other(reason)
    })
}

/// The text after `action:`.
fn parse_action(s: &str) -> HostAction<'_> {
    let s = s.trim();
    let (name, args) = match s.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&s[..i], s[i..].trim()),
        None => (s, ""),
    };
    match name {
        "pause" => HostAction::Pause,
        "paused" => HostAction::Paused,
        "resume" => HostAction::Resume,
        "resumed" => HostAction::Resumed,
        "cancel" => HostAction::Cancel,
        "start" => HostAction::Start,
        "disconnect" => HostAction::Disconnect,
        "shutdown" => HostAction::Shutdown,
        "sd_inserted" => HostAction::SdInserted,
        "sd_ejected" => HostAction::SdEjected,
        "sd_updated" => HostAction::SdUpdated,
        "probe_failed" => HostAction::ProbeFailed,
        "notification" => HostAction::Notification(args),
        "prompt_begin" => HostAction::PromptBegin(args),
        "prompt_button" | "prompt_choice" => HostAction::PromptButton(args),
        "prompt_show" => HostAction::PromptShow,
        "prompt_end" => HostAction::PromptEnd,
        _ => HostAction::Other { name, args },
    }
}

fn parse_sd(line: &str) -> Option<Reply<'_>> {
    if let Some(i) = line.find("SD printing byte ") {
        let rest = &line[i + "SD printing byte ".len()..];
        let (done, r) = leading_u64(rest)?;
        let (total, _) = leading_u64(r.strip_prefix('/')?)?;
        return Some(Reply::SdProgress { done, total });
    }
    let ev = if line.starts_with("Not SD printing") {
        SdEvent::NotPrinting
    } else if line.starts_with("Done printing file") {
        SdEvent::DonePrinting
    } else if line == "SD card ok" {
        SdEvent::CardOk
    } else if line.starts_with("File selected") {
        SdEvent::FileSelected
    } else if line == "Begin file list" {
        SdEvent::FileListBegin
    } else if line == "End file list" {
        SdEvent::FileListEnd
    } else if line.starts_with("Done saving file") {
        SdEvent::DoneSavingFile
    } else if let Some(name) = line.strip_prefix("Writing to file:") {
        SdEvent::WritingToFile(name.trim())
    } else if let Some(rest) = line.strip_prefix("File opened:") {
        let i = rest.rfind("Size:")?;
        let (size, _) = leading_u64(rest[i + "Size:".len()..].trim_start())?;
        SdEvent::FileOpened {
            name: rest[..i].trim(),
            size,
        }
    } else {
        return None;
    };
    Some(Reply::Sd(ev))
}

/// `NORMAL MODE: Percent done: 32; print time remaining in mins: 8; Change in mins: -1`.
fn parse_prusa_progress(line: &str) -> Option<PrusaProgress> {
    let (silent, rest) = if let Some(r) = line.strip_prefix("NORMAL MODE:") {
        (false, r)
    } else if let Some(r) = line.strip_prefix("SILENT MODE:") {
        (true, r)
    } else {
        return None;
    };
    let mut p = PrusaProgress {
        silent,
        percent: None,
        remaining_min: None,
    };
    for part in rest.split(';') {
        let Some((k, v)) = part.split_once(':') else {
            continue;
        };
        let v = v.trim();
        let k = k.trim();
        if k.eq_ignore_ascii_case("Percent done") {
            // Prusa prints -1 when unknown.
            p.percent = v.parse::<i64>().ok().and_then(|n| u8::try_from(n).ok());
        } else if k.eq_ignore_ascii_case("print time remaining in mins") {
            p.remaining_min = v.parse::<i64>().ok().and_then(|n| u32::try_from(n).ok());
        }
    }
    Some(p)
}

#[cfg(test)]
mod tests;

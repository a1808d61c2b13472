//! Filament consumed up to any byte offset of a file, without re-reading the file from the start.
//!
//! OctoPrint reports `progress.filepos` and Moonraker `virtual_sdcard.file_position`: the offset
//! of the next byte the printer host will read. To charge a cancelled print exactly, the agent
//! needs the filament the lines before that offset consumed, computed by the same [`Machine`] as
//! the analyzer so that the offset at end of file gives exactly [`Analysis::filament_mm`].
//!
//! [`ExtrusionIndex`] is built in one streaming pass and keeps a checkpoint (byte offset, line
//! count, consumed per tool, a clone of the machine) at the first line boundary at or after
//! every `stride` bytes (default [`DEFAULT_STRIDE`], 64 KiB). A query seeks to the last
//! checkpoint at or before the offset and replays at most one stride of lines, so it reads
//! ~64 KiB whatever the file size, and replays the same operations in the same order as a full
//! pass: the result is bit-for-bit the full pass's.
//!
//! **Line rule**: a line counts once the offset is at or past its end (its newline included).
//! An offset in the middle of a line does not count that line: the host has not finished
//! reading it, so the printer has not executed it. A last line without a newline ends at the
//! end of the file.
//!
//! **Time**: [`ExtrusionIndex::elapsed_at`] / [`ExtrusionIndex::remaining_at`] answer the
//! planned time of the lines before an offset (for an ETA) with the same rule and the same
//! exactness: the checkpoint's machine keeps its look-ahead buffer, so the replay plans
//! exactly what the full pass planned, and it runs on past the offset until the planner has
//! committed the moves of those lines (their speeds depend on the moves after them).
//!
//! **Memory**: a checkpoint holds a clone of the [`Machine`], look-ahead buffer included
//! (≤ 192 moves × [`BLOCK_BYTES`], ~10 KiB), so it costs `size_of::<Checkpoint>()` (see
//! [`checkpoint_bytes`]) plus per tool ~64 bytes, plus the buffered moves, plus the machine's
//! per-layer time list (8 bytes per layer started so far: the machine keeps it and offers no
//! way to leave it out). A 200 MB file at the default stride has ~3 050 checkpoints (~12 KiB
//! each). The whole index is held under [`MAX_INDEX_BYTES`]: past it, every other
//! checkpoint is dropped and the stride doubles, so a hostile file (100 000 layer comments,
//! then 200 MB of moves) costs longer replays, never unbounded memory.
//!
//! **Cache**: the index is `Serialize`/`Deserialize` so the agent can store it beside the file.
//! `Machine` has no serde form (its state is private to `machine.rs`), so the machine clones are
//! not serialised: a deserialised index is *cold*: still exact, but a query replays from the
//! start of the file until [`ExtrusionIndex::warm`] re-derives the clones in one pass (and
//! checks that the file still matches the stored offsets and totals). The starting [`Limits`]
//! are not serialised either: give them back with [`ExtrusionIndex::set_limits`]. Once `Machine` derives
//! serde, dropping the `#[serde(skip)]` below makes the cache warm as stored.
//!
//! [`Analysis::filament_mm`]: super::Analysis::filament_mm

use super::analysis::limits_from_tail_with;
use super::limits::Limits;
use super::line::parse_line;
use super::lines::{Content, LineSplitter, for_each_line};
use super::machine::Machine;
use super::planner::BLOCK_BYTES;
use crate::bgcode::{self, AsciiView, BinaryMap};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

/// Bytes between checkpoints unless told otherwise.
pub const DEFAULT_STRIDE: u64 = 64 * 1024;

/// Version of the serialised form; a cache with another version is rebuilt, not trusted.
pub const INDEX_FORMAT: u32 = 2;

/// Memory the checkpoints may hold (estimated by [`checkpoint_bytes`]) before they are thinned.
pub const MAX_INDEX_BYTES: usize = 32 * 1024 * 1024;

/// Estimated bytes one checkpoint holds: its inline size, the machine's per-layer times, its
/// look-ahead buffer and per-tool state (extruder, heater, consumed entry: 64 bytes with slack).
pub fn checkpoint_bytes(c: &Checkpoint) -> usize {
    let (layers, pending) = c
        .machine
        .as_ref()
        .map_or((0, 0), |m| (m.layer_times_s().len(), m.pending_moves()));
    size_of::<Checkpoint>()
        + layers * size_of::<f64>()
        + pending * BLOCK_BYTES
        + c.consumed_mm.len() * 64
}

/// The machine's state at a line boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Byte offset where a line starts (the end of the line before it).
    pub offset: u64,
    /// Lines before `offset`.
    pub line: u64,
    /// Filament consumed per tool by the lines before `offset`, mm.
    pub consumed_mm: Vec<f64>,
    /// `None` after deserialisation until [`ExtrusionIndex::warm`].
    #[serde(skip)]
    machine: Option<Machine>,
}

/// Checkpoints over one file; see the module documentation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExtrusionIndex {
    pub format: u32,
    /// The stride the index was built with (checkpoints are further apart if it was thinned).
    pub stride: u64,
    /// Size of the indexed file, bytes.
    pub bytes: u64,
    pub lines: u64,
    /// Filament consumed by the whole file per tool, mm (= the analyzer's `filament_mm`).
    pub total_mm: Vec<f64>,
    /// Planned time of the whole file, s (the analyzer's `estimated_s` when built with the
    /// same limits, e.g. [`ExtrusionIndex::build_seekable`] and `analyze_seekable`).
    #[serde(default)]
    pub total_s: f64,
    /// In offset order, the first at offset 0.
    pub checkpoints: Vec<Checkpoint>,
    /// False after deserialisation until [`ExtrusionIndex::warm`]: the machines are missing,
    /// and the stored totals went through a text form that may not round-trip every bit.
    #[serde(skip)]
    warm: bool,
    /// The limits the index was built with: a cold query or [`ExtrusionIndex::warm`] starts
    /// from them. Not serialised (`Limits` has no serde form): a cached index built with
    /// other limits than the default must be given them again ([`ExtrusionIndex::set_limits`]).
    #[serde(skip)]
    limits: Limits,
    /// For a `.bgcode` file: where its blocks start in the binary and in the decoded text.
    /// Offsets given to the queries are then binary offsets (what PrusaLink reports), turned
    /// into text offsets by [`BinaryMap::text_offset`]'s rule; `bytes`, `lines` and the
    /// checkpoints are in the decoded text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<BinaryMap>,
}

/// Builds an [`ExtrusionIndex`] from lines fed in order, e.g. beside the analyzer in one pass.
#[derive(Debug, Clone)]
pub struct ExtrusionIndexBuilder {
    machine: Machine,
    limits: Limits,
    /// The stride asked for; `spacing` is what is used now (doubled each time memory is thinned).
    stride: u64,
    spacing: u64,
    offset: u64,
    lines: u64,
    last_checkpoint: u64,
    checkpoints: Vec<Checkpoint>,
    held_bytes: usize,
}

impl Default for ExtrusionIndexBuilder {
    fn default() -> Self {
        Self::new(DEFAULT_STRIDE)
    }
}

impl ExtrusionIndexBuilder {
    /// `stride`: bytes between checkpoints (at least 1).
    pub fn new(stride: u64) -> Self {
        Self::with_machine(Machine::default(), stride)
    }

    /// Starts from this machine (e.g. one made with the analyzer's limits) at offset 0.
    pub fn with_machine(machine: Machine, stride: u64) -> Self {
        let mut b = Self {
            limits: *machine.limits(),
            machine,
            stride: stride.max(1),
            spacing: stride.max(1),
            offset: 0,
            lines: 0,
            last_checkpoint: 0,
            checkpoints: Vec::new(),
            held_bytes: 0,
        };
        b.checkpoint();
        b
    }

    fn checkpoint(&mut self) {
        self.last_checkpoint = self.offset;
        let c = Checkpoint {
            offset: self.offset,
            line: self.lines,
            consumed_mm: self.machine.consumed_mm(),
            // A clone keeps the look-ahead buffer (≤ 192 moves): replays then plan exactly
            // what the full pass planned, so time is exact as well as filament.
            machine: Some(self.machine.clone()),
        };
        self.held_bytes += checkpoint_bytes(&c);
        self.checkpoints.push(c);
        if self.held_bytes > MAX_INDEX_BYTES && self.checkpoints.len() > 2 {
            // Keep every other checkpoint (the start always) and space new ones twice as far.
            let mut i = 0;
            self.checkpoints.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.checkpoints.shrink_to_fit();
            self.held_bytes = self.checkpoints.iter().map(checkpoint_bytes).sum();
            self.spacing = self.spacing.saturating_mul(2);
        }
    }

    /// One finished line as [`LineSplitter`] gives it, and its length in the file, newline
    /// included ([`LineSplitter::len`]).
    pub fn line(&mut self, content: Content<'_>, len: u64) {
        apply(&mut self.machine, content);
        self.offset += len;
        self.lines += 1;
        if self.offset - self.last_checkpoint >= self.spacing {
            self.checkpoint();
        }
    }

    /// The machine after the lines fed so far.
    pub fn machine(&self) -> &Machine {
        &self.machine
    }

    pub fn finish(mut self) -> ExtrusionIndex {
        self.machine.finish();
        ExtrusionIndex {
            format: INDEX_FORMAT,
            stride: self.stride,
            bytes: self.offset,
            lines: self.lines,
            total_mm: self.machine.consumed_mm(),
            total_s: self.machine.elapsed_s(),
            checkpoints: self.checkpoints,
            warm: true,
            limits: self.limits,
            binary: None,
        }
    }
}

/// What the analyzer does with a line: junk lines (overlong, binary) do not reach the machine.
fn apply(m: &mut Machine, content: Content<'_>) {
    if let Content::Text(text) = content {
        m.step(&parse_line(text));
    }
}

/// Replays a file's lines from a checkpoint.
struct Replay<R> {
    r: BufReader<R>,
    lines: LineSplitter,
    /// Offset where the line in `lines` starts.
    pos: u64,
    m: Machine,
}

impl<R: Read> Replay<R> {
    /// Reads the next line (not applied yet); returns the offset where it ends, `None` at the
    /// end of the file. A last line without a newline ends at the end of the file.
    fn read_line(&mut self) -> io::Result<Option<u64>> {
        self.lines.clear();
        loop {
            let chunk = self.r.fill_buf()?;
            if chunk.is_empty() {
                return Ok(self.lines.pending().then(|| self.pos + self.lines.len()));
            }
            let (take, eol) = self.lines.feed(chunk);
            self.r.consume(take);
            if eol {
                return Ok(Some(self.pos + self.lines.len()));
            }
        }
    }

    /// Applies the line [`Replay::read_line`] read.
    fn apply(&mut self) {
        apply(&mut self.m, self.lines.content());
        self.pos += self.lines.len();
    }

    /// Applies every line that ends at or before `offset`; returns whether it read one that
    /// does not (held, not applied).
    fn apply_until(&mut self, offset: u64) -> io::Result<bool> {
        while self.pos < offset {
            match self.read_line()? {
                Some(end) if end <= offset => self.apply(),
                Some(_) => return Ok(true), // the offset is inside this line: not read yet
                None => break,
            }
        }
        Ok(false)
    }
}

impl ExtrusionIndex {
    /// Indexes a whole stream in one pass, with the default [`Limits`].
    pub fn build(r: impl BufRead, stride: u64) -> io::Result<Self> {
        Self::build_with(r, Limits::default(), stride)
    }

    /// Indexes a whole stream starting from these limits (the file's own commands still change
    /// them).
    pub fn build_with(r: impl BufRead, limits: Limits, stride: u64) -> io::Result<Self> {
        let mut b = ExtrusionIndexBuilder::with_machine(Machine::new(limits), stride);
        for_each_line(r, |c, len| b.line(c, len))?;
        Ok(b.finish())
    }

    /// Indexes a file with the limits its slicer states at its end, as `analyze_seekable` does,
    /// so that [`ExtrusionIndex::total_s`] is the analyzer's time. `base` are the printer's
    /// limits (its firmware profile), which those comments override.
    ///
    /// A `.bgcode` file (magic `GCDE`) is indexed through its decoded text
    /// ([`bgcode::build_index`]) and then queried by offsets in the binary file.
    pub fn build_seekable<R: BufRead + Seek>(
        mut r: R,
        base: Limits,
        stride: u64,
    ) -> io::Result<Self> {
        if bgcode::sniff(&mut r)? {
            return Ok(bgcode::build_index(r, base, stride)?);
        }
        let limits = limits_from_tail_with(&mut r, base)?;
        Self::build_with(r, limits, stride)
    }

    /// The limits the index starts from (see the `limits` field).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Restores the limits of a deserialised index that was built with non-default ones.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// A replay positioned at the last checkpoint at or before `offset` that holds a machine;
    /// a cold index starts over.
    fn replay_from<R: Read + Seek>(&self, mut file: R, offset: u64) -> io::Result<Replay<R>> {
        let upto = self.checkpoints.partition_point(|c| c.offset <= offset);
        let start = self.checkpoints[..upto]
            .iter()
            .rev()
            .find_map(|c| Some((c.offset, c.machine.as_ref()?)));
        let (pos, m) = match start {
            Some((at, m)) => (at, m.clone()),
            None => (0, Machine::new(self.limits)),
        };
        file.seek(SeekFrom::Start(pos))?;
        Ok(Replay {
            r: BufReader::with_capacity(64 * 1024, file),
            lines: LineSplitter::default(),
            pos,
            m,
        })
    }

    /// Filament consumed per tool (mm, index = tool) by the lines that end at or before
    /// `offset`; see the module's line rule. `file` must be the indexed file, unchanged.
    /// The vector has one entry per tool seen so far (at least one).
    pub fn consumed_at(&self, file: impl Read + Seek, offset: u64) -> io::Result<Vec<f64>> {
        match &self.binary {
            Some(map) => self.consumed_at_text(AsciiView::new(file, map), map.text_offset(offset)),
            None => self.consumed_at_text(file, offset),
        }
    }

    fn consumed_at_text(&self, file: impl Read + Seek, offset: u64) -> io::Result<Vec<f64>> {
        if offset >= self.bytes && self.warm {
            return Ok(self.total_mm.clone());
        }
        let mut rp = self.replay_from(file, offset)?;
        rp.apply_until(offset)?;
        Ok(rp.m.consumed_mm())
    }

    /// Planned time of the lines that end at or before `offset`, s (the module's line rule):
    /// exactly what the whole-file plan spends on them. The look-ahead planner settles a
    /// move's speed only after later moves, so the replay runs on past `offset` until the
    /// moves of those lines are committed (at most a planner batch: 192 moves).
    pub fn elapsed_at(&self, file: impl Read + Seek, offset: u64) -> io::Result<f64> {
        match &self.binary {
            Some(map) => self.elapsed_at_text(AsciiView::new(file, map), map.text_offset(offset)),
            None => self.elapsed_at_text(file, offset),
        }
    }

    fn elapsed_at_text(&self, file: impl Read + Seek, offset: u64) -> io::Result<f64> {
        if offset >= self.bytes && self.warm {
            return Ok(self.total_s);
        }
        let mut rp = self.replay_from(file, offset)?;
        let mut held = rp.apply_until(offset)?;
        rp.m.mark();
        while rp.m.marked_elapsed_s().is_none() {
            if held || rp.read_line()?.is_some() {
                rp.apply();
                held = false;
            } else {
                rp.m.finish();
                break;
            }
        }
        Ok(rp.m.marked_elapsed_s().unwrap_or_else(|| rp.m.elapsed_s()))
    }

    /// Planned time left after the lines that end at or before `offset`, s: the whole file's
    /// [`ExtrusionIndex::total_s`] minus [`ExtrusionIndex::elapsed_at`] (never negative).
    /// Heat-up waits are not included (as in the analyzer's `estimated_s`).
    pub fn remaining_at(&self, file: impl Read + Seek, offset: u64) -> io::Result<f64> {
        Ok((self.total_s - self.elapsed_at(file, offset)?).max(0.0))
    }

    /// True unless deserialised and not yet [`ExtrusionIndex::warm`]ed.
    pub fn is_warm(&self) -> bool {
        self.warm
    }

    /// After loading a cached index: re-derives the machine clones in one pass over `file`
    /// (from [`ExtrusionIndex::limits`], as [`ExtrusionIndex::build_with`]).
    /// Fails with `InvalidData` (and leaves the index cold) when the file no longer matches
    /// the stored size, line boundaries or totals: the cache belongs to another file.
    pub fn warm(&mut self, file: impl Read) -> io::Result<()> {
        let fresh = if self.binary.is_some() {
            bgcode::build_index(file, self.limits, self.stride)?
        } else {
            Self::build_with(
                BufReader::with_capacity(64 * 1024, file),
                self.limits,
                self.stride,
            )?
        };
        // Totals are compared to 1e-9 relative: a text cache (JSON) need not round-trip every
        // bit, and this is an identity check; the answers afterwards come from `fresh`.
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| (x - y).abs() <= 1e-9 * x.abs().max(1.0))
        };
        let same = self.format == INDEX_FORMAT
            && fresh.binary == self.binary
            && fresh.bytes == self.bytes
            && fresh.lines == self.lines
            && close(&fresh.total_mm, &self.total_mm)
            && fresh.checkpoints.len() == self.checkpoints.len()
            && fresh
                .checkpoints
                .iter()
                .zip(&self.checkpoints)
                .all(|(a, b)| {
                    a.offset == b.offset
                        && a.line == b.line
                        && close(&a.consumed_mm, &b.consumed_mm)
                });
        if !same {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "extrusion index does not match this file",
            ));
        }
        *self = fresh;
        Ok(())
    }

    /// Estimated bytes the index holds (see [`checkpoint_bytes`]).
    pub fn memory_bytes(&self) -> usize {
        size_of::<Self>() + self.checkpoints.iter().map(checkpoint_bytes).sum::<usize>()
    }
}

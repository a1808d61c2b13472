//! Planned time as the machine accumulates it: total, per layer, and "through a marked line".
//!
//! The look-ahead planner reports a move's time only once later moves have been seen (up to
//! [`CAPACITY`](super::planner::CAPACITY) moves later), so the time of the lines up to some
//! point of a file is known a little after that point. [`Times::mark`] remembers how many
//! planned moves the lines so far produced; when the planner commits the last of them,
//! [`Times::marked_s`] holds the total at that exact move. That is the time the whole-file
//! plan spends on those lines, which is what "time remaining from a byte offset" subtracts.

/// Layers beyond this share the last slot (a hostile file must not grow memory unbounded).
const MAX_LAYERS: usize = 100_000;

/// Planned time, split by layer. Tag 0 = before the first layer (start G-code).
#[derive(Debug, Clone, Default)]
pub struct Times {
    pub total_s: f64,
    pub start_s: f64,
    pub layers_s: Vec<f64>,
    /// Planned moves whose time has been reported.
    committed: u64,
    /// (moves to wait for, total once they are committed).
    watch: Option<(u64, Option<f64>)>,
}

impl Times {
    /// Time that is not a planned move (a dwell, a tool swap).
    pub fn add(&mut self, tag: u32, t: f64) {
        self.total_s += t;
        if tag == 0 {
            self.start_s += t;
            return;
        }
        let i = (tag as usize - 1).min(MAX_LAYERS - 1);
        if self.layers_s.len() <= i {
            self.layers_s.resize(i + 1, 0.0);
        }
        self.layers_s[i] += t;
    }

    /// One planned move's final time (the planner's sink).
    pub fn add_move(&mut self, tag: u32, t: f64) {
        self.add(tag, t);
        self.committed += 1;
        if let Some((n, at @ None)) = &mut self.watch
            && *n == self.committed
        {
            *at = Some(self.total_s);
        }
    }

    /// Watches for the commit of the moves planned so far; `pending` = moves the planner still
    /// holds (all the others are committed already).
    pub fn mark(&mut self, pending: usize) {
        let at = (pending == 0).then_some(self.total_s);
        self.watch = Some((self.committed + pending as u64, at));
    }

    /// The total when the marked moves were all committed, once they are.
    pub fn marked_s(&self) -> Option<f64> {
        self.watch.and_then(|(_, at)| at)
    }
}

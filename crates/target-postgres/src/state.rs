//! When a STATE may be printed: only once every record that came before it
//! in the input is committed. This file is where that promise is kept; the
//! argument:
//!
//! 1. Records are buffered per stream in batches; a stream has at most one
//!    open batch, and a batch is known by the input line of its first
//!    record. Batches are sent to the loader whole.
//! 2. A STATE read at line `L` is preceded by records that are either in
//!    batches already sent or in open batches whose first line is `< L`.
//!    So it may be handed to the loader as soon as no open batch starts
//!    before `L`: with `low` the first line of the oldest open batch, the
//!    state is **released** when `L < low`.
//! 3. The loader handles the work queue strictly in order and commits each
//!    batch before taking the next item. So a STATE handed to the loader
//!    (as [`crate::work::Work::Emit`]) *after* the batches it needed is
//!    printed only after those are committed, hence after every record
//!    before it is.
//! 4. `low` only grows as batches are sent, and waiting states are kept in
//!    line order, so after each sent batch the released states are a prefix
//!    of the queue; the newest of them is handed over, the older ones are
//!    superseded (printing them too would add nothing).
//! 5. At the end of the input every open batch is sent, so the last STATE
//!    is released: trailing states are never lost (the peers lose them).
//!
//! Memory (issue #10, item 7): waiting states are counted in bytes
//! ([`StateTracker::waiting_bytes`], part of `max_buffer_bytes` in the
//! converter). A state is dropped only when a newer one is released at the
//! same moment or earlier — never early: when no batch opened between a
//! waiting state and a new one, the new one needs exactly the same batches,
//! so it replaces the older; and [`StateTracker::shed`] drops the waiting
//! states between the oldest and the newest, which only delays printing.
//!
//! Cost: `O(log streams)` per batch opened or sent, so thousands of streams
//! stay flat (the former per-state list of needed batches made a flush of
//! every stream cubic in the number of streams).

use std::collections::{BTreeSet, VecDeque};

/// A STATE waiting for batches to be sent.
#[derive(Debug)]
struct Waiting {
    line: u64,
    value: String,
}

/// Tracks open batches and the states waiting on them.
#[derive(Debug, Default)]
pub struct StateTracker {
    /// `(first line, stream)` of each open batch.
    open: BTreeSet<(u64, usize)>,
    waiting: VecDeque<Waiting>,
    waiting_bytes: usize,
}

impl StateTracker {
    /// A tracker with no open batches.
    pub fn new() -> StateTracker {
        StateTracker::default()
    }

    /// Stream `s` opened a batch whose first record is at `line`.
    pub fn on_batch_opened(&mut self, s: usize, line: u64) {
        self.open.insert((line, s));
    }

    /// A STATE was read at `line`. Returns it if it may be handed to the
    /// loader now.
    pub fn on_state(&mut self, value: String, line: u64) -> Option<String> {
        if self.low() > line {
            // Everything before it is sent; older waiting states are
            // superseded.
            self.waiting.clear();
            self.waiting_bytes = 0;
            return Some(value);
        }
        if let Some(last) = self.waiting.back() {
            let opened_since = self.open.range((last.line, 0)..(line, 0)).next().is_some();
            if !opened_since {
                let last = self.waiting.pop_back().expect("checked");
                self.waiting_bytes -= last.value.len();
            }
        }
        self.waiting_bytes += value.len();
        self.waiting.push_back(Waiting { line, value });
        None
    }

    /// Stream `s`'s open batch, first record at `line`, was sent. Returns
    /// the newest waiting state now released, if any.
    pub fn on_batch_sent(&mut self, s: usize, line: u64) -> Option<String> {
        self.open.remove(&(line, s));
        let low = self.low();
        let mut released = None;
        while self.waiting.front().is_some_and(|w| w.line < low) {
            let w = self.waiting.pop_front().expect("checked");
            self.waiting_bytes -= w.value.len();
            released = Some(w.value);
        }
        released
    }

    /// Drops the waiting states between the oldest and the newest (safe:
    /// see the module doc); returns the bytes freed.
    pub fn shed(&mut self) -> usize {
        let before = self.waiting_bytes;
        while self.waiting.len() > 2 {
            let w = self.waiting.remove(1).expect("len > 2");
            self.waiting_bytes -= w.value.len();
        }
        before - self.waiting_bytes
    }

    /// The bytes of the waiting states.
    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes
    }

    /// Whether any state is waiting.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn low(&self) -> u64 {
        self.open.first().map_or(u64::MAX, |&(line, _)| line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_without_open_batches_is_released_at_once() {
        let mut t = StateTracker::new();
        assert_eq!(t.on_state("a".into(), 1), Some("a".into()));
    }

    #[test]
    fn state_waits_for_every_open_batch() {
        let mut t = StateTracker::new();
        // Streams 0 and 1 have open batches (lines 1, 2) when S1 arrives.
        t.on_batch_opened(0, 1);
        t.on_batch_opened(1, 2);
        assert_eq!(t.on_state("s1".into(), 3), None);
        assert_eq!(t.on_batch_sent(0, 1), None);
        // Stream 0 opens a new batch at line 4; S2 needs it and stream 1's.
        t.on_batch_opened(0, 4);
        assert_eq!(t.on_state("s2".into(), 5), None);
        assert_eq!(t.on_batch_sent(1, 2), Some("s1".into()));
        assert_eq!(t.on_batch_sent(0, 4), Some("s2".into()));
        assert!(!t.has_waiting());
        assert_eq!(t.waiting_bytes(), 0);
    }

    #[test]
    fn newest_released_state_supersedes_older() {
        let mut t = StateTracker::new();
        t.on_batch_opened(0, 1);
        t.on_state("s1".into(), 2);
        t.on_state("s2".into(), 4);
        assert_eq!(
            t.waiting.len(),
            1,
            "no batch opened between: s2 replaces s1"
        );
        assert_eq!(t.on_batch_sent(0, 1), Some("s2".into()));
        assert!(!t.has_waiting());
    }

    #[test]
    fn later_batches_do_not_release_states_needing_other_streams() {
        let mut t = StateTracker::new();
        t.on_batch_opened(1, 1);
        t.on_batch_opened(0, 2);
        t.on_state("s1".into(), 3);
        assert_eq!(t.on_batch_sent(0, 2), None);
        t.on_batch_opened(0, 4);
        assert_eq!(t.on_batch_sent(0, 4), None);
        assert_eq!(t.on_batch_sent(1, 1), Some("s1".into()));
    }

    #[test]
    fn shedding_keeps_the_oldest_and_newest_and_never_releases_early() {
        let mut t = StateTracker::new();
        t.on_batch_opened(0, 1);
        t.on_state("a".into(), 2);
        t.on_batch_opened(1, 3);
        t.on_state("bb".into(), 4);
        t.on_batch_opened(2, 5);
        t.on_state("ccc".into(), 6);
        assert_eq!(t.waiting_bytes(), 6);
        assert_eq!(t.shed(), 2);
        assert_eq!(t.waiting_bytes(), 4);
        assert_eq!(t.on_batch_sent(0, 1), Some("a".into()));
        assert_eq!(t.on_batch_sent(1, 3), None, "ccc still needs stream 2");
        assert_eq!(t.on_batch_sent(2, 5), Some("ccc".into()));
    }
}

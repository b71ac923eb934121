//! When a STATE may be printed: only once every record that came before it
//! in the input is committed. This file is where that promise is kept; the
//! argument:
//!
//! 1. Records are buffered per stream in batches. Batch `n` of stream `s`
//!    holds a contiguous run of that stream's records, and batches of a
//!    stream are sent to the loader in order (`sent[s]` counts them).
//! 2. When a STATE is read, every record before it is either in a batch
//!    already sent, or in the open (unsent) batch of its stream. So the
//!    STATE **needs** exactly the open batches of that moment: for each
//!    stream `s` with a non-empty open batch, `sent[s] > id` where `id` is
//!    that batch's number.
//! 3. The loader handles the work queue strictly in order and commits each
//!    batch before taking the next item. So a STATE handed to the loader
//!    (as [`crate::work::Work::Emit`]) *after* every batch it needs is
//!    printed only after those batches are committed, hence after every
//!    record before it is.
//! 4. [`StateTracker::on_batch_sent`] releases, after each sent batch, the
//!    newest waiting STATE whose needs are all met, and drops the older
//!    ones (a newer state supersedes them). A STATE with no needs is
//!    released at once.
//! 5. At the end of the input every open batch is sent, so the last STATE
//!    is released: trailing states are never lost (the peers lose them).
//!
//! Dropping the *oldest* waiting entries when the queue is long only delays
//! printing; it can never print a state early.

use std::collections::VecDeque;

/// At most this many STATEs wait; older ones are dropped (safe: see above).
const MAX_WAITING: usize = 4096;

/// A STATE waiting for batches to be sent.
#[derive(Debug)]
struct Waiting {
    value: String,
    /// `(stream, batch id)`: released when `sent[stream] > id`.
    needs: Vec<(usize, u64)>,
}

/// Tracks sent batches per stream and the states waiting on them.
#[derive(Debug, Default)]
pub struct StateTracker {
    sent: Vec<u64>,
    waiting: VecDeque<Waiting>,
}

impl StateTracker {
    /// A tracker with no streams.
    pub fn new() -> StateTracker {
        StateTracker::default()
    }

    /// The id of stream `s`'s open batch (the next one to be sent).
    pub fn open_batch_id(&mut self, s: usize) -> u64 {
        if self.sent.len() <= s {
            self.sent.resize(s + 1, 0);
        }
        self.sent[s]
    }

    /// A STATE was read while the streams in `open` had records buffered.
    /// Returns the state if it may be handed to the loader now.
    pub fn on_state(&mut self, value: String, open: impl Iterator<Item = usize>) -> Option<String> {
        let needs: Vec<(usize, u64)> = open.map(|s| (s, self.open_batch_id(s))).collect();
        if needs.is_empty() {
            // Everything before it is sent; older waiting states are
            // superseded.
            self.waiting.clear();
            return Some(value);
        }
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front();
        }
        self.waiting.push_back(Waiting { value, needs });
        None
    }

    /// Stream `s`'s open batch was sent. Returns the newest waiting state
    /// now released, if any.
    pub fn on_batch_sent(&mut self, s: usize) -> Option<String> {
        self.open_batch_id(s);
        self.sent[s] += 1;
        let sent = &self.sent;
        let newest = self
            .waiting
            .iter()
            .rposition(|w| w.needs.iter().all(|&(s, id)| sent[s] > id))?;
        let released = self.waiting.drain(..=newest).next_back().map(|w| w.value);
        released
    }

    /// Whether any state is waiting.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_without_open_batches_is_released_at_once() {
        let mut t = StateTracker::new();
        assert_eq!(t.on_state("a".into(), [].into_iter()), Some("a".into()));
    }

    #[test]
    fn state_waits_for_every_open_batch() {
        let mut t = StateTracker::new();
        // Streams 0 and 1 have open batches when S1 arrives.
        assert_eq!(t.on_state("s1".into(), [0, 1].into_iter()), None);
        assert_eq!(t.on_batch_sent(0), None);
        // Stream 0 opens batch 1; S2 needs it and stream 1's batch 0.
        assert_eq!(t.on_state("s2".into(), [0, 1].into_iter()), None);
        assert_eq!(t.on_batch_sent(1), Some("s1".into()));
        assert_eq!(t.on_batch_sent(0), Some("s2".into()));
        assert!(!t.has_waiting());
    }

    #[test]
    fn newest_released_state_supersedes_older() {
        let mut t = StateTracker::new();
        t.on_state("s1".into(), [0].into_iter());
        t.on_state("s2".into(), [0].into_iter());
        assert_eq!(t.on_batch_sent(0), Some("s2".into()));
        assert!(!t.has_waiting());
    }

    #[test]
    fn later_batches_do_not_release_states_needing_other_streams() {
        let mut t = StateTracker::new();
        t.on_state("s1".into(), [1].into_iter());
        assert_eq!(t.on_batch_sent(0), None);
        assert_eq!(t.on_batch_sent(0), None);
        assert_eq!(t.on_batch_sent(1), Some("s1".into()));
    }
}

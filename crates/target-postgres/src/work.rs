//! The work the converter ([`crate::batch`]) hands the loader
//! ([`crate::loader`]), in input order. Both sides import these types;
//! neither imports the other.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::schema::StreamSpec;

/// One unit of work for the loader, in input order.
#[derive(Debug)]
pub enum Work {
    /// Make the stream's table match `spec`; reply with the actual type of
    /// each spec column.
    Table {
        /// The stream's index.
        stream: usize,
        /// What the stream wants.
        spec: Arc<StreamSpec>,
        /// The SCHEMA's line.
        line: u64,
        /// Where the column types go.
        reply: oneshot::Sender<Vec<String>>,
    },
    /// Load a batch in one transaction.
    Flush(Batch),
    /// ACTIVATE_VERSION for a stream (after its earlier records are loaded).
    Activate {
        /// The stream's index.
        stream: usize,
        /// The version now current.
        version: i64,
        /// The message's line.
        line: u64,
    },
    /// Print this state (every record before it has been handed over
    /// earlier in the queue).
    Emit(String),
    /// The input ended normally; finish (overwrite swaps) and print the
    /// held-back state, if any.
    End(Option<String>),
}

/// A batch of one stream's records as COPY text.
#[derive(Debug)]
pub struct Batch {
    /// The stream's index.
    pub stream: usize,
    /// Merge on the key (lines start with the sequence number and presence
    /// mask) or append.
    pub upsert: bool,
    /// COPY text, one line per record.
    pub data: Vec<u8>,
    /// The input line of each record.
    pub lines: Vec<u64>,
    /// Some record lacks some column.
    pub has_absent: bool,
    /// Some record is a delete (`_sdc_deleted_at` set).
    pub has_delete: bool,
}

/// How the loader's run ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// [`Work::End`] arrived and was handled.
    Done,
    /// The queue closed without [`Work::End`]: the converter stopped (its
    /// own error says why); nothing open was committed.
    Abandoned,
}

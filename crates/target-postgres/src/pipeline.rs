//! The running program: three workers and the queue between them.
//!
//! ```text
//!  input thread ──chunks──▶ converter thread ──Work (bounded)──▶ loader task ──▶ PostgreSQL
//!  (stdin/file)             (parse, encode COPY)                 (DDL, COPY, merge, commit, print state)
//! ```
//!
//! The converter and the loader run at the same time, so one core parses
//! and encodes while the server ingests the previous batch. The work queue
//! holds at most [`QUEUE_ITEMS`] items, so memory stays bounded by the
//! batch sizes.
//!
//! Failure: whichever side fails first stops; the other notices the closed
//! queue and stops without doing anything more. The loader treats a queue
//! closed without [`Work::End`] as an abort: it rolls back what is open and
//! prints nothing more. The first real error is reported (with its line
//! and stream); "the other side stopped" is never the reported cause.

use std::cell::RefCell;
use std::io::Read;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::batch::Converter;
use crate::config::TargetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::input::{self, ChunkReader, IdleHook};
use crate::loader::Loader;
use crate::schema::StreamSpec;

/// Items in flight between the converter and the loader.
pub const QUEUE_ITEMS: usize = 2;

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

/// Runs the whole load: reads `input` (stdin when `None`), loads into the
/// database of `connection`.
pub fn run(
    config: TargetConfig,
    connection: pg::ConnectionConfig,
    input: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let source: Box<dyn Read + Send> = match &input {
        Some(path) => Box::new(std::fs::File::open(path).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("{}: cannot open: {e}", path.display()),
            )
        })?),
        None => Box::new(std::io::stdin()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = runtime.block_on(pg::connect(&connection))?;
    let (tx, rx) = mpsc::channel(QUEUE_ITEMS);
    let converter_config = Arc::clone(&config);
    let chunks = input::spawn(source);
    let converter = std::thread::Builder::new()
        .name("converter".into())
        .spawn(move || convert(converter_config, chunks, tx))?;
    let mut loader = Loader::new(client, config);
    let loaded = runtime.block_on(loader.run(rx));
    let converted = converter.join().expect("the converter thread panicked");
    match (converted, loaded) {
        (Ok(()), Ok(())) => Ok(()),
        // The loader's own failure explains why the converter stopped.
        (_, Err(e)) if !is_abort(&e) => Err(e.into()),
        (Err(e), _) => Err(e.into()),
        (Ok(()), Err(e)) => Err(e.into()),
    }
}

fn is_abort(e: &Error) -> bool {
    e.kind() == ErrorKind::Io && e.to_string().ends_with("stopped")
}

fn convert(
    config: Arc<TargetConfig>,
    chunks: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    tx: mpsc::Sender<Work>,
) -> Result<()> {
    let interval = config.batch_flush_interval;
    let converter = Rc::new(RefCell::new(Converter::new(config, tx)));
    let idle = interval.map(|interval| {
        let c = Rc::clone(&converter);
        let hook: IdleHook = Box::new(move || {
            let mut c = c.borrow_mut();
            if let Err(e) = c.flush_if_due() {
                c.failed.get_or_insert(e);
                return Err(std::io::Error::other("flush failed"));
            }
            Ok(())
        });
        (interval.min(Duration::from_secs(1)), hook)
    });
    let mut reader = singer::MessageReader::new(ChunkReader::new(chunks, idle));
    loop {
        let line = match reader.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(e) => {
                return Err(converter
                    .borrow_mut()
                    .failed
                    .take()
                    .unwrap_or_else(|| e.into()))
            }
        };
        converter.borrow_mut().handle(line)?;
    }
    let mut c = converter.borrow_mut();
    c.finish()
}

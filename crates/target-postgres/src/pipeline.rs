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
//! closed without [`Work::End`] as [`Finished::Abandoned`]: it rolls back
//! what is open and prints nothing more. The loader's `Err` is always its
//! own failure, so it is reported when there is one; otherwise the
//! converter's. "The other side stopped" is never the reported cause.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::batch::Converter;
use crate::config::TargetConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::input::{self, Event, Input};
use crate::loader::Loader;
use crate::work::{Finished, Work};

/// Items in flight between the converter and the loader.
pub const QUEUE_ITEMS: usize = 2;

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
    match (loaded, converted) {
        // The loader fails only for its own reasons; the converter then
        // only saw the queue close.
        (Err(e), _) => Err(e.into()),
        (Ok(_), Err(e)) => Err(e.into()),
        (Ok(Finished::Done), Ok(())) => Ok(()),
        (Ok(Finished::Abandoned), Ok(())) => {
            Err(Error::new(ErrorKind::Io, "the converter stopped without an error").into())
        }
    }
}

/// The converter thread: events from the input to the converter, idle
/// ticks flushing what is due.
fn convert(
    config: Arc<TargetConfig>,
    chunks: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    tx: mpsc::Sender<Work>,
) -> Result<()> {
    let tick = config
        .batch_flush_interval
        .map(|interval| interval.min(Duration::from_secs(1)));
    let mut converter = Converter::new(config, tx);
    let mut input = Input::new(chunks, tick);
    loop {
        match input.next_event()? {
            Event::Line(line) => converter.handle(line)?,
            Event::Idle => converter.flush_if_due()?,
            Event::End => return converter.finish(),
        }
    }
}

//! The tap's output: Singer messages, one JSON object per line, into one
//! large buffer in front of stdout.
//!
//! Invariants:
//! - Every `write_*` call appends exactly one complete line (`…}\n`); lines
//!   are never interleaved or split by this type.
//! - [`MessageWriter::write_state`] flushes: when it returns `Ok`, the STATE
//!   line and every line before it have been handed to the inner writer
//!   (the OS, or a [`ThreadedStdout`](crate::ThreadedStdout), which writes
//!   them in the same order). A tap that emits STATE only after the records
//!   it covers therefore never lets a target see a state before its
//!   records.
//! - [`MessageWriter::write_state_checkpoint`] writes a STATE only when
//!   the output since the last STATE is at least as long as that STATE.
//!   Every STATE a tap emits is a valid place to resume, so skipping one
//!   loses nothing (a rerun from the one before redoes a little more);
//!   what it buys is that STATE bytes never exceed the other bytes: a
//!   state that grows with the number of streams, written after each of
//!   thousands of small streams, would otherwise make the output (and the
//!   target's work) quadratic. A STATE that must be seen (the last of a
//!   run) uses [`MessageWriter::write_state`].
//! - [`MessageWriter::finish`] must be called at the end: it flushes and
//!   reports the error a drop would swallow.
//! - A closed pipe (the target exited) is an [`ErrorKind::BrokenPipe`]
//!   error, never a panic and never a silent success. Rust ignores SIGPIPE,
//!   so the write returns EPIPE and it surfaces here.
//!
//! Why not `std::io::stdout()` per write: `Stdout` is line-buffered and
//! takes a lock per call. [`MessageWriter::stdout`] locks it once and puts a
//! 1 MiB `BufWriter` in front, so the OS sees one `write` per MiB.
//!
//! [`ErrorKind::BrokenPipe`]: crate::ErrorKind::BrokenPipe

use std::io::{self, BufWriter, StdoutLock, Write};

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::message::{self, Message, TimeExtracted};

/// The default buffer size of a [`MessageWriter`]: 1 MiB.
pub const DEFAULT_BUFFER_BYTES: usize = 1 << 20;

/// Writes Singer messages to `W` through a large buffer.
pub struct MessageWriter<W: Write> {
    out: BufWriter<Counting<W>>,
    /// Output position right after the last STATE.
    last_state_end: u64,
    /// Length of the last STATE line.
    last_state_len: u64,
}

/// Counts the bytes handed to the inner writer.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl MessageWriter<StdoutLock<'static>> {
    /// A writer on the process's stdout, locked for the writer's lifetime,
    /// with a [`DEFAULT_BUFFER_BYTES`] buffer.
    pub fn stdout() -> Self {
        MessageWriter::new(io::stdout().lock())
    }
}

impl<W: Write> MessageWriter<W> {
    /// A writer on `inner` with a [`DEFAULT_BUFFER_BYTES`] buffer.
    pub fn new(inner: W) -> Self {
        MessageWriter::with_capacity(DEFAULT_BUFFER_BYTES, inner)
    }

    /// A writer on `inner` with a buffer of `capacity` bytes.
    pub fn with_capacity(capacity: usize, inner: W) -> Self {
        MessageWriter {
            out: BufWriter::with_capacity(capacity, Counting { inner, count: 0 }),
            last_state_end: 0,
            last_state_len: 0,
        }
    }

    /// Writes `{"type":"SCHEMA","stream":…,"schema":…,"key_properties":[…],"bookmark_properties":[…]}`.
    ///
    /// Both lists are always written, empty or not: pipelinewise-family
    /// targets reject a SCHEMA without `key_properties`.
    pub fn write_schema<S: AsRef<str>, B: AsRef<str>>(
        &mut self,
        stream: &str,
        schema: &Value,
        key_properties: &[S],
        bookmark_properties: &[B],
    ) -> Result<()> {
        let r = message::encode_schema(
            &mut self.out,
            stream,
            schema,
            key_properties,
            bookmark_properties,
        );
        r.map_err(write_error)
    }

    /// Writes a RECORD whose record the caller has already encoded as one
    /// JSON object: `{"type":"RECORD","stream":…,"record":<record_json>[,"version":N][,"time_extracted":"…"]}`.
    ///
    /// `record_json` is copied as is. The caller guarantees it is one JSON
    /// object with no raw newline (JSON encoders never produce one inside
    /// strings; checked in debug builds). The stream name is escaped.
    pub fn write_record_raw(
        &mut self,
        stream: &str,
        record_json: &[u8],
        version: Option<i64>,
        time_extracted: Option<&TimeExtracted>,
    ) -> Result<()> {
        debug_assert!(
            record_json.first() == Some(&b'{') && !record_json.contains(&b'\n'),
            "record_json must be one JSON object on one line"
        );
        message::encode_record_raw(&mut self.out, stream, record_json, version, time_extracted)
            .map_err(write_error)
    }

    /// Writes a RECORD, serializing `record` (which must serialize to a
    /// JSON object). Slower than [`MessageWriter::write_record_raw`].
    pub fn write_record<T: Serialize + ?Sized>(
        &mut self,
        stream: &str,
        record: &T,
        version: Option<i64>,
        time_extracted: Option<&TimeExtracted>,
    ) -> Result<()> {
        message::encode_record(&mut self.out, stream, record, version, time_extracted)
            .map_err(write_error)
    }

    /// Writes `{"type":"STATE","value":<value>}` and flushes. Pass a
    /// [`State`](crate::State) or any serializable value.
    pub fn write_state<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let start = self.position();
        message::encode_state(&mut self.out, value).map_err(write_error)?;
        self.last_state_end = self.position();
        self.last_state_len = self.last_state_end - start;
        self.flush()
    }

    /// Writes a STATE as [`MessageWriter::write_state`] does, but only if
    /// the bytes written since the last STATE are at least that STATE's
    /// length (see the module documentation); returns whether it did. The
    /// check costs nothing: `value` is serialized only when written.
    pub fn write_state_checkpoint<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<bool> {
        if self.position() - self.last_state_end < self.last_state_len {
            return Ok(false);
        }
        self.write_state(value)?;
        Ok(true)
    }

    /// Bytes written so far (buffered or not).
    pub fn position(&self) -> u64 {
        self.out.get_ref().count + self.out.buffer().len() as u64
    }

    /// Writes `{"type":"ACTIVATE_VERSION","stream":…,"version":N}`.
    pub fn write_activate_version(&mut self, stream: &str, version: i64) -> Result<()> {
        message::encode_activate_version(&mut self.out, stream, version).map_err(write_error)
    }

    /// Writes any owned message as one line (see [`Message`]'s encoding).
    /// A STATE message flushes, as with [`MessageWriter::write_state`].
    pub fn write_message(&mut self, message: &Message) -> Result<()> {
        serde_json::to_writer(&mut self.out, message)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(write_error)?;
        if let Message::State(_) = message {
            self.last_state_end = self.position();
            self.flush()?;
        }
        Ok(())
    }

    /// Hands everything buffered to the OS.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(write_error)
    }

    /// Flushes and returns the inner writer. Call it at the end: dropping a
    /// writer flushes too, but ignores errors.
    pub fn finish(self) -> Result<W> {
        self.out
            .into_inner()
            .map(|c| c.inner)
            .map_err(|e| write_error(e.into_error()))
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.out.get_ref().inner
    }
}

pub(crate) fn write_error(err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        let message = "stdout closed: the downstream target exited (broken pipe); stopping";
        Error::io_with_message(message.to_owned(), err)
    } else {
        Error::io("cannot write to stdout", err)
    }
}

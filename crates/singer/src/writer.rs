//! The tap's output: Singer messages, one JSON object per line, into one
//! large buffer in front of stdout.
//!
//! Invariants:
//! - Every `write_*` call appends exactly one complete line (`…}\n`); lines
//!   are never interleaved or split by this type.
//! - [`MessageWriter::write_state`] flushes: when it returns `Ok`, the STATE
//!   line and every line before it have been handed to the OS. A tap that
//!   emits STATE only after the records it covers therefore never lets a
//!   target see a state before its records.
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
    out: BufWriter<W>,
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
            out: BufWriter::with_capacity(capacity, inner),
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
        message::encode_state(&mut self.out, value).map_err(write_error)?;
        self.flush()
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
            .map_err(|e| write_error(e.into_error()))
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        self.out.get_ref()
    }
}

fn write_error(err: io::Error) -> Error {
    if err.kind() == io::ErrorKind::BrokenPipe {
        let message = "stdout closed: the downstream target exited (broken pipe); stopping";
        Error::io_with_message(message.to_owned(), err)
    } else {
        Error::io("cannot write to stdout", err)
    }
}

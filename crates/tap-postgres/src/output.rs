//! The output seam of a sync: owns the message writer and the state, and is
//! the only way a replication method writes a message or moves a bookmark.
//!
//! Invariant: [`Output::emit_state`] and [`Output::checkpoint`] are the only
//! ways a STATE is written, and a STATE flushes every message written
//! before it, so a target never receives a bookmark ahead of its records.
//! Bookmarks are read and changed through [`phase`](crate::phase) (the
//! only reader and writer of bookmark keys): [`Output::phase`],
//! [`Output::set_phase`], or a `phase` function on [`Output::bookmark`] /
//! [`Output::bookmark_mut`]. The tap config is read-only here
//! ([`Output::config`]). Records are written as raw JSON bytes straight to
//! the writer ([`Output::write_record_raw`]), the hot path. Knows nothing of
//! how rows are read.

use std::io::Write;

use serde_json::Value;
use singer::{Bookmark, MessageWriter, ReplicationMethod, State, TimeExtracted, Writable};

use crate::config::TapConfig;
use crate::phase::Phase;
use crate::rows::StreamPlan;
use crate::values::ValueOptions;

/// Where a sync's messages and state go.
pub struct Output<'a, W: Write> {
    config: &'a TapConfig,
    writer: &'a mut MessageWriter<W>,
    state: State,
    writable: Writable,
}

impl<'a, W: Write> Output<'a, W> {
    /// An output writing to `writer`, starting from `state`.
    pub fn new(config: &'a TapConfig, writer: &'a mut MessageWriter<W>, state: State) -> Self {
        Output {
            config,
            writer,
            state,
            writable: Writable::always(),
        }
    }

    /// The same output, whose readers wait on `writable` (the writer's
    /// [`singer::ThreadedStdout`]) before reading more.
    pub fn with_writable(mut self, writable: Writable) -> Self {
        self.writable = writable;
        self
    }

    /// What a read loop awaits before it reads more, so that the output
    /// pending for stdout stays bounded while the runtime thread keeps
    /// serving every connection ([`singer::pipe`]).
    pub fn writable(&self) -> Writable {
        self.writable.clone()
    }

    /// The tap config.
    pub fn config(&self) -> &'a TapConfig {
        self.config
    }

    /// The value policies of the tap config.
    pub fn values(&self) -> &'a ValueOptions {
        &self.config.values
    }

    /// The state as it is now.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The state, giving the output up.
    pub fn into_state(self) -> State {
        self.state
    }

    /// Stream `id`'s bookmark, for a [`phase`](crate::phase) reader.
    pub fn bookmark(&self, id: &str) -> Option<&Bookmark> {
        self.state.bookmark(id)
    }

    /// Stream `id`'s bookmark (created empty), for a
    /// [`phase`](crate::phase) writer.
    pub fn bookmark_mut(&mut self, id: &str) -> &mut Bookmark {
        self.state.bookmark_mut(id)
    }

    /// Where stream `id` is, for `method` ([`Phase::read`]).
    pub fn phase(&self, id: &str, method: ReplicationMethod) -> Phase {
        Phase::read(self.state.bookmark(id), method)
    }

    /// Moves stream `id` to `phase` ([`Phase::write`]).
    pub fn set_phase(&mut self, id: &str, phase: &Phase) {
        phase.write(self.state.bookmark_mut(id));
    }

    /// Drops stream `id`'s bookmark.
    pub fn remove_bookmark(&mut self, id: &str) {
        self.state.remove_bookmark(id);
    }

    /// Sets (or clears) the stream being synced.
    pub fn set_currently_syncing(&mut self, id: Option<&str>) {
        self.state.set_currently_syncing(id);
    }

    /// Writes the current state (flushing everything before it).
    pub fn emit_state(&mut self) -> Result<(), singer::Error> {
        self.writer.write_state(&self.state)
    }

    /// Writes the current state if the output since the last one is at
    /// least as long as it ([`MessageWriter::write_state_checkpoint`]):
    /// the cadence of the per-stream and per-interval states, so that
    /// thousands of streams do not make the output quadratic.
    pub fn checkpoint(&mut self) -> Result<(), singer::Error> {
        self.writer.write_state_checkpoint(&self.state)?;
        Ok(())
    }

    /// Writes the SCHEMA of `plan`'s record columns (narrow, widened by what
    /// their values so far needed); key properties are the primary key
    /// columns among them.
    pub fn write_schema(
        &mut self,
        plan: &StreamPlan,
        bookmark_properties: &[&str],
    ) -> Result<(), singer::Error> {
        plan.write_schema(self.writer, &self.config.values, bookmark_properties)
    }

    /// Writes `plan`'s SCHEMA again, widened, if its values so far needed
    /// more than the last one said ([`StreamPlan::widen_schema`]).
    #[inline]
    pub fn widen_schema(
        &mut self,
        plan: &StreamPlan,
        bookmark_properties: &[&str],
    ) -> Result<(), singer::Error> {
        plan.widen_schema(self.writer, &self.config.values, bookmark_properties)
    }

    /// Writes a SCHEMA message.
    pub fn write_stream_schema<S: AsRef<str>>(
        &mut self,
        stream: &str,
        schema: &Value,
        key_properties: &[S],
        bookmark_properties: &[&str],
    ) -> Result<(), singer::Error> {
        self.writer
            .write_schema(stream, schema, key_properties, bookmark_properties)
    }

    /// Writes a RECORD whose body is the JSON object `record_json`
    /// ([`MessageWriter::write_record_raw`]).
    #[inline]
    pub fn write_record_raw(
        &mut self,
        stream: &str,
        record_json: &[u8],
        version: Option<i64>,
        time_extracted: Option<&TimeExtracted>,
    ) -> Result<(), singer::Error> {
        self.writer
            .write_record_raw(stream, record_json, version, time_extracted)
    }

    /// Writes an ACTIVATE_VERSION message.
    pub fn write_activate_version(
        &mut self,
        stream: &str,
        version: i64,
    ) -> Result<(), singer::Error> {
        self.writer.write_activate_version(stream, version)
    }

    /// Flushes what was written.
    pub fn flush(&mut self) -> Result<(), singer::Error> {
        self.writer.flush()
    }
}

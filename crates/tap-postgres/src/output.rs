//! The output seam of a sync: the tap config, the message writer and the
//! state, handed to each replication method.
//!
//! Invariant: [`Ctx::emit_state`] is the only way a STATE is written, and it
//! flushes every message written before it, so a target never receives a
//! bookmark ahead of its records. Knows nothing of how rows are read.

use std::io::Write;

use singer::{MessageWriter, State};

use crate::config::TapConfig;
use crate::rows::StreamPlan;

/// What a stream's sync needs.
pub struct Ctx<'a, W: Write> {
    /// The tap config.
    pub config: &'a TapConfig,
    /// Where messages go.
    pub writer: &'a mut MessageWriter<W>,
    /// The state, updated as streams progress.
    pub state: State,
}

impl<W: Write> Ctx<'_, W> {
    /// Writes the current state (flushing everything before it).
    pub fn emit_state(&mut self) -> anyhow::Result<()> {
        self.writer.write_state(&self.state)?;
        Ok(())
    }

    /// Writes the current state if the output since the last one is at
    /// least as long as it ([`MessageWriter::write_state_checkpoint`]):
    /// the cadence of the per-stream and per-interval states, so that
    /// thousands of streams do not make the output quadratic.
    pub fn checkpoint(&mut self) -> anyhow::Result<()> {
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
    ) -> anyhow::Result<()> {
        plan.write_schema(self.writer, &self.config.values, bookmark_properties)?;
        Ok(())
    }
}

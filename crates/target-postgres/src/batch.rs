//! The converter: Singer messages in, [`Work`] for the loader out. Runs on
//! its own thread so that parsing and encoding overlap the database work.
//!
//! Owns, per stream: the spec and encoder from its latest SCHEMA, the
//! optional JSON Schema validator, and the open batch (COPY text of the
//! records since the last flush). Decides when a batch is flushed:
//! - it reaches `batch_size_rows` (all streams with `flush_all_streams`);
//! - all streams' buffers together pass `max_buffer_bytes` (the largest
//!   stream is flushed, so memory is bounded whatever the data);
//! - its oldest record is older than `batch_flush_interval` (then every
//!   stream is flushed, so the newest state can be printed);
//! - before a new SCHEMA or an ACTIVATE_VERSION of its stream;
//! - at the end of the input.
//!
//! STATE handling lives in [`crate::state`]; this file only reports which
//! batches were open and which were sent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use singer::{Line, MessageRef};
use tokio::sync::{mpsc, oneshot};

use crate::config::{LoadMethod, TargetConfig};
use crate::encode::{Layout, RecordMeta, RowEncoder};
use crate::error::{Error, ErrorKind, Result};
use crate::schema::{Meta, StreamSpec};
use crate::state::StateTracker;
use crate::work::{Batch, Work};

struct Stream {
    name: String,
    spec: Arc<StreamSpec>,
    encoder: RowEncoder,
    validator: Option<jsonschema::Validator>,
    upsert: bool,
    /// The stream has `_sdc_extracted_at`, so `time_extracted` is used.
    extracted: bool,
    batch: Option<Open>,
}

struct Open {
    data: Vec<u8>,
    lines: Vec<u64>,
    has_absent: bool,
    has_delete: bool,
    opened: Instant,
    batched_at: String,
}

/// Turns messages into work for the loader.
pub struct Converter {
    config: Arc<TargetConfig>,
    tx: mpsc::Sender<Work>,
    streams: Vec<Stream>,
    by_name: HashMap<String, usize>,
    buffered_bytes: usize,
    states: StateTracker,
    clock: Clock,
    lines_since_check: u32,
    /// Under `overwrite`, the newest released state, printed after the
    /// swap at the end.
    held: Option<String>,
    /// The last `time_extracted` seen and its canonical form.
    extracted: (String, String),
}

impl Converter {
    /// A converter sending to `tx`.
    pub fn new(config: Arc<TargetConfig>, tx: mpsc::Sender<Work>) -> Converter {
        Converter {
            config,
            tx,
            streams: Vec::new(),
            by_name: HashMap::new(),
            buffered_bytes: 0,
            states: StateTracker::new(),
            clock: Clock::default(),
            lines_since_check: 0,
            held: None,
            extracted: (String::new(), String::new()),
        }
    }

    /// Handles one input line.
    pub fn handle(&mut self, line: Line<'_>) -> Result<()> {
        let n = line.number;
        match line.message {
            MessageRef::Record(r) => {
                let Some(&s) = self.by_name.get(r.stream.as_ref()) else {
                    return Err(Error::input(format!(
                        "RECORD for stream {} before any SCHEMA for it",
                        r.stream
                    ))
                    .at_line(n));
                };
                self.record(s, &r, n)
                    .map_err(|e| e.in_stream(&self.streams[s].name).at_line(n))?;
                self.lines_since_check += 1;
                if self.lines_since_check >= 4096 {
                    self.lines_since_check = 0;
                    self.flush_if_due()?;
                }
            }
            MessageRef::State(st) => {
                crate::failpoint::hit("state-read");
                if let Some(v) = self.states.on_state(st.value.get().to_owned(), n) {
                    self.release(v)?;
                }
                self.within_budget()?;
                self.flush_if_due()?;
            }
            MessageRef::Schema(m) => {
                let spec = StreamSpec::from_message(&m, &self.config)
                    .map_err(|e| e.in_stream(&m.stream).at_line(n))?;
                self.schema(spec, n)?;
            }
            MessageRef::ActivateVersion(m) => {
                let Some(&s) = self.by_name.get(&m.stream) else {
                    return Err(Error::input(format!(
                        "ACTIVATE_VERSION for stream {} before any SCHEMA for it",
                        m.stream
                    ))
                    .at_line(n));
                };
                self.flush(s)?;
                self.send(Work::Activate {
                    stream: s,
                    version: m.version,
                    line: n,
                })?;
            }
            MessageRef::Unknown { type_name } => {
                tracing::warn!("line {n}: ignoring a message of unknown type {type_name:?}");
            }
        }
        Ok(())
    }

    fn schema(&mut self, spec: StreamSpec, line: u64) -> Result<()> {
        let existing = self.by_name.get(&spec.stream).copied();
        if let Some(s) = existing {
            if *self.streams[s].spec == spec {
                return Ok(());
            }
            self.flush(s)?;
        }
        let s = existing.unwrap_or(self.streams.len());
        let spec = Arc::new(spec);
        let (reply, types) = oneshot::channel();
        self.send(Work::Table {
            stream: s,
            spec: Arc::clone(&spec),
            line,
            reply,
        })?;
        let types = types.blocking_recv().map_err(|_| aborted())?;
        let validator = if self.config.validate_records {
            Some(jsonschema::draft7::new(&spec.json_schema).map_err(|e| {
                Error::input(format!("the stream's JSON Schema is invalid: {e}"))
                    .in_stream(&spec.stream)
                    .at_line(line)
            })?)
        } else {
            None
        };
        let layout = Arc::new(Layout::new(&spec, &types));
        let stream = Stream {
            name: spec.stream.clone(),
            encoder: RowEncoder::new(layout, self.config.nul_policy),
            upsert: self.config.load_method != LoadMethod::AppendOnly && !spec.key.is_empty(),
            extracted: spec.meta_index(Meta::ExtractedAt).is_some(),
            spec,
            validator,
            batch: None,
        };
        match existing {
            Some(s) => {
                self.report(s);
                self.streams[s] = stream;
            }
            None => {
                self.by_name.insert(stream.name.clone(), s);
                self.streams.push(stream);
            }
        }
        Ok(())
    }

    fn record(&mut self, s: usize, r: &singer::RecordRef<'_>, line: u64) -> Result<()> {
        let stream = &mut self.streams[s];
        if let Some(v) = &stream.validator {
            let value = validation_value(r.record.get())?;
            let problem = v
                .iter_errors(&value)
                .next()
                .map(|e| (e.instance_path().to_string(), e.to_string()));
            if let Some((path, msg)) = problem {
                let err = Error::input(format!("record does not match the schema: {msg}"));
                return Err(match path.strip_prefix('/') {
                    Some(col) if !col.is_empty() => err.in_column(col),
                    _ => err,
                });
            }
        }
        // Parsed and written in canonical form: the text goes into the
        // COPY line as it is, so nothing of the input may reach it raw.
        let time_extracted = match &r.time_extracted {
            Some(raw) if stream.extracted => {
                if self.extracted.0 != raw.as_ref() {
                    let t = r.time_extracted_utc()?.expect("present");
                    self.extracted = (
                        raw.clone().into_owned(),
                        t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    );
                }
                Some(self.extracted.1.as_str())
            }
            _ => None,
        };
        let open = stream.batch.get_or_insert_with(|| Open {
            data: Vec::with_capacity(64 * 1024),
            lines: Vec::new(),
            has_absent: false,
            has_delete: false,
            opened: Instant::now(),
            batched_at: self.clock.now().to_owned(),
        });
        let before = open.data.len();
        let meta = RecordMeta {
            time_extracted,
            version: r.version,
            received_at: if stream.spec.columns.iter().any(|c| c.meta.is_some()) {
                self.clock.now()
            } else {
                ""
            },
            batched_at: &open.batched_at,
        };
        let seq = stream.upsert.then_some(open.lines.len() as u64);
        let enc = stream.encoder.encode(r.record, &meta, seq, &mut open.data);
        let enc = match enc {
            Ok(e) => e,
            Err(e) => {
                if open.lines.is_empty() {
                    stream.batch = None;
                }
                return Err(e);
            }
        };
        open.lines.push(line);
        if open.lines.len() == 1 {
            self.states.on_batch_opened(s, line);
        }
        open.has_absent |= enc.has_absent;
        open.has_delete |= enc.is_delete;
        self.buffered_bytes += open.data.len() - before + 8;
        let rows = open.lines.len();
        if rows >= self.config.batch_size_rows {
            if self.config.flush_all_streams {
                self.flush_all()?;
            } else {
                self.flush(s)?;
            }
        }
        self.within_budget()
    }

    /// Keeps the buffered batches and the waiting states together under
    /// `max_buffer_bytes`: sheds superseded waiting states when they are
    /// most of it, then flushes the largest batch (which may release
    /// states) until under.
    fn within_budget(&mut self) -> Result<()> {
        let max = self.config.max_buffer_bytes;
        while self.buffered_bytes + self.states.waiting_bytes() >= max {
            if self.states.waiting_bytes() > self.buffered_bytes && self.states.shed() > 0 {
                continue;
            }
            let largest = (0..self.streams.len())
                .filter(|&i| self.streams[i].batch.is_some())
                .max_by_key(|&i| self.streams[i].batch.as_ref().map_or(0, |b| b.data.len()));
            let Some(largest) = largest else { break };
            self.flush(largest)?;
        }
        Ok(())
    }

    /// Sends stream `s`'s open batch, if any, and any state it releases.
    pub fn flush(&mut self, s: usize) -> Result<()> {
        let stream = &mut self.streams[s];
        let Some(open) = stream.batch.take() else {
            return Ok(());
        };
        self.buffered_bytes = self
            .buffered_bytes
            .saturating_sub(open.data.len() + 8 * open.lines.len());
        let batch = Batch {
            stream: s,
            upsert: stream.upsert,
            data: open.data,
            lines: open.lines,
            has_absent: open.has_absent,
            has_delete: open.has_delete,
        };
        let first = batch.lines[0];
        self.send(Work::Flush(batch))?;
        if let Some(state) = self.states.on_batch_sent(s, first) {
            self.release(state)?;
        }
        Ok(())
    }

    /// Hands a state whose records are all sent to the loader (held back
    /// until the end under `overwrite`).
    fn release(&mut self, state: String) -> Result<()> {
        if self.config.load_method == LoadMethod::Overwrite {
            self.held = Some(state);
            Ok(())
        } else {
            self.send(Work::Emit(state))
        }
    }

    /// Sends every open batch.
    pub fn flush_all(&mut self) -> Result<()> {
        for s in 0..self.streams.len() {
            self.flush(s)?;
        }
        Ok(())
    }

    /// Flushes everything if some batch is older than `batch_flush_interval`.
    pub fn flush_if_due(&mut self) -> Result<()> {
        let Some(interval) = self.config.batch_flush_interval else {
            return Ok(());
        };
        let due = self
            .streams
            .iter()
            .filter_map(|s| s.batch.as_ref())
            .any(|b| b.opened.elapsed() >= interval);
        if due {
            tracing::debug!("batch_flush_interval reached: flushing every stream");
            self.flush_all()?;
        }
        Ok(())
    }

    /// End of input: flush everything, report, and tell the loader.
    pub fn finish(&mut self) -> Result<()> {
        self.flush_all()?;
        for s in 0..self.streams.len() {
            self.report(s);
        }
        let held = self.held.take();
        self.send(Work::End(held))
    }

    fn report(&self, s: usize) {
        let stream = &self.streams[s];
        let enc = &stream.encoder;
        for (col, &n) in enc.nul_replaced.iter().enumerate() {
            if n > 0 {
                tracing::warn!(
                    "stream {}, column {}: replaced {n} NUL character(s) with U+FFFD \
                     (nul_characters: replace)",
                    stream.name,
                    enc.layout().names[col]
                );
            }
        }
        let mut unknown: Vec<_> = enc.unknown.iter().collect();
        unknown.sort();
        for (property, n) in unknown {
            tracing::warn!(
                "stream {}: property {property:?} is not in the stream's schema; \
                 ignored in {n} record(s)",
                stream.name
            );
        }
    }

    fn send(&self, work: Work) -> Result<()> {
        self.tx.blocking_send(work).map_err(|_| aborted())
    }
}

/// The record as a `Value` for the validator. serde_json refuses lone
/// surrogates (`"\ud800"`), which the encoder reports naming the column —
/// or ignores, in a property the schema does not have. So they are
/// validated as U+FFFD (same length), and a record fails or loads the same
/// whatever `validate_records` is.
fn validation_value(record: &str) -> Result<serde_json::Value> {
    serde_json::from_str(record).or_else(|e| {
        let mut text = record.as_bytes().to_vec();
        let lone: Vec<usize> = crate::encode::lone_surrogates(&text).collect();
        if lone.is_empty() {
            return Err(Error::input(e.to_string()));
        }
        for at in lone {
            text[at..at + 6].copy_from_slice(b"\\ufffd");
        }
        serde_json::from_slice(&text).map_err(|_| Error::input(e.to_string()))
    })
}

/// The loader has stopped; its own error is the one reported (see
/// [`crate::pipeline`]), so this one is never shown.
fn aborted() -> Error {
    Error::new(ErrorKind::Io, "the loader stopped")
}

/// The current time as RFC 3339 text, formatted at most once per
/// millisecond.
#[derive(Default)]
struct Clock {
    millis: u128,
    text: String,
}

impl Clock {
    fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if millis != self.millis || self.text.is_empty() {
            self.millis = millis;
            self.text = DateTime::<Utc>::from(now).to_rfc3339_opts(SecondsFormat::Millis, true);
        }
        &self.text
    }
}

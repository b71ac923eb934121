//! The Singer protocol: messages, catalog and metadata, state, the line
//! reader and writer, and metric log lines. It knows nothing of PostgreSQL;
//! the tap and the target share it.
//!
//! # Modules
//! - [`message`]: the four message types, parsed from one line (borrowed,
//!   for the target's hot path, or owned) and encoded as one line.
//! - [`reader`]: the target's stdin, line by line, with line numbers in
//!   every error.
//! - [`writer`]: the tap's stdout, one large buffer, flushed at each STATE,
//!   a closed pipe reported as an error.
//! - [`catalog`]: streams, schemas, metadata; what is selected and how it
//!   replicates.
//! - [`state`]: bookmarks in the pipelinewise and Meltano SDK shapes,
//!   round-tripped exactly.
//! - [`metrics`]: `INFO METRIC: {...}` lines on stderr.
//!
//! # Output format
//!
//! Every message is one compact JSON object on one line, ended by `\n`. The
//! `type` comes first and is upper-case; the other fields follow in the
//! order shown. Strings are JSON-escaped (so no line contains a raw
//! newline); numbers keep their exact digits (serde_json's
//! `arbitrary_precision`; an exponent is spelled `e+N`/`e-N`).
//!
//! ## SCHEMA
//! ```text
//! {"type":"SCHEMA","stream":"public-orders","schema":{…},"key_properties":["id"],"bookmark_properties":[]}
//! ```
//! - `stream`: the stream name (`<schema>-<table>` for the Postgres tap).
//! - `schema`: the stream's JSON Schema, as given.
//! - `key_properties`: always written, possibly `[]` (pipelinewise-family
//!   targets fail without it).
//! - `bookmark_properties`: always written, possibly `[]`.
//!
//! ## RECORD
//! ```text
//! {"type":"RECORD","stream":"public-orders","record":{"id":1,"price":12.50},"version":1795458828761,"time_extracted":"2026-11-23T18:33:48.761494Z"}
//! ```
//! - `record`: one JSON object. With
//!   [`MessageWriter::write_record_raw`] its bytes are the caller's, copied
//!   as is.
//! - `version`: only when given; an integer (epoch milliseconds by
//!   convention).
//! - `time_extracted`: only when given; RFC 3339 in UTC with exactly six
//!   fractional digits and `Z` ([`TimeExtracted`]).
//!
//! ## STATE
//! ```text
//! {"type":"STATE","value":{"bookmarks":{"public-orders":{"last_replication_method":"FULL_TABLE","version":1795458828761,"xmin":null}},"currently_syncing":null}}
//! ```
//! - `value`: any JSON; by convention a [`State`], whose key order and
//!   numbers are kept exactly as read (see [`state`]).
//! - The writer flushes after every STATE, so a STATE never reaches the
//!   target before the lines written before it.
//!
//! ## ACTIVATE_VERSION
//! ```text
//! {"type":"ACTIVATE_VERSION","stream":"public-orders","version":1795458828761}
//! ```
//!
//! ## Metric lines (stderr, not messages)
//! ```text
//! INFO METRIC: {"type":"counter","metric":"record_count","value":1000,"tags":{"stream":"public-orders"}}
//! INFO METRIC: {"type":"timer","metric":"sync_duration","value":1.23,"tags":{"stream":"public-orders","status":"succeeded"}}
//! ```
//!
//! # Input rules
//! - `type` is matched case-insensitively (`record`, `Record`, `RECORD`).
//! - A message of another type (e.g. `BATCH`) parses as
//!   [`MessageRef::Unknown`], not as an error, so the caller can warn and
//!   go on.
//! - Unknown fields are ignored; a field given twice is an error; `null`
//!   for an optional field means absent.
//! - SCHEMA `bookmark_properties` may be a single string (coerced to a
//!   one-element list).
//! - Errors name the line and the field, e.g.
//!   `line 3: RECORD is missing field "stream"`,
//!   `line 4: field "key_properties" must be an array of strings`,
//!   `line 9: invalid JSON at column 17: EOF while parsing a string; this
//!   last line has no trailing newline, so the input looks truncated (…)`.
//!
//! # Errors
//! One opaque [`Error`] with an [`ErrorKind`] grouped by remedy. Its
//! message is complete (it already contains the cause); `source()` is
//! `None`.

#![warn(missing_docs)]

pub mod catalog;
mod error;
mod json_file;
pub mod message;
pub mod metrics;
pub mod pipe;
pub mod reader;
pub mod state;
pub mod writer;

pub use catalog::{Catalog, CatalogEntry, MetadataEntry, ReplicationMethod};
pub use error::{Error, ErrorKind, Result};
pub use message::{
    ActivateVersionMessage, Message, MessageRef, MessageType, RecordMessage, RecordRef,
    SchemaMessage, StateMessage, StateRef, TimeExtracted,
};
pub use metrics::{Metric, MetricKind};
pub use pipe::{ThreadedStdout, Writable};
pub use reader::{Line, MessageReader};
pub use state::{Bookmark, State};
pub use writer::{MessageWriter, DEFAULT_BUFFER_BYTES};

//! A streamed table ([`Live`]) and the RECORD bodies of its changes.
//!
//! A record is the row as wal2json gives it, each value encoded exactly as
//! FULL_TABLE encodes it (`crate::encode`, from the type's text output),
//! plus `_sdc_lsn` (the transaction's end LSN, increasing in stream order)
//! and `_sdc_deleted_at` (null, or the commit time for a delete). Columns
//! not streamed (deselected) are left out; so are columns wal2json did not
//! send (unchanged TOASTed values), which are absent, never null.
//!
//! Knows nothing of the replication protocol or the state.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::{json, Value};

use super::message::WalColumn;
use crate::discovery::{stream_schema_widened, Column, Table};
use crate::encode::{write_str, Encoder, Replaced, ValueError};
use crate::types::Kind;
use crate::values::{ValueOptions, Widen};
use pg::walsender::Lsn;

/// A streamed table: what encoding its changes needs.
pub struct Live {
    /// The stream id.
    pub id: String,
    /// The table as last read.
    pub table: Table,
    /// The streamed columns.
    pub selected: Vec<String>,
    /// Every column of the table, with whether it is streamed.
    encoders: HashMap<String, Col, foldhash::fast::RandomState>,
    /// The table version on the records.
    pub version: i64,
    /// Records written.
    pub records: u64,
}

impl Live {
    /// A streamed table.
    pub fn new(
        id: String,
        table: Table,
        selected: Vec<String>,
        version: i64,
        values: &ValueOptions,
    ) -> Live {
        let encoders = table
            .columns
            .iter()
            .map(|c| {
                let mut key = Vec::with_capacity(c.name.len() + 3);
                write_str(&mut key, &c.name);
                key.push(b':');
                let col = Col {
                    encoder: Encoder::new(c.kind.clone(), *values),
                    streamed: selected.contains(&c.name),
                    key,
                };
                (c.name.clone(), col)
            })
            .collect();
        Live {
            id,
            table,
            selected,
            encoders,
            version,
            records: 0,
        }
    }

    /// The stream's SCHEMA, with `_sdc_lsn` and `_sdc_deleted_at`.
    pub fn schema(&self, values: &ValueOptions) -> Value {
        let cols: Vec<&Column> = self
            .table
            .columns
            .iter()
            .filter(|c| self.selected.contains(&c.name))
            .collect();
        let widen = |c: &Column| {
            self.encoders
                .get(&c.name)
                .map_or(Widen::NONE, |c| c.encoder.widened())
        };
        let mut schema = stream_schema_widened(&self.table, &cols, values, widen);
        for c in self.encoders.values() {
            c.encoder.announce();
        }
        let props = schema["properties"].as_object_mut().expect("properties");
        props.insert(
            "_sdc_lsn".into(),
            json!({"type": ["null", "integer"], "minimum": 0}),
        );
        props.insert(
            "_sdc_deleted_at".into(),
            json!({"type": ["null", "string"], "format": "date-time"}),
        );
        schema
    }

    /// A value of the change just encoded needed more than the last SCHEMA
    /// said: a widened one must precede its record (see `values::Widen`).
    pub fn needs_wider_schema(&self) -> bool {
        self.encoders
            .values()
            .any(|c| c.streamed && c.encoder.needs_announcement())
    }

    /// The primary key columns that are streamed.
    pub fn key_properties(&self) -> Vec<&String> {
        self.table
            .primary_key
            .iter()
            .filter(|k| self.selected.contains(k))
            .collect()
    }

    /// Whether `name` is a column the tap knows (streamed or not).
    pub fn knows(&self, name: &str) -> bool {
        self.encoders.contains_key(name)
    }

    /// The streamed columns a change's `columns` lack (unchanged TOASTed
    /// values), in table order.
    pub fn absent<'c>(&'c self, columns: &[WalColumn<'_>]) -> Vec<&'c str> {
        self.selected
            .iter()
            .filter(|s| !columns.iter().any(|c| c.name == s.as_str()))
            .map(String::as_str)
            .collect()
    }

    fn encoder(&self, name: &str) -> Option<&Col> {
        self.encoders.get(name).filter(|c| c.streamed)
    }
}

/// A column of a [`Live`] table.
struct Col {
    encoder: Encoder,
    /// Whether it is streamed.
    streamed: bool,
    /// Its name as a JSON object key, with the colon.
    key: Vec<u8>,
}

/// Builds one record body in a reused buffer.
pub struct RecordBuf {
    /// The body being built.
    pub out: Vec<u8>,
    /// Values a `null` policy replaced.
    pub replaced: Replaced,
}

impl RecordBuf {
    /// An empty buffer.
    pub fn new() -> RecordBuf {
        RecordBuf {
            out: Vec::with_capacity(1024),
            replaced: Replaced::default(),
        }
    }

    /// Starts a record.
    pub fn start(&mut self) {
        self.out.clear();
        self.out.push(b'{');
    }

    /// Adds the streamed ones of `columns` (wal2json values).
    pub fn columns<'c, I>(&mut self, l: &Live, columns: I) -> Result<(), ValueError>
    where
        I: IntoIterator<Item = &'c WalColumn<'c>>,
    {
        for c in columns {
            let Some(col) = l.encoder(&c.name) else {
                continue;
            };
            if col.encoder.writes_text_as_string()
                && c.value.starts_with('"')
                && !c.value.contains('\\')
            {
                // A string with nothing escaped (and so no control
                // character) of a column written as the JSON string of its
                // text: what the encoder would write is these bytes.
                self.key(col);
                self.out.extend_from_slice(c.value.as_bytes());
                continue;
            }
            let text = wal_text(col.encoder.kind(), c.value)?;
            self.value(&c.name, col, text.as_deref())?;
        }
        Ok(())
    }

    /// Adds column `name` from its text output (`None`: SQL NULL).
    pub fn text(&mut self, l: &Live, name: &str, text: Option<&str>) -> Result<(), ValueError> {
        match l.encoder(name) {
            Some(col) => self.value(name, col, text),
            None => Ok(()),
        }
    }

    /// Starts the value of `col`: its key, after a comma if need be.
    fn key(&mut self, col: &Col) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(&col.key);
    }

    fn value(&mut self, name: &str, col: &Col, text: Option<&str>) -> Result<(), ValueError> {
        self.key(col);
        match text {
            None => {
                self.out.extend_from_slice(b"null");
                Ok(())
            }
            Some(text) => col
                .encoder
                .encode(text, &mut self.out, &mut self.replaced)
                .map_err(|e| ValueError {
                    message: format!("column {name:?}: {e}"),
                }),
        }
    }

    /// Ends the record with `_sdc_lsn` and `_sdc_deleted_at` (already JSON).
    pub fn finish(&mut self, lsn: Lsn, deleted_at: Option<&str>) -> &[u8] {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(b"\"_sdc_lsn\":");
        self.out.extend_from_slice(lsn.0.to_string().as_bytes());
        self.out.extend_from_slice(b",\"_sdc_deleted_at\":");
        self.out
            .extend_from_slice(deleted_at.unwrap_or("null").as_bytes());
        self.out.push(b'}');
        &self.out
    }
}

impl Default for RecordBuf {
    fn default() -> Self {
        RecordBuf::new()
    }
}

/// The text form of a wal2json value (what the type's output function
/// wrote): a string's content, a number's digits as written, `t`/`f`;
/// `None` for null.
pub fn wal_text<'v>(kind: &Kind, raw: &'v str) -> Result<Option<Cow<'v, str>>, ValueError> {
    Ok(match raw.as_bytes().first() {
        None | Some(b'n') => None,
        Some(b't') => Some(Cow::Borrowed("t")),
        Some(b'f') => Some(Cow::Borrowed("f")),
        Some(b'"') => {
            let s: Cow<'v, str> = serde_json::from_str(raw).map_err(|e| ValueError {
                message: format!("a string wal2json wrote is not JSON: {e}"),
            })?;
            if *kind == Kind::Bytea && !s.starts_with("\\x") {
                Some(Cow::Owned(format!("\\x{s}")))
            } else {
                Some(s)
            }
        }
        // A number, kept as wal2json wrote it.
        Some(_) => Some(Cow::Borrowed(raw)),
    })
}

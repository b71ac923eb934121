//! Rows → RECORD bodies: binary COPY rows (see [`crate::binary`]) or COPY
//! text lines decoded, and every value encoded straight into one reused
//! output buffer (no per-value allocation unless a value needs reformatting).
//! Both forms reach the same [`Encoder`] with the same text, so they write
//! the same JSON; FULL_TABLE and INCREMENTAL read binary, the text form stays
//! as the reference the binary path is tested against.
//!
//! A [`StreamPlan`] fixes, once per stream, the SELECT list (the selected
//! columns in table order, then any key column the read needs but the user
//! did not select), the pre-escaped `"name":` prefix of each field, and its
//! [`Encoder`]. [`RowEncoder::encode_line`] turns one COPY text line into
//! `{"a":1,"b":"x"}` and remembers where each value's JSON lies, so a
//! bookmark can be taken from the last row without decoding it again.

use std::fmt::Write as _;
use std::ops::Range;

use serde_json::Value;

use crate::binary::Wire;
use crate::discovery::{Column, Table};
use crate::encode::{write_str, Encoder, Replaced, ValueError};
use crate::types::Kind;
use crate::values::{ValueOptions, Widen};

/// One column of the SELECT list.
#[derive(Debug, Clone)]
pub struct PlanColumn {
    /// The column.
    pub column: Column,
    /// Whether it goes into the record (else it is only read for a key).
    pub in_record: bool,
    encoder: Encoder,
    wire: Wire,
    prefix: Vec<u8>,
}

/// How one stream is read and encoded.
#[derive(Debug, Clone)]
pub struct StreamPlan {
    /// `<schema>-<table>`.
    pub stream: String,
    /// The table as discovered now.
    pub table: Table,
    /// The SELECT list.
    pub columns: Vec<PlanColumn>,
}

impl StreamPlan {
    /// A plan reading `selected` columns (table order is kept) plus
    /// `needed` ones (e.g. the key a read is ordered by).
    pub fn new(
        table: &Table,
        selected: &[&str],
        needed: &[String],
        opts: &ValueOptions,
    ) -> StreamPlan {
        let mut columns: Vec<PlanColumn> = Vec::new();
        let mut push = |c: &Column, in_record: bool| {
            let mut prefix = Vec::with_capacity(c.name.len() + 4);
            prefix.push(if columns.iter().any(|p: &PlanColumn| p.in_record) {
                b','
            } else {
                b'{'
            });
            write_str(&mut prefix, &c.name);
            prefix.push(b':');
            columns.push(PlanColumn {
                column: c.clone(),
                in_record,
                encoder: Encoder::new(c.kind.clone(), *opts),
                wire: Wire::of(c),
                prefix,
            });
        };
        for c in &table.columns {
            if selected.contains(&c.name.as_str()) {
                push(c, true);
            }
        }
        for name in needed {
            if !selected.contains(&name.as_str()) {
                if let Some(c) = table.column(name) {
                    push(c, false);
                }
            }
        }
        StreamPlan {
            stream: table.stream_id(),
            table: table.clone(),
            columns,
        }
    }

    /// The quoted SELECT list.
    pub fn select_list(&self) -> String {
        let mut s = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&pg::quote_ident(&c.column.name));
        }
        s
    }

    /// The SELECT list of a binary COPY: each column in its [`Wire`] form.
    pub fn binary_select_list(&self) -> String {
        let mut s = String::new();
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&c.wire.select_expr(&pg::quote_ident(&c.column.name)));
        }
        s
    }

    /// `columns` as an ORDER BY list qualified with the table's name, so
    /// that it sorts by the table's columns even where the SELECT list
    /// reads a column as text under the same name.
    pub fn order_by(&self, columns: &[String]) -> String {
        let table = pg::QualifiedName::new(&self.table.schema, &self.table.name);
        columns
            .iter()
            .map(|c| format!("{table}.{}", pg::quote_ident(c)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Index in the SELECT list of column `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.column.name == name)
    }

    /// Writes the stream's SCHEMA: its record columns, narrow, widened by
    /// what their values so far needed; key properties are the primary key
    /// columns among them. Marks that widening announced.
    pub fn write_schema<W: std::io::Write>(
        &self,
        writer: &mut singer::MessageWriter<W>,
        opts: &ValueOptions,
        bookmark_properties: &[&str],
    ) -> Result<(), singer::Error> {
        let columns: Vec<&Column> = self.record_columns().collect();
        let key: Vec<&String> = self
            .table
            .primary_key
            .iter()
            .filter(|k| columns.iter().any(|c| &c.name == *k))
            .collect();
        let widen = |c: &Column| {
            self.columns
                .iter()
                .find(|p| p.column.name == c.name)
                .map_or(Widen::NONE, |p| p.encoder.widened())
        };
        let schema = crate::discovery::stream_schema_widened(&self.table, &columns, opts, widen);
        writer.write_schema(&self.stream, &schema, &key, bookmark_properties)?;
        for c in &self.columns {
            c.encoder.announce();
        }
        Ok(())
    }

    /// Writes a widened SCHEMA when a value of the row just encoded needed
    /// more than the last SCHEMA said; call it before writing the record.
    pub fn widen_schema<W: std::io::Write>(
        &self,
        writer: &mut singer::MessageWriter<W>,
        opts: &ValueOptions,
        bookmark_properties: &[&str],
    ) -> Result<(), singer::Error> {
        if self
            .columns
            .iter()
            .any(|c| c.in_record && c.encoder.needs_announcement())
        {
            self.write_schema(writer, opts, bookmark_properties)?;
        }
        Ok(())
    }

    /// The record columns.
    pub fn record_columns(&self) -> impl Iterator<Item = &Column> {
        self.columns
            .iter()
            .filter(|c| c.in_record)
            .map(|c| &c.column)
    }
}

/// A row that could not be encoded.
#[derive(Debug)]
pub struct RowError {
    /// The column at fault, if one.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "column {c:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for RowError {}

/// Encodes rows of one plan; reuses its buffers for every row.
pub struct RowEncoder<'p> {
    plan: &'p StreamPlan,
    out: Vec<u8>,
    side: Vec<u8>,
    ranges: Vec<Option<(bool, Range<usize>)>>,
    unescaped: Vec<u8>,
    scratch: Vec<u8>,
    /// Values a `null` policy replaced so far.
    pub replaced: Replaced,
}

impl<'p> RowEncoder<'p> {
    /// An encoder for `plan`.
    pub fn new(plan: &'p StreamPlan) -> RowEncoder<'p> {
        RowEncoder {
            plan,
            out: Vec::with_capacity(1024),
            side: Vec::with_capacity(64),
            ranges: vec![None; plan.columns.len()],
            unescaped: Vec::new(),
            scratch: Vec::with_capacity(64),
            replaced: Replaced::default(),
        }
    }

    /// Encodes one COPY text-format line (no trailing newline) and returns
    /// the record's JSON object.
    pub fn encode_line(&mut self, line: &[u8]) -> Result<&[u8], RowError> {
        self.start_row();
        let mut unescaped = std::mem::take(&mut self.unescaped);
        let mut fields = line.split(|&b| b == b'\t');
        let mut result = Ok(());
        for i in 0..self.plan.columns.len() {
            let Some(raw) = fields.next() else {
                result = Err(RowError {
                    column: None,
                    message: format!(
                        "COPY row has fewer fields than the {} selected columns",
                        self.plan.columns.len()
                    ),
                });
                break;
            };
            let text = if raw == b"\\N" {
                None
            } else {
                let bytes: &[u8] = if raw.contains(&b'\\') {
                    unescape_copy(raw, &mut unescaped);
                    &unescaped
                } else {
                    raw
                };
                match std::str::from_utf8(bytes) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        result = Err(self.column_error(i, format!("not UTF-8: {e}")));
                        break;
                    }
                }
            };
            if let Err(e) = self.put(i, text) {
                result = Err(e);
                break;
            }
        }
        self.unescaped = unescaped;
        result?;
        if fields.next().is_some() {
            return Err(RowError {
                column: None,
                message: "COPY row has more fields than selected columns".into(),
            });
        }
        Ok(self.end_row())
    }

    /// Encodes one binary COPY row: `fields` are the ranges of its values
    /// in `row` (`None` for NULL), one per SELECT column. Returns the
    /// record's JSON object.
    pub fn encode_binary(
        &mut self,
        row: &[u8],
        fields: &[Option<Range<usize>>],
    ) -> Result<&[u8], RowError> {
        self.start_row();
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut result = Ok(());
        for (i, field) in fields.iter().enumerate() {
            if let Some(r) = field {
                if self.put_direct(i, &row[r.clone()]) {
                    continue;
                }
            }
            let text = match field {
                None => None,
                Some(r) => match self.plan.columns[i]
                    .wire
                    .text(&row[r.clone()], &mut scratch)
                {
                    Ok(t) => Some(t),
                    Err(message) => {
                        result = Err(self.column_error(i, message));
                        break;
                    }
                },
            };
            if let Err(e) = self.put(i, text) {
                result = Err(e);
                break;
            }
        }
        self.scratch = scratch;
        result?;
        Ok(self.end_row())
    }

    fn start_row(&mut self) {
        self.out.clear();
        self.side.clear();
    }

    fn end_row(&mut self) -> &[u8] {
        if self.out.is_empty() {
            self.out.push(b'{');
        }
        self.out.push(b'}');
        &self.out
    }

    fn column_error(&self, i: usize, message: String) -> RowError {
        RowError {
            column: Some(self.plan.columns[i].column.name.clone()),
            message,
        }
    }

    /// Appends SELECT column `i`'s field from its binary `value` when
    /// [`Wire::write_json`] takes it; says whether it did.
    #[inline]
    fn put_direct(&mut self, i: usize, value: &[u8]) -> bool {
        let col = &self.plan.columns[i];
        let buf = if col.in_record {
            &mut self.out
        } else {
            &mut self.side
        };
        let before = buf.len();
        if col.in_record {
            buf.extend_from_slice(&col.prefix);
        }
        let start = buf.len();
        let opts = col.encoder.options();
        if col.wire.write_json(value, col.encoder.kind(), opts, buf) {
            self.ranges[i] = Some((col.in_record, start..buf.len()));
            true
        } else {
            buf.truncate(before);
            false
        }
    }

    /// Appends SELECT column `i`'s field with value `text` (the type's text
    /// output; `None` for NULL).
    fn put(&mut self, i: usize, text: Option<&str>) -> Result<(), RowError> {
        let col = &self.plan.columns[i];
        let buf = if col.in_record {
            self.out.extend_from_slice(&col.prefix);
            &mut self.out
        } else {
            &mut self.side
        };
        let start = buf.len();
        let Some(text) = text else {
            buf.extend_from_slice(b"null");
            self.ranges[i] = None;
            return Ok(());
        };
        col.encoder
            .encode(text, buf, &mut self.replaced)
            .map_err(|ValueError { message }| RowError {
                column: Some(col.column.name.clone()),
                message,
            })?;
        self.ranges[i] = Some((col.in_record, start..buf.len()));
        Ok(())
    }

    /// The JSON value of SELECT column `index` in the last encoded row
    /// (`null` for SQL NULL).
    pub fn value(&self, index: usize) -> Value {
        match self.raw(index) {
            None => Value::Null,
            Some(json) => serde_json::from_slice(json).expect("encoder writes JSON"),
        }
    }

    /// The JSON text of SELECT column `index` in the last encoded row;
    /// `None` for SQL NULL. (What [`RowEncoder::value`] parses: a loop that
    /// needs the value only now and then keeps these bytes instead.)
    pub fn raw(&self, index: usize) -> Option<&[u8]> {
        let (in_record, range) = self.ranges[index].as_ref()?;
        let buf = if *in_record { &self.out } else { &self.side };
        Some(&buf[range.clone()])
    }
}

/// Decodes COPY text escapes (`\\`, `\n`, `\t`, `\r`, `\b`, `\f`, `\v`,
/// octal `\ooo`, hex `\xhh`) of `raw` into `out`.
fn unescape_copy(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 >= raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'v' => out.push(0x0b),
            b'0'..=b'7' => {
                let mut v = (c - b'0') as u32;
                let mut n = 1;
                while n < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    v = v * 8 + (raw[i] - b'0') as u32;
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                let mut v = (raw[i] as char).to_digit(16).unwrap_or(0);
                i += 1;
                if i < raw.len() && raw[i].is_ascii_hexdigit() {
                    v = v * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
}

/// The PostgreSQL input text of a bookmark value as the record wrote it,
/// to bind back as a parameter (`$n::text::type`).
pub fn bookmark_input(kind: &Kind, value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) if *kind == Kind::Bytea => {
            // Our hex has no `\x`; base64 was decoded to hex by the encoder's inverse.
            let mut t = String::from("\\x");
            if s.bytes().all(|b| b.is_ascii_hexdigit()) {
                t.push_str(s);
            } else {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
                for b in bytes {
                    let _ = write!(t, "{b:02x}");
                }
            }
            Some(t)
        }
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_copy_text() {
        let mut out = Vec::new();
        unescape_copy(br"a\\b\nc\td\101\x41\\N", &mut out);
        assert_eq!(out, b"a\\b\nc\tdAA\\N");
    }
}

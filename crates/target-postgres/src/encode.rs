//! The hot path: one RECORD's raw JSON → one line of `COPY … FROM STDIN`
//! text, appended to the batch's buffer.
//!
//! The record stays the `&RawValue` the reader gave us; its members are
//! visited once (keys borrowed unless escaped) and each value is written
//! straight into COPY text form in a reused scratch buffer, then the line is
//! assembled in column order. No per-value allocation except for arrays,
//! hstore and base64, which are rare.
//!
//! Value rules (the promise is exactness; the server parses each text with
//! the column type's own input function):
//! - JSON strings are unescaped and re-escaped for COPY, so `''`, newlines,
//!   tabs, backslashes and any Unicode arrive exactly. A NUL (U+0000),
//!   which PostgreSQL cannot store, is replaced by U+FFFD (counted) or is an
//!   error, per [`NulPolicy`].
//! - Numbers are copied digit for digit (never through a float).
//! - json/jsonb columns get the value's JSON text; JSON `null` is SQL NULL.
//!   A property typed string with `contentMediaType: application/json`
//!   (our tap's form once a json column held the JSON literal `null`)
//!   carries JSON text in strings: a json/jsonb column gets the string's
//!   content, so `"null"` loads the JSON value `null`, apart from SQL NULL.
//! - Array columns get a PostgreSQL array literal built from the JSON array;
//!   bytea columns get `\x` hex from the hex or base64 string.
//! - A column **absent** from the record is not NULL: its slot stays
//!   absent, and the line's presence mask (upsert staging only) tells the
//!   merge to keep the existing value. Metadata columns are always present.
//! - Flattened objects (`data_flattening_max_level`): the members of the
//!   object are visited like the record's own, into their `parent__child`
//!   columns; a member that is absent leaves its column absent, an object
//!   that is `null` makes every column under it NULL, and any other value
//!   (a string, an array) is an error.
//!
//! What reaches the COPY text, and why none of it can add a tab, a newline
//! or a backslash of its own (issue #10 audit): JSON strings, arrays,
//! hstore and JSON text go through the escaping functions below; bytea is
//! hex checked digit by digit; numbers and `true`/`false` are JSON tokens
//! (no whitespace or backslash in them); `version` is an `i64`;
//! `_sdc_received_at`/`_sdc_batched_at` are formatted here; and
//! `time_extracted` is parsed by the converter and written back in
//! canonical RFC 3339 ([`RecordMeta::time_extracted`]) — it used to be
//! copied raw, so a crafted one could add or delete rows.
//!
//! Invariant: on error nothing is appended to `out` (the line is assembled
//! only after every value has been encoded).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

use serde::de::{DeserializeSeed, Deserializer as _, Error as _, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::NulPolicy;
use crate::error::{Error, Result};
use crate::schema::{BinaryEncoding, Meta, StreamSpec};

/// How values of a column are written, from the column's actual type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColKind {
    /// Any type read from its text form: strings unescaped, numbers and
    /// booleans as written, objects and arrays as JSON text.
    Scalar,
    /// json, jsonb: the JSON text.
    Json,
    /// json, jsonb whose property carries JSON text in strings
    /// (`contentMediaType: application/json`): a string's content.
    JsonText,
    /// An array type; `delimiter` separates elements (`,`; `;` for box).
    Array {
        /// The element delimiter.
        delimiter: u8,
    },
    /// bytea, from a hex or base64 string.
    Bytea(BinaryEncoding),
    /// hstore, from an object of strings.
    Hstore,
}

impl ColKind {
    /// The kind for a column of type `sql_type` (as `format_type` spells
    /// it); `json_text`: the property's strings hold JSON text.
    pub fn for_type(sql_type: &str, encoding: BinaryEncoding, json_text: bool) -> ColKind {
        let t = sql_type.trim();
        if t.ends_with("[]") {
            let delimiter = if t.starts_with("box") { b';' } else { b',' };
            ColKind::Array { delimiter }
        } else if (t == "json" || t == "jsonb") && json_text {
            ColKind::JsonText
        } else if t == "json" || t == "jsonb" {
            ColKind::Json
        } else if t == "bytea" {
            ColKind::Bytea(encoding)
        } else if t == "hstore" || t.ends_with(".hstore") {
            ColKind::Hstore
        } else {
            ColKind::Scalar
        }
    }
}

/// The encoder's view of a stream's columns, fixed per SCHEMA.
#[derive(Debug)]
pub struct Layout {
    /// Column names, in COPY order.
    pub names: Vec<String>,
    kinds: Vec<ColKind>,
    metas: Vec<Option<Meta>>,
    by_property: HashMap<String, Target>,
    groups: Vec<Group>,
    key: Vec<usize>,
    deleted_at: Option<usize>,
}

impl Layout {
    /// The layout of `spec` whose columns have the actual `types`.
    pub fn new(spec: &StreamSpec, types: &[String]) -> Layout {
        let mut by_property = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        for (i, c) in spec.columns.iter().enumerate() {
            match c.meta {
                None => {
                    let Some((last, parents)) = c.path.split_last() else {
                        continue;
                    };
                    // The group being filled; None is the record itself.
                    let mut at: Option<usize> = None;
                    for (depth, p) in parents.iter().enumerate() {
                        let members = match at {
                            None => &by_property,
                            Some(g) => &groups[g].members,
                        };
                        let g = match members.get(p) {
                            Some(&Target::Group(g)) => g,
                            _ => {
                                groups.push(Group {
                                    prefix: parents[..=depth].join("__"),
                                    members: HashMap::new(),
                                    leaves: Vec::new(),
                                });
                                let g = groups.len() - 1;
                                match at {
                                    None => by_property.insert(p.clone(), Target::Group(g)),
                                    Some(a) => {
                                        groups[a].members.insert(p.clone(), Target::Group(g))
                                    }
                                };
                                g
                            }
                        };
                        groups[g].leaves.push(i);
                        at = Some(g);
                    }
                    match at {
                        None => by_property.insert(last.clone(), Target::Column(i)),
                        Some(g) => groups[g].members.insert(last.clone(), Target::Column(i)),
                    };
                }
                Some(m @ (Meta::DeletedAt | Meta::Lsn)) => {
                    by_property.insert(m.name().to_owned(), Target::Column(i));
                }
                Some(_) => {}
            }
        }
        Layout {
            names: spec.columns.iter().map(|c| c.name.clone()).collect(),
            kinds: spec
                .columns
                .iter()
                .zip(types)
                .map(|(c, t)| ColKind::for_type(t, c.encoding, c.json_text))
                .collect(),
            metas: spec.columns.iter().map(|c| c.meta).collect(),
            by_property,
            groups,
            key: spec.key.clone(),
            deleted_at: spec.deleted_at_index(),
        }
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no columns.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What a property of the record (or of a flattened object) feeds.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The value goes to this column.
    Column(usize),
    /// A flattened object: its members go to columns (see [`Group`]).
    Group(usize),
}

/// A flattened object property (`data_flattening_max_level`).
#[derive(Debug)]
struct Group {
    /// Its path joined by `__`, for messages.
    prefix: String,
    /// Its properties.
    members: HashMap<String, Target>,
    /// Every column under it, set to NULL when the object is `null`.
    leaves: Vec<usize>,
}

/// The envelope facts a metadata column may need.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordMeta<'a> {
    /// `time_extracted`, parsed and written back in canonical RFC 3339
    /// (UTC): it is copied into the COPY text as it is.
    pub time_extracted: Option<&'a str>,
    /// `version`.
    pub version: Option<i64>,
    /// When the target read the record, formatted.
    pub received_at: &'a str,
    /// When the batch was opened, formatted.
    pub batched_at: &'a str,
}

/// What the encoder learned about one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Some property column was absent from the record.
    pub has_absent: bool,
    /// `_sdc_deleted_at` is present and not null.
    pub is_delete: bool,
}

const ABSENT: u32 = u32::MAX;
const NULL: u32 = u32::MAX - 1;

/// Encodes records of one layout; holds the reused buffers.
pub struct RowEncoder {
    layout: Arc<Layout>,
    nul_policy: NulPolicy,
    scratch: Vec<u8>,
    slots: Vec<(u32, u32)>,
    /// NULs replaced so far, per column.
    pub nul_replaced: Vec<u64>,
    /// Properties seen in records but not in the schema, with counts.
    pub unknown: HashMap<String, u64>,
}

impl RowEncoder {
    /// An encoder for `layout`.
    pub fn new(layout: Arc<Layout>, nul_policy: NulPolicy) -> RowEncoder {
        let n = layout.len();
        RowEncoder {
            layout,
            nul_policy,
            scratch: Vec::with_capacity(4096),
            slots: vec![(ABSENT, 0); n],
            nul_replaced: vec![0; n],
            unknown: HashMap::new(),
        }
    }

    /// The layout.
    pub fn layout(&self) -> &Arc<Layout> {
        &self.layout
    }

    /// Appends one COPY line for `record` to `out`: `seq`, the presence mask
    /// and the columns when `seq` is given (upsert staging), the columns
    /// alone otherwise.
    pub fn encode(
        &mut self,
        record: &RawValue,
        meta: &RecordMeta<'_>,
        seq: Option<u64>,
        out: &mut Vec<u8>,
    ) -> Result<Encoded> {
        self.scratch.clear();
        self.slots.fill((ABSENT, 0));
        let layout = Arc::clone(&self.layout);
        let mut de = serde_json::Deserializer::from_str(record.get());
        de.deserialize_map(RecordVisitor {
            enc: self,
            layout: &layout,
            members: &layout.by_property,
            prefix: "",
        })
        .map_err(|e| match e.classify() {
            serde_json::error::Category::Data => Error::input(e.to_string()),
            _ => Error::input(format!("record is not a JSON object: {e}")),
        })?
        .map_err(|(col, e)| e.in_column(&self.layout.names[col]))?;
        for (i, m) in layout.metas.iter().enumerate() {
            let Some(m) = m else { continue };
            let text = match m {
                Meta::ExtractedAt => meta.time_extracted,
                Meta::ReceivedAt => Some(meta.received_at),
                Meta::BatchedAt => Some(meta.batched_at),
                Meta::TableVersion => None,
                Meta::DeletedAt | Meta::Lsn => {
                    if self.slots[i].0 == ABSENT {
                        self.slots[i] = (NULL, 0);
                    }
                    continue;
                }
            };
            let start = self.scratch.len() as u32;
            match (m, text, meta.version) {
                (Meta::TableVersion, _, Some(v)) => {
                    let _ = write!(self.scratch, "{v}");
                }
                (_, Some(t), _) => self.scratch.extend_from_slice(t.as_bytes()),
                _ => {
                    self.slots[i] = (NULL, 0);
                    continue;
                }
            }
            self.slots[i] = (start, self.scratch.len() as u32);
        }
        for &k in &layout.key {
            match self.slots[k].0 {
                ABSENT => {
                    return Err(Error::input(format!(
                        "key property {:?} is missing from the record",
                        layout.names[k]
                    )))
                }
                NULL => {
                    return Err(Error::input(format!(
                        "key property {:?} is null",
                        layout.names[k]
                    )))
                }
                _ => {}
            }
        }
        let has_absent = self.slots.iter().any(|s| s.0 == ABSENT);
        let is_delete = layout
            .deleted_at
            .is_some_and(|i| self.slots[i].0 != NULL && self.slots[i].0 != ABSENT);
        if let Some(seq) = seq {
            let _ = write!(out, "{seq}");
            out.push(b'\t');
            if has_absent {
                out.extend(
                    self.slots
                        .iter()
                        .map(|s| if s.0 == ABSENT { b'0' } else { b'1' }),
                );
            } else {
                out.extend_from_slice(b"\\N");
            }
            out.push(b'\t');
        }
        for (i, &(start, end)) in self.slots.iter().enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            if start >= NULL {
                out.extend_from_slice(b"\\N");
            } else {
                out.extend_from_slice(&self.scratch[start as usize..end as usize]);
            }
        }
        out.push(b'\n');
        Ok(Encoded {
            has_absent,
            is_delete,
        })
    }

    fn put(&mut self, col: usize, raw: &str) -> Result<()> {
        let b = raw.as_bytes();
        if b == b"null" {
            self.slots[col] = (NULL, 0);
            return Ok(());
        }
        let start = self.scratch.len();
        let kind = self.layout.kinds[col];
        let out = &mut self.scratch;
        let nul = &mut self.nul_replaced[col];
        let policy = self.nul_policy;
        // Plain strings are checked as they are unescaped (json_string);
        // every other form is checked here, before any parsing.
        let checked_later = kind == ColKind::Scalar && b[0] == b'"';
        if !checked_later
            && matches!(b[0], b'"' | b'{' | b'[')
            && lone_surrogates(b).next().is_some()
        {
            return Err(Error::input(LONE_SURROGATE));
        }
        match (kind, b[0]) {
            (ColKind::Json, _) => json_text(raw, out, policy, nul)?,
            (ColKind::JsonText, b'"') => json_string(raw, out, policy, nul)?,
            (ColKind::JsonText, _) => json_text(raw, out, policy, nul)?,
            (ColKind::Array { delimiter }, b'[') => {
                let v: Value =
                    serde_json::from_str(raw).map_err(|e| Error::input(e.to_string()))?;
                let mut lit = String::new();
                pg_array(&v, delimiter, &mut lit);
                text(&lit, out, policy, nul)?;
            }
            (ColKind::Hstore, b'{') => {
                let v: Value =
                    serde_json::from_str(raw).map_err(|e| Error::input(e.to_string()))?;
                let mut lit = String::new();
                hstore(&v, &mut lit)?;
                text(&lit, out, policy, nul)?;
            }
            (ColKind::Bytea(enc), b'"') => {
                let s: String =
                    serde_json::from_str(raw).map_err(|e| Error::input(e.to_string()))?;
                bytea(&s, enc, out)?;
            }
            (_, b'"') => json_string(raw, out, policy, nul)?,
            (_, b'{' | b'[') => json_text(raw, out, policy, nul)?,
            _ => out.extend_from_slice(b),
        }
        self.slots[col] = (start as u32, self.scratch.len() as u32);
        Ok(())
    }
}

/// Visits the members of the record, or of a flattened object in it
/// (`members`, `prefix`).
struct RecordVisitor<'e> {
    enc: &'e mut RowEncoder,
    layout: &'e Layout,
    members: &'e HashMap<String, Target>,
    prefix: &'e str,
}

type VisitResult = std::result::Result<(), (usize, Error)>;

impl<'de> Visitor<'de> for RecordVisitor<'_> {
    type Value = VisitResult;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<VisitResult, A::Error> {
        let mut result = Ok(());
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let raw: &'de RawValue = map.next_value()?;
            if result.is_err() {
                continue;
            }
            match self.members.get(key.as_ref()) {
                Some(&Target::Column(col)) => {
                    if let Err(e) = self.enc.put(col, raw.get()) {
                        result = Err((col, e));
                    }
                }
                Some(&Target::Group(g)) => {
                    let group = &self.layout.groups[g];
                    let raw = raw.get();
                    if raw == "null" {
                        for &c in &group.leaves {
                            self.enc.slots[c] = (NULL, 0);
                        }
                    } else if raw.starts_with('{') {
                        let mut de = serde_json::Deserializer::from_str(raw);
                        result = de
                            .deserialize_map(RecordVisitor {
                                enc: &mut *self.enc,
                                layout: self.layout,
                                members: &group.members,
                                prefix: &group.prefix,
                            })
                            .map_err(A::Error::custom)?;
                    } else {
                        result = Err((
                            group.leaves[0],
                            Error::input(format!(
                                "property {:?} is flattened (data_flattening_max_level), so \
                                 it must be an object or null, not {raw}",
                                group.prefix
                            )),
                        ));
                    }
                }
                None if self.prefix.is_empty() => {
                    *self.enc.unknown.entry(key.into_owned()).or_insert(0) += 1
                }
                None => {
                    *self
                        .enc
                        .unknown
                        .entry(format!("{}__{key}", self.prefix))
                        .or_insert(0) += 1
                }
            }
        }
        Ok(result)
    }
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = std::borrow::Cow<'de, str>;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = std::borrow::Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(std::borrow::Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(std::borrow::Cow::Owned(v.to_owned()))
    }
}

const NUL_FAIL: &str = "value contains a NUL character (U+0000), which PostgreSQL cannot store \
                        (set nul_characters to \"replace\" to store U+FFFD instead)";

/// A raw JSON string (quotes included) → its unescaped text, COPY-escaped.
///
/// JSON's `\n \t \r \b \f \\` are also COPY's escapes for the same
/// characters, so they are copied as they are; `\"` and `\/` become the
/// bare character and `\uXXXX` the character (escaped again if COPY needs
/// it). Raw control characters cannot occur (serde_json rejected them).
pub fn json_string(raw: &str, out: &mut Vec<u8>, nul: NulPolicy, nuls: &mut u64) -> Result<()> {
    let inner = &raw.as_bytes()[1..raw.len() - 1];
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', &inner[i..]) {
        out.extend_from_slice(&inner[i..i + p]);
        i += p;
        let e = inner[i + 1];
        match e {
            b'n' | b't' | b'r' | b'b' | b'f' | b'\\' => {
                out.extend_from_slice(&[b'\\', e]);
                i += 2;
            }
            b'u' => {
                let (c, used) =
                    decode_u_escape(&inner[i..]).ok_or_else(|| Error::input(LONE_SURROGATE))?;
                i += used;
                match c {
                    '\0' => match nul {
                        NulPolicy::Fail => return Err(Error::input(NUL_FAIL)),
                        NulPolicy::Replace => {
                            *nuls += 1;
                            out.extend_from_slice("\u{fffd}".as_bytes());
                        }
                    },
                    '\\' => out.extend_from_slice(b"\\\\"),
                    '\n' => out.extend_from_slice(b"\\n"),
                    '\r' => out.extend_from_slice(b"\\r"),
                    '\t' => out.extend_from_slice(b"\\t"),
                    c => {
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                }
            }
            other => {
                // `\"` and `\/`.
                out.push(other);
                i += 2;
            }
        }
    }
    out.extend_from_slice(&inner[i..]);
    Ok(())
}

/// Decodes `\uXXXX` (and a following low surrogate) at the start of `s`;
/// returns the character and the bytes used, or `None` for a lone
/// surrogate (serde_json validated the escape's syntax).
fn decode_u_escape(s: &[u8]) -> Option<(char, usize)> {
    let hi = u_escape(s, 0)?;
    if (0xd800..0xdc00).contains(&hi) {
        let lo = u_escape(s, 6).filter(|lo| (0xdc00..0xe000).contains(lo))?;
        let c = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
        return Some((char::from_u32(c)?, 12));
    }
    Some((char::from_u32(hi)?, 6))
}

/// The code unit of the `\uXXXX` escape at `b[i..]`, if there is one.
fn u_escape(b: &[u8], i: usize) -> Option<u32> {
    if b.get(i..i + 2)? != b"\\u" {
        return None;
    }
    let hex = std::str::from_utf8(b.get(i + 2..i + 6)?).ok()?;
    u32::from_str_radix(hex, 16).ok()
}

const LONE_SURROGATE: &str = "value contains a lone surrogate (a \\uD800–\\uDFFF escape not \
                              part of a pair), which is not a Unicode character, so PostgreSQL \
                              cannot store it; fix the program that wrote it";

/// The offsets of the lone-surrogate escapes in JSON text `b`: a high
/// surrogate not followed by a low one, or a low one on its own.
pub fn lone_surrogates(b: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while let Some(p) = memchr::memchr(b'\\', &b[i.min(b.len())..]) {
            let at = i + p;
            match u_escape(b, at) {
                Some(0xd800..=0xdbff) => {
                    if matches!(u_escape(b, at + 6), Some(0xdc00..=0xdfff)) {
                        i = at + 12;
                    } else {
                        i = at + 6;
                        return Some(at);
                    }
                }
                Some(0xdc00..=0xdfff) => {
                    i = at + 6;
                    return Some(at);
                }
                Some(_) => i = at + 6,
                None => i = at + 2,
            }
        }
        i = b.len();
        None
    })
}

/// JSON text → COPY text: backslashes doubled, raw tabs and carriage
/// returns escaped; a `\u0000` escape handled per the NUL policy (jsonb
/// rejects it).
pub fn json_text(raw: &str, out: &mut Vec<u8>, nul: NulPolicy, nuls: &mut u64) -> Result<()> {
    let b = raw.as_bytes();
    let mut i = 0;
    while let Some(p) = memchr::memchr3(b'\\', b'\t', b'\r', &b[i..]) {
        out.extend_from_slice(&b[i..i + p]);
        i += p;
        match b[i] {
            b'\t' => {
                out.extend_from_slice(b"\\t");
                i += 1;
            }
            b'\r' => {
                out.extend_from_slice(b"\\r");
                i += 1;
            }
            _ => {
                if b.get(i + 1) == Some(&b'u') && b[i..].len() >= 6 && &b[i + 2..i + 6] == b"0000" {
                    match nul {
                        NulPolicy::Fail => return Err(Error::input(NUL_FAIL)),
                        NulPolicy::Replace => {
                            *nuls += 1;
                            out.extend_from_slice(b"\\\\ufffd");
                            i += 6;
                            continue;
                        }
                    }
                }
                out.extend_from_slice(b"\\\\");
                if let Some(&next) = b.get(i + 1) {
                    if next == b'\\' {
                        out.extend_from_slice(b"\\\\");
                    } else {
                        out.push(next);
                    }
                }
                i += 2;
            }
        }
    }
    out.extend_from_slice(&b[i..]);
    Ok(())
}

/// Plain text → COPY text.
fn text(s: &str, out: &mut Vec<u8>, nul: NulPolicy, nuls: &mut u64) -> Result<()> {
    for &c in s.as_bytes() {
        match c {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0 => match nul {
                NulPolicy::Fail => return Err(Error::input(NUL_FAIL)),
                NulPolicy::Replace => {
                    *nuls += 1;
                    out.extend_from_slice("\u{fffd}".as_bytes());
                }
            },
            c => out.push(c),
        }
    }
    Ok(())
}

/// A PostgreSQL array literal (before COPY escaping) from a JSON value.
fn pg_array(v: &Value, delimiter: u8, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('{');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(delimiter as char);
                }
                pg_array(item, delimiter, out);
            }
            out.push('}');
        }
        Value::Null => out.push_str("NULL"),
        Value::String(s) => quoted(s, out),
        Value::Object(_) => quoted(&v.to_string(), out),
        other => out.push_str(&other.to_string()),
    }
}

fn quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// An hstore literal from a JSON object of strings (or nulls).
fn hstore(v: &Value, out: &mut String) -> Result<()> {
    let Value::Object(m) = v else {
        return Err(Error::input("hstore value must be an object"));
    };
    for (i, (k, v)) in m.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        quoted(k, out);
        out.push_str("=>");
        match v {
            Value::Null => out.push_str("NULL"),
            Value::String(s) => quoted(s, out),
            other => quoted(&other.to_string(), out),
        }
    }
    Ok(())
}

/// bytea from hex (with or without `\x`) or base64, as COPY text `\\x…`.
fn bytea(s: &str, enc: BinaryEncoding, out: &mut Vec<u8>) -> Result<()> {
    out.extend_from_slice(b"\\\\x");
    match enc {
        BinaryEncoding::Hex => {
            let hex = s.strip_prefix("\\x").unwrap_or(s);
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) || !hex.len().is_multiple_of(2) {
                return Err(Error::input(format!(
                    "{s:?} is not hex-encoded binary data"
                )));
            }
            out.extend_from_slice(hex.as_bytes());
        }
        BinaryEncoding::Base64 => {
            let bytes = base64_decode(s)
                .ok_or_else(|| Error::input(format!("{s:?} is not base64-encoded binary data")))?;
            for b in bytes {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
    }
    Ok(())
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(raw: &str) -> String {
        let mut out = Vec::new();
        let mut n = 0;
        json_string(raw, &mut out, NulPolicy::Replace, &mut n).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_become_copy_text() {
        assert_eq!(s(r#""""#), "");
        assert_eq!(
            s(r#""a\nb\tc\\d\"e\/f""#),
            r"a\nb\tc\\d".to_owned() + "\"e/f"
        );
        assert_eq!(s(r#""\u00e9\ud83d\ude00\u005c\u000a""#), "é😀\\\\\\n");
        assert_eq!(s(r#""x\u0000y""#), "x\u{fffd}y");
        for lone in [
            r#""a\ud800b""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            r#""\ud800""#,
        ] {
            let mut n = 0;
            let e = json_string(lone, &mut Vec::new(), NulPolicy::Replace, &mut n);
            assert!(e.is_err(), "{lone}");
        }
        let mut n = 0;
        assert!(json_string(r#""\u0000""#, &mut Vec::new(), NulPolicy::Fail, &mut n).is_err());
    }

    #[test]
    fn lone_surrogates_are_found_and_pairs_are_not() {
        let found = |t: &str| lone_surrogates(t.as_bytes()).collect::<Vec<_>>();
        assert_eq!(
            found(r#"{"a":"\ud83d\ude00","b":"\\ud800"}"#),
            Vec::<usize>::new()
        );
        assert_eq!(found(r#""\ud800x\udc00\ud83d\ude00\ud83d""#), [1, 8, 26]);
    }

    #[test]
    fn json_text_is_escaped() {
        let mut out = Vec::new();
        let mut n = 0;
        json_text(
            "{\"a\":\"x\\\\y\\u0000\",\t\"b\":1}",
            &mut out,
            NulPolicy::Replace,
            &mut n,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"a\":\"x\\\\\\\\y\\\\ufffd\",\\t\"b\":1}"
        );
        assert_eq!(n, 1);
    }

    #[test]
    fn arrays_and_bytea() {
        let mut lit = String::new();
        pg_array(
            &serde_json::from_str(r#"[[1,null],["a\"b","NULL"],[{"k":1},true]]"#).unwrap(),
            b',',
            &mut lit,
        );
        assert_eq!(lit, r#"{{1,NULL},{"a\"b","NULL"},{"{\"k\":1}",true}}"#);
        let mut out = Vec::new();
        bytea("AP8=", BinaryEncoding::Base64, &mut out).unwrap();
        assert_eq!(out, b"\\\\x00ff");
        out.clear();
        bytea("\\x0A", BinaryEncoding::Hex, &mut out).unwrap();
        assert_eq!(out, b"\\\\x0A");
        assert!(bytea("zz", BinaryEncoding::Hex, &mut Vec::new()).is_err());
    }

    #[test]
    fn flattened_records_keep_absent_apart_from_null() {
        let msg = singer::SchemaMessage {
            stream: "s-t".into(),
            schema: serde_json::json!({"properties": {
                "id": {"type": "integer"},
                "a": {"type": ["null", "object"], "properties": {
                    "x": {"type": "integer"},
                    "b": {"type": "object", "properties": {"y": {"type": "string"}}}}}}}),
            key_properties: Some(vec!["id".into()]),
            bookmark_properties: vec![],
        };
        let Value::Object(m) = serde_json::json!({"data_flattening_max_level": 2}) else {
            unreachable!()
        };
        let config = crate::config::TargetConfig::from_json(&m).unwrap();
        let spec = StreamSpec::from_message(&msg, &config).unwrap();
        let types = vec!["bigint".to_owned(), "bigint".to_owned(), "text".to_owned()];
        let mut enc = RowEncoder::new(Arc::new(Layout::new(&spec, &types)), NulPolicy::Fail);
        let line = |enc: &mut RowEncoder, r: &str| {
            let raw: Box<RawValue> = serde_json::from_str(r).unwrap();
            let mut out = Vec::new();
            enc.encode(&raw, &RecordMeta::default(), Some(0), &mut out)
                .map(|_| String::from_utf8(out).unwrap())
        };
        let mut l = |r| line(&mut enc, r);
        assert_eq!(
            l(r#"{"id":1,"a":{"x":2,"b":{"y":"t\tu"}}}"#).unwrap(),
            "0\t\\N\t1\t2\tt\\tu\n"
        );
        assert_eq!(l(r#"{"id":1,"a":null}"#).unwrap(), "0\t\\N\t1\t\\N\t\\N\n");
        assert_eq!(
            l(r#"{"id":1,"a":{"b":null}}"#).unwrap(),
            "0\t101\t1\t\\N\t\\N\n"
        );
        assert_eq!(l(r#"{"id":1}"#).unwrap(), "0\t100\t1\t\\N\t\\N\n");
        assert_eq!(
            l(r#"{"id":1,"a":{"x":3,"zz":1,"b":{"y":"v","w":2}}}"#).unwrap(),
            "0\t\\N\t1\t3\tv\n"
        );
        let e = l(r#"{"id":1,"a":[1]}"#).unwrap_err().to_string();
        assert!(e.contains("must be an object or null, not [1]"), "{e}");
        let mut unknown: Vec<_> = enc.unknown.iter().collect();
        unknown.sort();
        assert_eq!(
            unknown,
            [(&"a__b__w".to_owned(), &1), (&"a__zz".to_owned(), &1)]
        );
    }
}

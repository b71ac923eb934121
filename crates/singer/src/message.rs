//! Singer messages: their types, parsing one line, and encoding one line.
//!
//! Two views of a message:
//! - [`MessageRef`] borrows from the line it was parsed from. A RECORD's
//!   `record` stays a `&RawValue` (its exact bytes, checked to be valid JSON
//!   but not decoded) and its stream name is borrowed unless it contains
//!   escapes. This is the target's hot path: one pass over the line, no
//!   allocation of ours for a typical RECORD. Measured: about 0.5 µs for a
//!   300-byte RECORD on the 2-core dev machine, four fifths of it serde_json
//!   validating the record, which a `RawValue` requires.
//! - [`Message`] owns everything, with the record and state as
//!   [`serde_json::Value`] (exact numbers, key order kept). Use it where
//!   speed does not matter: tests, SCHEMA handling, tools.
//!
//! Parsing rules (both views): the `type` value is matched
//! case-insensitively; an unknown type (e.g. `BATCH`) is not an error but
//! [`MessageRef::Unknown`], so the caller can warn and continue; unknown
//! fields are ignored; a field given twice is an error; `null` for an
//! optional field means absent. Parse errors say which field is at fault but
//! not which line: the [`reader`](crate::reader) adds `line N: `.
//!
//! Encoding always writes `type` upper-case first, then the fields in the
//! order listed in the crate docs, as compact JSON. Parsing here never uses
//! `#[serde(flatten)]` or `#[serde(untagged)]`, which would mangle numbers
//! under serde_json's `arbitrary_precision`.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{json_syntax_message, Error, ErrorKind, Result};

/// The four message types of the Singer spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `SCHEMA`: the JSON Schema and key of a stream.
    Schema,
    /// `RECORD`: one row of a stream.
    Record,
    /// `STATE`: a bookmark to resume from.
    State,
    /// `ACTIVATE_VERSION`: a versioned full copy of a stream is complete.
    ActivateVersion,
}

impl MessageType {
    /// The upper-case name written on output, e.g. `"ACTIVATE_VERSION"`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Schema => "SCHEMA",
            MessageType::Record => "RECORD",
            MessageType::State => "STATE",
            MessageType::ActivateVersion => "ACTIVATE_VERSION",
        }
    }

    /// The type named `name`, compared case-insensitively; `None` when it is
    /// not one of the four.
    pub fn from_name(name: &str) -> Option<MessageType> {
        [
            MessageType::Record,
            MessageType::State,
            MessageType::Schema,
            MessageType::ActivateVersion,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SCHEMA message.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaMessage {
    /// The stream this schema describes.
    pub stream: String,
    /// The JSON Schema of the stream's records (always a JSON object).
    pub schema: Value,
    /// The key columns; `None` when the message has no `key_properties`
    /// (the spec requires it; what to do then is the target's decision).
    pub key_properties: Option<Vec<String>>,
    /// The bookmark columns; a single string on input becomes a one-element
    /// list, absent or `null` becomes empty.
    pub bookmark_properties: Vec<String>,
}

/// A RECORD message, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordMessage {
    /// The stream the record belongs to.
    pub stream: String,
    /// The record (a JSON object).
    pub record: Value,
    /// The stream version this record belongs to (see ACTIVATE_VERSION).
    pub version: Option<i64>,
    /// When the tap read the record.
    pub time_extracted: Option<DateTime<Utc>>,
}

/// A STATE message, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct StateMessage {
    /// The state; any JSON, by convention a [`State`](crate::State) object.
    pub value: Value,
}

/// An ACTIVATE_VERSION message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivateVersionMessage {
    /// The stream whose version becomes current.
    pub stream: String,
    /// The version; records of older versions are obsolete.
    pub version: i64,
}

/// A Singer message, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A SCHEMA message.
    Schema(SchemaMessage),
    /// A RECORD message.
    Record(RecordMessage),
    /// A STATE message.
    State(StateMessage),
    /// An ACTIVATE_VERSION message.
    ActivateVersion(ActivateVersionMessage),
    /// A message whose `type` is not one of the four (e.g. `BATCH`). Not an
    /// error: the caller decides whether to warn and go on.
    Unknown {
        /// The `type` value as it was written.
        type_name: String,
    },
}

/// A RECORD message borrowed from its line.
#[derive(Debug, Clone)]
pub struct RecordRef<'a> {
    /// The stream; borrowed unless the JSON string had escapes.
    pub stream: Cow<'a, str>,
    /// The record's exact JSON text, known to be an object.
    pub record: &'a RawValue,
    /// The stream version.
    pub version: Option<i64>,
    /// `time_extracted` as written, not yet checked; see
    /// [`RecordRef::time_extracted_utc`].
    pub time_extracted: Option<Cow<'a, str>>,
}

impl RecordRef<'_> {
    /// Parses `time_extracted` as RFC 3339 (an offset is required) and
    /// converts it to UTC.
    pub fn time_extracted_utc(&self) -> Result<Option<DateTime<Utc>>> {
        self.time_extracted
            .as_deref()
            .map(parse_time_extracted)
            .transpose()
    }
}

/// A STATE message borrowed from its line.
#[derive(Debug, Clone, Copy)]
pub struct StateRef<'a> {
    /// The state's exact JSON text (any JSON value).
    pub value: &'a RawValue,
}

/// A Singer message borrowed from the line it was parsed from.
///
/// RECORD and STATE borrow; SCHEMA and ACTIVATE_VERSION are rare and owned.
#[derive(Debug, Clone)]
pub enum MessageRef<'a> {
    /// A SCHEMA message.
    Schema(SchemaMessage),
    /// A RECORD message.
    Record(RecordRef<'a>),
    /// A STATE message.
    State(StateRef<'a>),
    /// An ACTIVATE_VERSION message.
    ActivateVersion(ActivateVersionMessage),
    /// A message of an unknown type; see [`Message::Unknown`].
    Unknown {
        /// The `type` value as it was written.
        type_name: String,
    },
}

impl<'a> MessageRef<'a> {
    /// Parses one message (one JSON object, no surrounding text but
    /// whitespace). The error names the field at fault, not the line.
    pub fn parse(text: &'a str) -> Result<MessageRef<'a>> {
        let envelope: Envelope<'a> = serde_json::from_str(text).map_err(envelope_error)?;
        envelope.interpret()
    }

    /// The message type; `None` for [`MessageRef::Unknown`].
    pub fn message_type(&self) -> Option<MessageType> {
        match self {
            MessageRef::Schema(_) => Some(MessageType::Schema),
            MessageRef::Record(_) => Some(MessageType::Record),
            MessageRef::State(_) => Some(MessageType::State),
            MessageRef::ActivateVersion(_) => Some(MessageType::ActivateVersion),
            MessageRef::Unknown { .. } => None,
        }
    }

    /// Copies the message into an owned [`Message`], parsing the record and
    /// state into `Value`s and `time_extracted` into a date-time.
    pub fn to_owned_message(&self) -> Result<Message> {
        Ok(match self {
            MessageRef::Schema(m) => Message::Schema(m.clone()),
            MessageRef::Record(r) => Message::Record(RecordMessage {
                stream: r.stream.clone().into_owned(),
                record: raw_to_value(r.record),
                version: r.version,
                time_extracted: r.time_extracted_utc()?,
            }),
            MessageRef::State(s) => Message::State(StateMessage {
                value: raw_to_value(s.value),
            }),
            MessageRef::ActivateVersion(m) => Message::ActivateVersion(m.clone()),
            MessageRef::Unknown { type_name } => Message::Unknown {
                type_name: type_name.clone(),
            },
        })
    }
}

impl Message {
    /// Parses one message into owned form; see [`MessageRef::parse`]. Also
    /// checks `time_extracted`.
    pub fn parse(text: &str) -> Result<Message> {
        MessageRef::parse(text)?.to_owned_message()
    }

    /// The message type; `None` for [`Message::Unknown`].
    pub fn message_type(&self) -> Option<MessageType> {
        match self {
            Message::Schema(_) => Some(MessageType::Schema),
            Message::Record(_) => Some(MessageType::Record),
            Message::State(_) => Some(MessageType::State),
            Message::ActivateVersion(_) => Some(MessageType::ActivateVersion),
            Message::Unknown { .. } => None,
        }
    }

    /// The message as one line of compact JSON, without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Message always serializes")
    }
}

impl Serialize for Message {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        match self {
            Message::Schema(m) => {
                map.serialize_entry("type", "SCHEMA")?;
                map.serialize_entry("stream", &m.stream)?;
                map.serialize_entry("schema", &m.schema)?;
                if let Some(keys) = &m.key_properties {
                    map.serialize_entry("key_properties", keys)?;
                }
                map.serialize_entry("bookmark_properties", &m.bookmark_properties)?;
            }
            Message::Record(m) => {
                map.serialize_entry("type", "RECORD")?;
                map.serialize_entry("stream", &m.stream)?;
                map.serialize_entry("record", &m.record)?;
                if let Some(version) = m.version {
                    map.serialize_entry("version", &version)?;
                }
                if let Some(t) = &m.time_extracted {
                    map.serialize_entry("time_extracted", TimeExtracted::new(*t).as_str())?;
                }
            }
            Message::State(m) => {
                map.serialize_entry("type", "STATE")?;
                map.serialize_entry("value", &m.value)?;
            }
            Message::ActivateVersion(m) => {
                map.serialize_entry("type", "ACTIVATE_VERSION")?;
                map.serialize_entry("stream", &m.stream)?;
                map.serialize_entry("version", &m.version)?;
            }
            Message::Unknown { type_name } => {
                map.serialize_entry("type", type_name)?;
            }
        }
        map.end()
    }
}

/// A `time_extracted` value, formatted once: RFC 3339 in UTC with
/// microseconds and `Z`, e.g. `2026-11-23T18:33:48.761494Z`.
///
/// Formatting a date-time costs more than writing a record, so the tap
/// makes one of these per batch (or per row, if it wants) and passes it by
/// reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeExtracted(String);

impl TimeExtracted {
    /// Formats `at`.
    pub fn new(at: DateTime<Utc>) -> TimeExtracted {
        TimeExtracted(at.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    /// The current time.
    pub fn now() -> TimeExtracted {
        TimeExtracted::new(Utc::now())
    }

    /// The formatted text, without quotes.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<DateTime<Utc>> for TimeExtracted {
    fn from(at: DateTime<Utc>) -> Self {
        TimeExtracted::new(at)
    }
}

fn parse_time_extracted(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            Error::new(
                ErrorKind::InvalidValue,
                format!(
                    "field \"time_extracted\" must be an RFC 3339 date-time with an offset, \
                     not {text:?} ({e})"
                ),
            )
        })
}

// ---------------------------------------------------------------------------
// Encoding. Each function writes one complete line, newline included.

/// Writes a RECORD line whose record is already JSON.
pub(crate) fn encode_record_raw<W: Write>(
    out: &mut W,
    stream: &str,
    record_json: &[u8],
    version: Option<i64>,
    time_extracted: Option<&TimeExtracted>,
) -> io::Result<()> {
    out.write_all(b"{\"type\":\"RECORD\",\"stream\":")?;
    serde_json::to_writer(&mut *out, stream)?;
    out.write_all(b",\"record\":")?;
    out.write_all(record_json)?;
    encode_record_tail(out, version, time_extracted)
}

/// Writes a RECORD line, serializing the record.
pub(crate) fn encode_record<W: Write, T: Serialize + ?Sized>(
    out: &mut W,
    stream: &str,
    record: &T,
    version: Option<i64>,
    time_extracted: Option<&TimeExtracted>,
) -> io::Result<()> {
    out.write_all(b"{\"type\":\"RECORD\",\"stream\":")?;
    serde_json::to_writer(&mut *out, stream)?;
    out.write_all(b",\"record\":")?;
    serde_json::to_writer(&mut *out, record)?;
    encode_record_tail(out, version, time_extracted)
}

fn encode_record_tail<W: Write>(
    out: &mut W,
    version: Option<i64>,
    time_extracted: Option<&TimeExtracted>,
) -> io::Result<()> {
    if let Some(version) = version {
        out.write_all(b",\"version\":")?;
        serde_json::to_writer(&mut *out, &version)?;
    }
    if let Some(t) = time_extracted {
        out.write_all(b",\"time_extracted\":\"")?;
        out.write_all(t.as_str().as_bytes())?;
        out.write_all(b"\"")?;
    }
    out.write_all(b"}\n")
}

/// Writes a SCHEMA line.
pub(crate) fn encode_schema<W: Write, S: AsRef<str>, B: AsRef<str>>(
    out: &mut W,
    stream: &str,
    schema: &Value,
    key_properties: &[S],
    bookmark_properties: &[B],
) -> io::Result<()> {
    out.write_all(b"{\"type\":\"SCHEMA\",\"stream\":")?;
    serde_json::to_writer(&mut *out, stream)?;
    out.write_all(b",\"schema\":")?;
    serde_json::to_writer(&mut *out, schema)?;
    out.write_all(b",\"key_properties\":")?;
    encode_str_list(out, key_properties)?;
    out.write_all(b",\"bookmark_properties\":")?;
    encode_str_list(out, bookmark_properties)?;
    out.write_all(b"}\n")
}

fn encode_str_list<W: Write, S: AsRef<str>>(out: &mut W, items: &[S]) -> io::Result<()> {
    out.write_all(b"[")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, item.as_ref())?;
    }
    out.write_all(b"]")
}

/// Writes a STATE line.
pub(crate) fn encode_state<W: Write, T: Serialize + ?Sized>(
    out: &mut W,
    value: &T,
) -> io::Result<()> {
    out.write_all(b"{\"type\":\"STATE\",\"value\":")?;
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"}\n")
}

/// Writes an ACTIVATE_VERSION line.
pub(crate) fn encode_activate_version<W: Write>(
    out: &mut W,
    stream: &str,
    version: i64,
) -> io::Result<()> {
    out.write_all(b"{\"type\":\"ACTIVATE_VERSION\",\"stream\":")?;
    serde_json::to_writer(&mut *out, stream)?;
    out.write_all(b",\"version\":")?;
    serde_json::to_writer(&mut *out, &version)?;
    out.write_all(b"}\n")
}

// ---------------------------------------------------------------------------
// Parsing. The envelope visitor captures every known field as a borrowed
// `&RawValue`, so it works whatever order the fields come in (the type may
// come last); `interpret` then checks and converts the fields the type
// needs, with messages naming the field.

#[derive(Default)]
struct Envelope<'a> {
    type_name: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
    record: Option<&'a RawValue>,
    schema: Option<&'a RawValue>,
    key_properties: Option<&'a RawValue>,
    bookmark_properties: Option<&'a RawValue>,
    time_extracted: Option<&'a RawValue>,
    version: Option<&'a RawValue>,
    value: Option<&'a RawValue>,
    duplicate: Option<&'static str>,
}

#[derive(Clone, Copy)]
enum Field {
    Type,
    Stream,
    Record,
    Schema,
    KeyProperties,
    BookmarkProperties,
    TimeExtracted,
    Version,
    Value,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct FieldVisitor;
        impl Visitor<'_> for FieldVisitor {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> std::result::Result<Field, E> {
                Ok(match name {
                    "type" => Field::Type,
                    "stream" => Field::Stream,
                    "record" => Field::Record,
                    "schema" => Field::Schema,
                    "key_properties" => Field::KeyProperties,
                    "bookmark_properties" => Field::BookmarkProperties,
                    "time_extracted" => Field::TimeExtracted,
                    "version" => Field::Version,
                    "value" => Field::Value,
                    _ => Field::Other,
                })
            }
        }
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

impl<'de> Deserialize<'de> for Envelope<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct EnvelopeVisitor;
        impl<'de> Visitor<'de> for EnvelopeVisitor {
            type Value = Envelope<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Envelope<'de>, A::Error> {
                let mut env = Envelope::default();
                while let Some(field) = map.next_key::<Field>()? {
                    let (slot, name) = match field {
                        Field::Type => (&mut env.type_name, "type"),
                        Field::Stream => (&mut env.stream, "stream"),
                        Field::Record => (&mut env.record, "record"),
                        Field::Schema => (&mut env.schema, "schema"),
                        Field::KeyProperties => (&mut env.key_properties, "key_properties"),
                        Field::BookmarkProperties => {
                            (&mut env.bookmark_properties, "bookmark_properties")
                        }
                        Field::TimeExtracted => (&mut env.time_extracted, "time_extracted"),
                        Field::Version => (&mut env.version, "version"),
                        Field::Value => (&mut env.value, "value"),
                        Field::Other => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    let raw: &'de RawValue = map.next_value()?;
                    if slot.replace(raw).is_some() && env.duplicate.is_none() {
                        env.duplicate = Some(name);
                    }
                }
                Ok(env)
            }
        }
        deserializer.deserialize_map(EnvelopeVisitor)
    }
}

fn envelope_error(err: serde_json::Error) -> Error {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => {
            let full = err.to_string();
            let suffix = format!(" at line {} column {}", err.line(), err.column());
            let reason = full.strip_suffix(&suffix).unwrap_or(&full);
            Error::new(
                ErrorKind::WrongType,
                format!("not a Singer message: {reason}"),
            )
        }
        _ => Error::new(ErrorKind::InvalidJson, json_syntax_message(&err, false)),
    }
}

impl<'a> Envelope<'a> {
    fn interpret(self) -> Result<MessageRef<'a>> {
        let type_raw = self
            .type_name
            .ok_or_else(|| Error::missing_field("message", "type"))?;
        let type_name = raw_str(type_raw).ok_or_else(|| Error::wrong_type("type", "a string"))?;
        let Some(kind) = MessageType::from_name(&type_name) else {
            return Ok(MessageRef::Unknown {
                type_name: type_name.into_owned(),
            });
        };
        if let Some(field) = self.duplicate {
            return Err(Error::new(
                ErrorKind::InvalidValue,
                format!("{kind} has field \"{field}\" more than once"),
            ));
        }
        let required = |raw: Option<&'a RawValue>, field: &str| {
            raw.ok_or_else(|| Error::missing_field(kind, field))
        };
        Ok(match kind {
            MessageType::Record => {
                let stream = required_str(required(self.stream, "stream")?, "stream")?;
                let record = required(self.record, "record")?;
                if !record.get().starts_with('{') {
                    return Err(Error::wrong_type("record", "a JSON object"));
                }
                MessageRef::Record(RecordRef {
                    stream,
                    record,
                    version: optional_i64(self.version, "version")?,
                    time_extracted: optional_str(self.time_extracted, "time_extracted")?,
                })
            }
            MessageType::State => MessageRef::State(StateRef {
                value: required(self.value, "value")?,
            }),
            MessageType::Schema => {
                let stream = required_str(required(self.stream, "stream")?, "stream")?;
                let schema = raw_to_value(required(self.schema, "schema")?);
                if !schema.is_object() {
                    return Err(Error::wrong_type("schema", "a JSON object"));
                }
                let key_properties = match non_null(self.key_properties) {
                    None => None,
                    Some(raw) => {
                        Some(serde_json::from_str::<Vec<String>>(raw.get()).map_err(|_| {
                            Error::wrong_type("key_properties", "an array of strings")
                        })?)
                    }
                };
                let bookmark_properties = match non_null(self.bookmark_properties) {
                    None => Vec::new(),
                    Some(raw) => match raw_str(raw) {
                        Some(one) => vec![one.into_owned()],
                        None => serde_json::from_str::<Vec<String>>(raw.get()).map_err(|_| {
                            Error::wrong_type(
                                "bookmark_properties",
                                "a string or an array of strings",
                            )
                        })?,
                    },
                };
                MessageRef::Schema(SchemaMessage {
                    stream: stream.into_owned(),
                    schema,
                    key_properties,
                    bookmark_properties,
                })
            }
            MessageType::ActivateVersion => {
                let stream = required_str(required(self.stream, "stream")?, "stream")?;
                let version = optional_i64(Some(required(self.version, "version")?), "version")?
                    .ok_or_else(|| Error::wrong_type("version", "an integer"))?;
                MessageRef::ActivateVersion(ActivateVersionMessage {
                    stream: stream.into_owned(),
                    version,
                })
            }
        })
    }
}

fn non_null(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get() != "null")
}

/// The JSON string in `raw`, borrowed when it has no escapes; `None` when
/// `raw` is not a string.
fn raw_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    struct CowStr<'a>(Cow<'a, str>);
    impl<'de> Deserialize<'de> for CowStr<'de> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = CowStr<'de>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }
                fn visit_borrowed_str<E: de::Error>(
                    self,
                    s: &'de str,
                ) -> std::result::Result<CowStr<'de>, E> {
                    Ok(CowStr(Cow::Borrowed(s)))
                }
                fn visit_str<E: de::Error>(self, s: &str) -> std::result::Result<CowStr<'de>, E> {
                    Ok(CowStr(Cow::Owned(s.to_owned())))
                }
            }
            d.deserialize_str(V)
        }
    }
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        // A valid JSON string without escapes is the text between its quotes.
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<CowStr<'_>>(text).ok().map(|s| s.0)
}

fn required_str<'a>(raw: &'a RawValue, field: &str) -> Result<Cow<'a, str>> {
    raw_str(raw).ok_or_else(|| Error::wrong_type(field, "a string"))
}

fn optional_str<'a>(raw: Option<&'a RawValue>, field: &str) -> Result<Option<Cow<'a, str>>> {
    non_null(raw).map(|r| required_str(r, field)).transpose()
}

fn optional_i64(raw: Option<&RawValue>, field: &str) -> Result<Option<i64>> {
    non_null(raw)
        .map(|r| {
            // `str::parse` accepts exactly JSON's integers here (the text is
            // valid JSON, so no leading `+` or spaces), and is much cheaper
            // than a serde_json deserializer.
            r.get()
                .parse::<i64>()
                .map_err(|_| Error::wrong_type(field, "an integer"))
        })
        .transpose()
}

fn raw_to_value(raw: &RawValue) -> Value {
    serde_json::from_str(raw.get()).expect("a RawValue is valid JSON")
}

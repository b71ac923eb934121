//! The Singer catalog (also the legacy `--properties` file): streams, their
//! schemas and metadata, and the rules that decide what is synced and how.
//!
//! Two catalog styles are in use and both are read:
//! - metadata style (Singer, pipelinewise, Macrometa): `selected`,
//!   `replication-method`, `replication-key`, `view-key-properties` in the
//!   breadcrumb metadata;
//! - top-level style (Meltano writes both; the MeltanoLabs tap reads this
//!   one): `selected`, `replication_method`, `replication_key`,
//!   `key_properties`, `is_view` as keys of the stream entry; also the legacy
//!   `"selected": true` inside the stream's `schema`.
//!
//! Where both give a value, **metadata wins**. The precedence of every
//! accessor is stated on it.
//!
//! Invariants:
//! - Loading checks the JSON type of every key the accessors read, so the
//!   accessors cannot fail on a loaded catalog (except on values no type
//!   check can catch, like an unknown replication method).
//! - Unknown keys of the catalog and of each stream are kept and written
//!   back, in their original order, after the known keys (which are written
//!   in a fixed order). Metadata maps keep every key in order. Numbers keep
//!   their exact digits.
//! - No `#[serde(flatten)]`: it would mangle numbers in schemas under
//!   serde_json's `arbitrary_precision`. Entries are read from a
//!   [`serde_json::Map`] and unknown keys are what is left.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::error::{json_syntax_message, Error, ErrorKind, Result};
use crate::json_file;

/// How a stream is replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicationMethod {
    /// `FULL_TABLE`: copy the whole table every run.
    FullTable,
    /// `INCREMENTAL`: copy rows whose replication key is at or past the
    /// bookmark.
    Incremental,
    /// `LOG_BASED`: stream changes from the database log.
    LogBased,
}

impl ReplicationMethod {
    /// The catalog spelling, e.g. `"LOG_BASED"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicationMethod::FullTable => "FULL_TABLE",
            ReplicationMethod::Incremental => "INCREMENTAL",
            ReplicationMethod::LogBased => "LOG_BASED",
        }
    }
}

impl fmt::Display for ReplicationMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReplicationMethod {
    type Err = Error;

    /// Parses `FULL_TABLE`, `INCREMENTAL` or `LOG_BASED`, in any case.
    fn from_str(s: &str) -> Result<Self> {
        [
            ReplicationMethod::FullTable,
            ReplicationMethod::Incremental,
            ReplicationMethod::LogBased,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidValue,
                format!(
                    "unknown replication method {s:?}; expected FULL_TABLE, INCREMENTAL or LOG_BASED"
                ),
            )
        })
    }
}

/// One `{"breadcrumb": [...], "metadata": {...}}` entry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetadataEntry {
    /// `[]` for the stream, `["properties", "<column>"]` for a column.
    pub breadcrumb: Vec<String>,
    /// The metadata keys, in their original order.
    pub metadata: Map<String, Value>,
}

impl Serialize for MetadataEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("breadcrumb", &self.breadcrumb)?;
        map.serialize_entry("metadata", &self.metadata)?;
        map.end()
    }
}

/// One stream of a catalog.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CatalogEntry {
    /// The stream's id, e.g. `public-orders`; the key of its bookmark.
    pub tap_stream_id: String,
    /// The stream name (`stream` key).
    pub stream: Option<String>,
    /// The source table name (`table_name` key).
    pub table_name: Option<String>,
    /// The stream's JSON Schema.
    pub schema: Value,
    /// Breadcrumb metadata, in order.
    pub metadata: Vec<MetadataEntry>,
    /// Top-level `key_properties`.
    pub key_properties: Option<Vec<String>>,
    /// Top-level `replication_method`.
    pub replication_method: Option<String>,
    /// Top-level `replication_key`.
    pub replication_key: Option<String>,
    /// Top-level `selected`.
    pub selected: Option<bool>,
    /// Top-level `is_view`.
    pub is_view: Option<bool>,
    /// Every other key of the stream entry, in its original order.
    pub extra: Map<String, Value>,
}

/// A Singer catalog: `{"streams": [...]}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    /// The streams, in file order.
    pub streams: Vec<CatalogEntry>,
    /// Every other top-level key, in its original order.
    pub extra: Map<String, Value>,
}

impl Catalog {
    /// Reads a catalog (or legacy properties) file. Errors start with the
    /// path; invalid JSON gives serde_json's line and column.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Catalog> {
        let path = path.as_ref();
        let value = json_file::read(path)?;
        Catalog::from_value(value).map_err(|e| e.context(path.display()))
    }

    /// Parses a catalog from JSON text.
    pub fn from_json(text: &str) -> Result<Catalog> {
        let value = serde_json::from_str(text)
            .map_err(|e| Error::new(ErrorKind::InvalidJson, json_syntax_message(&e, true)))?;
        Catalog::from_value(value)
    }

    /// Builds a catalog from a parsed JSON value, checking the types of the
    /// keys the accessors read.
    pub fn from_value(value: Value) -> Result<Catalog> {
        let Value::Object(mut top) = value else {
            return Err(Error::new(
                ErrorKind::WrongType,
                "a catalog must be a JSON object with a \"streams\" array",
            ));
        };
        let streams = match top.shift_remove("streams") {
            None => return Err(Error::missing_field("catalog", "streams")),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(Error::wrong_type("streams", "an array")),
        };
        let streams = streams
            .into_iter()
            .enumerate()
            .map(|(i, v)| CatalogEntry::from_value(v, i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Catalog {
            streams,
            extra: top,
        })
    }

    /// The stream with this `tap_stream_id`.
    pub fn stream(&self, tap_stream_id: &str) -> Option<&CatalogEntry> {
        self.streams
            .iter()
            .find(|s| s.tap_stream_id == tap_stream_id)
    }

    /// The streams for which [`CatalogEntry::is_selected`] holds, in order.
    pub fn selected_streams(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.streams.iter().filter(|s| s.is_selected())
    }

    /// The catalog as JSON text, pretty-printed (as `--discover` prints it).
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Catalog always serializes")
    }
}

impl Serialize for Catalog {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("streams", &self.streams)?;
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Catalog {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Catalog::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl Serialize for CatalogEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("tap_stream_id", &self.tap_stream_id)?;
        if let Some(v) = &self.stream {
            map.serialize_entry("stream", v)?;
        }
        if let Some(v) = &self.table_name {
            map.serialize_entry("table_name", v)?;
        }
        if let Some(v) = &self.key_properties {
            map.serialize_entry("key_properties", v)?;
        }
        if let Some(v) = &self.replication_method {
            map.serialize_entry("replication_method", v)?;
        }
        if let Some(v) = &self.replication_key {
            map.serialize_entry("replication_key", v)?;
        }
        if let Some(v) = &self.selected {
            map.serialize_entry("selected", v)?;
        }
        if let Some(v) = &self.is_view {
            map.serialize_entry("is_view", v)?;
        }
        map.serialize_entry("schema", &self.schema)?;
        map.serialize_entry("metadata", &self.metadata)?;
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl CatalogEntry {
    /// A stream with this id and schema, and no metadata.
    pub fn new(tap_stream_id: impl Into<String>, schema: Value) -> CatalogEntry {
        CatalogEntry {
            tap_stream_id: tap_stream_id.into(),
            schema,
            ..CatalogEntry::default()
        }
    }

    fn from_value(value: Value, index: usize) -> Result<CatalogEntry> {
        let Value::Object(mut obj) = value else {
            return Err(Error::new(
                ErrorKind::WrongType,
                format!("streams[{index}] must be a JSON object"),
            ));
        };
        let tap_stream_id = match obj.shift_remove("tap_stream_id") {
            Some(Value::String(s)) => s,
            None | Some(Value::Null) => {
                return Err(Error::missing_field(
                    format_args!("streams[{index}]"),
                    "tap_stream_id",
                ))
            }
            Some(_) => {
                return Err(Error::wrong_type("tap_stream_id", "a string")
                    .context(format_args!("streams[{index}]")))
            }
        };
        let at = format!("stream {tap_stream_id:?}");
        let mut inner = || -> Result<CatalogEntry> {
            let schema = match obj.shift_remove("schema") {
                None | Some(Value::Null) => {
                    return Err(Error::new(
                        ErrorKind::MissingField,
                        "missing field \"schema\"",
                    ))
                }
                Some(v @ Value::Object(_)) => v,
                Some(_) => return Err(Error::wrong_type("schema", "a JSON object")),
            };
            let metadata = match obj.shift_remove("metadata") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .into_iter()
                    .map(metadata_entry_from_value)
                    .collect::<Result<Vec<_>>>()?,
                Some(_) => return Err(Error::wrong_type("metadata", "an array")),
            };
            Ok(CatalogEntry {
                tap_stream_id: String::new(),
                stream: take_string(&mut obj, "stream")?,
                table_name: take_string(&mut obj, "table_name")?,
                schema,
                metadata,
                key_properties: take_string_list(&mut obj, "key_properties")?,
                replication_method: take_string(&mut obj, "replication_method")?,
                replication_key: take_string(&mut obj, "replication_key")?,
                selected: take_bool(&mut obj, "selected")?,
                is_view: take_bool(&mut obj, "is_view")?,
                extra: Map::new(),
            })
        };
        let mut entry = inner().map_err(|e| e.context(&at))?;
        if let Some(v) = entry.schema.get("selected") {
            if !v.is_boolean() && !v.is_null() {
                return Err(Error::wrong_type("schema.selected", "a boolean").context(&at));
            }
        }
        entry.tap_stream_id = tap_stream_id;
        entry.extra = obj;
        Ok(entry)
    }

    /// The metadata map at `breadcrumb`, if there is an entry for it.
    pub fn metadata_at(&self, breadcrumb: &[&str]) -> Option<&Map<String, Value>> {
        self.metadata
            .iter()
            .find(|m| {
                m.breadcrumb
                    .iter()
                    .map(String::as_str)
                    .eq(breadcrumb.iter().copied())
            })
            .map(|m| &m.metadata)
    }

    /// The metadata map at `breadcrumb`, created (empty, at the end; at the
    /// front for the stream's `[]`) if missing.
    pub fn metadata_at_mut(&mut self, breadcrumb: &[&str]) -> &mut Map<String, Value> {
        let found = self.metadata.iter().position(|m| {
            m.breadcrumb
                .iter()
                .map(String::as_str)
                .eq(breadcrumb.iter().copied())
        });
        let index = match found {
            Some(i) => i,
            None => {
                let entry = MetadataEntry {
                    breadcrumb: breadcrumb.iter().map(|s| s.to_string()).collect(),
                    metadata: Map::new(),
                };
                if breadcrumb.is_empty() {
                    self.metadata.insert(0, entry);
                    0
                } else {
                    self.metadata.push(entry);
                    self.metadata.len() - 1
                }
            }
        };
        &mut self.metadata[index].metadata
    }

    /// The stream-level metadata (breadcrumb `[]`).
    pub fn stream_metadata(&self) -> Option<&Map<String, Value>> {
        self.metadata_at(&[])
    }

    /// The stream-level metadata, created if missing.
    pub fn stream_metadata_mut(&mut self) -> &mut Map<String, Value> {
        self.metadata_at_mut(&[])
    }

    /// The metadata of a top-level property (breadcrumb
    /// `["properties", name]`).
    pub fn property_metadata(&self, name: &str) -> Option<&Map<String, Value>> {
        self.metadata_at(&["properties", name])
    }

    /// The metadata of a top-level property, created if missing.
    pub fn property_metadata_mut(&mut self, name: &str) -> &mut Map<String, Value> {
        self.metadata_at_mut(&["properties", name])
    }

    fn stream_md(&self, key: &str) -> Option<&Value> {
        self.stream_metadata()
            .and_then(|m| m.get(key))
            .filter(|v| !v.is_null())
    }

    /// Whether the stream is selected. First given wins: stream metadata
    /// `selected`; top-level `selected`; legacy `schema.selected`; stream
    /// metadata `selected-by-default`; otherwise not selected.
    pub fn is_selected(&self) -> bool {
        self.stream_md("selected")
            .and_then(Value::as_bool)
            .or(self.selected)
            .or_else(|| self.schema.get("selected").and_then(Value::as_bool))
            .or_else(|| {
                self.stream_md("selected-by-default")
                    .and_then(Value::as_bool)
            })
            .unwrap_or(false)
    }

    /// Whether the top-level property `name` is synced: `inclusion:
    /// automatic` always; `inclusion: unsupported` never; otherwise its
    /// `selected`, else its `selected-by-default`, else yes. A property
    /// without metadata is synced.
    pub fn is_property_selected(&self, name: &str) -> bool {
        let Some(md) = self.property_metadata(name) else {
            return true;
        };
        match md.get("inclusion").and_then(Value::as_str) {
            Some("automatic") => return true,
            Some("unsupported") => return false,
            _ => {}
        }
        md.get("selected")
            .and_then(Value::as_bool)
            .or_else(|| md.get("selected-by-default").and_then(Value::as_bool))
            .unwrap_or(true)
    }

    /// The names of the schema's top-level properties that
    /// [`CatalogEntry::is_property_selected`] keeps, in schema order.
    pub fn selected_properties(&self) -> Vec<&str> {
        self.schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .keys()
                    .map(String::as_str)
                    .filter(|name| self.is_property_selected(name))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The replication method: stream metadata `replication-method`, else
    /// top-level `replication_method`; an empty string counts as absent.
    /// `None` when neither is given (the tap applies its default).
    pub fn replication_method(&self) -> Result<Option<ReplicationMethod>> {
        let text = self
            .stream_md("replication-method")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or(self.replication_method.as_deref().filter(|s| !s.is_empty()));
        text.map(|s| {
            s.parse()
                .map_err(|e: Error| e.context(format_args!("stream {:?}", self.tap_stream_id)))
        })
        .transpose()
    }

    /// The replication key: stream metadata `replication-key`, else
    /// top-level `replication_key`; an empty string counts as absent.
    pub fn replication_key(&self) -> Option<&str> {
        self.stream_md("replication-key")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or(self.replication_key.as_deref().filter(|s| !s.is_empty()))
    }

    /// Whether the stream is a view: stream metadata `is-view`, else
    /// top-level `is_view`, else no.
    pub fn is_view(&self) -> bool {
        self.stream_md("is-view")
            .and_then(Value::as_bool)
            .or(self.is_view)
            .unwrap_or(false)
    }

    /// The key columns. For a view: metadata `view-key-properties`. Then
    /// metadata `table-key-properties`, then top-level `key_properties`,
    /// else none.
    pub fn key_properties(&self) -> Vec<&str> {
        let from_md = |key| {
            self.stream_md(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>())
        };
        let view = if self.is_view() {
            from_md("view-key-properties")
        } else {
            None
        };
        view.or_else(|| from_md("table-key-properties"))
            .or_else(|| {
                self.key_properties
                    .as_ref()
                    .map(|k| k.iter().map(String::as_str).collect())
            })
            .unwrap_or_default()
    }

    /// Stream metadata `database-name`.
    pub fn database_name(&self) -> Option<&str> {
        self.stream_md("database-name").and_then(Value::as_str)
    }

    /// Stream metadata `schema-name`.
    pub fn schema_name(&self) -> Option<&str> {
        self.stream_md("schema-name").and_then(Value::as_str)
    }

    /// The stream name: `stream`, else `tap_stream_id`.
    pub fn stream_name(&self) -> &str {
        self.stream.as_deref().unwrap_or(&self.tap_stream_id)
    }
}

/// Types of the metadata keys the accessors read; anything else is free.
const METADATA_TYPES: &[(&str, JsonType)] = &[
    ("selected", JsonType::Bool),
    ("selected-by-default", JsonType::Bool),
    ("inclusion", JsonType::String),
    ("replication-method", JsonType::String),
    ("replication-key", JsonType::String),
    ("is-view", JsonType::Bool),
    ("table-key-properties", JsonType::StringList),
    ("view-key-properties", JsonType::StringList),
    ("schema-name", JsonType::String),
    ("database-name", JsonType::String),
];

#[derive(Clone, Copy)]
enum JsonType {
    Bool,
    String,
    StringList,
}

impl JsonType {
    fn matches(self, v: &Value) -> bool {
        match self {
            JsonType::Bool => v.is_boolean(),
            JsonType::String => v.is_string(),
            JsonType::StringList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            JsonType::Bool => "a boolean",
            JsonType::String => "a string",
            JsonType::StringList => "an array of strings",
        }
    }
}

fn metadata_entry_from_value(value: Value) -> Result<MetadataEntry> {
    let Value::Object(mut obj) = value else {
        return Err(Error::new(
            ErrorKind::WrongType,
            "each metadata entry must be a JSON object",
        ));
    };
    let breadcrumb = match obj.shift_remove("breadcrumb") {
        None | Some(Value::Null) => {
            return Err(Error::missing_field("metadata entry", "breadcrumb"))
        }
        Some(v) => serde_json::from_value::<Vec<String>>(v)
            .map_err(|_| Error::wrong_type("breadcrumb", "an array of strings"))?,
    };
    let at = format!(
        "metadata {}",
        serde_json::to_string(&breadcrumb).unwrap_or_default()
    );
    let metadata = match obj.shift_remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(Error::wrong_type("metadata", "a JSON object").context(&at)),
    };
    for (key, ty) in METADATA_TYPES {
        if let Some(v) = metadata.get(*key) {
            if !v.is_null() && !ty.matches(v) {
                return Err(Error::wrong_type(key, ty.describe()).context(&at));
            }
        }
    }
    Ok(MetadataEntry {
        breadcrumb,
        metadata,
    })
}

fn take_string(obj: &mut Map<String, Value>, key: &str) -> Result<Option<String>> {
    match obj.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Error::wrong_type(key, "a string")),
    }
}

fn take_bool(obj: &mut Map<String, Value>, key: &str) -> Result<Option<bool>> {
    match obj.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(Error::wrong_type(key, "a boolean")),
    }
}

fn take_string_list(obj: &mut Map<String, Value>, key: &str) -> Result<Option<Vec<String>>> {
    match obj.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v)
            .map(Some)
            .map_err(|_| Error::wrong_type(key, "an array of strings")),
    }
}

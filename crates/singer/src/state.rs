//! Singer state: per-stream bookmarks plus `currently_syncing`, read from
//! `--state` and written in STATE messages.
//!
//! Both bookmark shapes in use are read and written:
//! - pipelinewise / Macrometa:
//!   `{"currently_syncing":null,"bookmarks":{"public-t":{"last_replication_method":"LOG_BASED","lsn":330588888,"version":1795458856547,"xmin":null}}}`
//! - Meltano SDK:
//!   `{"bookmarks":{"public-t":{"replication_key":"updated_at","replication_key_value":"2024-01-03T00:00:00+00:00"}}}`
//!
//! Invariant: a state round-trips byte for byte (as compact JSON). Every key,
//! known or not, keeps its position, at the top level and in each bookmark;
//! numbers keep their exact digits (`replication_key_value:
//! 12345678901234567890.000001` stays as written; the one change serde_json
//! makes is spelling an exponent `e+5`/`e-5`, as Python writes it, so `2e5`
//! becomes `2e+5`); an LSN written as a string stays a string until it is
//! set. Keys are only added by setters,
//! at the end; `currently_syncing` appears only once present in the input or
//! set, so a Meltano SDK state does not grow one.
//!
//! Loading checks the type of every key the typed accessors read, so the
//! accessors of a loaded state cannot fail. Meltano's stored form
//! `{"singer_state": {...}}` is unwrapped when it is the only key, and so is
//! a whole STATE message `{"type":"STATE","value":{...}}` (the last line of
//! a tap's output), which would otherwise read as "no bookmarks".

use std::path::Path;

use serde::de::{Deserialize, Deserializer};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use crate::error::{json_syntax_message, Error, ErrorKind, Result};
use crate::json_file;

const BOOKMARKS: &str = "bookmarks";
const CURRENTLY_SYNCING: &str = "currently_syncing";

/// One stream's bookmark: an ordered JSON object with typed accessors.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bookmark {
    fields: Map<String, Value>,
}

/// A Singer state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct State {
    /// Every top-level key in order. The values of `bookmarks` and
    /// `currently_syncing` here are placeholders; the typed fields below
    /// hold them.
    top: Map<String, Value>,
    bookmarks: Vec<(String, Bookmark)>,
    currently_syncing: Option<String>,
}

impl State {
    /// An empty state: `{}`.
    pub fn new() -> State {
        State::default()
    }

    /// Reads a state file. An empty file (or only whitespace), `{}` and
    /// `null` give an empty state. Errors start with the path.
    pub fn from_path(path: impl AsRef<Path>) -> Result<State> {
        let path = path.as_ref();
        match json_file::read_or_empty(path)? {
            None => Ok(State::new()),
            Some(v) => State::from_value(v).map_err(|e| e.context(path.display())),
        }
    }

    /// Parses a state from JSON text (empty text gives an empty state).
    pub fn from_json(text: &str) -> Result<State> {
        if text.trim().is_empty() {
            return Ok(State::new());
        }
        let value = serde_json::from_str(text)
            .map_err(|e| Error::new(ErrorKind::InvalidJson, json_syntax_message(&e, true)))?;
        State::from_value(value)
    }

    /// Builds a state from a parsed JSON value, checking the types of the
    /// keys the accessors read.
    pub fn from_value(value: Value) -> Result<State> {
        let mut top = match value {
            Value::Null => return Ok(State::new()),
            Value::Object(top) => top,
            _ => {
                return Err(Error::new(
                    ErrorKind::WrongType,
                    "the state must be a JSON object",
                ))
            }
        };
        if top.len() == 1 {
            if let Some(Value::Object(inner)) = top.get("singer_state") {
                top = inner.clone();
            }
        }
        // A whole STATE message (what `tail -1` of a tap's output gives).
        if top.get("type").and_then(Value::as_str) == Some("STATE") {
            match top.get("value") {
                Some(Value::Object(inner)) => top = inner.clone(),
                Some(Value::Null) | None => return Ok(State::new()),
                Some(_) => {
                    return Err(Error::wrong_type(
                        "value",
                        "a JSON object (the state of a STATE message)",
                    ))
                }
            }
        }
        let mut state = State::new();
        for (key, value) in top {
            match key.as_str() {
                BOOKMARKS => {
                    match value {
                        Value::Null => {}
                        Value::Object(entries) => {
                            for (id, bookmark) in entries {
                                let bookmark = Bookmark::from_value(bookmark)
                                    .map_err(|e| e.context(format_args!("bookmark {id:?}")))?;
                                state.bookmarks.push((id, bookmark));
                            }
                        }
                        _ => return Err(Error::wrong_type(BOOKMARKS, "a JSON object")),
                    }
                    state.top.insert(key, Value::Null);
                }
                CURRENTLY_SYNCING => {
                    state.currently_syncing = match value {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        _ => return Err(Error::wrong_type(CURRENTLY_SYNCING, "a string or null")),
                    };
                    state.top.insert(key, Value::Null);
                }
                _ => {
                    state.top.insert(key, value);
                }
            }
        }
        Ok(state)
    }

    /// The state as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a State always serializes")
    }

    /// The state as compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a State always serializes")
    }

    /// True when the state has no keys at all (`{}`).
    pub fn is_empty(&self) -> bool {
        self.top.is_empty()
    }

    /// The bookmark of a stream.
    pub fn bookmark(&self, tap_stream_id: &str) -> Option<&Bookmark> {
        self.bookmarks
            .iter()
            .find(|(id, _)| id == tap_stream_id)
            .map(|(_, b)| b)
    }

    /// The bookmark of a stream, created empty (at the end) if missing.
    pub fn bookmark_mut(&mut self, tap_stream_id: &str) -> &mut Bookmark {
        let index = match self
            .bookmarks
            .iter()
            .position(|(id, _)| id == tap_stream_id)
        {
            Some(i) => i,
            None => {
                self.ensure_key(BOOKMARKS);
                self.bookmarks
                    .push((tap_stream_id.to_owned(), Bookmark::default()));
                self.bookmarks.len() - 1
            }
        };
        &mut self.bookmarks[index].1
    }

    /// Replaces (in place) or adds (at the end) the bookmark of a stream.
    pub fn set_bookmark(&mut self, tap_stream_id: &str, bookmark: Bookmark) {
        *self.bookmark_mut(tap_stream_id) = bookmark;
    }

    /// Removes the bookmark of a stream.
    pub fn remove_bookmark(&mut self, tap_stream_id: &str) -> Option<Bookmark> {
        let index = self
            .bookmarks
            .iter()
            .position(|(id, _)| id == tap_stream_id)?;
        Some(self.bookmarks.remove(index).1)
    }

    /// All bookmarks, in order.
    pub fn bookmarks(&self) -> impl Iterator<Item = (&str, &Bookmark)> {
        self.bookmarks.iter().map(|(id, b)| (id.as_str(), b))
    }

    /// The stream whose sync was in progress, if any.
    pub fn currently_syncing(&self) -> Option<&str> {
        self.currently_syncing.as_deref()
    }

    /// Sets `currently_syncing` (`None` writes `null`); adds the key at the
    /// end if it was not there.
    pub fn set_currently_syncing(&mut self, tap_stream_id: Option<&str>) {
        self.ensure_key(CURRENTLY_SYNCING);
        self.currently_syncing = tap_stream_id.map(str::to_owned);
    }

    /// A top-level key other than `bookmarks` and `currently_syncing`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match key {
            BOOKMARKS | CURRENTLY_SYNCING => None,
            _ => self.top.get(key),
        }
    }

    fn ensure_key(&mut self, key: &str) {
        if !self.top.contains_key(key) {
            self.top.insert(key.to_owned(), Value::Null);
        }
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        struct Bookmarks<'a>(&'a [(String, Bookmark)]);
        impl Serialize for Bookmarks<'_> {
            fn serialize<S: Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (id, bookmark) in self.0 {
                    map.serialize_entry(id, &bookmark.fields)?;
                }
                map.end()
            }
        }
        let mut map = serializer.serialize_map(Some(self.top.len()))?;
        for (key, value) in &self.top {
            match key.as_str() {
                BOOKMARKS => map.serialize_entry(key, &Bookmarks(&self.bookmarks))?,
                CURRENTLY_SYNCING => map.serialize_entry(key, &self.currently_syncing)?,
                _ => map.serialize_entry(key, value)?,
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        State::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl Bookmark {
    /// An empty bookmark.
    pub fn new() -> Bookmark {
        Bookmark::default()
    }

    /// Builds a bookmark from a JSON value, checking the known keys' types.
    pub fn from_value(value: Value) -> Result<Bookmark> {
        let Value::Object(fields) = value else {
            return Err(Error::new(
                ErrorKind::WrongType,
                "a bookmark must be a JSON object",
            ));
        };
        for (key, value) in &fields {
            check_field(key, value)?;
        }
        Ok(Bookmark { fields })
    }

    /// All keys, in order.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.fields
    }

    /// Any key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.get(key)
    }

    /// Sets any key: in place if present, else at the end. The typed keys
    /// (`version`, `xmin`, `lsn`, `last_replication_method`,
    /// `replication_key`) are type-checked as on load.
    pub fn set(&mut self, key: &str, value: Value) -> Result<()> {
        check_field(key, &value)?;
        self.fields.insert(key.to_owned(), value);
        Ok(())
    }

    /// Removes a key, keeping the order of the others.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        self.fields.shift_remove(key)
    }

    fn put(&mut self, key: &str, value: Value) {
        self.fields.insert(key.to_owned(), value);
    }

    /// `last_replication_method`, e.g. `"LOG_BASED"`.
    pub fn last_replication_method(&self) -> Option<&str> {
        self.fields
            .get("last_replication_method")
            .and_then(Value::as_str)
    }

    /// Sets `last_replication_method`.
    pub fn set_last_replication_method(&mut self, method: &str) {
        self.put("last_replication_method", Value::from(method));
    }

    /// `version`: the stream version (epoch milliseconds by convention).
    pub fn version(&self) -> Option<i64> {
        self.fields.get("version").and_then(Value::as_i64)
    }

    /// Sets `version`.
    pub fn set_version(&mut self, version: i64) {
        self.put("version", Value::from(version));
    }

    /// `xmin`: where an interrupted full copy resumes; `None` when absent or
    /// `null` (no copy in progress).
    pub fn xmin(&self) -> Option<u64> {
        self.fields.get("xmin").and_then(Value::as_u64)
    }

    /// Sets `xmin`; `None` writes `null`.
    pub fn set_xmin(&mut self, xmin: Option<u64>) {
        self.put("xmin", xmin.map_or(Value::Null, Value::from));
    }

    /// `lsn`, as an integer (`(file << 32) + offset`). Also read from a
    /// string: `"0/16B3748"` (hex file/offset) or a decimal string.
    pub fn lsn(&self) -> Option<u64> {
        match self.fields.get("lsn")? {
            Value::String(s) => parse_lsn(s),
            v => v.as_u64(),
        }
    }

    /// Sets `lsn`, written as an integer (the pipelinewise form).
    pub fn set_lsn(&mut self, lsn: u64) {
        self.put("lsn", Value::from(lsn));
    }

    /// `replication_key`: the INCREMENTAL bookmark column.
    pub fn replication_key(&self) -> Option<&str> {
        self.fields.get("replication_key").and_then(Value::as_str)
    }

    /// Sets `replication_key`.
    pub fn set_replication_key(&mut self, key: &str) {
        self.put("replication_key", Value::from(key));
    }

    /// `replication_key_value`: any JSON value, exactly as written.
    pub fn replication_key_value(&self) -> Option<&Value> {
        self.fields
            .get("replication_key_value")
            .filter(|v| !v.is_null())
    }

    /// Sets `replication_key_value`.
    pub fn set_replication_key_value(&mut self, value: Value) {
        self.put("replication_key_value", value);
    }
}

/// Type-checks the keys the typed accessors read.
fn check_field(key: &str, value: &Value) -> Result<()> {
    if value.is_null() {
        return Ok(());
    }
    let ok = match key {
        "version" => value.is_i64(),
        "xmin" => value.is_u64(),
        "lsn" => match value {
            Value::String(s) => parse_lsn(s).is_some(),
            v => v.is_u64(),
        },
        "last_replication_method" | "replication_key" => value.is_string(),
        _ => return Ok(()),
    };
    if ok {
        return Ok(());
    }
    let expected = match key {
        "version" => "an integer",
        "xmin" => "a non-negative integer or null",
        "lsn" => "a non-negative integer, a string like \"0/16B3748\", or a decimal string",
        _ => "a string",
    };
    let kind = if key == "lsn" && value.is_string() {
        ErrorKind::InvalidValue
    } else {
        ErrorKind::WrongType
    };
    Err(Error::new(
        kind,
        format!("field \"{key}\" must be {expected}, not {value}"),
    ))
}

/// Parses `"X/Y"` (two hex numbers of at most 32 bits: `(X << 32) + Y`) or a
/// decimal integer.
fn parse_lsn(text: &str) -> Option<u64> {
    match text.split_once('/') {
        Some((hi, lo)) => {
            let valid =
                |s: &str| !s.is_empty() && s.len() <= 8 && s.bytes().all(|b| b.is_ascii_hexdigit());
            if !valid(hi) || !valid(lo) {
                return None;
            }
            let hi = u64::from_str_radix(hi, 16).ok()?;
            let lo = u64::from_str_radix(lo, 16).ok()?;
            Some((hi << 32) | lo)
        }
        None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text.parse().ok(),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_lsn;

    #[test]
    fn lsn_text_forms() {
        assert_eq!(parse_lsn("0/16B3748"), Some(0x16B3748));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
        assert_eq!(parse_lsn("330588888"), Some(330588888));
        for bad in ["", "/", "0/", "x/1", "100000000/0", "-1", "1.5", " 1"] {
            assert_eq!(parse_lsn(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_state_message_is_unwrapped() {
        let inner = r#"{"currently_syncing":null,"bookmarks":{"public-t":{"lsn":5}}}"#;
        let envelope = format!(r#"{{"type":"STATE","value":{inner}}}"#);
        let state = super::State::from_json(&envelope).unwrap();
        assert_eq!(state.to_json(), inner);
        let empty = super::State::from_json(r#"{"type":"STATE","value":null}"#).unwrap();
        assert!(empty.is_empty());
        let bad = super::State::from_json(r#"{"type":"STATE","value":3}"#).unwrap_err();
        assert!(bad.to_string().contains("value"), "{bad}");
    }
}

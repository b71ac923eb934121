//! One wal2json `format-version 2` message, as an [`Action`].
//!
//! This is the only place that knows wal2json's one-letter action codes;
//! everything else matches on the enum. Values stay borrowed raw JSON text
//! until they are encoded (numbers are never read into a float, and nothing
//! is allocated per value that has no escape).

use std::borrow::Cow;

use pg::walsender::Lsn;
use serde::Deserialize;
use serde_json::value::RawValue;

/// What one wal2json message says.
#[derive(Debug)]
pub enum Action<'a> {
    /// A transaction starts (`B`). wal2json sends a transaction only once it
    /// has committed, so its commit position is known here.
    Begin {
        /// The commit record's position.
        commit: Lsn,
        /// The end of the commit record (`nextlsn`): where a run that has
        /// everything of this transaction resumes.
        end: Lsn,
        /// The commit time, as the server printed it.
        timestamp: &'a str,
        /// The transaction id (top level).
        xid: Option<u32>,
    },
    /// The transaction ends (`C`).
    Commit,
    /// A row inserted (`I`).
    Insert(Change<'a>),
    /// A row updated (`U`); `identity` is the old key, or the whole old row
    /// under REPLICA IDENTITY FULL, and is empty when the key did not change
    /// (default identity).
    Update(Change<'a>),
    /// A row deleted (`D`): only `identity`.
    Delete(Change<'a>),
    /// A table truncated (`T`).
    Truncate(Change<'a>),
    /// Anything else (`M` logical messages, future actions): ignored.
    Other,
}

/// The table and the column values of a row change.
#[derive(Debug)]
pub struct Change<'a> {
    /// Schema name.
    pub schema: Cow<'a, str>,
    /// Table name.
    pub table: Cow<'a, str>,
    /// The new row. wal2json leaves out unchanged TOASTed columns.
    pub columns: Vec<WalColumn<'a>>,
    /// The old key or row.
    pub identity: Vec<WalColumn<'a>>,
}

/// One column value: its name and its raw JSON.
#[derive(Debug, PartialEq)]
pub struct WalColumn<'a> {
    /// The column's name.
    pub name: Cow<'a, str>,
    /// Its value as wal2json wrote it: JSON text.
    pub value: &'a str,
}

/// A [`WalColumn`] as the general parser reads it.
#[derive(Deserialize)]
struct JsonColumn<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    value: &'a RawValue,
}

fn json_columns<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<WalColumn<'a>>, D::Error> {
    let columns: Vec<JsonColumn<'de>> = Deserialize::deserialize(d)?;
    Ok(columns
        .into_iter()
        .map(|c| WalColumn {
            name: c.name,
            value: c.value.get(),
        })
        .collect())
}

#[derive(Deserialize, Debug, PartialEq, Default)]
struct Raw<'a> {
    action: &'a str,
    #[serde(default)]
    xid: Option<u32>,
    #[serde(default)]
    timestamp: Option<&'a str>,
    #[serde(default)]
    lsn: Option<&'a str>,
    #[serde(default)]
    nextlsn: Option<&'a str>,
    #[serde(default, borrow)]
    schema: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    table: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "json_columns")]
    columns: Vec<WalColumn<'a>>,
    #[serde(default, borrow, deserialize_with = "json_columns")]
    identity: Vec<WalColumn<'a>>,
}

/// The fast path of [`Action::parse`]: a scanner of exactly what wal2json
/// writes, an object of known keys whose action, positions and time are
/// strings without escapes, and whose column values are strings, numbers,
/// `true`, `false` or `null`. Anything else (a nested value, an escape
/// where none is expected, a malformed token) gives `None`, and the
/// general parser reads the message (and reports what is wrong with it).
/// A unit test holds both to the same result.
struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Scan<'a> {
    fn raw(text: &'a str) -> Option<Raw<'a>> {
        let mut s = Scan { text, at: 0 };
        let mut raw = Raw::default();
        let mut action = None;
        s.object(|s, key| {
            match key {
                "action" => action = Some(s.plain()?),
                "xid" => raw.xid = Some(s.u32()?),
                "timestamp" => raw.timestamp = Some(s.plain()?),
                "lsn" => raw.lsn = Some(s.plain()?),
                "nextlsn" => raw.nextlsn = Some(s.plain()?),
                "schema" => raw.schema = Some(s.name()?),
                "table" => raw.table = Some(s.name()?),
                "columns" => raw.columns = s.columns()?,
                "identity" => raw.identity = s.columns()?,
                _ => {
                    s.value()?;
                }
            }
            Some(())
        })?;
        s.ws();
        raw.action = action?;
        (s.at == text.len()).then_some(raw)
    }

    /// `{"key": value, ...}`: `field` reads the value of each key.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.eat(b'{')?;
        if !self.next_is(b'}') {
            loop {
                let key = self.plain()?;
                self.eat(b':')?;
                field(self, key)?;
                if !self.comma_or(b'}')? {
                    break;
                }
            }
        }
        self.eat(b'}')
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn ws(&mut self) {
        while matches!(
            self.bytes().get(self.at),
            Some(b' ' | b'\t' | b'\n' | b'\r')
        ) {
            self.at += 1;
        }
    }

    fn next_is(&mut self, c: u8) -> bool {
        self.ws();
        self.bytes().get(self.at) == Some(&c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.next_is(c).then(|| self.at += 1)
    }

    /// After an element: `true` at a comma (eaten), `false` at `close`
    /// (left), `None` at anything else.
    fn comma_or(&mut self, close: u8) -> Option<bool> {
        if self.eat(b',').is_some() {
            return Some(true);
        }
        self.next_is(close).then_some(false)
    }

    /// A string: its raw text, quotes included; `escaped` whether it has a
    /// backslash. Control characters are not allowed in JSON strings.
    fn string(&mut self) -> Option<(&'a str, bool)> {
        self.ws();
        let start = self.at;
        let b = self.bytes();
        if b.get(start) != Some(&b'"') {
            return None;
        }
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            i = special(b, i)?;
            match b[i] {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    i += 2;
                    if i > b.len() {
                        return None;
                    }
                }
                _ => return None,
            }
        }
        self.at = i + 1;
        Some((&self.text[start..self.at], escaped))
    }

    /// A string without escapes: its content.
    fn plain(&mut self) -> Option<&'a str> {
        match self.string()? {
            (raw, false) => Some(&raw[1..raw.len() - 1]),
            (_, true) => None,
        }
    }

    /// A name, decoded when it has escapes.
    fn name(&mut self) -> Option<Cow<'a, str>> {
        match self.string()? {
            (raw, false) => Some(Cow::Borrowed(&raw[1..raw.len() - 1])),
            (raw, true) => serde_json::from_str(raw).ok(),
        }
    }

    fn u32(&mut self) -> Option<u32> {
        let token = self.scalar()?;
        token
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| token.parse().ok())?
    }

    /// A number, `true`, `false` or `null`: its text, checked.
    fn scalar(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.at;
        let b = self.bytes();
        let end = b[start..]
            .iter()
            .position(|c| matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            .map_or(b.len(), |n| start + n);
        let token = &self.text[start..end];
        if !(matches!(token, "true" | "false" | "null") || is_json_number(token.as_bytes())) {
            return None;
        }
        self.at = end;
        Some(token)
    }

    /// A column value: a string or a scalar (a nested value: `None`).
    fn value(&mut self) -> Option<&'a str> {
        if self.next_is(b'"') {
            Some(self.string()?.0)
        } else {
            self.scalar()
        }
    }

    /// `[{"name": ..., "value": ...}, ...]`.
    fn columns(&mut self) -> Option<Vec<WalColumn<'a>>> {
        self.eat(b'[')?;
        let mut columns = Vec::new();
        if self.eat(b']').is_some() {
            return Some(columns);
        }
        loop {
            let (mut name, mut value) = (None, None);
            self.object(|s, key| {
                match key {
                    "name" => name = Some(s.name()?),
                    "value" => value = Some(s.value()?),
                    _ => {
                        s.value()?;
                    }
                }
                Some(())
            })?;
            columns.push(WalColumn {
                name: name?,
                value: value?,
            });
            if !self.comma_or(b']')? {
                break;
            }
        }
        self.eat(b']')?;
        Some(columns)
    }
}

/// Where the first `"`, `\\` or control character is in `b` from `i`:
/// eight bytes at a time (a string's plain run is most of a message).
fn special(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // The high bit of each byte that is zero; above the first such byte
    // the flags may be wrong, so only the lowest is used.
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let hits = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
        if hits != 0 {
            return Some(i + hits.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|n| i + n)
}

/// Whether `t` is a JSON number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(t: &[u8]) -> bool {
    let digits = |i: &mut usize| {
        let start = *i;
        while t.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    let mut i = usize::from(t.first() == Some(&b'-'));
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == t.len()
}

/// Why a message could not be read.
#[derive(Debug)]
pub struct BadMessage(pub String);

impl std::fmt::Display for BadMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadMessage {}

impl<'a> Action<'a> {
    /// Reads one message.
    pub fn parse(data: &'a [u8]) -> Result<Action<'a>, BadMessage> {
        let bad = |why: &str| {
            BadMessage(format!(
                "wal2json sent a message this tap cannot read ({why}): {}",
                String::from_utf8_lossy(data)
            ))
        };
        // One UTF-8 check of the whole message is cheaper than the
        // parser's check of every string it borrows.
        let text = std::str::from_utf8(data).map_err(|e| bad(&e.to_string()))?;
        let raw = match Scan::raw(text) {
            Some(raw) => raw,
            None => serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?,
        };
        let lsn = |text: Option<&str>, what: &str| -> Result<Lsn, BadMessage> {
            text.ok_or_else(|| bad(&format!("no {what}")))?
                .parse()
                .map_err(|_| bad(&format!("{what} is not an LSN")))
        };
        let change = |raw: Raw<'a>| Change {
            schema: raw.schema.unwrap_or_default(),
            table: raw.table.unwrap_or_default(),
            columns: raw.columns,
            identity: raw.identity,
        };
        Ok(match raw.action {
            "B" => Action::Begin {
                commit: lsn(raw.lsn, "lsn")?,
                end: lsn(raw.nextlsn, "nextlsn")?,
                timestamp: raw.timestamp.unwrap_or_default(),
                xid: raw.xid,
            },
            "C" => Action::Commit,
            "I" => Action::Insert(change(raw)),
            "U" => Action::Update(change(raw)),
            "D" => Action::Delete(change(raw)),
            "T" => Action::Truncate(change(raw)),
            _ => Action::Other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_finds_the_first_quote_backslash_or_control_character() {
        for len in 0..40 {
            for at in 0..=len {
                for c in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut b = vec![b'a'; len];
                    // Bytes that must not count: 0x20, 0x7f, 0xff, é.
                    for (k, x) in b.iter_mut().enumerate() {
                        *x = [b'a', 0x20, 0x7f, 0xff, 0xc3, 0xa9][k % 6];
                    }
                    if at < len {
                        b[at] = c;
                        if at + 1 < len {
                            b[at + 1] = b'"';
                        }
                    }
                    let want = b.iter().position(|&x| x == b'"' || x == b'\\' || x < 0x20);
                    for from in 0..=at.min(len) {
                        assert_eq!(
                            special(&b, from),
                            want.filter(|&w| w >= from),
                            "{b:?} from {from}"
                        );
                    }
                }
            }
        }
    }

    /// The fast scanner reads what the general parser reads, or leaves the
    /// message to it.
    #[test]
    fn the_scanner_agrees_with_the_parser() {
        // (message, whether the scanner reads it itself)
        let cases: &[(&str, bool)] = &[
            (
                r#"{"action":"B","xid":738,"timestamp":"2026-12-02 19:15:50.503547+00","lsn":"0/6CECD38","nextlsn":"0/6CECD68"}"#,
                true,
            ),
            (
                r#"{"action":"C","xid":738,"timestamp":"2026-12-02 19:15:50.503547+00","lsn":"0/6CECD38","nextlsn":"0/6CECD68"}"#,
                true,
            ),
            (
                r#"{"action":"U","xid":738,"timestamp":"2026-12-02 19:15:50.503547+00","lsn":"0/3E22D90","schema":"public","table":"changes","columns":[{"name":"id","value":1},{"name":"v","value":"v1!"},{"name":"n","value":1.01},{"name":"at","value":"2026-12-02 19:15:48.206023+00"}],"identity":[{"name":"id","value":1}]}"#,
                true,
            ),
            (
                r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"a","value":-0.5e-10},{"name":"b","value":true},{"name":"c","value":false},{"name":"d","value":null},{"name":"e","value":0}]}"#,
                true,
            ),
            (
                r#"{"action":"D","schema":"s","table":"t","identity":[]}"#,
                true,
            ),
            (r#"{"action":"T","schema":"s","table":"t"}"#, true),
            (
                r#"{"action":"M","transactional":false,"prefix":"p","content":"x"}"#,
                true,
            ),
            (
                r#" { "action" : "I" , "schema" : "s" , "table" : "t" , "columns" : [ { "name" : "a" , "value" : 1 } ] } "#,
                true,
            ),
            (
                r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"a","type":"text","value":"x","optional":true}]}"#,
                true,
            ),
            // Escaped names are decoded; escaped values kept as written.
            (
                r#"{"action":"I","schema":"s\"q","table":"t\\u\u00e9\n","columns":[{"name":"c\u0041","value":"a\"b\\c\u00e9\t"}]}"#,
                true,
            ),
            (
                r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"a","value":"é ünïcödé ✓"}]}"#,
                true,
            ),
            // Left to the parser: nested values, escapes where none are
            // expected, and everything malformed.
            (
                r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"j","value":{"a":[1,"}"]}}]}"#,
                false,
            ),
            (
                r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"j","value":[1,2]}]}"#,
                false,
            ),
            (r#"{"action":"\u0049","schema":"s","table":"t"}"#, false),
            (
                r#"{"action":"I","columns":[{"name":"a","value":tru}]}"#,
                false,
            ),
            (
                r#"{"action":"I","columns":[{"name":"a","value":01}]}"#,
                false,
            ),
            (
                r#"{"action":"I","columns":[{"name":"a","value":1.}]}"#,
                false,
            ),
            (
                r#"{"action":"I","columns":[{"name":"a","value":1 2}]}"#,
                false,
            ),
            (
                r#"{"action":"I","columns":[{"name":"a","value":"x}]}"#,
                false,
            ),
            (r#"{"action":"I","columns":[{"name":"a"}]}"#, false),
            (r#"{"action":"I","xid":-1}"#, false),
            (r#"{"action":"I","xid":4294967296}"#, false),
            (r#"{"action":"I"} x"#, false),
            (r#"{"action":"I",}"#, false),
            (r#"{"xid":1}"#, false),
            ("{\"action\":\"I\",\"schema\":\"a\u{1}b\"}", false),
            (r#"{"action":"I""#, false),
            ("", false),
        ];
        for (text, scanned) in cases {
            let fast = Scan::raw(text);
            assert_eq!(fast.is_some(), *scanned, "{text}");
            if let Some(fast) = fast {
                let parsed: Option<Raw<'_>> = serde_json::from_str(text).ok();
                assert_eq!(Some(fast), parsed, "{text}");
            }
        }
    }

    #[test]
    fn every_action() {
        let b = br#"{"action":"B","xid":5,"lsn":"0/16B3748","nextlsn":"0/16B3778","timestamp":"2024-01-01 00:00:00+00"}"#;
        match Action::parse(b).unwrap() {
            Action::Begin {
                commit,
                end,
                timestamp,
                xid,
            } => {
                assert_eq!(xid, Some(5));
                assert_eq!(commit.to_string(), "0/16B3748");
                assert_eq!(end.to_string(), "0/16B3778");
                assert_eq!(timestamp, "2024-01-01 00:00:00+00");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Action::parse(br#"{"action":"C"}"#).unwrap(),
            Action::Commit
        ));
        let u = br#"{"action":"U","schema":"s","table":"t","columns":[{"name":"id","value":2}],"identity":[{"name":"id","value":1}]}"#;
        match Action::parse(u).unwrap() {
            Action::Update(c) => {
                assert_eq!((c.schema.as_ref(), c.table.as_ref()), ("s", "t"));
                assert_eq!(c.columns[0].value, "2");
                assert_eq!(c.identity[0].value, "1");
            }
            other => panic!("{other:?}"),
        }
        for (text, want) in [("I", "Insert"), ("D", "Delete"), ("T", "Truncate")] {
            let m = format!(r#"{{"action":"{text}","schema":"s","table":"t"}}"#);
            let got = format!("{:?}", Action::parse(m.as_bytes()).unwrap());
            assert!(got.starts_with(want), "{got}");
        }
        assert!(matches!(
            Action::parse(br#"{"action":"M","content":"x"}"#).unwrap(),
            Action::Other
        ));
        let e = Action::parse(b"{nope").unwrap_err().to_string();
        assert!(e.contains("cannot read") && e.contains("{nope"), "{e}");
        let e = Action::parse(br#"{"action":"B"}"#).unwrap_err().to_string();
        assert!(e.contains("no lsn"), "{e}");
    }
}

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
#[derive(Debug, Deserialize)]
pub struct WalColumn<'a> {
    /// The column's name.
    #[serde(borrow)]
    pub name: Cow<'a, str>,
    /// Its value as wal2json wrote it.
    #[serde(borrow)]
    pub value: &'a RawValue,
}

#[derive(Deserialize)]
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
    #[serde(default, borrow)]
    columns: Vec<WalColumn<'a>>,
    #[serde(default, borrow)]
    identity: Vec<WalColumn<'a>>,
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
        let raw: Raw<'a> = serde_json::from_str(text).map_err(|e| bad(&e.to_string()))?;
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
                assert_eq!(c.columns[0].value.get(), "2");
                assert_eq!(c.identity[0].value.get(), "1");
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

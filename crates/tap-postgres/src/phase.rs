//! A stream's sync phase, read once from its bookmark and written back into
//! it: the one module that knows which bookmark keys mean what. Every other
//! module decides on a [`Phase`].
//!
//! | phase | bookmark keys (pipelinewise / Meltano names) |
//! |---|---|
//! | [`Phase::Fresh`] | none of the ones below (a FULL_TABLE copy that finished: the next run copies again) |
//! | [`Phase::Copying`] | `last_pk_fetched` (null before the first key), plus `lsn` for a LOG_BASED initial copy; a pipelinewise copy in progress has a non-null `xmin` |
//! | [`Phase::Streaming`] | `lsn` (integer, or a `"0/16B3748"` string on input), no copy marker |
//! | [`Phase::Incremental`] | `replication_key`, `replication_key_value` |
//!
//! Writing a phase changes only its own keys (a key that is set keeps its
//! place; a new one goes at the end) and leaves every other key alone, so
//! pipelinewise and Meltano states round-trip. `version` and
//! `last_replication_method` are read and written here too.

use pg::walsender::Lsn;
use serde_json::{Map, Value};
use singer::catalog::ReplicationMethod;
use singer::Bookmark;

const LAST_PK_FETCHED: &str = "last_pk_fetched";
const XMIN: &str = "xmin";
const LSN: &str = "lsn";
const REPLICATION_KEY_VALUE: &str = "replication_key_value";

/// Where a stream is.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Nothing to resume: start from the beginning.
    Fresh,
    /// A copy in progress.
    Copying {
        /// The key of the last row written (column → value), when one was.
        after: Option<Map<String, Value>>,
        /// For a LOG_BASED initial copy, where streaming continues.
        lsn: Option<Lsn>,
    },
    /// LOG_BASED streaming: everything up to `lsn` delivered.
    Streaming {
        /// The position.
        lsn: Lsn,
    },
    /// INCREMENTAL: rows from `value` of column `key` on.
    Incremental {
        /// The replication key column (empty when the bookmark names none).
        key: String,
        /// Its last value, exactly as written.
        value: Value,
    },
}

impl Phase {
    /// The phase of a stream replicated by `method` with bookmark `b`.
    pub fn read(b: Option<&Bookmark>, method: ReplicationMethod) -> Phase {
        let Some(b) = b else { return Phase::Fresh };
        let after = || match b.get(LAST_PK_FETCHED) {
            Some(Value::Object(m)) => Some(m.clone()),
            _ => None,
        };
        let copying = b.get(LAST_PK_FETCHED).is_some() || b.xmin().is_some();
        match method {
            ReplicationMethod::FullTable => match after() {
                Some(m) => Phase::Copying {
                    after: Some(m),
                    lsn: None,
                },
                None => Phase::Fresh,
            },
            ReplicationMethod::LogBased => match b.lsn().map(Lsn) {
                None => Phase::Fresh,
                Some(lsn) if copying => Phase::Copying {
                    after: after(),
                    lsn: Some(lsn),
                },
                Some(lsn) => Phase::Streaming { lsn },
            },
            ReplicationMethod::Incremental => match b.replication_key_value() {
                Some(v) => Phase::Incremental {
                    key: b.replication_key().unwrap_or_default().to_string(),
                    value: v.clone(),
                },
                None => Phase::Fresh,
            },
        }
    }

    /// Writes this phase into `b`.
    pub fn write(&self, b: &mut Bookmark) {
        match self {
            Phase::Fresh => {
                b.remove(LAST_PK_FETCHED);
                b.remove(LSN);
                b.remove(REPLICATION_KEY_VALUE);
                clear_xmin(b);
            }
            Phase::Copying { after, lsn } => {
                let marker = after.clone().map_or(Value::Null, Value::Object);
                b.set(LAST_PK_FETCHED, marker).expect("any value");
                if let Some(lsn) = lsn {
                    b.set_lsn(lsn.0);
                }
            }
            Phase::Streaming { lsn } => {
                b.remove(LAST_PK_FETCHED);
                clear_xmin(b);
                b.set_lsn(lsn.0);
            }
            Phase::Incremental { key, value } => {
                b.set_replication_key(key);
                b.set_replication_key_value(value.clone());
            }
        }
    }

    /// The LOG_BASED position, if the phase has one.
    pub fn lsn(&self) -> Option<Lsn> {
        match self {
            Phase::Copying { lsn, .. } => *lsn,
            Phase::Streaming { lsn } => Some(*lsn),
            _ => None,
        }
    }
}

/// A pipelinewise copy marker is reset to null (never removed: its place
/// in the bookmark stays).
fn clear_xmin(b: &mut Bookmark) {
    if b.get(XMIN).is_some() {
        b.set_xmin(None);
    }
}

/// The method that wrote `b` (`last_replication_method`), when known.
pub fn method(b: Option<&Bookmark>) -> Option<&str> {
    b.and_then(Bookmark::last_replication_method)
}

/// Records the method that writes `b`.
pub fn set_method(b: &mut Bookmark, method: ReplicationMethod) {
    b.set_last_replication_method(method.as_str());
}

/// Names the INCREMENTAL replication key of `b` (before any value).
pub fn set_replication_key(b: &mut Bookmark, key: &str) {
    b.set_replication_key(key);
}

/// The stream's table version.
pub fn version(b: Option<&Bookmark>) -> Option<i64> {
    b.and_then(Bookmark::version)
}

/// Sets the stream's table version.
pub fn set_version(b: &mut Bookmark, version: i64) {
    b.set_version(version);
}

/// Milliseconds since the epoch, for a new table version.
pub fn new_version() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use ReplicationMethod::{FullTable, Incremental, LogBased};

    fn bm(v: Value) -> Bookmark {
        Bookmark::from_value(v).unwrap()
    }

    fn text(b: &Bookmark) -> String {
        serde_json::to_string(b.fields()).unwrap()
    }

    #[test]
    fn no_bookmark_is_fresh() {
        for m in [FullTable, Incremental, LogBased] {
            assert_eq!(Phase::read(None, m), Phase::Fresh);
            assert_eq!(
                Phase::read(Some(&bm(json!({"version": 1}))), m),
                Phase::Fresh
            );
        }
    }

    #[test]
    fn full_table_fresh_to_copying_to_fresh() {
        let mut b = bm(json!({"last_replication_method": "FULL_TABLE", "version": 5, "x": 1}));
        let after = json!({"id": 7}).as_object().unwrap().clone();
        Phase::Copying {
            after: Some(after.clone()),
            lsn: None,
        }
        .write(&mut b);
        assert_eq!(
            text(&b),
            r#"{"last_replication_method":"FULL_TABLE","version":5,"x":1,"last_pk_fetched":{"id":7}}"#
        );
        assert_eq!(
            Phase::read(Some(&b), FullTable),
            Phase::Copying {
                after: Some(after),
                lsn: None
            }
        );
        Phase::Fresh.write(&mut b);
        assert_eq!(
            text(&b),
            r#"{"last_replication_method":"FULL_TABLE","version":5,"x":1}"#
        );
        assert_eq!(Phase::read(Some(&b), FullTable), Phase::Fresh);
    }

    #[test]
    fn log_based_fresh_to_copying_to_streaming() {
        let mut b = Bookmark::new();
        let copying = Phase::Copying {
            after: None,
            lsn: Some(Lsn(100)),
        };
        copying.write(&mut b);
        assert_eq!(text(&b), r#"{"last_pk_fetched":null,"lsn":100}"#);
        assert_eq!(
            Phase::read(Some(&b), LogBased),
            copying,
            "a state written before the first key is still a copy"
        );
        let after = json!({"id": 3}).as_object().unwrap().clone();
        Phase::Copying {
            after: Some(after.clone()),
            lsn: None,
        }
        .write(&mut b);
        assert_eq!(
            Phase::read(Some(&b), LogBased),
            Phase::Copying {
                after: Some(after),
                lsn: Some(Lsn(100))
            },
            "the copy's position is kept"
        );
        Phase::Streaming { lsn: Lsn(100) }.write(&mut b);
        assert_eq!(text(&b), r#"{"lsn":100}"#);
        assert_eq!(
            Phase::read(Some(&b), LogBased),
            Phase::Streaming { lsn: Lsn(100) }
        );
        Phase::Streaming { lsn: Lsn(250) }.write(&mut b);
        assert_eq!(Phase::read(Some(&b), LogBased).lsn(), Some(Lsn(250)));
    }

    #[test]
    fn a_pipelinewise_bookmark_round_trips() {
        let text_in = r#"{"last_replication_method":"LOG_BASED","lsn":330588888,"version":1795458856547,"xmin":null}"#;
        let mut b = bm(serde_json::from_str(text_in).unwrap());
        let phase = Phase::read(Some(&b), LogBased);
        assert_eq!(
            phase,
            Phase::Streaming {
                lsn: Lsn(330588888)
            }
        );
        phase.write(&mut b);
        assert_eq!(text(&b), text_in);
        // A copy the pipelinewise tap left unfinished (xmin set) is a copy.
        let mut b = bm(json!({"lsn": "0/10", "xmin": 42, "version": 1}));
        assert_eq!(
            Phase::read(Some(&b), LogBased),
            Phase::Copying {
                after: None,
                lsn: Some(Lsn(16))
            }
        );
        Phase::Streaming { lsn: Lsn(16) }.write(&mut b);
        assert_eq!(text(&b), r#"{"lsn":16,"xmin":null,"version":1}"#);
    }

    #[test]
    fn incremental_fresh_to_past_a_value_and_meltano_round_trips() {
        let text_in = r#"{"replication_key":"updated_at","replication_key_value":"2024-01-03T00:00:00+00:00"}"#;
        let mut b = bm(serde_json::from_str(text_in).unwrap());
        let phase = Phase::read(Some(&b), Incremental);
        assert_eq!(
            phase,
            Phase::Incremental {
                key: "updated_at".into(),
                value: json!("2024-01-03T00:00:00+00:00")
            }
        );
        phase.write(&mut b);
        assert_eq!(text(&b), text_in);
        let mut fresh = Bookmark::new();
        Phase::Incremental {
            key: "n".into(),
            value: serde_json::from_str("12345678901234567890.000001").unwrap(),
        }
        .write(&mut fresh);
        assert_eq!(
            text(&fresh),
            r#"{"replication_key":"n","replication_key_value":12345678901234567890.000001}"#
        );
        Phase::Fresh.write(&mut fresh);
        assert_eq!(Phase::read(Some(&fresh), Incremental), Phase::Fresh);
    }

    #[test]
    fn method_and_version() {
        let mut b = Bookmark::new();
        assert_eq!(method(Some(&b)), None);
        set_method(&mut b, LogBased);
        set_version(&mut b, 9);
        assert_eq!(
            (method(Some(&b)), version(Some(&b))),
            (Some("LOG_BASED"), Some(9))
        );
    }
}

//! The target's own settings, read from the validated config map (the
//! connection settings are `pg`'s). Validation against
//! `schemas/target-postgres.config.json` has already happened, so this only
//! converts: booleans and numbers may still be strings (the pipelinewise
//! connectors write `"true"`), and defaults are applied here, matching the
//! schema's `default`s.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// How records reach the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMethod {
    /// Merge on the key properties; key-less streams append.
    Upsert,
    /// Insert every record.
    AppendOnly,
    /// Replace the table's content with this run's records, atomically at
    /// the end of the input.
    Overwrite,
}

/// What to do with a NUL character (U+0000) in a value, which PostgreSQL
/// text and jsonb cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NulPolicy {
    /// Fail with an error naming the stream, line and column (the default).
    Fail,
    /// Replace it with U+FFFD and log a warning with the count per column.
    Replace,
}

/// The target's settings.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// `default_target_schema`.
    pub default_target_schema: Option<String>,
    /// `schema_mapping`: source schema → target schema.
    pub schema_mapping: HashMap<String, String>,
    /// `default_target_schema_select_permissions`: the roles granted USAGE
    /// on the schema and SELECT on the tables of streams without their own
    /// `schema_mapping.<source>.target_schema_select_permissions`.
    pub default_grantees: Vec<String>,
    /// `schema_mapping.<source>.target_schema_select_permissions`, for the
    /// source schemas that set it (possibly to no roles).
    pub mapping_grantees: HashMap<String, Vec<String>>,
    /// `schema_mapping.<source>.indices`: source schema → table → index
    /// entries, as written (see [`crate::schema::IndexSpec`]).
    pub indices: HashMap<String, HashMap<String, Vec<String>>>,
    /// `data_flattening_max_level`.
    pub flattening_max_level: usize,
    /// `target_table` (Macrometa): every stream into this table.
    pub target_table: Option<String>,
    /// `load_method`.
    pub load_method: LoadMethod,
    /// `batch_size_rows`.
    pub batch_size_rows: usize,
    /// `max_buffer_bytes`: all streams' buffered COPY data together.
    pub max_buffer_bytes: usize,
    /// `batch_flush_interval`.
    pub batch_flush_interval: Option<Duration>,
    /// `flush_all_streams`.
    pub flush_all_streams: bool,
    /// `primary_key_required`.
    pub primary_key_required: bool,
    /// `validate_records`.
    pub validate_records: bool,
    /// `add_metadata_columns` or `hard_delete`.
    pub metadata_columns: bool,
    /// `hard_delete`.
    pub hard_delete: bool,
    /// `nul_characters`.
    pub nul_policy: NulPolicy,
}

/// Default of `max_buffer_bytes`.
pub const DEFAULT_MAX_BUFFER_BYTES: usize = 256 * 1024 * 1024;

impl TargetConfig {
    /// Reads the settings from a validated config.
    pub fn from_json(map: &Map<String, Value>) -> Result<TargetConfig> {
        let hard_delete = boolean(map, "hard_delete", false)?;
        let mut schema_mapping = HashMap::new();
        let mut mapping_grantees = HashMap::new();
        let mut indices = HashMap::new();
        if let Some(Value::Object(m)) = map.get("schema_mapping") {
            for (source, entry) in m {
                if let Some(Value::String(target)) = entry.get("target_schema") {
                    schema_mapping.insert(source.clone(), target.clone());
                }
                if let Some(v) = entry.get("target_schema_select_permissions") {
                    let key = format!("schema_mapping.{source}.target_schema_select_permissions");
                    mapping_grantees.insert(source.clone(), roles(&key, v)?);
                }
                if let Some(v) = entry.get("indices") {
                    let key = format!("schema_mapping.{source}.indices");
                    indices.insert(source.clone(), index_lists(&key, v)?);
                }
            }
        }
        let default_grantees = match map.get("default_target_schema_select_permissions") {
            Some(v) => roles("default_target_schema_select_permissions", v)?,
            None => Vec::new(),
        };
        let load_method = match map.get("load_method").and_then(Value::as_str) {
            None | Some("upsert") => LoadMethod::Upsert,
            Some("append-only") => LoadMethod::AppendOnly,
            Some("overwrite") => LoadMethod::Overwrite,
            Some(other) => {
                return Err(Error::config(format!(
                    "`load_method` must be upsert, append-only or overwrite, not {other:?}"
                )))
            }
        };
        let nul_policy = match map.get("nul_characters").and_then(Value::as_str) {
            None | Some("fail") => NulPolicy::Fail,
            Some("replace") => NulPolicy::Replace,
            Some(other) => {
                return Err(Error::config(format!(
                    "`nul_characters` must be fail or replace, not {other:?}"
                )))
            }
        };
        Ok(TargetConfig {
            default_target_schema: string(map, "default_target_schema"),
            schema_mapping,
            default_grantees,
            mapping_grantees,
            indices,
            flattening_max_level: integer(map, "data_flattening_max_level")?.unwrap_or(0) as usize,
            target_table: string(map, "target_table"),
            load_method,
            batch_size_rows: integer(map, "batch_size_rows")?.unwrap_or(100_000).max(1) as usize,
            max_buffer_bytes: integer(map, "max_buffer_bytes")?
                .map(|n| n as usize)
                .unwrap_or(DEFAULT_MAX_BUFFER_BYTES)
                .max(1024),
            batch_flush_interval: integer(map, "batch_flush_interval")?
                .filter(|&n| n > 0)
                .map(Duration::from_secs),
            flush_all_streams: boolean(map, "flush_all_streams", false)?,
            primary_key_required: boolean(map, "primary_key_required", true)?,
            validate_records: boolean(map, "validate_records", false)?,
            metadata_columns: hard_delete || boolean(map, "add_metadata_columns", false)?,
            hard_delete,
            nul_policy,
        })
    }

    /// The target schema of a stream whose source schema (the stream-name
    /// prefix) is `source`: `schema_mapping`, then `default_target_schema`,
    /// then the source schema itself, then `public`.
    pub fn target_schema(&self, source: Option<&str>) -> String {
        if let Some(s) = source.and_then(|s| self.schema_mapping.get(s)) {
            return s.clone();
        }
        if let Some(s) = &self.default_target_schema {
            return s.clone();
        }
        source.unwrap_or("public").to_owned()
    }

    /// The roles granted SELECT on the tables of streams whose source
    /// schema is `source`: its `schema_mapping` entry's
    /// `target_schema_select_permissions` when set, else
    /// `default_target_schema_select_permissions` (pipelinewise's order).
    pub fn grantees(&self, source: Option<&str>) -> &[String] {
        source
            .and_then(|s| self.mapping_grantees.get(s))
            .unwrap_or(&self.default_grantees)
    }

    /// The `schema_mapping.<source>.indices` entries of `table`.
    pub fn indices(&self, source: Option<&str>, table: &str) -> &[String] {
        source
            .and_then(|s| self.indices.get(s))
            .and_then(|t| t.get(table))
            .map_or(&[], Vec::as_slice)
    }
}

/// A select-permissions value in any of pipelinewise's shapes: a role, a
/// list of roles, or `{"users": ..., "groups": ...}` (each a role or a
/// list). PostgreSQL roles are users and groups alike, so all become one
/// list, in order, without duplicates. Empty strings are ignored.
fn roles(key: &str, v: &Value) -> Result<Vec<String>> {
    let bad = || {
        Error::config(format!(
            "`{key}` must be a role name, a list of role names or \
             {{\"users\": [...], \"groups\": [...]}}, not {v}"
        ))
    };
    let mut out: Vec<String> = Vec::new();
    let mut add = |v: &Value| -> Result<()> {
        match v {
            Value::Null => {}
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => {
                for r in a {
                    out.push(r.as_str().ok_or_else(bad)?.to_owned());
                }
            }
            _ => return Err(bad()),
        }
        Ok(())
    };
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k != "users" && k != "groups" {
                    return Err(bad());
                }
                add(v)?;
            }
        }
        v => add(v)?,
    }
    let mut unique: Vec<String> = Vec::with_capacity(out.len());
    for r in out {
        if !r.is_empty() && !unique.contains(&r) {
            unique.push(r);
        }
    }
    Ok(unique)
}

fn index_lists(key: &str, v: &Value) -> Result<HashMap<String, Vec<String>>> {
    let bad = || {
        Error::config(format!(
            "`{key}` must map table names to lists of column names, not {v}"
        ))
    };
    let mut out = HashMap::new();
    for (table, list) in v.as_object().ok_or_else(bad)? {
        let list = list.as_array().ok_or_else(bad)?;
        let list = list
            .iter()
            .map(|c| c.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<Vec<_>>>()?;
        out.insert(table.clone(), list);
    }
    Ok(out)
}

fn string(map: &Map<String, Value>, key: &str) -> Option<String> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn boolean(map: &Map<String, Value>, key: &str, default: bool) -> Result<bool> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => pg::config::boolean(key, v).map_err(|e| Error::config(e.to_string())),
    }
}

fn integer(map: &Map<String, Value>, key: &str) -> Result<Option<u64>> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
        Some(v) => Err(Error::config(format!(
            "`{key}` must be a non-negative integer, not {v}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> TargetConfig {
        let Value::Object(m) = v else { unreachable!() };
        TargetConfig::from_json(&m).unwrap()
    }

    #[test]
    fn defaults_and_strings() {
        let c = parse(json!({}));
        assert_eq!(c.batch_size_rows, 100_000);
        assert!(c.primary_key_required);
        assert!(!c.metadata_columns);
        assert_eq!(c.load_method, LoadMethod::Upsert);
        assert_eq!(c.nul_policy, NulPolicy::Fail);
        let c = parse(json!({"hard_delete": "true", "batch_size_rows": "5",
            "primary_key_required": "FALSE", "batch_flush_interval": 2}));
        assert!(c.hard_delete && c.metadata_columns && !c.primary_key_required);
        assert_eq!(c.batch_size_rows, 5);
        assert_eq!(c.batch_flush_interval, Some(Duration::from_secs(2)));
    }

    #[test]
    fn target_schema_order() {
        let c = parse(json!({"default_target_schema": "d",
            "schema_mapping": {"public": {"target_schema": "p"}}}));
        assert_eq!(c.target_schema(Some("public")), "p");
        assert_eq!(c.target_schema(Some("other")), "d");
        let c = parse(json!({}));
        assert_eq!(c.target_schema(Some("src")), "src");
        assert_eq!(c.target_schema(None), "public");
    }

    #[test]
    fn grantee_shapes_and_order() {
        let c = parse(json!({"default_target_schema_select_permissions": "r1",
            "schema_mapping": {
                "a": {"target_schema": "a", "target_schema_select_permissions": ["x", "y", "x"]},
                "b": {"target_schema": "b",
                      "target_schema_select_permissions": {"users": ["u"], "groups": "g"}},
                "c": {"target_schema": "c", "target_schema_select_permissions": []},
                "d": {"target_schema": "d", "indices": {"t": ["id", "a,b"]}}}}));
        assert_eq!(c.grantees(Some("a")), ["x", "y"]);
        assert_eq!(c.grantees(Some("b")), ["u", "g"]);
        assert!(c.grantees(Some("c")).is_empty());
        assert_eq!(c.grantees(Some("d")), ["r1"]);
        assert_eq!(c.grantees(None), ["r1"]);
        assert_eq!(c.indices(Some("d"), "t"), ["id", "a,b"]);
        assert!(c.indices(Some("d"), "u").is_empty());
        assert!(c.indices(None, "t").is_empty());
        assert!(parse(json!({})).grantees(None).is_empty());
        let Value::Object(m) =
            json!({"default_target_schema_select_permissions": {"roles": ["r"]}})
        else {
            unreachable!()
        };
        let e = TargetConfig::from_json(&m).unwrap_err().to_string();
        assert!(
            e.contains("default_target_schema_select_permissions"),
            "{e}"
        );
    }
}

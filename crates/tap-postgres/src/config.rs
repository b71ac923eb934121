//! The tap's settings, read from the validated config object (the schema
//! in `schemas/tap-postgres.config.json` has already checked types).

use serde_json::{Map, Value};
use singer::catalog::ReplicationMethod;

use crate::discovery::Filter;
use crate::error::{bail, err, Result};
use crate::values::{ByteaEncoding, OutOfRange, SpecialNumbers, ValueOptions};

/// Everything the tap reads from its config besides the connection.
#[derive(Debug, Clone)]
pub struct TapConfig {
    /// The connection (primary).
    pub connection: pg::ConnectionConfig,
    /// `use_secondary`: the replica for discovery, FULL_TABLE and INCREMENTAL.
    pub secondary: Option<pg::ConnectionConfig>,
    /// `filter_schemas` / `filter_table`.
    pub filter: Filter,
    /// `default_replication_method` (or Macrometa's `replication_method`).
    pub default_replication_method: Option<ReplicationMethod>,
    /// `itersize`: rows per read of a FULL_TABLE chunk.
    pub itersize: u64,
    /// `limit`: INCREMENTAL rows per run.
    pub limit: Option<u64>,
    /// `state_interval_rows`.
    pub state_interval_rows: u64,
    /// Value policies.
    pub values: ValueOptions,
    /// LOG_BASED settings.
    pub log: LogConfig,
    /// `progress_interval_seconds` (zero: no progress lines).
    pub progress_every: std::time::Duration,
}

fn get<'a>(config: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    config.get(key).filter(|v| !v.is_null())
}

/// A list given as a comma-separated string or a JSON array of strings.
fn list(config: &Map<String, Value>, key: &str) -> Option<Vec<String>> {
    let items: Vec<String> = match get(config, key)? {
        Value::String(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|p| p.trim().to_string())
            .collect(),
        _ => return None,
    };
    let items: Vec<String> = items.into_iter().filter(|s| !s.is_empty()).collect();
    (!items.is_empty()).then_some(items)
}

fn uint(config: &Map<String, Value>, key: &str) -> Result<Option<u64>> {
    Ok(match get(config, key) {
        None => None,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(
            s.trim()
                .parse()
                .map_err(|_| err!(config, "`{key}` must be a non-negative integer"))?,
        ),
        Some(_) => bail!(config, "`{key}` must be a non-negative integer"),
    })
}

/// A boolean given as `true`/`false` or `"true"`/`"false"`.
pub fn flag(config: &Map<String, Value>, key: &str, default: bool) -> Result<bool> {
    match get(config, key) {
        None => Ok(default),
        Some(v) => Ok(pg::config::boolean(key, v)?),
    }
}

fn choice<T: Copy>(
    config: &Map<String, Value>,
    key: &str,
    options: &[(&str, T)],
    default: T,
) -> Result<T> {
    match get(config, key).and_then(Value::as_str) {
        None => Ok(default),
        Some(s) => options
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, v)| *v)
            .ok_or_else(|| err!(config, "`{key}`: {s:?} is not a valid choice")),
    }
}

impl TapConfig {
    /// Reads the settings.
    pub fn from_json(config: &Map<String, Value>) -> Result<TapConfig> {
        let connection = pg::ConnectionConfig::from_json(config, "tap-postgres")?;
        let secondary = if flag(config, "use_secondary", false)? {
            let host = get(config, "secondary_host")
                .and_then(Value::as_str)
                .ok_or_else(|| err!(config, "`use_secondary` needs `secondary_host`"))?;
            let port = uint(config, "secondary_port")?
                .ok_or_else(|| err!(config, "`use_secondary` needs `secondary_port`"))?;
            let port = u16::try_from(port)
                .map_err(|_| err!(config, "`secondary_port`: {port} is not a TCP port"))?;
            Some(connection.for_host(host, port))
        } else {
            None
        };
        let method = get(config, "default_replication_method")
            .or_else(|| get(config, "replication_method"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ReplicationMethod>()
                    .map_err(|_| err!(config, "`default_replication_method`: {s:?} is not FULL_TABLE, INCREMENTAL or LOG_BASED"))
            })
            .transpose()?;
        let values = ValueOptions {
            special_numbers: choice(
                config,
                "special_numbers",
                &[
                    ("string", SpecialNumbers::String),
                    ("null", SpecialNumbers::Null),
                    ("error", SpecialNumbers::Error),
                ],
                SpecialNumbers::String,
            )?,
            out_of_range: choice(
                config,
                "out_of_range_dates",
                &[
                    ("string", OutOfRange::String),
                    ("null", OutOfRange::Null),
                    ("error", OutOfRange::Error),
                ],
                OutOfRange::String,
            )?,
            bytea: choice(
                config,
                "bytea_encoding",
                &[
                    ("hex", ByteaEncoding::Hex),
                    ("base64", ByteaEncoding::Base64),
                ],
                ByteaEncoding::Hex,
            )?,
            decimal_as_string: flag(config, "decimal_as_string", false)?,
            naive_timestamp_offset: flag(config, "naive_timestamp_offset", true)?,
        };
        Ok(TapConfig {
            connection,
            secondary,
            filter: Filter {
                schemas: list(config, "filter_schemas"),
                tables: list(config, "filter_table"),
            },
            default_replication_method: method,
            itersize: uint(config, "itersize")?.unwrap_or(20_000).max(1),
            limit: uint(config, "limit")?,
            state_interval_rows: uint(config, "state_interval_rows")?
                .unwrap_or(10_000)
                .max(1),
            values,
            progress_every: std::time::Duration::from_secs(
                uint(config, "progress_interval_seconds")?.unwrap_or(10),
            ),
            log: LogConfig {
                slot: get(config, "replication_slot")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                create_slot: flag(config, "create_replication_slot", false)?,
                tap_id: get(config, "tap_id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                break_at_end_lsn: flag(config, "break_at_end_lsn", true)?,
                idle_timeout: std::time::Duration::from_secs(
                    uint(config, "logical_poll_total_seconds")?
                        .filter(|s| *s > 0)
                        .unwrap_or(10_800),
                ),
                max_run: std::time::Duration::from_secs(
                    uint(config, "max_run_seconds")?
                        .filter(|s| *s > 0)
                        .unwrap_or(43_200),
                ),
                wal_sender_timeout_ms: uint(config, "wal_sender_timeout")?.unwrap_or(3_600_000),
                peek_max_wal: uint(config, "logical_peek_max_wal_mb")?
                    .unwrap_or(256)
                    .saturating_mul(1 << 20),
                allow_without_identity: flag(config, "allow_tables_without_identity", false)?,
                allow_state_behind_slot: flag(config, "allow_state_behind_slot", false)?,
            },
        })
    }

    /// Where discovery, FULL_TABLE and INCREMENTAL read from.
    pub fn read_connection(&self) -> &pg::ConnectionConfig {
        self.secondary.as_ref().unwrap_or(&self.connection)
    }
}

/// The LOG_BASED settings of the tap config.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `replication_slot`.
    pub slot: Option<String>,
    /// `create_replication_slot`.
    pub create_slot: bool,
    /// `tap_id`.
    pub tap_id: Option<String>,
    /// `break_at_end_lsn`.
    pub break_at_end_lsn: bool,
    /// `logical_poll_total_seconds`.
    pub idle_timeout: std::time::Duration,
    /// `max_run_seconds`.
    pub max_run: std::time::Duration,
    /// `wal_sender_timeout` in ms.
    pub wal_sender_timeout_ms: u64,
    /// `logical_peek_max_wal_mb` in bytes (0: never).
    pub peek_max_wal: u64,
    /// `allow_tables_without_identity`.
    pub allow_without_identity: bool,
    /// `allow_state_behind_slot`.
    pub allow_state_behind_slot: bool,
}

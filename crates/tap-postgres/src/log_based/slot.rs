//! The replication slot: its name (as the peers derive it), finding or
//! creating it, what it says about its health, and the wal2json options a
//! stream is started with.
//!
//! Knows nothing of streams or the state beyond the names of tables.

use std::time::{Duration, Instant};

use pg::walsender::Lsn;
use tokio_postgres::Client;

use super::LogConfig;

use crate::error::{bail, err, Result};

/// The longest name PostgreSQL keeps (`NAMEDATALEN - 1` bytes).
pub const MAX_NAME_BYTES: usize = 63;

/// A slot as `pg_replication_slots` shows it.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Its name.
    pub name: String,
    /// `confirmed_flush_lsn`: where the slot resumes.
    pub confirmed: Lsn,
    /// `restart_lsn`: the oldest WAL it keeps.
    pub restart: Lsn,
    /// `wal_status` (PostgreSQL 13+): reserved, extended, unreserved, lost.
    pub wal_status: Option<String>,
    /// `safe_wal_size` (PostgreSQL 13+): bytes of WAL that can still be
    /// written before the slot is in danger of losing its WAL.
    pub safe_wal_size: Option<i64>,
    /// `invalidation_reason` (PostgreSQL 17+): why the server invalidated
    /// the slot (`wal_removed`, `rows_removed`, `idle_timeout`, …).
    pub invalidation_reason: Option<String>,
    /// `inactive_since` (PostgreSQL 17+): since when no session used it.
    pub inactive_since: Option<String>,
}

/// The slot names to try, in order, as the peers name them.
pub fn slot_candidates(config: &LogConfig, dbname: &str) -> Vec<String> {
    if let Some(s) = &config.slot {
        return vec![s.clone()];
    }
    let clean = |s: &str| -> String {
        s.to_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let mut out = Vec::new();
    for prefix in ["macrometa", "pipelinewise"] {
        let base = clean(&format!("{prefix}_{dbname}"));
        match &config.tap_id {
            Some(id) => {
                out.push(clean(&format!("{base}_{id}")));
                out.push(base);
            }
            None => out.push(base),
        }
    }
    out
}

/// A slot name PostgreSQL would refuse for its length, explained with the
/// setting it comes from.
fn check_length(config: &LogConfig, name: &str) -> Result<()> {
    if name.len() <= MAX_NAME_BYTES {
        return Ok(());
    }
    let from = if config.slot.is_some() {
        "`replication_slot`"
    } else {
        "the slot name derived from `dbname` and `tap_id`"
    };
    bail!(slot,
        "{from} {name:?} is {} bytes long; PostgreSQL slot names have at most {MAX_NAME_BYTES} bytes \
         (lowercase letters, digits and underscores): set `replication_slot` to a shorter name",
        name.len()
    )
}

/// `schema.table` for wal2json's `add-tables`: every character wal2json
/// treats specially (separators, wildcards, the escape itself and every
/// white space, where it would end a name) escaped with a backslash.
pub fn wal2json_table(schema: &str, name: &str) -> String {
    let esc = |s: &str| -> String {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            if matches!(c, ' ' | '\'' | ',' | '.' | '*' | '\\') || c.is_whitespace() {
                o.push('\\');
            }
            o.push(c);
        }
        o
    };
    format!("{}.{}", esc(schema), esc(name))
}

/// The last of [`plugin_options`], which wal2json 2.5 does not know.
pub const OPTIONAL: &str = "numeric-data-types-as-string";

/// The wal2json options of a stream of `tables` (each from
/// [`wal2json_table`]). The last one is optional: refused by old wal2json.
pub fn plugin_options(tables: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("format-version", "2"),
        ("include-transaction", "1"),
        ("include-xids", "1"),
        ("include-timestamp", "1"),
        ("include-lsn", "1"),
        ("include-types", "0"),
        ("add-tables", tables),
        // Newer wal2json writes numbers as strings with this, NaN and
        // Infinity included; 2.5 (Debian's) does not know it and writes
        // them as null. Asked for, and dropped when refused.
        (OPTIONAL, "1"),
    ]
}

const SLOT_QUERY: &str = "SELECT plugin, database, active_pid, confirmed_flush_lsn::text, restart_lsn::text, \
     CASE WHEN current_setting('server_version_num')::int >= 130000 THEN (to_jsonb(s) ->> 'wal_status') END, \
     CASE WHEN current_setting('server_version_num')::int >= 130000 THEN (to_jsonb(s) ->> 'safe_wal_size')::bigint END, \
     to_jsonb(s) ->> 'invalidation_reason', to_jsonb(s) ->> 'inactive_since' \
     FROM pg_replication_slots s WHERE slot_name = $1";

fn lsn(text: Option<String>) -> Result<Lsn> {
    Ok(text
        .map(|s| s.parse::<Lsn>())
        .transpose()?
        .unwrap_or(Lsn::INVALID))
}

/// Reads slot `name`; `None` when there is none. Checks it can serve this
/// tap: wal2json, this database, not in use.
pub async fn read_slot(client: &Client, name: &str, dbname: &str) -> Result<Option<Slot>> {
    let rows = client.query(SLOT_QUERY, &[&name]).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let plugin: Option<String> = row.get(0);
    let database: Option<String> = row.get(1);
    let active: Option<i32> = row.get(2);
    if plugin.as_deref() != Some("wal2json") {
        bail!(slot,
            "replication slot {name:?} uses the plugin {:?}, not wal2json: drop it, or create a dedicated one with \
             SELECT pg_create_logical_replication_slot('{name}_wal2json', 'wal2json'); and set replication_slot",
            plugin.unwrap_or_else(|| "none (a physical slot)".into())
        );
    }
    if database.as_deref() != Some(dbname) {
        bail!(slot, "replication slot {name:?} belongs to database {database:?}, not {dbname:?}: slots are per database");
    }
    if let Some(pid) = active {
        // A session that just ended (a killed run, a refused start) holds
        // the slot until the server notices: give it a moment.
        if !wait_inactive(client, name, Duration::from_secs(3)).await? {
            bail!(slot, "replication slot {name:?} is active in another session (pid {pid}): another tap is reading it; stop it, or use another slot");
        }
    }
    Ok(Some(Slot {
        name: name.to_string(),
        confirmed: lsn(row.get(3))?,
        restart: lsn(row.get(4))?,
        wal_status: row.get(5),
        safe_wal_size: row.get(6),
        invalidation_reason: row.get(7),
        inactive_since: row.get(8),
    }))
}

/// Waits (at most `limit`) until slot `name` is not in use; whether it is
/// free.
pub async fn wait_inactive(client: &Client, name: &str, limit: Duration) -> Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        let active: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active)",
                &[&name],
            )
            .await?
            .get(0);
        if !active {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finds (or, with `create_replication_slot`, creates) the slot.
pub async fn find_slot(client: &Client, config: &LogConfig, dbname: &str) -> Result<Slot> {
    let candidates = slot_candidates(config, dbname);
    for name in &candidates {
        check_length(config, name)?;
        if let Some(slot) = read_slot(client, name, dbname).await? {
            return Ok(slot);
        }
    }
    let name = candidates[0].clone();
    if !config.create_slot {
        bail!(slot,
            "replication slot {name:?} does not exist (looked for {}). Create it as a superuser in database {dbname:?}:\n  \
             SELECT pg_create_logical_replication_slot('{name}', 'wal2json');\nor set create_replication_slot: true",
            candidates.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ")
        );
    }
    client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'wal2json')",
            &[&name],
        )
        .await
        .map_err(|e| {
            let text = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
            // 58P01 undefined_file: the plugin's library is not installed.
            if e.code().is_some_and(|c| c.code() == "58P01") {
                err!(slot, "cannot create replication slot {name:?}: {text}: install wal2json on the server (Debian: apt-get install postgresql-<major>-wal2json)")
            } else {
                err!(slot, "cannot create replication slot {name:?}: {text}")
            }
        })?;
    let slot = read_slot(client, &name, dbname).await?.ok_or_else(|| {
        err!(
            slot,
            "replication slot {name:?} vanished right after it was created"
        )
    })?;
    tracing::info!(
        "created replication slot {name:?} (wal2json) at {}",
        slot.confirmed
    );
    Ok(slot)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_tables_escapes_every_separator() {
        assert_eq!(wal2json_table("public", "a b"), "public.a\\ b");
        assert_eq!(wal2json_table("s.x", "t,1*"), "s\\.x.t\\,1\\*");
        assert_eq!(wal2json_table("s", "tab\there"), "s.tab\\\there");
        assert_eq!(wal2json_table("s", "nl\nx\r"), "s.nl\\\nx\\\r");
        assert_eq!(wal2json_table("s", "q'\\"), "s.q\\'\\\\");
    }
}

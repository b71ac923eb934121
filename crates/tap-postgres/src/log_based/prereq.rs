//! What must hold before anything is streamed, each failure explained with
//! what to do: the server, the tables, the slot's health, and the state's
//! positions against the slot and the server's WAL.
//!
//! Invariant: a state the slot can no longer serve (its position is behind
//! what the slot has already released, or the slot lost its WAL) is an
//! error, never a silent gap. The one way past it is the explicit
//! `allow_state_behind_slot`.

use pg::walsender::Lsn;
use tokio_postgres::Client;

use super::slot::Slot;
use super::{LogConfig, LogStream};
use crate::discovery::RelKind;
use crate::error::{bail, err, Result};

/// Server ≥ 10, the primary, `wal_level = logical`.
pub async fn check_server(client: &Client) -> Result<i32> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, pg_is_in_recovery(), current_setting('wal_level')",
            &[],
        )
        .await?;
    let version: i32 = row.get(0);
    if version < 100000 {
        bail!(slot, "LOG_BASED needs PostgreSQL 10 or newer (temporary replication slots); this server is {version}");
    }
    if row.get::<_, bool>(1) {
        bail!(slot, "LOG_BASED needs the primary server: this is a standby (logical decoding reads the primary's WAL); point host/port at the primary");
    }
    let wal_level: String = row.get(2);
    if wal_level != "logical" {
        bail!(
            slot,
            "wal_level is {wal_level:?}: LOG_BASED needs `wal_level = logical` in postgresql.conf \
             (with max_replication_slots and max_wal_senders of at least 5), then a server restart"
        );
    }
    Ok(version)
}

/// Every stream a table whose updates and deletes can be captured.
pub fn check_tables(config: &LogConfig, streams: &[LogStream<'_>]) -> Result<()> {
    for s in streams {
        let t = &s.table;
        let id = &s.entry.tap_stream_id;
        if t.relkind.is_view() || t.relkind == RelKind::Foreign {
            return Err(err!(
                config,
                "a view or foreign table has no WAL to decode; use FULL_TABLE or INCREMENTAL"
            )
            .in_stream(id));
        }
        if t.primary_key.is_empty() && t.replica_identity != 'f' {
            let msg = format!(
                "stream {id}: table {}.{} has neither a primary key nor REPLICA IDENTITY FULL, so its updates and deletes \
                 cannot be captured; run ALTER TABLE {} REPLICA IDENTITY FULL",
                t.schema, t.name, pg::QualifiedName::new(&t.schema, &t.name)
            );
            if config.allow_without_identity {
                tracing::warn!("{msg} (allow_tables_without_identity: inserts only)");
            } else {
                bail!(
                    config,
                    "{msg}, or set allow_tables_without_identity to stream its inserts only"
                );
            }
        }
    }
    Ok(())
}

/// The slot still has its WAL; a slot about to lose it is a warning with
/// the figures.
pub async fn check_slot_health(client: &Client, slot: &Slot) -> Result<()> {
    let name = &slot.name;
    let reason = slot
        .invalidation_reason
        .as_deref()
        .map(|r| format!(", invalidation_reason {r}"))
        .unwrap_or_default();
    let idle = slot
        .inactive_since
        .as_deref()
        .map(|t| format!(", unused since {t}"))
        .unwrap_or_default();
    if slot.wal_status.as_deref() != Some("lost") && slot.invalidation_reason.is_some() {
        bail!(slot,
            "replication slot {name:?} was invalidated by the server{reason}{idle}: it can no longer serve \
             changes, and those since its position are lost. To resync: drop the slot \
             (SELECT pg_drop_replication_slot('{name}');), remove the `lsn` bookmarks of its streams from the \
             state so each gets a fresh initial copy, and run again"
        );
    }
    match slot.wal_status.as_deref() {
        Some("lost") => bail!(slot,
            "replication slot {name:?} has lost WAL it needed (wal_status lost{reason}{idle}: the server removed it, \
             max_slot_wal_keep_size was exceeded): changes were lost and cannot be read again. To resync: drop the \
             slot (SELECT pg_drop_replication_slot('{name}');), remove the `lsn` bookmarks of its streams from the \
             state so each gets a fresh initial copy, and run again (raise max_slot_wal_keep_size, or run more often)"
        ),
        Some("unreserved") => tracing::warn!(
            "replication slot {name:?} is about to lose WAL (wal_status unreserved, safe_wal_size {}): the next \
             checkpoint may remove it; run the tap now, raise max_slot_wal_keep_size, or run more often",
            size(slot.safe_wal_size)
        ),
        _ => {}
    }
    let keep: Option<i64> = client
        .query_one(
            "SELECT CASE WHEN current_setting('server_version_num')::int >= 130000 \
             THEN pg_size_bytes(current_setting('max_slot_wal_keep_size')) END",
            &[],
        )
        .await?
        .get(0);
    if let (Some(safe), Some(keep)) = (slot.safe_wal_size, keep.filter(|k| *k > 0)) {
        // Less than a fifth of the allowance left: one busy interval
        // between two runs can use that up.
        if safe < keep / 5 {
            tracing::warn!(
                "replication slot {name:?} can fall behind only {} more before the server drops its WAL \
                 (max_slot_wal_keep_size {}): run the tap more often or raise max_slot_wal_keep_size",
                size(Some(safe)),
                size(Some(keep))
            );
        }
    }
    Ok(())
}

fn size(bytes: Option<i64>) -> String {
    match bytes {
        None => "unknown".into(),
        Some(b) if b.abs() >= 1 << 20 => format!("{} MB", b / (1 << 20)),
        Some(b) => format!("{b} bytes"),
    }
}

/// The state's `lsn` of each stream (`None`: no bookmark yet) against the
/// slot and the server's WAL.
pub fn check_positions(
    config: &LogConfig,
    slot: &Slot,
    wal_now: Lsn,
    positions: &[(&str, Option<Lsn>)],
) -> Result<()> {
    for (id, lsn) in positions {
        let Some(lsn) = lsn else { continue };
        if *lsn > wal_now {
            bail!(config,
                "stream {id}: the state's lsn {lsn} is ahead of this server's WAL ({wal_now}): the state comes from \
                 another server, or this one was restored from a backup, and streaming from it would skip \
                 changes. Remove the stream's bookmark from the state to copy the table again"
            );
        }
        if *lsn < slot.confirmed {
            let msg = format!(
                "stream {id}: the state's lsn {lsn} is behind replication slot {:?}'s confirmed_flush_lsn {}: \
                 the changes between them were released by the slot and cannot be read again (a restored state or \
                 target, or another reader of the slot)",
                slot.name, slot.confirmed
            );
            if config.allow_state_behind_slot {
                tracing::warn!(
                    "{msg}; streaming from {} (allow_state_behind_slot)",
                    slot.confirmed
                );
            } else {
                bail!(config,
                    "{msg}. To resync the stream, remove its `lsn` bookmark from the state (it then gets a fresh \
                     initial copy), or set allow_state_behind_slot: true to accept the gap"
                );
            }
        }
    }
    Ok(())
}

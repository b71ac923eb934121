//! The initial copy of a LOG_BASED stream, tied exactly to a WAL position.
//!
//! # Snapshot ↔ LSN
//! A copy and a stream together see every committed change exactly when
//! the copy's snapshot holds precisely the transactions whose commit comes
//! before the position streaming starts from. Reading
//! `pg_current_wal_lsn()` and then taking a snapshot does not give that: a
//! transaction whose commit record is already in the WAL can still be
//! invisible to new snapshots (it waits for a synchronous standby, or is
//! just between writing its commit record and leaving the proc array). It
//! is then in neither the copy nor the stream: lost for good.
//!
//! So each copy runs in a snapshot the server itself ties to a position:
//!
//! ```text
//!  replication connection            ordinary connection (primary)
//!  CREATE_REPLICATION_SLOT tmp
//!    TEMPORARY LOGICAL wal2json
//!    EXPORT_SNAPSHOT
//!      → consistent point C, snapshot S
//!                                    BEGIN REPEATABLE READ READ ONLY
//!                                    SET TRANSACTION SNAPSHOT 'S'
//!                                    COPY … (every row as of C)
//!                                    COMMIT
//!  (connection closed: tmp dropped)
//!  bookmark lsn = C; streaming from the tap's own slot at C
//! ```
//!
//! Logical decoding builds S from the WAL: every transaction whose commit
//! record ends at or before C is visible in S, every later one is not, and
//! the stream delivers exactly the transactions whose commit ends after C
//! (the streamer skips those ending at or before the bookmark). The slot
//! creation waits for transactions in progress (including one held waiting
//! for a standby) to finish, so no transaction straddles C. The tap's own
//! slot is older than C (it is found or created first and confirmed only up
//! to what the target committed), so it can serve every position from C.
//!
//! A copy interrupted and resumed (`last_pk_fetched`) reads the remaining
//! rows in a new such snapshot, at a later point C′, and keeps the bookmark
//! C: each part is consistent with its own point, and streaming from
//! C ≤ C′ replays every change after either (an upserting target makes the
//! repeats harmless; the stream ends at the source's state).
//!
//! While copying, the bookmark carries `last_pk_fetched` (null until the
//! first key is written): a state written during the copy is never taken
//! for a finished one.

use std::io::Write;

use pg::walsender::{ReplicationClient, SlotSnapshot};
use singer::catalog::ReplicationMethod;
use tokio_postgres::Client;

use super::LogStream;
use crate::error::{err, Context as _, Result};
use crate::full_table::{self, CopyKind};
use crate::output::Output;
use crate::phase::Phase;
use crate::rows::StreamPlan;

/// Whether stream `id` needs (the rest of) an initial copy.
pub fn needs_copy<W: Write>(ctx: &Output<'_, W>, id: &str) -> bool {
    matches!(
        ctx.phase(id, ReplicationMethod::LogBased),
        Phase::Fresh | Phase::Copying { .. }
    )
}

/// Copies stream `s` in a snapshot exported by a temporary slot, and
/// bookmarks the slot's consistent point (unless resuming a copy, whose
/// bookmark is kept).
pub async fn initial_copy<W: Write>(
    ctx: &mut Output<'_, W>,
    primary: &mut Client,
    conn: &pg::ConnectionConfig,
    s: &LogStream<'_>,
    n: usize,
) -> Result<()> {
    let id = s.entry.tap_stream_id.clone();
    let mut rc = ReplicationClient::connect(conn, &[]).await?;
    let name = format!("tap_postgres_copy_{}_{n}", std::process::id());
    let created = rc
        .create_temporary_logical_slot(&name, "wal2json", SlotSnapshot::Export)
        .await
        .context("the initial copy's snapshot (a temporary replication slot; max_replication_slots must leave one free)")
        .map_err(|e| e.into_slot().in_stream(&id))?;
    let snapshot = created
        .snapshot_name
        .clone()
        .ok_or_else(|| err!("the server exported no snapshot for slot {name:?}"))?;
    let phase = match ctx.phase(&id, ReplicationMethod::LogBased) {
        Phase::Copying { after, lsn } => {
            tracing::info!("stream {id}: resuming the initial copy");
            Phase::Copying { after, lsn }
        }
        _ => {
            tracing::info!(
                "stream {id}: initial copy as of {}; streaming continues from there",
                created.consistent_point
            );
            Phase::Copying {
                after: None,
                lsn: Some(created.consistent_point),
            }
        }
    };
    ctx.set_phase(&id, &phase);
    let key = s.table.resume_key.clone();
    let names: Vec<&str> = s.selected.iter().map(String::as_str).collect();
    let plan = StreamPlan::new(&s.table, &names, &key, ctx.values());
    let kind = CopyKind {
        method: ReplicationMethod::LogBased,
        exported: Some(&snapshot),
    };
    full_table::sync(ctx, primary, &plan, &key, kind)
        .await
        .context("initial copy")
        .map_err(|e| e.in_stream(&id))?;
    rc.close().await;
    Ok(())
}

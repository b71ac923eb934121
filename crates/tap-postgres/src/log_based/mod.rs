//! LOG_BASED: changes read from a wal2json logical replication slot through
//! the streaming replication protocol (`pg::walsender`).
//!
//! # The run
//! 1. Prerequisites ([`prereq`]), each reported with what to do: server ≥
//!    10, the primary, `wal_level = logical`, every table with a primary key
//!    or `REPLICA IDENTITY FULL`; the slot ([`slot`]: config
//!    `replication_slot`, else `macrometa_<db>` then `pipelinewise_<db>`,
//!    each with `_<tap_id>` when set; created with
//!    `create_replication_slot`), wal2json, not active elsewhere, its WAL
//!    not lost; every bookmark neither ahead of the server's WAL nor behind
//!    the slot.
//! 2. A stream without an `lsn` bookmark (or whose initial copy was
//!    interrupted) gets an initial copy in a snapshot tied exactly to its
//!    bookmark ([`snapshot`] argues why nothing is lost).
//! 3. Streaming ([`stream`] runs the [`streamer`]) from the smallest
//!    bookmark; what is bookmarked, skipped and written for each change is
//!    argued in [`streamer`]. The slot is confirmed only up to what the
//!    state the tap was started with says ([`stream`]). A bounded run with
//!    a small backlog reads the same changes with the SQL function
//!    `pg_logical_slot_peek_changes` instead ([`peek`] argues why that is
//!    the same, and when it is taken).
//!
//! # Stopping
//! `break_at_end_lsn` (default): at the server's WAL position as of the
//! start. `logical_poll_total_seconds`: after that long without data.
//! `max_run_seconds`: in all. Never hangs on an idle database.

pub mod change;
pub mod message;
pub mod peek;
pub mod prereq;
pub mod slot;
pub mod snapshot;
pub mod stream;
pub mod streamer;

use std::io::Write;

use pg::walsender::Lsn;
use singer::catalog::ReplicationMethod;
use singer::CatalogEntry;
use tokio_postgres::Client;

pub use crate::config::LogConfig;
use crate::discovery::{RelKind, Table};
use crate::encode::SESSION_SETTINGS;
use crate::error::Result;
use crate::output::Output;
use crate::phase::{self, Phase};
use crate::progress::Progress;
use change::Live;
pub use slot::slot_candidates;
use streamer::Streamer;

/// A LOG_BASED stream of the catalog and its table as discovered now.
pub struct LogStream<'a> {
    /// The catalog entry.
    pub entry: &'a CatalogEntry,
    /// The table.
    pub table: Table,
    /// The selected columns.
    pub selected: Vec<String>,
}

/// Runs the LOG_BASED streams of database `dbname`.
pub async fn run<W: Write>(
    ctx: &mut Output<'_, W>,
    lc: &LogConfig,
    dbname: &str,
    streams: Vec<LogStream<'_>>,
    started_with: &singer::State,
) -> Result<()> {
    let conn = ctx.config().connection.for_database(dbname);
    let mut primary = pg::connect(&conn).await?;
    primary.batch_execute(SESSION_SETTINGS).await?;
    let server_version = prereq::check_server(&primary).await?;
    prereq::check_tables(lc, &streams)?;
    let slot = slot::find_slot(&primary, lc, dbname).await?;
    prereq::check_slot_health(&primary, &slot).await?;
    let wal_now = wal_position(&primary, false).await?;
    let positions: Vec<(&str, Option<Lsn>)> = streams
        .iter()
        .map(|s| {
            let id = s.entry.tap_stream_id.as_str();
            (id, position(ctx.bookmark(id)))
        })
        .collect();
    prereq::check_positions(lc, &slot, wal_now, &positions)?;

    for (n, s) in streams.iter().enumerate() {
        if snapshot::needs_copy(ctx, &s.entry.tap_stream_id) {
            snapshot::initial_copy(ctx, &mut primary, &conn, s, n).await?;
        }
    }

    let (live, tables) = streamed_tables(ctx, &primary, &streams).await?;
    // Confirm only what the target had committed when this run started.
    let confirm = streams
        .iter()
        .filter_map(|s| position(started_with.bookmark(&s.entry.tap_stream_id)))
        .min()
        .unwrap_or(Lsn::INVALID);
    let bookmarked: Vec<Lsn> = live
        .iter()
        .map(|l| position(ctx.bookmark(&l.id)).unwrap_or(Lsn::INVALID))
        .collect();
    let start = bookmarked
        .iter()
        .copied()
        .min()
        .unwrap_or(Lsn::INVALID)
        .max(slot.confirmed);
    for l in &live {
        ctx.write_stream_schema(
            &l.id,
            &l.schema(ctx.values()),
            &l.key_properties(),
            &["lsn"],
        )?;
    }
    ctx.flush()?;
    let add_tables: Vec<String> = tables
        .iter()
        .map(|(schema, name, _)| slot::wal2json_table(schema, name))
        .collect();
    let plan = stream::Plan {
        slot: &slot.name,
        start,
        confirm,
        tables: add_tables.join(","),
    };
    let label = format!("slot {}", slot.name);
    let progress = Progress::new(&label, "changes", ctx.config().progress_every, None);
    // `break_at_end_lsn`: the server's flushed WAL position, what a
    // walsender has sent once it has caught up.
    let end = match lc.break_at_end_lsn {
        true => Some(wal_position(&primary, true).await?),
        false => None,
    };
    let mut streamer = Streamer::new(live, bookmarked, tables, end, progress);
    if let Some(end) = end.filter(|&e| peek::chosen(lc, &slot, server_version, e)) {
        let read = peek::run(ctx, &conn, lc, &primary, &plan, end, &mut streamer).await?;
        if read {
            streamer.finish(ctx)?;
            return Ok(());
        }
    }
    let mut replication = stream::start(&conn, &primary, lc, &plan, end).await?;
    stream::run(ctx, lc, &primary, &mut replication, &mut streamer).await?;
    streamer.finish(ctx)?;
    replication.stop().await?;
    Ok(())
}

/// A stream's LOG_BASED position, if it has one.
fn position(b: Option<&singer::Bookmark>) -> Option<Lsn> {
    Phase::read(b, ReplicationMethod::LogBased).lsn()
}

/// The server's WAL position: `pg_current_wal_lsn` (written) or
/// `pg_current_wal_flush_lsn` (flushed, what logical decoding can read).
async fn wal_position(client: &Client, flushed: bool) -> Result<Lsn> {
    let query = match flushed {
        true => "SELECT pg_current_wal_flush_lsn()::text",
        false => "SELECT pg_current_wal_lsn()::text",
    };
    let now: String = client.query_one(query, &[]).await?.get(0);
    Ok(now.parse()?)
}

/// The streams as streamed, and the `(schema, table, stream)` names their
/// changes arrive under (a partitioned table's leaves under its stream).
async fn streamed_tables<W: Write>(
    ctx: &mut Output<'_, W>,
    primary: &Client,
    streams: &[LogStream<'_>],
) -> Result<(Vec<Live>, Vec<(String, String, usize)>)> {
    let mut live = Vec::new();
    let mut tables = Vec::new();
    for (i, s) in streams.iter().enumerate() {
        let id = s.entry.tap_stream_id.clone();
        let version = match phase::version(ctx.bookmark(&id)) {
            Some(v) => v,
            None => {
                let v = phase::new_version();
                phase::set_version(ctx.bookmark_mut(&id), v);
                v
            }
        };
        tables.push((s.table.schema.clone(), s.table.name.clone(), i));
        if s.table.relkind == RelKind::Partitioned {
            for row in primary
                .query(
                    "SELECT n.nspname::text, c.relname::text FROM pg_partition_tree($1::oid::regclass) p \
                     JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.isleaf",
                    &[&s.table.oid],
                )
                .await?
            {
                tables.push((row.get(0), row.get(1), i));
            }
        }
        live.push(Live::new(
            id,
            s.table.clone(),
            s.selected.clone(),
            version,
            ctx.values(),
        ));
    }
    Ok((live, tables))
}

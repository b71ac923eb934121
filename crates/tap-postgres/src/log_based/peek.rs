//! Reading a bounded backlog with the SQL function
//! `pg_logical_slot_peek_changes` on an ordinary connection, instead of the
//! replication protocol ([`stream`](super::stream)).
//!
//! # Why
//! The walsender sends every change as a message of its own, flushed to the
//! socket at once, and polls for replies once per WAL record. On the
//! bench's 300k changes the server spends about three times the CPU of
//! decoding the same changes with the function, and PostgreSQL's own
//! `pg_recvlogical`, which does nothing with the data, takes 2–3× the
//! function's time. The function decodes into a tuplestore and sends the
//! rows in full buffers.
//!
//! # The price, and so the bound
//! The server decodes the whole backlog before the first row arrives,
//! keeping the output in memory up to `work_mem` and then in a temporary
//! file about the size of the output. Meanwhile the connection is silent
//! (the stall watch finds the session active and waits). So this route is
//! taken only for a run that ends at the WAL end of its start
//! (`break_at_end_lsn`) and whose slot has at most
//! `logical_peek_max_wal_mb` of WAL to read ([`chosen`]); otherwise, and on
//! servers before 11 (no `pg_replication_slot_advance`), the replication
//! protocol streams. So does a run whose function fails for lack of a
//! resource (SQLSTATE class 53: `temp_file_limit`, a full disk, memory),
//! which shows before the first change: with a warning, nothing read yet.
//!
//! # Why it delivers exactly what the replication route does
//! - **Confirmed**: before reading, the slot is advanced to the smallest
//!   bookmark of the state the tap was started with, if it is behind it:
//!   the position the replication route confirms, nothing learnt in this
//!   run. A run that dies reads the same changes again.
//! - **Read**: `end` is the server's *flushed* WAL position taken before
//!   (the end of a bounded run on either route), the most the function
//!   can read. The function reads from the slot until a record ends at or
//!   past `end`, so it returns every transaction whose commit record ends
//!   at or before `end`, whole, in commit order, with wal2json's options
//!   and this session's value formats (the settings of the replication
//!   session). The streamer stops at the BEGIN of a transaction committed
//!   after `end`, as it does when streaming.
//! - **Bookmarked** after the last row: `end`, given to the streamer as a
//!   keepalive. Every transaction committed before it has been delivered;
//!   one still open at `end` commits after it, and its WAL is kept by the
//!   slot, which is confirmed at most up to a bookmark.

use std::io::Write;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use pg::walsender::Lsn;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::Client;

use super::slot::{plugin_options, Slot};
use super::stream::{feed, retry, slot_busy, Plan, Retry, SLOT_BUSY_POLL};
use super::streamer::{Event, Streamer};
use super::LogConfig;
use crate::encode::SESSION_SETTINGS;
use crate::error::{Error, Result};
use crate::output::Output;

/// The first server version with `pg_replication_slot_advance`.
const MIN_VERSION: i32 = 110_000;

/// Whether a run that ends at `end` reads with the function.
pub fn chosen(lc: &LogConfig, slot: &Slot, server_version: i32, end: Lsn) -> bool {
    if lc.peek_max_wal == 0 || server_version < MIN_VERSION {
        return false;
    }
    let backlog = end.0.saturating_sub(slot.restart.0);
    if backlog > lc.peek_max_wal {
        tracing::info!(
            "slot {:?} has {} MB of WAL to read, more than logical_peek_max_wal_mb: streaming it",
            slot.name,
            backlog >> 20
        );
        return false;
    }
    tracing::info!(
        "streaming from slot {:?} to {end} with pg_logical_slot_peek_changes ({} MB of WAL to read)",
        slot.name,
        backlog >> 20
    );
    true
}

/// The changes, one wal2json message a row.
const PEEK: &str = "SELECT data FROM pg_logical_slot_peek_changes($1::text::name, \
     $2::text::pg_lsn, NULL, VARIADIC $3::text[])";

/// Moves the slot up to `$2` when it is behind (never back: the function
/// refuses a position before the slot's).
const ADVANCE: &str = "SELECT pg_replication_slot_advance(slot_name, $2::text::pg_lsn) \
     FROM pg_replication_slots WHERE slot_name = $1::text::name AND confirmed_flush_lsn < $2::text::pg_lsn";

/// Reads the changes up to `end` into the streamer (which stops there).
/// `false`: the server could not produce them (a resource limit, before
/// the first change): stream them with the replication protocol instead.
pub async fn run<W: Write>(
    ctx: &mut Output<'_, W>,
    conn: &pg::ConnectionConfig,
    lc: &LogConfig,
    primary: &Client,
    plan: &Plan<'_>,
    end: Lsn,
    streamer: &mut Streamer,
) -> Result<bool> {
    let began = Instant::now();
    let client = pg::connect(conn).await?;
    // The value formats of the replication session; no statement_timeout
    // meant for queries (decoding a backlog may take longer); and, from
    // PostgreSQL 14, a check for a gone client while decoding, so that the
    // server process of a killed run lets go of the slot within a second
    // instead of decoding the whole backlog first.
    client
        .batch_execute(&format!(
            "{SESSION_SETTINGS}; SET statement_timeout = 0; SET lock_timeout = 0; \
             SELECT set_config('client_connection_check_interval', '1000', false) \
             WHERE current_setting('server_version_num')::int >= 140000"
        ))
        .await?;
    let end_text = end.to_string();
    let confirm = (plan.confirm != Lsn::INVALID).then(|| plan.confirm.to_string());
    let mut options = plugin_options(&plan.tables);
    let mut waited = Duration::ZERO;
    let (rows, first) = loop {
        let e = match open(&client, plan.slot, confirm.as_deref(), &end_text, &options).await {
            Ok(opened) => break opened,
            Err(e) => e,
        };
        match retry(e.code().map(|c| c.code()), &mut options, &mut waited) {
            Retry::WithoutOptional => {}
            Retry::AfterWait => tokio::time::sleep(SLOT_BUSY_POLL).await,
            Retry::Busy => return Err(slot_busy(plan.slot, Error::from(e))),
            // Class 53, insufficient resources: temp_file_limit
            // (configuration_limit_exceeded), a full disk, out of memory.
            Retry::No if e.code().is_some_and(|c| c.code().starts_with("53")) => {
                let why = e.as_db_error().map_or_else(
                    || e.to_string(),
                    |d| format!("{}, SQLSTATE {}", d.message(), d.code().code()),
                );
                tracing::warn!(
                    "pg_logical_slot_peek_changes failed before the first change ({why}): streaming \
                     with the replication protocol instead (logical_peek_max_wal_mb 0 always does)"
                );
                return Ok(false);
            }
            Retry::No => return Err(e.into()),
        }
    };
    let mut rows = rows;
    let mut row = first;
    let writable = ctx.writable();
    let mut n: u32 = 0;
    while let Some(r) = row {
        writable.wait().await;
        n = n.wrapping_add(1);
        if n.is_multiple_of(1024) && began.elapsed() >= lc.max_run {
            tracing::info!("max_run_seconds reached; stopping");
            return Ok(true);
        }
        let data: RawText = r.try_get(0)?;
        let event = Event::Data {
            data: data.0,
            wal_end: end,
        };
        if feed(ctx, primary, streamer, event).await? {
            return Ok(true);
        }
        row = rows.try_next().await?;
    }
    feed(ctx, primary, streamer, Event::Keepalive { wal_end: end }).await?;
    Ok(true)
}

type Rows = std::pin::Pin<Box<tokio_postgres::RowStream>>;

/// Advances the slot to `confirm` if it is behind, and starts the
/// function: its first row (a failure of wal2json's start shows there).
async fn open(
    client: &Client,
    slot: &str,
    confirm: Option<&str>,
    end: &str,
    options: &[(&str, &str)],
) -> std::result::Result<(Rows, Option<tokio_postgres::Row>), tokio_postgres::Error> {
    if let Some(confirm) = confirm {
        client.execute(ADVANCE, &[&slot, &confirm]).await?;
    }
    let options: Vec<&str> = options.iter().flat_map(|(k, v)| [*k, *v]).collect();
    let params: [&(dyn ToSql + Sync); 3] = [&slot, &end, &options];
    let mut rows = Box::pin(client.query_raw(PEEK, params).await?);
    let first = rows.try_next().await?;
    Ok((rows, first))
}

/// A `text` value's bytes, not checked for UTF-8 here: the message parser
/// checks each message once.
struct RawText<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawText<'a> {
    fn from_sql(
        _: &Type,
        raw: &'a [u8],
    ) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawText(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TEXT
    }
}

//! Running the [`Streamer`] on the replication connection: starting
//! replication, waiting for events with a poll interval, doing what the
//! streamer asks for (a table read again, a row read for a key change) and
//! stopping on time.
//!
//! What is confirmed to the slot: only the smallest `lsn` of the state the
//! tap was **started** with (what the target had committed then), never
//! anything learnt within the run, so a crash of the target loses nothing.

use std::io::Write;
use std::time::{Duration, Instant};

use pg::walsender::{Lsn, ReplicationClient, ReplicationEvent, ReplicationStream};
use tokio_postgres::Client;

use super::change::Live;
use super::slot::{plugin_options, OPTIONAL};
use super::streamer::{Event, FillRequest, Row, Step, Streamer};
use super::LogConfig;
use crate::discovery::{discover, Filter};
use crate::error::{bail, err, Error, Result};
use crate::output::Output;

/// Where and how far to stream.
pub struct Plan<'a> {
    /// The slot's name.
    pub slot: &'a str,
    /// Start position (the smallest bookmark).
    pub start: Lsn,
    /// What to confirm (the smallest bookmark of the started state).
    pub confirm: Lsn,
    /// wal2json `add-tables`.
    pub tables: String,
}

/// How long a slot held by another session is waited for.
const SLOT_BUSY_WAIT: Duration = Duration::from_secs(10);
/// How often it is tried meanwhile.
pub(super) const SLOT_BUSY_POLL: Duration = Duration::from_millis(200);

/// What to do when reading from the slot could not start.
pub(super) enum Retry {
    /// Again without the optional wal2json option, now dropped.
    WithoutOptional,
    /// Again after [`SLOT_BUSY_POLL`] (counted in `waited`).
    AfterWait,
    /// Give up: the slot stayed in use ([`slot_busy`]).
    Busy,
    /// Give up with the error.
    No,
}

/// Whether a failed start with `sqlstate` is tried again. wal2json refuses
/// an option it does not know with SQLSTATE 22023 (invalid_parameter_value);
/// the only optional one is the last of `options`. A slot held by another
/// session (55006: the previous run's server process has not yet seen its
/// client go, or another run) is waited for up to [`SLOT_BUSY_WAIT`].
pub(super) fn retry(
    sqlstate: Option<&str>,
    options: &mut Vec<(&str, &str)>,
    waited: &mut Duration,
) -> Retry {
    match sqlstate {
        Some("22023") if options.last().is_some_and(|(name, _)| *name == OPTIONAL) => {
            tracing::info!(
                "this server's wal2json does not know numeric-data-types-as-string: NaN and Infinity of \
                 float and numeric columns arrive as null in LOG_BASED records"
            );
            options.pop();
            Retry::WithoutOptional
        }
        Some("55006") if *waited < SLOT_BUSY_WAIT => {
            *waited += SLOT_BUSY_POLL;
            Retry::AfterWait
        }
        Some("55006") => Retry::Busy,
        _ => Retry::No,
    }
}

/// The error of a slot that stayed in use.
pub(super) fn slot_busy(slot: &str, e: Error) -> Error {
    e.into_slot().context(format!(
        "replication slot {slot:?} stayed in use by another session for {} s: \
         is another run of this tap still going?",
        SLOT_BUSY_WAIT.as_secs()
    ))
}

/// The session settings of the replication connection.
fn gucs(timeout: &str) -> [(&'static str, &str); 6] {
    [
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("IntervalStyle", "postgres"),
        ("extra_float_digits", "3"),
        ("bytea_output", "hex"),
        ("wal_sender_timeout", timeout),
    ]
}

/// Opens the replication stream (the run ends at `end`, if given).
pub async fn start(
    conn: &pg::ConnectionConfig,
    primary: &Client,
    lc: &LogConfig,
    plan: &Plan<'_>,
    end: Option<Lsn>,
) -> Result<ReplicationStream> {
    let timeout = format!("{}ms", lc.wal_sender_timeout_ms);
    let gucs = gucs(&timeout);
    let mut rc = ReplicationClient::connect(conn, &gucs).await?;
    let mut options = plugin_options(&plan.tables);
    let mut waited = Duration::ZERO;
    let stream = loop {
        let e = match rc.start_replication(plan.slot, plan.start, &options).await {
            Ok(s) => break s,
            Err(e) => e,
        };
        match retry(e.sqlstate(), &mut options, &mut waited) {
            Retry::WithoutOptional => {
                // The refused session may hold the slot for a moment.
                super::slot::wait_inactive(primary, plan.slot, Duration::from_secs(10)).await?;
            }
            Retry::AfterWait => tokio::time::sleep(SLOT_BUSY_POLL).await,
            Retry::Busy => return Err(slot_busy(plan.slot, Error::from(e))),
            Retry::No => return Err(e.into()),
        }
        rc = ReplicationClient::connect(conn, &gucs).await?;
    };
    if plan.confirm != Lsn::INVALID {
        stream.confirm(plan.confirm);
    }
    tracing::info!(
        "streaming from slot {:?} at {}{}",
        plan.slot,
        plan.start,
        end.map(|e| format!(" to {e}")).unwrap_or_default()
    );
    Ok(stream)
}

/// Streams until the streamer stops, the idle or run time limit passes.
pub async fn run<W: Write>(
    ctx: &mut Output<'_, W>,
    lc: &LogConfig,
    primary: &Client,
    stream: &mut ReplicationStream,
    streamer: &mut Streamer,
) -> Result<()> {
    let began = Instant::now();
    let mut last_data = Instant::now();
    let poll = Duration::from_millis(500);
    let writable = ctx.writable();
    loop {
        writable.wait().await;
        if began.elapsed() >= lc.max_run {
            tracing::info!("max_run_seconds reached; stopping");
            return Ok(());
        }
        if !streamer.in_transaction() && last_data.elapsed() >= lc.idle_timeout {
            tracing::info!("no change for logical_poll_total_seconds; stopping");
            return Ok(());
        }
        let event = match tokio::time::timeout(poll, stream.next()).await {
            Err(_) => {
                // Quiet: hand what we have to the target, and ask the
                // server where it is, to learn whether we are caught up.
                streamer.on_quiet(ctx)?;
                if !streamer.in_transaction() {
                    stream.send_status(true).await?;
                }
                continue;
            }
            Ok(e) => e?,
        };
        let event = match &event {
            None => bail!("the server ended the replication stream"),
            Some(ReplicationEvent::Keepalive { wal_end, .. }) => {
                Event::Keepalive { wal_end: *wal_end }
            }
            Some(ReplicationEvent::XLogData { data, wal_end, .. }) => {
                last_data = Instant::now();
                Event::Data {
                    data,
                    wal_end: *wal_end,
                }
            }
        };
        if feed(ctx, primary, streamer, event).await? {
            return Ok(());
        }
    }
}

/// Gives `event` to the streamer, reading what it asks for from `primary`
/// until it has taken the event; `true`: it says stop.
pub(super) async fn feed<W: Write>(
    ctx: &mut Output<'_, W>,
    primary: &Client,
    streamer: &mut Streamer,
    event: Event<'_>,
) -> Result<bool> {
    loop {
        match streamer.on_event(ctx, event)? {
            Step::Continue => return Ok(false),
            Step::Stop => return Ok(true),
            Step::Refresh { stream, xid } => {
                wait_visible(primary, xid).await?;
                let live = refresh(primary, &streamer.live()[stream], ctx).await?;
                streamer.set_table(stream, live);
            }
            Step::Fill(request) => {
                wait_visible(primary, request.xid).await?;
                let row = fill(primary, &streamer.live()[request.stream], &request).await?;
                streamer.set_fill(row);
            }
        }
    }
}

/// Waits until transaction `xid` is visible to new snapshots. wal2json
/// sends a transaction once its commit record is decoded, which can be a
/// moment before the committing session marks it finished for snapshots
/// (longer while it waits for a synchronous standby); a read for it before
/// then would not see it. Once visible in one snapshot it is visible in
/// every later one, so every later statement sees it. The 32-bit `xid` is
/// given the epoch of the snapshot's `xmax` (or the one before, if that
/// puts it past `xmax`). Bounded: an error after 60 s.
async fn wait_visible(client: &Client, xid: Option<u32>) -> Result<()> {
    let Some(xid) = xid else { return Ok(()) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let visible: bool = client
            .query_one(
                "SELECT txid_visible_in_snapshot(CASE WHEN t > x THEN t - 4294967296 ELSE t END, snap) \
                 FROM (SELECT snap, x, ((x >> 32) << 32) | $1 AS t \
                       FROM (SELECT s AS snap, txid_snapshot_xmax(s) AS x FROM txid_current_snapshot() s) a) b",
                &[&i64::from(xid)],
            )
            .await?
            .get(0);
        if visible {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "transaction {xid} was streamed as committed but is still not visible after 60 s"
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Reads the stream's table again (a column was added) and writes the new
/// SCHEMA.
async fn refresh<W: Write>(client: &Client, l: &Live, ctx: &mut Output<'_, W>) -> Result<Live> {
    let filter = Filter {
        schemas: Some(vec![l.table.schema.clone()]),
        tables: Some(vec![format!("{}.{}", l.table.schema, l.table.name)]),
    };
    let Some(table) = discover(client, &filter)
        .await?
        .into_iter()
        .find(|t| t.name == l.table.name)
    else {
        return Err(err!("the table disappeared while streaming").in_stream(&l.id));
    };
    let mut selected = l.selected.clone();
    for c in &table.columns {
        if l.table.column(&c.name).is_none() {
            tracing::info!("stream {}: new column {:?} ({})", l.id, c.name, c.sql_type);
            selected.push(c.name.clone());
        }
    }
    let mut live = Live::new(l.id.clone(), table, selected, l.version, ctx.values());
    live.records = l.records;
    let schema = live.schema(ctx.values());
    ctx.write_stream_schema(&live.id, &schema, &live.key_properties(), &["lsn"])?;
    Ok(live)
}

/// Reads the columns a key change lacks, as text, from the row under the
/// new key (see the streamer's module doc for why this is exact). Key
/// values are bound as text and cast to the column's type.
async fn fill(client: &Client, l: &Live, request: &FillRequest) -> Result<Option<Row>> {
    let columns: Vec<String> = request
        .columns
        .iter()
        .map(|c| format!("{}::text", pg::quote_ident(c)))
        .collect();
    let mut conditions = Vec::new();
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    for (i, (name, value)) in request.key.iter().enumerate() {
        let column = l
            .table
            .column(name)
            .ok_or_else(|| err!("key column {name:?} is gone").in_stream(&l.id))?;
        conditions.push(format!(
            "{} = ${}::text::{}",
            pg::quote_ident(name),
            i + 1,
            column.sql_type
        ));
        params.push(value);
    }
    let sql = format!(
        "SELECT {} FROM {} WHERE {}",
        columns.join(", "),
        pg::QualifiedName::new(&l.table.schema, &l.table.name),
        conditions.join(" AND ")
    );
    let row = client.query_opt(&sql, &params).await?;
    Ok(row.map(|r| (0..request.columns.len()).map(|i| r.get(i)).collect()))
}

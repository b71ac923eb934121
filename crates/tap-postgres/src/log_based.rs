//! LOG_BASED: changes read from a wal2json logical replication slot through
//! the streaming replication protocol (`pg::walsender`).
//!
//! # The run
//! 1. Prerequisites, each reported with what to do: server ≥ 9.4, the
//!    primary (not a standby), `wal_level = logical`, the slot (config
//!    `replication_slot`, else `macrometa_<db>` then `pipelinewise_<db>`,
//!    each with `_<tap_id>` when set: the first that exists; created with
//!    `create_replication_slot`), its plugin wal2json, not active elsewhere,
//!    and every table with a primary key or `REPLICA IDENTITY FULL`.
//! 2. A stream without an `lsn` bookmark (or whose initial copy was
//!    interrupted) gets an initial copy: its bookmark `lsn` is set to
//!    `pg_current_wal_lsn()` **before** a FULL_TABLE copy (REPEATABLE READ,
//!    resumable) on the primary. Every transaction that committed before the
//!    copy's snapshot is in the copy; every one that commits after the
//!    bookmark is streamed; those committing in between are in both (an
//!    upserting target makes the repeat harmless). Streaming follows in the
//!    same run.
//! 3. Streaming from the smallest bookmark. A transaction is skipped for a
//!    stream whose bookmark is at or past the transaction's end, so a run
//!    started from a state neither repeats nor skips a committed
//!    transaction.
//!
//! # What is confirmed, what is bookmarked
//! - The STATE `lsn` of every stream of the slot is the end of the last
//!   transaction whose records were all written (wal2json's `nextlsn` of its
//!   commit), or, when the stream is idle between transactions, the
//!   server's sent position from a keepalive: everything before it has been
//!   delivered, and a transaction still open then commits after it and will
//!   be delivered to a run starting there. So WAL of unrelated tables and
//!   databases does not pin the slot.
//! - The slot is confirmed only up to the smallest `lsn` of the state the
//!   tap was **started** with: what the target has committed. Never further
//!   within a run, so a crash of the target loses nothing.
//!
//! # Records
//! Insert and update: the row as wal2json gives it, encoded exactly as
//! FULL_TABLE encodes it (`encode`), plus `_sdc_lsn` (the transaction's
//! end LSN, increasing in stream order) and `_sdc_deleted_at: null`.
//! Unchanged TOASTed columns are absent from the record (never null).
//! Delete: the key (or the whole old row under REPLICA IDENTITY FULL) and
//! `_sdc_deleted_at` = the commit time. An update that changes the key is a
//! delete of the old key, then the new row. TRUNCATE: a new table version,
//! announced with ACTIVATE_VERSION, so a versioning target empties the
//! table. A column that appears while streaming: the table is read again
//! and a new SCHEMA precedes the first record that has it.
//!
//! # Stopping
//! `break_at_end_lsn` (default): at the server's WAL position as of the
//! start. `logical_poll_total_seconds`: after that long without data.
//! `max_run_seconds`: in all. Never hangs on an idle database.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use pg::walsender::{Lsn, ReplicationClient, ReplicationEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use singer::{CatalogEntry, Metric, TimeExtracted};
use tokio_postgres::Client;

use crate::discovery::{discover, stream_schema_widened, Column, Filter, Table};
use crate::encode::{write_str, Encoder, Replaced, Widen, SESSION_SETTINGS};
use crate::full_table::{self, LAST_PK_FETCHED};
use crate::progress::Progress;
use crate::rows::StreamPlan;
use crate::sync::{now_version, Ctx};
use crate::types::Kind;

/// A LOG_BASED stream of the catalog and its table as discovered now.
pub struct LogStream<'a> {
    /// The catalog entry.
    pub entry: &'a CatalogEntry,
    /// The table.
    pub table: Table,
    /// The selected columns.
    pub selected: Vec<String>,
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
    pub idle_timeout: Duration,
    /// `max_run_seconds`.
    pub max_run: Duration,
    /// `wal_sender_timeout` in ms.
    pub wal_sender_timeout_ms: u64,
    /// `allow_tables_without_identity`.
    pub allow_without_identity: bool,
}

/// One wal2json format-version 2 message, borrowed from the message bytes:
/// values stay raw JSON text until they are encoded (numbers are never read
/// into a float, and nothing is allocated per value that has no escape).
#[derive(Deserialize)]
struct WalMessage<'a> {
    action: &'a str,
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

#[derive(Deserialize)]
struct WalColumn<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    value: &'a RawValue,
}

/// Per stream, what streaming needs.
struct Live {
    id: String,
    table: Table,
    selected: Vec<String>,
    /// Every column of the table, with whether it is streamed.
    encoders: HashMap<String, (Encoder, bool)>,
    version: i64,
    records: u64,
}

impl Live {
    fn new(
        id: String,
        table: Table,
        selected: Vec<String>,
        version: i64,
        ctx_values: &crate::encode::ValueOptions,
    ) -> Live {
        let encoders = table
            .columns
            .iter()
            .map(|c| {
                let streamed = selected.contains(&c.name);
                (
                    c.name.clone(),
                    (Encoder::new(c.kind.clone(), *ctx_values), streamed),
                )
            })
            .collect();
        Live {
            id,
            table,
            selected,
            encoders,
            version,
            records: 0,
        }
    }

    fn schema(&self, opts: &crate::encode::ValueOptions) -> Value {
        let cols: Vec<&Column> = self
            .table
            .columns
            .iter()
            .filter(|c| self.selected.contains(&c.name))
            .collect();
        let widen = |c: &Column| {
            self.encoders
                .get(&c.name)
                .map_or(Widen::NONE, |(e, _)| e.widened())
        };
        let mut schema = stream_schema_widened(&self.table, &cols, opts, widen);
        for (e, _) in self.encoders.values() {
            e.announce();
        }
        let props = schema["properties"].as_object_mut().expect("properties");
        props.insert(
            "_sdc_lsn".into(),
            json!({"type": ["null", "integer"], "minimum": 0}),
        );
        props.insert(
            "_sdc_deleted_at".into(),
            json!({"type": ["null", "string"], "format": "date-time"}),
        );
        schema
    }

    /// A value of the change just encoded needed more than the last SCHEMA
    /// said: a widened one must precede its record (see `encode::Widen`).
    fn needs_wider_schema(&self) -> bool {
        self.encoders
            .values()
            .any(|(e, streamed)| *streamed && e.needs_announcement())
    }
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

/// `schema.table` for wal2json's `add-tables`, its special characters
/// escaped with a backslash.
fn wal2json_table(schema: &str, name: &str) -> String {
    let esc = |s: &str| -> String {
        let mut o = String::with_capacity(s.len());
        for c in s.chars() {
            if matches!(c, ' ' | '\'' | ',' | '.' | '*' | '\\') {
                o.push('\\');
            }
            o.push(c);
        }
        o
    };
    format!("{}.{}", esc(schema), esc(name))
}

async fn check_server(client: &Client) -> anyhow::Result<()> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version_num')::int, pg_is_in_recovery(), current_setting('wal_level')",
            &[],
        )
        .await?;
    let version: i32 = row.get(0);
    if version < 90400 {
        bail!("LOG_BASED needs PostgreSQL 9.4 or newer; this server is {version}");
    }
    if row.get::<_, bool>(1) {
        bail!("LOG_BASED needs the primary server: this is a standby (logical decoding reads the primary's WAL); point host/port at the primary");
    }
    let wal_level: String = row.get(2);
    if wal_level != "logical" {
        bail!(
            "wal_level is {wal_level:?}: LOG_BASED needs `wal_level = logical` in postgresql.conf \
             (with max_replication_slots and max_wal_senders of at least 5), then a server restart"
        );
    }
    Ok(())
}

/// Finds (or creates) the slot; returns its name and confirmed position.
async fn find_slot(
    client: &Client,
    config: &LogConfig,
    dbname: &str,
) -> anyhow::Result<(String, Lsn)> {
    let candidates = slot_candidates(config, dbname);
    for name in &candidates {
        let rows = client
            .query(
                "SELECT plugin, database, active_pid, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[name],
            )
            .await?;
        let Some(row) = rows.first() else { continue };
        let plugin: Option<String> = row.get(0);
        let database: Option<String> = row.get(1);
        let active: Option<i32> = row.get(2);
        if plugin.as_deref() != Some("wal2json") {
            bail!(
                "replication slot {name:?} uses the plugin {:?}, not wal2json: drop it, or create a dedicated one with \
                 SELECT pg_create_logical_replication_slot('{name}_wal2json', 'wal2json'); and set replication_slot",
                plugin.unwrap_or_else(|| "none (a physical slot)".into())
            );
        }
        if database.as_deref() != Some(dbname) {
            bail!("replication slot {name:?} belongs to database {database:?}, not {dbname:?}: slots are per database");
        }
        if let Some(pid) = active {
            bail!("replication slot {name:?} is active in another session (pid {pid}): another tap is reading it; stop it, or use another slot");
        }
        let confirmed: Option<String> = row.get(3);
        let confirmed = confirmed
            .map(|s| s.parse::<Lsn>())
            .transpose()?
            .unwrap_or(Lsn::INVALID);
        return Ok((name.clone(), confirmed));
    }
    let name = candidates[0].clone();
    if !config.create_slot {
        bail!(
            "replication slot {name:?} does not exist (looked for {}). Create it as a superuser in database {dbname:?}:\n  \
             SELECT pg_create_logical_replication_slot('{name}', 'wal2json');\nor set create_replication_slot: true",
            candidates.iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join(", ")
        );
    }
    let row = client
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'wal2json')",
            &[&name],
        )
        .await
        .map_err(|e| {
            let text = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string());
            if text.contains("wal2json") {
                anyhow!("cannot create replication slot {name:?}: {text}: install wal2json on the server (Debian: apt-get install postgresql-<major>-wal2json)")
            } else {
                anyhow!("cannot create replication slot {name:?}: {text}")
            }
        })?;
    let lsn: String = row.get(0);
    tracing::info!("created replication slot {name:?} (wal2json) at {lsn}");
    Ok((name, lsn.parse()?))
}

/// Runs the LOG_BASED streams of database `dbname`.
pub async fn run<W: Write>(
    ctx: &mut Ctx<'_, W>,
    lc: &LogConfig,
    dbname: &str,
    streams: Vec<LogStream<'_>>,
    started_with: &singer::State,
) -> anyhow::Result<()> {
    let conn = ctx.config.connection.for_database(dbname);
    let mut primary = pg::connect(&conn).await?;
    primary.batch_execute(SESSION_SETTINGS).await?;
    check_server(&primary).await?;
    for s in &streams {
        let t = &s.table;
        if t.relkind.is_view() || matches!(t.relkind, crate::discovery::RelKind::Foreign) {
            bail!("stream {}: a view or foreign table has no WAL to decode; use FULL_TABLE or INCREMENTAL", s.entry.tap_stream_id);
        }
        if t.primary_key.is_empty() && t.replica_identity != 'f' {
            let msg = format!(
                "stream {}: table {}.{} has neither a primary key nor REPLICA IDENTITY FULL, so its updates and deletes \
                 cannot be captured; run ALTER TABLE {} REPLICA IDENTITY FULL",
                s.entry.tap_stream_id, t.schema, t.name, pg::QualifiedName::new(&t.schema, &t.name)
            );
            if lc.allow_without_identity {
                tracing::warn!("{msg} (allow_tables_without_identity: inserts only)");
            } else {
                bail!("{msg}, or set allow_tables_without_identity to stream its inserts only");
            }
        }
    }
    let (slot, slot_confirmed) = find_slot(&primary, lc, dbname).await?;

    // Initial copies.
    for s in &streams {
        let id = s.entry.tap_stream_id.clone();
        let b = ctx.state.bookmark(&id).cloned().unwrap_or_default();
        let interrupted =
            b.get(LAST_PK_FETCHED).is_some() || b.get("xmin").is_some_and(|x| !x.is_null());
        if b.lsn().is_some() && !interrupted {
            continue;
        }
        if b.lsn().is_none() {
            let lsn: String = primary
                .query_one("SELECT pg_current_wal_lsn()::text", &[])
                .await?
                .get(0);
            let lsn: Lsn = lsn.parse()?;
            let bm = ctx.state.bookmark_mut(&id);
            bm.set_last_replication_method("LOG_BASED");
            bm.set_lsn(lsn.0);
            tracing::info!("stream {id}: initial copy; streaming continues from {lsn}");
        }
        let key = s.table.resume_key.clone();
        let names: Vec<&str> = s.selected.iter().map(String::as_str).collect();
        let plan = StreamPlan::new(&s.table, &names, &key, &ctx.config.values);
        full_table::sync(ctx, &mut primary, &plan, &key, "LOG_BASED")
            .await
            .with_context(|| format!("stream {id}: initial copy"))?;
    }

    // Streaming.
    let mut live: Vec<Live> = Vec::new();
    let mut by_table: HashMap<String, HashMap<String, usize>> = HashMap::new();
    let mut add_tables = Vec::new();
    for s in &streams {
        let id = s.entry.tap_stream_id.clone();
        let version = match ctx.state.bookmark(&id).and_then(|b| b.version()) {
            Some(v) => v,
            None => {
                let v = now_version();
                ctx.state.bookmark_mut(&id).set_version(v);
                v
            }
        };
        let i = live.len();
        by_table
            .entry(s.table.schema.clone())
            .or_default()
            .insert(s.table.name.clone(), i);
        add_tables.push(wal2json_table(&s.table.schema, &s.table.name));
        if s.table.relkind == crate::discovery::RelKind::Partitioned {
            for row in primary
                .query(
                    "SELECT n.nspname::text, c.relname::text FROM pg_partition_tree($1::oid::regclass) p \
                     JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.isleaf",
                    &[&s.table.oid],
                )
                .await?
            {
                let (schema, name): (String, String) = (row.get(0), row.get(1));
                add_tables.push(wal2json_table(&schema, &name));
                by_table.entry(schema).or_default().insert(name, i);
            }
        }
        live.push(Live::new(
            id,
            s.table.clone(),
            s.selected.clone(),
            version,
            &ctx.config.values,
        ));
    }
    // Confirm only what the target had committed when this run started.
    let confirm = streams
        .iter()
        .filter_map(|s| {
            started_with
                .bookmark(&s.entry.tap_stream_id)
                .and_then(|b| b.lsn())
        })
        .min()
        .map(Lsn)
        .unwrap_or(Lsn::INVALID);
    let start = live
        .iter()
        .filter_map(|l| ctx.state.bookmark(&l.id).and_then(|b| b.lsn()))
        .min()
        .map(Lsn)
        .unwrap_or(Lsn::INVALID);
    // A bookmark past the server's WAL belongs to another server (or one
    // restored from a backup): streaming from it would skip real changes.
    let now: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await?
        .get(0);
    let now: Lsn = now.parse()?;
    for l in &live {
        if let Some(b) = ctx.state.bookmark(&l.id).and_then(|b| b.lsn()) {
            if Lsn(b) > now {
                bail!(
                    "stream {}: the state's lsn {} is ahead of this server's WAL ({now}): the state comes from \
                     another server, or this one was restored from a backup, and streaming from it would skip \
                     changes. Remove the stream's bookmark from the state to copy the table again",
                    l.id,
                    Lsn(b)
                );
            }
        }
    }
    if start < slot_confirmed {
        tracing::warn!(
            "replication slot {slot:?} is at {slot_confirmed}, past the state's {start}: changes between them were \
             consumed by another reader and cannot be read again"
        );
    }
    for l in &live {
        let schema = l.schema(&ctx.config.values);
        let key: Vec<&String> = l
            .table
            .primary_key
            .iter()
            .filter(|k| l.selected.contains(k))
            .collect();
        ctx.writer.write_schema(&l.id, &schema, &key, &["lsn"])?;
    }
    ctx.writer.flush()?;

    let timeout = format!("{}ms", lc.wal_sender_timeout_ms);
    let gucs = [
        ("DateStyle", "ISO, MDY"),
        ("TimeZone", "UTC"),
        ("IntervalStyle", "postgres"),
        ("extra_float_digits", "3"),
        ("bytea_output", "hex"),
        ("wal_sender_timeout", timeout.as_str()),
    ];
    let mut rc = ReplicationClient::connect(&conn, &gucs).await?;
    let end = if lc.break_at_end_lsn {
        Some(rc.identify_system().await?.xlogpos)
    } else {
        None
    };
    let tables = add_tables.join(",");
    let mut options = vec![
        ("format-version", "2"),
        ("include-transaction", "1"),
        ("include-timestamp", "1"),
        ("include-lsn", "1"),
        ("include-types", "0"),
        ("add-tables", tables.as_str()),
        // Newer wal2json writes numbers as strings with this, NaN and
        // Infinity included; 2.5 (Debian's) does not know it and writes
        // them as null. Asked for, and dropped when refused.
        ("numeric-data-types-as-string", "1"),
    ];
    let mut stream = match rc.start_replication(&slot, start, &options).await {
        Ok(s) => s,
        Err(e) if e.to_string().contains("numeric-data-types-as-string") => {
            tracing::info!(
                "this server's wal2json does not know numeric-data-types-as-string: NaN and Infinity of \
                 float and numeric columns arrive as null in LOG_BASED records"
            );
            options.pop();
            ReplicationClient::connect(&conn, &gucs)
                .await?
                .start_replication(&slot, start, &options)
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    if confirm != Lsn::INVALID {
        stream.confirm(confirm);
    }
    tracing::info!(
        "streaming from slot {slot:?} at {start}{}",
        end.map(|e| format!(" to {e}")).unwrap_or_default()
    );

    let slot_label = format!("slot {slot}");
    let mut progress = Progress::new(&slot_label, "changes", ctx.config.progress_every, None);
    let mut server_end = end.unwrap_or(start);
    let began = Instant::now();
    let mut last_data = Instant::now();
    let mut last_state = Instant::now();
    let mut since_state = 0u64;
    let mut in_txn: Option<Txn> = None;
    let mut replaced = Replaced::default();
    let mut out = Vec::with_capacity(1024);
    let poll = Duration::from_millis(500);
    loop {
        if began.elapsed() >= lc.max_run {
            tracing::info!("max_run_seconds reached; stopping");
            break;
        }
        if in_txn.is_none() && last_data.elapsed() >= lc.idle_timeout {
            tracing::info!("no change for logical_poll_total_seconds; stopping");
            break;
        }
        let event = match tokio::time::timeout(poll, stream.next()).await {
            Err(_) => {
                // Quiet: hand what we have to the target (records and a state
                // covering them), and ask the server where it is, to learn
                // whether we are caught up.
                if in_txn.is_none() {
                    if since_state > 0 {
                        ctx.emit_state()?;
                        since_state = 0;
                        last_state = Instant::now();
                    } else {
                        ctx.writer.flush()?;
                    }
                    stream.send_status(true).await?;
                }
                continue;
            }
            Ok(e) => e?,
        };
        let Some(event) = event else {
            bail!("the server ended the replication stream");
        };
        match event {
            ReplicationEvent::Keepalive { wal_end, .. } => {
                server_end = server_end.max(wal_end);
                if in_txn.is_none() {
                    for l in &live {
                        let b = ctx.state.bookmark_mut(&l.id);
                        if b.lsn().is_none_or(|x| x < wal_end.0) {
                            b.set_lsn(wal_end.0);
                        }
                    }
                    if end.is_some_and(|e| wal_end >= e) {
                        tracing::info!("caught up with the WAL position of the start ({wal_end})");
                        break;
                    }
                }
            }
            ReplicationEvent::XLogData { data, wal_end, .. } => {
                last_data = Instant::now();
                server_end = server_end.max(wal_end);
                let msg: WalMessage = serde_json::from_slice(&data).with_context(|| {
                    format!(
                        "wal2json sent something that is not JSON: {}",
                        String::from_utf8_lossy(&data)
                    )
                })?;
                match msg.action {
                    "B" => {
                        let commit: Lsn = msg.lsn.unwrap_or("0/0").parse()?;
                        if end.is_some_and(|e| commit > e) {
                            tracing::info!("reached the WAL position of the start; stopping before transaction {commit}");
                            break;
                        }
                        let end_lsn: Lsn = msg.nextlsn.unwrap_or("0/0").parse()?;
                        let time = msg.timestamp.unwrap_or_default();
                        let mut ts = Vec::new();
                        let tsenc = Encoder::new(Kind::TimestampTz, ctx.config.values);
                        tsenc
                            .encode(time, &mut ts, &mut replaced)
                            .map_err(|e| anyhow!("commit timestamp: {e}"))?;
                        in_txn = Some(Txn {
                            end: end_lsn,
                            commit_time: String::from_utf8(ts).expect("JSON is UTF-8"),
                            extracted: TimeExtracted::now(),
                        });
                    }
                    "C" => {
                        let Some(txn) = in_txn.take() else { continue };
                        progress.tick(Some(server_end.0.saturating_sub(txn.end.0)));
                        for l in &live {
                            let b = ctx.state.bookmark_mut(&l.id);
                            if b.lsn().is_none_or(|x| x < txn.end.0) {
                                b.set_lsn(txn.end.0);
                            }
                        }
                        if since_state >= ctx.config.state_interval_rows
                            || last_state.elapsed() >= Duration::from_secs(5)
                        {
                            ctx.emit_state()?;
                            since_state = 0;
                            last_state = Instant::now();
                        }
                    }
                    "I" | "U" | "D" | "T" => {
                        let Some(txn) = &in_txn else { continue };
                        let found = by_table
                            .get(msg.schema.as_deref().unwrap_or_default())
                            .and_then(|t| t.get(msg.table.as_deref().unwrap_or_default()));
                        let Some(&i) = found else {
                            continue;
                        };
                        let id = live[i].id.clone();
                        if ctx
                            .state
                            .bookmark(&id)
                            .and_then(|b| b.lsn())
                            .is_some_and(|b| b >= txn.end.0)
                        {
                            continue; // already in the initial copy or a previous run
                        }
                        // A column we do not know: read the table again, announce it.
                        if msg
                            .columns
                            .iter()
                            .any(|c| !live[i].encoders.contains_key(c.name.as_ref()))
                        {
                            refresh(&primary, &mut live[i], ctx).await?;
                        }
                        let written =
                            write_change(ctx, &mut live[i], &msg, txn, &mut out, &mut replaced)
                                .with_context(|| {
                                    format!("stream {id}, LSN {}", msg.lsn.unwrap_or("?"))
                                })?;
                        since_state += written;
                        for _ in 0..written {
                            progress.row();
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    ctx.emit_state()?;
    stream.stop().await?;
    if replaced.json_null > 0 {
        tracing::warn!(
            "{} json values were the JSON literal null; written as null",
            replaced.json_null
        );
    }
    for l in &live {
        Metric::counter("record_count", l.records, &[("stream", &l.id)]).log();
        tracing::info!("stream {}: LOG_BASED done, {} records", l.id, l.records);
    }
    Ok(())
}

struct Txn {
    end: Lsn,
    commit_time: String,
    extracted: TimeExtracted,
}

/// Re-reads the stream's table (a column was added) and writes the new SCHEMA.
async fn refresh<W: Write>(
    client: &Client,
    l: &mut Live,
    ctx: &mut Ctx<'_, W>,
) -> anyhow::Result<()> {
    let filter = Filter {
        schemas: Some(vec![l.table.schema.clone()]),
        tables: Some(vec![format!("{}.{}", l.table.schema, l.table.name)]),
    };
    let Some(table) = discover(client, &filter)
        .await?
        .into_iter()
        .find(|t| t.name == l.table.name)
    else {
        bail!("the table disappeared while streaming");
    };
    for c in &table.columns {
        if l.table.column(&c.name).is_none() {
            tracing::info!("stream {}: new column {:?} ({})", l.id, c.name, c.sql_type);
            l.selected.push(c.name.clone());
        }
    }
    *l = Live::new(
        l.id.clone(),
        table,
        l.selected.clone(),
        l.version,
        &ctx.config.values,
    );
    let key: Vec<&String> = l
        .table
        .primary_key
        .iter()
        .filter(|k| l.selected.contains(k))
        .collect();
    ctx.writer
        .write_schema(&l.id, &l.schema(&ctx.config.values), &key, &["lsn"])?;
    Ok(())
}

/// The text form of a wal2json value (what the type's output function
/// wrote): a string's content, a number's digits as written, `t`/`f`.
fn wal_text<'v>(kind: &Kind, value: &'v RawValue) -> anyhow::Result<Option<Cow<'v, str>>> {
    let raw = value.get();
    Ok(match raw.as_bytes().first() {
        None | Some(b'n') => None,
        Some(b't') => Some(Cow::Borrowed("t")),
        Some(b'f') => Some(Cow::Borrowed("f")),
        Some(b'"') => {
            let s: Cow<'v, str> = serde_json::from_str(raw)?;
            if *kind == Kind::Bytea && !s.starts_with("\\x") {
                Some(Cow::Owned(format!("\\x{s}")))
            } else {
                Some(s)
            }
        }
        // A number, kept as wal2json wrote it.
        Some(_) => Some(Cow::Borrowed(raw)),
    })
}

fn encode_columns<'c, I>(
    l: &Live,
    columns: I,
    out: &mut Vec<u8>,
    replaced: &mut Replaced,
) -> anyhow::Result<()>
where
    I: IntoIterator<Item = &'c WalColumn<'c>>,
{
    for c in columns {
        let Some((encoder, true)) = l.encoders.get(c.name.as_ref()) else {
            continue;
        };
        if out.len() > 1 {
            out.push(b',');
        }
        write_str(out, &c.name);
        out.push(b':');
        match wal_text(encoder.kind(), c.value)? {
            None => out.extend_from_slice(b"null"),
            Some(text) => encoder
                .encode(&text, out, replaced)
                .map_err(|e| anyhow!("column {:?}: {e}", c.name))?,
        }
    }
    Ok(())
}

fn finish_record(out: &mut Vec<u8>, lsn: Lsn, deleted_at: Option<&str>) {
    if out.len() > 1 {
        out.push(b',');
    }
    out.extend_from_slice(b"\"_sdc_lsn\":");
    out.extend_from_slice(lsn.0.to_string().as_bytes());
    out.extend_from_slice(b",\"_sdc_deleted_at\":");
    out.extend_from_slice(deleted_at.unwrap_or("null").as_bytes());
    out.push(b'}');
}

/// Writes the record(s) of one change; returns how many.
fn write_change<'a, W: Write>(
    ctx: &mut Ctx<'_, W>,
    l: &mut Live,
    msg: &'a WalMessage<'a>,
    txn: &Txn,
    out: &mut Vec<u8>,
    replaced: &mut Replaced,
) -> anyhow::Result<u64> {
    let mut n = 0;
    let mut emit = |ctx: &mut Ctx<'_, W>, l: &mut Live, out: &[u8]| -> anyhow::Result<()> {
        if l.needs_wider_schema() {
            let key: Vec<&String> = l
                .table
                .primary_key
                .iter()
                .filter(|k| l.selected.contains(k))
                .collect();
            let schema = l.schema(&ctx.config.values);
            ctx.writer.write_schema(&l.id, &schema, &key, &["lsn"])?;
        }
        ctx.writer
            .write_record_raw(&l.id, out, Some(l.version), Some(&txn.extracted))?;
        l.records += 1;
        n += 1;
        Ok(())
    };
    match msg.action {
        "T" => {
            l.version = now_version();
            ctx.state.bookmark_mut(&l.id).set_version(l.version);
            ctx.writer.write_activate_version(&l.id, l.version)?;
            tracing::info!(
                "stream {}: TRUNCATE at {}: new version {} activated",
                l.id,
                txn.end,
                l.version
            );
        }
        "D" => {
            out.clear();
            out.push(b'{');
            encode_columns(l, &msg.identity, out, replaced)?;
            finish_record(out, txn.end, Some(&txn.commit_time));
            emit(ctx, l, out)?;
        }
        "I" | "U" => {
            // A changed key: delete the old key first.
            if msg.action == "U" && !msg.identity.is_empty() && !l.table.primary_key.is_empty() {
                let value = |cols: &'a [WalColumn<'a>], k: &str| {
                    cols.iter().find(|c| c.name == k).map(|c| c.value.get())
                };
                let changed = l.table.primary_key.iter().any(|k| {
                    let (old, new) = (value(&msg.identity, k), value(&msg.columns, k));
                    old.is_some() && new.is_some() && old != new
                });
                if changed {
                    out.clear();
                    out.push(b'{');
                    let keys = msg
                        .identity
                        .iter()
                        .filter(|c| l.table.primary_key.iter().any(|k| c.name == k.as_str()));
                    encode_columns(l, keys, out, replaced)?;
                    finish_record(out, txn.end, Some(&txn.commit_time));
                    emit(ctx, l, out)?;
                }
            }
            out.clear();
            out.push(b'{');
            encode_columns(l, &msg.columns, out, replaced)?;
            finish_record(out, txn.end, None);
            emit(ctx, l, out)?;
        }
        _ => {}
    }
    Ok(n)
}

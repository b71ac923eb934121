//! The [`Streamer`]: turns replication events into Singer messages and
//! moves the bookmarks. It never awaits: what needs the database (a table
//! read again, a row read for a key change) is asked for with a [`Step`],
//! and the caller feeds the same event again once it has it. So the whole
//! decision logic is driven by scripted events in the unit tests below.
//!
//! # What is bookmarked
//! Every stream of the slot carries the same `lsn` bookmark position once
//! streaming runs (a stream whose bookmark is ahead skips what it already
//! has):
//! - At a transaction's COMMIT: its end (wal2json's `nextlsn`): all its
//!   records have been written.
//! - At a keepalive while **no** transaction is open: the server's sent
//!   position. Every transaction committed before it has been delivered
//!   whole; one still open then commits after it, so a run started there
//!   receives it (the slot keeps the WAL of transactions in progress at its
//!   confirmed position: `restart_lsn` stays before their start). Without
//!   this, WAL of unrelated tables and databases would pin the slot.
//! - **Never** inside a transaction (between BEGIN and COMMIT): wal2json
//!   sends a transaction at its commit, so the sent position is then
//!   already past that commit, and a run started there would skip the rest
//!   of the transaction.
//!
//! # What is skipped
//! A change of a transaction whose end is at or before the stream's
//! bookmark: it is in the initial copy, or a previous run delivered it.
//!
//! # Rows
//! - Insert: the new row.
//! - Update: the new row; columns wal2json left out (unchanged TOASTed
//!   values) are taken from the old row when wal2json sent it (REPLICA
//!   IDENTITY FULL), else left absent (a keyed target keeps its value).
//! - Update that changes the primary key: a delete of the old key, then the
//!   new row **with every column**: absent ones from the old row image, or
//!   else read from the table under the new key ([`Step::Fill`]). Why that
//!   is exact: any write to those columns after this transaction is itself
//!   later in the stream and is applied after this record, so the target
//!   ends where the source is; if the row is gone or re-keyed by then, a
//!   later delete or key change in the stream removes it (and a row not
//!   found leaves the columns absent, to be deleted later). In between, a
//!   target may briefly hold a value newer than the stream position.
//! - Update of a key-less table (REPLICA IDENTITY FULL): a delete carrying
//!   the whole old row, then the new row. A target that deletes one row
//!   equal to a delete's columns (ours does) stays equal to the source,
//!   duplicate rows included.
//! - Delete: the old key (or whole old row) with `_sdc_deleted_at` = the
//!   commit time.
//! - Truncate: a new table version, announced with ACTIVATE_VERSION.

use std::collections::HashMap;

use foldhash::fast::RandomState as Fast;
use std::io::Write;
use std::time::{Duration, Instant};

use pg::walsender::Lsn;
use singer::TimeExtracted;

use super::change::{wal_text, Live, RecordBuf};
use super::message::{Action, Change};
use crate::encode::Encoder;
use crate::error::{err, Context as _, Error, Result};
use crate::output::Output;
use crate::phase::{self, Phase};
use crate::progress::Progress;
use crate::types::Kind;

/// One event of the replication stream.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// One wal2json message, and the server's WAL end when it was sent.
    Data {
        /// The message.
        data: &'a [u8],
        /// The server's WAL end.
        wal_end: Lsn,
    },
    /// A keepalive: the server's sent position.
    Keepalive {
        /// The position.
        wal_end: Lsn,
    },
}

/// What the caller does next.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Next event.
    Continue,
    /// Stop streaming (the end position is reached).
    Stop,
    /// Read stream `stream`'s table again ([`Streamer::set_table`]), once
    /// transaction `xid` is visible, then feed the same event again.
    Refresh {
        /// The stream.
        stream: usize,
        /// The transaction whose change needs the table as it is now.
        xid: Option<u32>,
    },
    /// Read a row ([`Streamer::set_fill`]), then feed the same event again.
    Fill(FillRequest),
}

/// A row to read for a key change whose new row lacks columns.
#[derive(Debug, PartialEq)]
pub struct FillRequest {
    /// The stream.
    pub stream: usize,
    /// The transaction of the key change: the row must be read in a
    /// snapshot that sees it (wal2json may deliver a transaction a moment
    /// before it is visible to other sessions).
    pub xid: Option<u32>,
    /// The new key: column and text value.
    pub key: Vec<(String, String)>,
    /// The columns to read.
    pub columns: Vec<String>,
}

/// A row read from the table: text values (`None`: NULL).
pub type Row = Vec<Option<String>>;

struct Txn {
    end: Lsn,
    xid: Option<u32>,
    /// The commit time, as JSON.
    commit_time: String,
    extracted: TimeExtracted,
}

/// The streaming state machine of one slot's streams.
pub struct Streamer {
    live: Vec<Live>,
    /// Per stream, everything up to here is delivered (its bookmark).
    positions: Vec<Lsn>,
    by_table: HashMap<String, HashMap<String, usize, Fast>, Fast>,
    end: Option<Lsn>,
    txn: Option<Txn>,
    buf: RecordBuf,
    since_state: u64,
    last_state: Instant,
    state_every: Duration,
    server_end: Lsn,
    /// The row read for the pending key change: `None` inside when the
    /// table has no row under the new key.
    fill: Option<Option<Row>>,
    refreshed: bool,
    progress: Progress,
}

impl Streamer {
    /// A streamer of `live` (their SCHEMAs already written) bookmarked at
    /// `positions`, whose changes arrive under the `(schema, table)` names
    /// of `tables` (a partitioned table's leaves under its own stream),
    /// stopping at `end`.
    pub fn new(
        live: Vec<Live>,
        positions: Vec<Lsn>,
        tables: Vec<(String, String, usize)>,
        end: Option<Lsn>,
        progress: Progress,
    ) -> Streamer {
        let mut by_table: HashMap<String, HashMap<String, usize, Fast>, Fast> = HashMap::default();
        for (schema, name, i) in tables {
            by_table.entry(schema).or_default().insert(name, i);
        }
        Streamer {
            live,
            positions,
            by_table,
            end,
            txn: None,
            buf: RecordBuf::new(),
            since_state: 0,
            last_state: Instant::now(),
            state_every: Duration::from_secs(5),
            server_end: end.unwrap_or_default(),
            fill: None,
            refreshed: false,
            progress,
        }
    }

    /// Whether a transaction is open (BEGIN seen, COMMIT not yet).
    pub fn in_transaction(&self) -> bool {
        self.txn.is_some()
    }

    /// The streams.
    pub fn live(&self) -> &[Live] {
        &self.live
    }

    /// Replaces stream `i`'s table after [`Step::Refresh`].
    pub fn set_table(&mut self, i: usize, live: Live) {
        self.live[i] = live;
        self.refreshed = true;
    }

    /// Gives the row asked for by [`Step::Fill`] (`None`: no such row),
    /// values as text in the order of the request's columns.
    pub fn set_fill(&mut self, row: Option<Row>) {
        self.fill = Some(row);
    }

    /// Handles one event.
    pub fn on_event<W: Write>(
        &mut self,
        ctx: &mut Output<'_, W>,
        event: Event<'_>,
    ) -> Result<Step> {
        match event {
            Event::Keepalive { wal_end } => Ok(self.on_keepalive(ctx, wal_end)),
            Event::Data { data, wal_end } => {
                self.server_end = self.server_end.max(wal_end);
                let action = Action::parse(data).map_err(Error::source_data)?;
                self.on_action(ctx, action)
            }
        }
    }

    fn on_keepalive<W: Write>(&mut self, ctx: &mut Output<'_, W>, wal_end: Lsn) -> Step {
        self.server_end = self.server_end.max(wal_end);
        if self.txn.is_some() {
            return Step::Continue;
        }
        self.bookmark(ctx, wal_end);
        if self.end.is_some_and(|e| wal_end >= e) {
            tracing::info!("caught up with the WAL position of the start ({wal_end})");
            return Step::Stop;
        }
        Step::Continue
    }

    /// Moves every stream's bookmark up to `lsn` (never back).
    fn bookmark<W: Write>(&mut self, ctx: &mut Output<'_, W>, lsn: Lsn) {
        for (l, at) in self.live.iter().zip(&mut self.positions) {
            if *at < lsn {
                *at = lsn;
                ctx.set_phase(&l.id, &Phase::Streaming { lsn });
            }
        }
    }

    fn on_action<W: Write>(&mut self, ctx: &mut Output<'_, W>, action: Action<'_>) -> Result<Step> {
        match action {
            Action::Begin {
                commit,
                end,
                timestamp,
                xid,
            } => {
                if self.end.is_some_and(|e| commit > e) {
                    tracing::info!("reached the WAL position of the start; stopping before transaction {commit}");
                    return Ok(Step::Stop);
                }
                let mut ts = Vec::new();
                Encoder::new(Kind::TimestampTz, *ctx.values())
                    .encode(timestamp, &mut ts, &mut self.buf.replaced)
                    .map_err(|e| {
                        err!("commit timestamp of the transaction ending at {end}: {e}")
                    })?;
                self.txn = Some(Txn {
                    end,
                    xid,
                    commit_time: String::from_utf8(ts).expect("JSON is UTF-8"),
                    extracted: TimeExtracted::now(),
                });
                Ok(Step::Continue)
            }
            Action::Commit => {
                if let Some(txn) = self.txn.take() {
                    self.on_commit(ctx, txn.end)?;
                }
                Ok(Step::Continue)
            }
            Action::Insert(c) | Action::Update(c) | Action::Delete(c) | Action::Truncate(c)
                if self.txn.is_none() =>
            {
                tracing::debug!(
                    "a change of {}.{} outside a transaction: ignored",
                    c.schema,
                    c.table
                );
                Ok(Step::Continue)
            }
            Action::Insert(c) => self.on_change(ctx, Kind_::Insert, &c),
            Action::Update(c) => self.on_change(ctx, Kind_::Update, &c),
            Action::Delete(c) => self.on_change(ctx, Kind_::Delete, &c),
            Action::Truncate(c) => self.on_change(ctx, Kind_::Truncate, &c),
            Action::Other => Ok(Step::Continue),
        }
    }

    fn on_commit<W: Write>(&mut self, ctx: &mut Output<'_, W>, end: Lsn) -> Result<()> {
        self.progress
            .tick(Some(self.server_end.0.saturating_sub(end.0)));
        self.bookmark(ctx, end);
        if self.since_state >= ctx.config().state_interval_rows
            || self.last_state.elapsed() >= self.state_every
        {
            self.emit_state(ctx)?;
        }
        Ok(())
    }

    fn emit_state<W: Write>(&mut self, ctx: &mut Output<'_, W>) -> Result<()> {
        ctx.emit_state()?;
        self.since_state = 0;
        self.last_state = Instant::now();
        Ok(())
    }

    /// The stream is quiet: hands what there is to the target (the records
    /// and, between transactions, a state covering them).
    pub fn on_quiet<W: Write>(&mut self, ctx: &mut Output<'_, W>) -> Result<()> {
        if self.txn.is_none() && self.since_state > 0 {
            self.emit_state(ctx)
        } else {
            ctx.flush()?;
            Ok(())
        }
    }

    fn on_change<W: Write>(
        &mut self,
        ctx: &mut Output<'_, W>,
        kind: Kind_,
        c: &Change<'_>,
    ) -> Result<Step> {
        let step = self.apply_change(ctx, kind, c)?;
        if step == Step::Continue {
            // This change is done: what was read for it is spent.
            self.refreshed = false;
            self.fill = None;
        }
        Ok(step)
    }

    fn apply_change<W: Write>(
        &mut self,
        ctx: &mut Output<'_, W>,
        kind: Kind_,
        c: &Change<'_>,
    ) -> Result<Step> {
        let txn = self.txn.as_ref().expect("checked by the caller");
        let found = self
            .by_table
            .get(c.schema.as_ref())
            .and_then(|t| t.get(c.table.as_ref()));
        let Some(&i) = found else {
            return Ok(Step::Continue);
        };
        let l = &self.live[i];
        if self.positions[i] >= txn.end {
            return Ok(Step::Continue); // in the initial copy or a previous run
        }
        if !self.refreshed && c.columns.iter().any(|col| !l.knows(&col.name)) {
            return Ok(Step::Refresh {
                stream: i,
                xid: txn.xid,
            });
        }
        let end = txn.end;
        self.write_change(ctx, i, kind, c)
            .with_context(|| format!("stream {}, transaction ending at {end}", self.live[i].id))
    }

    fn write_change<W: Write>(
        &mut self,
        ctx: &mut Output<'_, W>,
        i: usize,
        kind: Kind_,
        c: &Change<'_>,
    ) -> Result<Step> {
        let l = &self.live[i];
        let keyed = !l.table.primary_key.is_empty();
        match kind {
            Kind_::Truncate => {
                self.truncate(ctx, i)?;
                return Ok(Step::Continue);
            }
            Kind_::Delete => self.write_delete(ctx, i, c, !keyed)?,
            Kind_::Insert => self.write_row(ctx, i, c, None)?,
            Kind_::Update if keyed && key_changed(l, c) => {
                let absent: Vec<String> = l
                    .absent(&c.columns)
                    .into_iter()
                    .filter(|a| !c.identity.iter().any(|o| o.name == *a))
                    .map(str::to_string)
                    .collect();
                let filled = match (&self.fill, absent.is_empty()) {
                    (_, true) => None,
                    (None, false) => return Ok(Step::Fill(self.fill_request(i, c, absent)?)),
                    (Some(row), false) => Some((absent, row.clone())),
                };
                self.write_delete(ctx, i, c, false)?;
                self.write_row(ctx, i, c, filled)?;
            }
            Kind_::Update if !keyed && !c.identity.is_empty() => {
                self.write_delete(ctx, i, c, true)?;
                self.write_row(ctx, i, c, None)?;
            }
            Kind_::Update => self.write_row(ctx, i, c, None)?,
        }
        Ok(Step::Continue)
    }

    fn fill_request(&self, i: usize, c: &Change<'_>, columns: Vec<String>) -> Result<FillRequest> {
        let l = &self.live[i];
        let mut key = Vec::new();
        for k in &l.table.primary_key {
            let col = c
                .columns
                .iter()
                .find(|x| x.name == k.as_str())
                .ok_or_else(|| err!("the new row has no key column {k:?}"))?;
            let kind = &l.table.column(k).expect("key columns exist").kind;
            let text = wal_text(kind, col.value)
                .map_err(Error::source_data)?
                .ok_or_else(|| err!("key column {k:?} is null"))?;
            key.push((k.clone(), text.into_owned()));
        }
        Ok(FillRequest {
            stream: i,
            xid: self.txn.as_ref().and_then(|t| t.xid),
            key,
            columns,
        })
    }

    fn truncate<W: Write>(&mut self, ctx: &mut Output<'_, W>, i: usize) -> Result<()> {
        let end = self.txn.as_ref().expect("in a transaction").end;
        let l = &mut self.live[i];
        l.version = phase::new_version().max(l.version + 1);
        phase::set_version(ctx.bookmark_mut(&l.id), l.version);
        ctx.write_activate_version(&l.id, l.version)?;
        tracing::info!(
            "stream {}: TRUNCATE at {end}: new version {} activated",
            l.id,
            l.version
        );
        Ok(())
    }

    /// A delete record: the old key (`whole_row`: every old column).
    fn write_delete<W: Write>(
        &mut self,
        ctx: &mut Output<'_, W>,
        i: usize,
        c: &Change<'_>,
        whole_row: bool,
    ) -> Result<()> {
        let txn = self.txn.as_ref().expect("in a transaction");
        let l = &self.live[i];
        self.buf.start();
        if whole_row {
            self.buf
                .columns(l, &c.identity)
                .map_err(Error::source_data)?;
        } else {
            let keys = c
                .identity
                .iter()
                .filter(|o| l.table.primary_key.iter().any(|k| o.name == k.as_str()));
            self.buf.columns(l, keys).map_err(Error::source_data)?;
        }
        let body = self.buf.finish(txn.end, Some(&txn.commit_time));
        write_body(ctx, l, body, &txn.extracted)?;
        self.counted(i);
        Ok(())
    }

    /// The new row: its columns, then the absent ones from the old row
    /// image, then those of `filled` (names and text values; a row not
    /// found leaves them absent).
    fn write_row<W: Write>(
        &mut self,
        ctx: &mut Output<'_, W>,
        i: usize,
        c: &Change<'_>,
        filled: Option<(Vec<String>, Option<Row>)>,
    ) -> Result<()> {
        let txn = self.txn.as_ref().expect("in a transaction");
        let l = &self.live[i];
        self.buf.start();
        self.buf
            .columns(l, &c.columns)
            .map_err(Error::source_data)?;
        if !c.identity.is_empty() {
            let absent = c
                .identity
                .iter()
                .filter(|o| !c.columns.iter().any(|n| n.name == o.name));
            self.buf.columns(l, absent).map_err(Error::source_data)?;
        }
        if let Some((names, Some(values))) = &filled {
            for (name, value) in names.iter().zip(values) {
                self.buf
                    .text(l, name, value.as_deref())
                    .map_err(Error::source_data)?;
            }
        }
        let body = self.buf.finish(txn.end, None);
        write_body(ctx, l, body, &txn.extracted)?;
        self.counted(i);
        Ok(())
    }

    fn counted(&mut self, i: usize) {
        self.live[i].records += 1;
        self.since_state += 1;
        self.progress.row();
    }

    /// Ends streaming: the last state, and the counts.
    pub fn finish<W: Write>(mut self, ctx: &mut Output<'_, W>) -> Result<()> {
        self.emit_state(ctx)?;
        if self.buf.replaced.json_null > 0 {
            tracing::warn!(
                "{} json values were the JSON literal null; written as null",
                self.buf.replaced.json_null
            );
        }
        for l in &self.live {
            singer::Metric::counter("record_count", l.records, &[("stream", &l.id)]).log();
            tracing::info!("stream {}: LOG_BASED done, {} records", l.id, l.records);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind_ {
    Insert,
    Update,
    Delete,
    Truncate,
}

/// Whether an update's old key differs from its new key.
/// Writes one record body, preceded by a widened SCHEMA when one of its
/// values needed more than the stream's last SCHEMA said (`values::Widen`).
fn write_body<W: Write>(
    ctx: &mut Output<'_, W>,
    l: &Live,
    body: &[u8],
    extracted: &TimeExtracted,
) -> Result<()> {
    if l.needs_wider_schema() {
        let schema = l.schema(ctx.values());
        ctx.write_stream_schema(&l.id, &schema, &l.key_properties(), &["lsn"])?;
    }
    ctx.write_record_raw(&l.id, body, Some(l.version), Some(extracted))?;
    Ok(())
}

fn key_changed(l: &Live, c: &Change<'_>) -> bool {
    if c.identity.is_empty() {
        return false;
    }
    fn value<'v>(cols: &'v [super::message::WalColumn<'_>], k: &str) -> Option<&'v str> {
        cols.iter().find(|x| x.name == k).map(|x| x.value)
    }
    l.table.primary_key.iter().any(|k| {
        let (old, new) = (value(&c.identity, k), value(&c.columns, k));
        old.is_some() && new.is_some() && old != new
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use singer::{MessageWriter, State};

    use super::*;
    use crate::config::TapConfig;
    use crate::discovery::{Column, RelKind, Table};

    fn column(name: &str, kind: Kind, sql: &str) -> Column {
        Column {
            name: name.into(),
            sql_type: sql.into(),
            sql_type_name: sql.into(),
            create_type: sql.into(),
            kind,
            not_null: false,
        }
    }

    fn table(name: &str, key: &[&str]) -> Table {
        Table {
            oid: 1,
            schema: "public".into(),
            name: name.into(),
            relkind: RelKind::Table,
            row_count: 0,
            columns: vec![
                column(
                    "id",
                    Kind::Int {
                        min: i32::MIN.into(),
                        max: i32::MAX.into(),
                    },
                    "integer",
                ),
                column("big", Kind::Text { max_length: None }, "text"),
            ],
            primary_key: key.iter().map(|k| k.to_string()).collect(),
            resume_key: key.iter().map(|k| k.to_string()).collect(),
            replica_identity: if key.is_empty() { 'f' } else { 'd' },
        }
    }

    struct Script {
        config: TapConfig,
        streamer: Streamer,
        state: State,
        out: MessageWriter<Vec<u8>>,
    }

    impl Script {
        /// A streamer of table `t` (keyed by id when `keyed`), bookmarked at `lsn`.
        fn new(keyed: bool, lsn: u64, end: Option<u64>) -> Script {
            let config = TapConfig::from_json(
                json!({"host": "h", "user": "u", "dbname": "d", "state_interval_rows": 1})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
            let key: &[&str] = if keyed { &["id"] } else { &[] };
            let live = Live::new(
                "public-t".into(),
                table("t", key),
                vec!["id".into(), "big".into()],
                1,
                &config.values,
            );
            let mut state = State::new();
            Phase::Streaming { lsn: Lsn(lsn) }.write(state.bookmark_mut("public-t"));
            let progress = Progress::new("slot s", "changes", Duration::ZERO, None);
            let streamer = Streamer::new(
                vec![live],
                vec![Lsn(lsn)],
                vec![("public".into(), "t".into(), 0)],
                end.map(Lsn),
                progress,
            );
            Script {
                config,
                streamer,
                state,
                out: MessageWriter::new(Vec::new()),
            }
        }

        fn send(&mut self, event: Event<'_>) -> Step {
            let mut ctx = Output::new(&self.config, &mut self.out, std::mem::take(&mut self.state));
            let step = self.streamer.on_event(&mut ctx, event).unwrap();
            self.state = ctx.into_state();
            step
        }

        fn data(&mut self, message: Value) -> Step {
            let text = message.to_string();
            self.send(Event::Data {
                data: text.as_bytes(),
                wal_end: Lsn(1000),
            })
        }

        fn txn(&mut self, end: u64, changes: &[Value]) -> Vec<Step> {
            let mut steps = vec![self.data(begin(end))];
            steps.extend(changes.iter().map(|c| self.data(c.clone())));
            steps.push(self.data(json!({"action": "C"})));
            steps
        }

        fn lsn(&self) -> u64 {
            let b = self.state.bookmark("public-t");
            Phase::read(b, singer::catalog::ReplicationMethod::LogBased)
                .lsn()
                .unwrap()
                .0
        }

        /// The messages written so far, `_sdc_deleted_at` times replaced.
        fn messages(&mut self) -> Vec<Value> {
            self.out.flush().unwrap();
            let text = String::from_utf8(self.out.get_ref().clone()).unwrap();
            text.lines()
                .map(|l| {
                    let mut m: Value = serde_json::from_str(l).unwrap();
                    if let Some(r) = m.get_mut("record") {
                        if !r["_sdc_deleted_at"].is_null() {
                            r["_sdc_deleted_at"] = json!("<t>");
                        }
                        m.as_object_mut().unwrap().remove("time_extracted");
                    }
                    m
                })
                .collect()
        }

        fn records(&mut self) -> Vec<Value> {
            self.messages()
                .into_iter()
                .filter(|m| m["type"] == "RECORD")
                .map(|m| m["record"].clone())
                .collect()
        }
    }

    fn lsn_text(n: u64) -> String {
        Lsn(n).to_string()
    }

    fn begin(end: u64) -> Value {
        json!({"action": "B", "xid": 7, "lsn": lsn_text(end - 8), "nextlsn": lsn_text(end),
               "timestamp": "2024-01-01 00:00:00+00"})
    }

    fn change(action: &str, columns: Value, identity: Value) -> Value {
        json!({"action": action, "schema": "public", "table": "t",
               "columns": columns, "identity": identity})
    }

    fn cols(id: i64, big: Option<&str>) -> Value {
        let mut c = vec![json!({"name": "id", "value": id})];
        if let Some(b) = big {
            c.push(json!({"name": "big", "value": b}));
        }
        Value::Array(c)
    }

    #[test]
    fn a_transaction_gives_its_records_and_the_bookmark_moves_at_its_commit() {
        let mut s = Script::new(true, 100, None);
        s.data(begin(200));
        s.data(change("I", cols(1, Some("a")), json!([])));
        assert_eq!(s.lsn(), 100, "nothing moves inside the transaction");
        s.data(json!({"action": "C"}));
        assert_eq!(s.lsn(), 200);
        let m = s.messages();
        assert_eq!(
            m[0]["record"],
            json!({"id": 1, "big": "a", "_sdc_lsn": 200, "_sdc_deleted_at": null})
        );
        assert_eq!(m[0]["version"], 1);
        assert_eq!(m[1]["type"], "STATE");
        assert_eq!(m[1]["value"]["bookmarks"]["public-t"]["lsn"], 200);
    }

    #[test]
    fn a_keepalive_moves_the_bookmark_only_between_transactions() {
        let mut s = Script::new(true, 100, None);
        assert_eq!(
            s.send(Event::Keepalive { wal_end: Lsn(150) }),
            Step::Continue
        );
        assert_eq!(s.lsn(), 150, "idle: the sent position");
        s.data(begin(300));
        s.send(Event::Keepalive { wal_end: Lsn(400) });
        assert_eq!(s.lsn(), 150, "inside a transaction: nothing moves");
        s.data(json!({"action": "C"}));
        assert_eq!(s.lsn(), 300);
        s.send(Event::Keepalive { wal_end: Lsn(90) });
        assert_eq!(s.lsn(), 300, "never backwards");
    }

    #[test]
    fn changes_at_or_before_the_bookmark_are_skipped() {
        let mut s = Script::new(true, 200, None);
        s.txn(200, &[change("I", cols(1, Some("a")), json!([]))]);
        s.txn(150, &[change("I", cols(2, Some("b")), json!([]))]);
        s.txn(201, &[change("I", cols(3, Some("c")), json!([]))]);
        let ids: Vec<Value> = s.records().iter().map(|r| r["id"].clone()).collect();
        assert_eq!(ids, [json!(3)]);
    }

    #[test]
    fn other_tables_and_messages_are_ignored() {
        let mut s = Script::new(true, 100, None);
        let other =
            json!({"action": "I", "schema": "public", "table": "u", "columns": cols(1, None)});
        s.txn(200, &[other, json!({"action": "M", "content": "x"})]);
        assert!(s.records().is_empty());
        assert_eq!(s.lsn(), 200);
    }

    #[test]
    fn an_update_and_a_delete() {
        let mut s = Script::new(true, 100, None);
        s.txn(
            200,
            &[
                change("U", cols(1, None), json!([])),
                change("D", json!([]), cols(1, None)),
            ],
        );
        assert_eq!(
            s.records(),
            [
                json!({"id": 1, "_sdc_lsn": 200, "_sdc_deleted_at": null}),
                json!({"id": 1, "_sdc_lsn": 200, "_sdc_deleted_at": "<t>"}),
            ],
            "an unchanged TOASTed column is absent, never null"
        );
    }

    #[test]
    fn a_key_change_is_a_delete_and_the_whole_new_row() {
        let mut s = Script::new(true, 100, None);
        // The old row image has every column (REPLICA IDENTITY FULL).
        s.txn(
            200,
            &[change("U", cols(10, None), cols(1, Some("old big")))],
        );
        assert_eq!(
            s.records(),
            [
                json!({"id": 1, "_sdc_lsn": 200, "_sdc_deleted_at": "<t>"}),
                json!({"id": 10, "big": "old big", "_sdc_lsn": 200, "_sdc_deleted_at": null}),
            ]
        );
    }

    #[test]
    fn a_key_change_without_the_old_value_asks_for_the_row() {
        let mut s = Script::new(true, 100, None);
        s.data(begin(200));
        let update = change("U", cols(10, None), cols(1, None));
        let step = s.data(update.clone());
        assert_eq!(
            step,
            Step::Fill(FillRequest {
                stream: 0,
                xid: Some(7),
                key: vec![("id".into(), "10".into())],
                columns: vec!["big".into()],
            })
        );
        assert!(
            s.records().is_empty(),
            "nothing written before the row is read"
        );
        s.streamer.set_fill(Some(vec![Some("read".into())]));
        assert_eq!(s.data(update.clone()), Step::Continue);
        s.data(json!({"action": "C"}));
        assert_eq!(
            s.records(),
            [
                json!({"id": 1, "_sdc_lsn": 200, "_sdc_deleted_at": "<t>"}),
                json!({"id": 10, "big": "read", "_sdc_lsn": 200, "_sdc_deleted_at": null}),
            ]
        );
        // The read row is spent: the next key change asks again; a row
        // gone since leaves the column absent.
        s.data(begin(300));
        assert!(matches!(
            s.data(change("U", cols(20, None), cols(10, None))),
            Step::Fill(_)
        ));
        s.streamer.set_fill(None);
        s.data(change("U", cols(20, None), cols(10, None)));
        assert_eq!(
            s.records()[3],
            json!({"id": 20, "_sdc_lsn": 300, "_sdc_deleted_at": null})
        );
    }

    #[test]
    fn a_keyless_update_is_a_delete_of_the_old_row_and_the_new_row() {
        let mut s = Script::new(false, 100, None);
        s.txn(
            200,
            &[
                change("U", cols(1, Some("new")), cols(1, Some("old"))),
                change("D", json!([]), cols(1, Some("new"))),
            ],
        );
        assert_eq!(
            s.records(),
            [
                json!({"id": 1, "big": "old", "_sdc_lsn": 200, "_sdc_deleted_at": "<t>"}),
                json!({"id": 1, "big": "new", "_sdc_lsn": 200, "_sdc_deleted_at": null}),
                json!({"id": 1, "big": "new", "_sdc_lsn": 200, "_sdc_deleted_at": "<t>"}),
            ]
        );
    }

    #[test]
    fn a_truncate_activates_a_new_version() {
        let mut s = Script::new(true, 100, None);
        s.txn(
            200,
            &[
                json!({"action": "T", "schema": "public", "table": "t"}),
                change("I", cols(5, Some("x")), json!([])),
            ],
        );
        let m = s.messages();
        assert_eq!(m[0]["type"], "ACTIVATE_VERSION");
        let v = m[0]["version"].as_i64().unwrap();
        assert!(v > 1);
        assert_eq!(m[1]["version"], v);
        assert_eq!(phase::version(s.state.bookmark("public-t")), Some(v));
    }

    #[test]
    fn an_unknown_column_asks_for_the_table_first() {
        let mut s = Script::new(true, 100, None);
        s.data(begin(200));
        let insert = change(
            "I",
            json!([{"name": "id", "value": 1}, {"name": "new", "value": 2}]),
            json!([]),
        );
        assert_eq!(
            s.data(insert.clone()),
            Step::Refresh {
                stream: 0,
                xid: Some(7)
            }
        );
        let mut t = table("t", &["id"]);
        t.columns
            .push(column("new", Kind::Int { min: 0, max: 9 }, "integer"));
        let sel = vec!["id".into(), "big".into(), "new".into()];
        let live = Live::new("public-t".into(), t, sel, 1, &s.config.values);
        s.streamer.set_table(0, live);
        assert_eq!(s.data(insert), Step::Continue);
        s.data(json!({"action": "C"}));
        assert_eq!(
            s.records(),
            [json!({"id": 1, "new": 2, "_sdc_lsn": 200, "_sdc_deleted_at": null})]
        );
    }

    #[test]
    fn streaming_stops_at_the_end_position() {
        let mut s = Script::new(true, 100, Some(250));
        assert_eq!(s.txn(200, &[]), [Step::Continue, Step::Continue]);
        // A transaction committing past the end is left for the next run.
        assert_eq!(s.data(begin(400)), Step::Stop);
        assert_eq!(s.lsn(), 200);
        let mut s = Script::new(true, 100, Some(250));
        assert_eq!(s.send(Event::Keepalive { wal_end: Lsn(260) }), Step::Stop);
    }
}

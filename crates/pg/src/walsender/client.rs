//! [`ReplicationClient`]: an idle replication connection that runs
//! replication commands (`IDENTIFY_SYSTEM`, `CREATE_REPLICATION_SLOT`, `SHOW`)
//! and plain SQL over the simple query protocol, until
//! [`ReplicationClient::start_replication`] turns it into a
//! [`ReplicationStream`].
//!
//! Owns the text of every replication command; the names and values in them
//! are quoted by [`crate::ident`] (these commands cannot take parameters).

use std::time::Duration;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::stream::ReplicationStream;
use super::wire::{self, Backend, Conn, ServerMessage};
use super::Lsn;
use crate::config::ConnectionConfig;
use crate::ident::{quote_ident, quote_literal, try_quote_ident};
use crate::{Error, ErrorKind};

/// What `IDENTIFY_SYSTEM` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// The cluster's system identifier (as text: it is a `u64` the server
    /// prints in decimal).
    pub systemid: String,
    /// The current timeline.
    pub timeline: u32,
    /// The current WAL flush position: the end of what logical decoding can
    /// deliver right now.
    pub xlogpos: Lsn,
    /// The database of the connection.
    pub dbname: Option<String>,
}

/// A slot made by [`ReplicationClient::create_logical_slot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSlot {
    /// The slot's name.
    pub name: String,
    /// The LSN from which the slot delivers changes: every transaction that
    /// commits after it is streamed, every one before is in the snapshot.
    pub consistent_point: Lsn,
    /// The exported snapshot (with [`SlotSnapshot::Export`]), to import
    /// with `SET TRANSACTION SNAPSHOT` — valid only until the next command on
    /// the client that created the slot.
    pub snapshot_name: Option<String>,
    /// The output plugin.
    pub output_plugin: String,
}

/// Whether `CREATE_REPLICATION_SLOT` exports its snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotSnapshot {
    /// Export it (`EXPORT_SNAPSHOT`): another connection can read the data
    /// exactly as of the slot's consistent point.
    Export,
    /// Do not (`NOEXPORT_SNAPSHOT`).
    NoExport,
}

/// An idle replication connection (`replication=database`). Not `Clone`:
/// one connection, one owner. See the [module documentation](super) for the
/// contract.
pub struct ReplicationClient {
    conn: Conn,
}

impl std::fmt::Debug for ReplicationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationClient")
            .field("target", &self.conn.target)
            .field("tls", &self.conn.tls)
            .finish_non_exhaustive()
    }
}

impl ReplicationClient {
    /// Opens a replication connection with the same host, credentials and
    /// TLS settings as [`crate::connect()`], setting each `(name, value)` of
    /// `gucs` for the session (sent as `options=-c name=value …` in the
    /// startup packet, e.g. `("wal_sender_timeout", "60s")`).
    ///
    /// Errors: [`ErrorKind::Connect`], [`ErrorKind::Tls`], [`ErrorKind::Auth`]
    /// as for ordinary connections; [`ErrorKind::Replication`] when the role
    /// lacks `REPLICATION` or `max_wal_senders` is reached.
    pub async fn connect(
        config: &ConnectionConfig,
        gucs: &[(&str, &str)],
    ) -> Result<ReplicationClient, Error> {
        Ok(ReplicationClient {
            conn: wire::connect(config, gucs).await?,
        })
    }

    /// Whether the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        self.conn.tls
    }

    /// A parameter the server reported at startup, e.g. `server_version`.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.conn.parameters.get(name).map(String::as_str)
    }

    /// `IDENTIFY_SYSTEM`.
    pub async fn identify_system(&mut self) -> Result<SystemInfo, Error> {
        let what = "IDENTIFY_SYSTEM";
        let rows = self.query("IDENTIFY_SYSTEM", what).await?;
        let bad = || self.protocol_error(what, "unexpected answer");
        let row = rows.first().filter(|r| r.len() >= 4).ok_or_else(bad)?;
        let text = |i: usize| row[i].as_deref().ok_or_else(bad);
        Ok(SystemInfo {
            systemid: text(0)?.to_string(),
            timeline: text(1)?.parse().map_err(|_| bad())?,
            xlogpos: text(2)?.parse()?,
            dbname: row[3].clone(),
        })
    }

    /// Runs `sql` with the simple query protocol and returns the rows of
    /// every statement, values as text (`None` for NULL). Replication
    /// commands and plain SQL are both accepted (`replication=database`);
    /// parameters are not (the extended protocol is refused on replication
    /// connections).
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        let shown: String = sql.chars().take(80).collect();
        let ellipsis = if shown.len() < sql.len() { "…" } else { "" };
        self.query(sql, &format!("query {:?}", format!("{shown}{ellipsis}")))
            .await
    }

    /// `CREATE_REPLICATION_SLOT "name" LOGICAL "plugin" (NO)EXPORT_SNAPSHOT`.
    ///
    /// With [`SlotSnapshot::Export`], the snapshot named in
    /// [`CreatedSlot::snapshot_name`] stays valid **only until the next
    /// command on this client** (including [`Self::start_replication`]) or
    /// until it is dropped. Import it first on another connection (`BEGIN
    /// ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '…'`); the
    /// importing transaction keeps it after that. Reading the tables in that
    /// transaction and streaming from [`CreatedSlot::consistent_point`]
    /// then sees every committed change exactly once.
    pub async fn create_logical_slot(
        &mut self,
        name: &str,
        plugin: &str,
        snapshot: SlotSnapshot,
    ) -> Result<CreatedSlot, Error> {
        self.create_slot(name, "", plugin, snapshot).await
    }

    /// `CREATE_REPLICATION_SLOT "name" TEMPORARY LOGICAL "plugin" …`: as
    /// [`Self::create_logical_slot`], but the server drops the slot when
    /// this connection ends (PostgreSQL 10 and newer). With
    /// [`SlotSnapshot::Export`] it ties a read to a WAL position without
    /// leaving a slot behind.
    pub async fn create_temporary_logical_slot(
        &mut self,
        name: &str,
        plugin: &str,
        snapshot: SlotSnapshot,
    ) -> Result<CreatedSlot, Error> {
        self.create_slot(name, "TEMPORARY ", plugin, snapshot).await
    }

    async fn create_slot(
        &mut self,
        name: &str,
        temporary: &str,
        plugin: &str,
        snapshot: SlotSnapshot,
    ) -> Result<CreatedSlot, Error> {
        let what = format!("creating replication slot {name:?}");
        let sql = format!(
            "CREATE_REPLICATION_SLOT {} {temporary}LOGICAL {} {}",
            try_quote_ident(name)?,
            try_quote_ident(plugin)?,
            match snapshot {
                SlotSnapshot::Export => "EXPORT_SNAPSHOT",
                SlotSnapshot::NoExport => "NOEXPORT_SNAPSHOT",
            }
        );
        let rows = self.query(&sql, &what).await?;
        let bad = || self.protocol_error(&what, "unexpected answer");
        let row = rows.first().filter(|r| r.len() >= 4).ok_or_else(bad)?;
        Ok(CreatedSlot {
            name: row[0].clone().ok_or_else(bad)?,
            consistent_point: row[1].as_deref().ok_or_else(bad)?.parse()?,
            snapshot_name: row[2].clone(),
            output_plugin: row[3].clone().unwrap_or_default(),
        })
    }

    /// Starts streaming from logical slot `slot` at `start` (`START_REPLICATION
    /// SLOT "slot" LOGICAL X/Y ("name" 'value', …)`; `options` go to the
    /// output plugin). Consumes the client: a replication connection streams
    /// once (see the [module documentation](super)).
    ///
    /// The server starts at the later of `start` and the slot's
    /// `confirmed_flush_lsn`; `Lsn::INVALID` means "from the slot's position".
    ///
    /// Errors: [`ErrorKind::Replication`] for a slot that does not exist
    /// (SQLSTATE 42704) or is active in another session (55006), naming it.
    pub async fn start_replication(
        mut self,
        slot: &str,
        start: Lsn,
        options: &[(&str, &str)],
    ) -> Result<ReplicationStream, Error> {
        let what = format!("starting replication from slot {slot:?}");
        // The feedback timer must fire well within wal_sender_timeout,
        // whatever the session set it to.
        let timeout = self.wal_sender_timeout().await?;
        let mut sql = format!(
            "START_REPLICATION SLOT {} LOGICAL {start}",
            try_quote_ident(slot)?
        );
        if !options.is_empty() {
            let mut list = Vec::with_capacity(options.len());
            for (name, value) in options {
                list.push(format!("{} {}", quote_ident(name), quote_literal(value)?));
            }
            sql.push_str(" (");
            sql.push_str(&list.join(", "));
            sql.push(')');
        }
        frontend::query(&sql, &mut self.conn.write).map_err(|e| Error::config(e.to_string()))?;
        self.conn
            .flush()
            .await
            .map_err(|e| self.conn.io_error(&what, e))?;
        loop {
            match self.conn.read_message(&what).await? {
                Backend::CopyBoth => break,
                Backend::Message(Message::ErrorResponse(body)) => {
                    let m = ServerMessage::parse(body.fields())
                        .map_err(|e| self.conn.io_error(&what, e))?;
                    return Err(m.into_error(&what, &self.conn.target));
                }
                Backend::Message(Message::NoticeResponse(body)) => {
                    wire::log_notice(&self.conn.target, body.fields())
                }
                Backend::Message(_) => {
                    return Err(self.protocol_error(&what, "the server did not start streaming"))
                }
            }
        }
        Ok(ReplicationStream::spawn(self.conn, slot, timeout))
    }

    /// Closes the connection politely (`Terminate`). Dropping the client
    /// closes it too, less politely.
    pub async fn close(self) {
        self.conn.terminate().await;
    }

    /// The session's `wal_sender_timeout` (`None` when disabled).
    async fn wal_sender_timeout(&mut self) -> Result<Option<Duration>, Error> {
        let rows = self
            .query("SHOW wal_sender_timeout", "SHOW wal_sender_timeout")
            .await?;
        let text = rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .unwrap_or_default();
        Ok(parse_duration(&text).filter(|d| !d.is_zero()))
    }

    fn protocol_error(&self, what: &str, detail: &str) -> Error {
        Error::new(
            ErrorKind::Server,
            format!("{what} on {}: {detail}", self.conn.target),
        )
    }

    /// Simple query: every DataRow of every statement, until ReadyForQuery.
    /// An ErrorResponse is returned after the server is ready again, so the
    /// client stays usable.
    async fn query(&mut self, sql: &str, what: &str) -> Result<Vec<Vec<Option<String>>>, Error> {
        frontend::query(sql, &mut self.conn.write)
            .map_err(|e| Error::config(format!("{what}: the command cannot be sent: {e}")))?;
        self.conn
            .flush()
            .await
            .map_err(|e| self.conn.io_error(what, e))?;
        let mut rows = Vec::new();
        let mut failure: Option<ServerMessage> = None;
        loop {
            match self.conn.read_message(what).await? {
                Backend::Message(Message::ReadyForQuery(_)) => break,
                Backend::Message(Message::DataRow(row)) => {
                    let buf = row.buffer();
                    let values: Vec<Option<String>> = row
                        .ranges()
                        .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned())))
                        .collect()
                        .map_err(|e| self.conn.io_error(what, e))?;
                    rows.push(values);
                }
                Backend::Message(Message::ErrorResponse(body)) => {
                    failure = Some(
                        ServerMessage::parse(body.fields())
                            .map_err(|e| self.conn.io_error(what, e))?,
                    );
                }
                Backend::Message(Message::NoticeResponse(body)) => {
                    wire::log_notice(&self.conn.target, body.fields())
                }
                Backend::Message(
                    Message::RowDescription(_)
                    | Message::CommandComplete(_)
                    | Message::EmptyQueryResponse
                    | Message::ParameterStatus(_),
                ) => {}
                Backend::Message(Message::CopyOutResponse(_) | Message::CopyInResponse(_))
                | Backend::CopyBoth => {
                    return Err(self.protocol_error(
                        what,
                        "COPY and START_REPLICATION are not supported by simple_query",
                    ))
                }
                Backend::Message(_) => {}
            }
        }
        match failure {
            Some(m) => Err(m.into_error(what, &self.conn.target)),
            None => Ok(rows),
        }
    }
}

/// A `SHOW` duration (`60s`, `2500ms`, `1min`, `0`) as a [`Duration`].
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1000,
        "min" => n * 60_000,
        "h" => n * 3_600_000,
        "d" => n * 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_durations() {
        assert_eq!(parse_duration("60s"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("2500ms"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1min"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("nonsense"), None);
    }
}

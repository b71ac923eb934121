//! [`ReplicationStream`]: the CopyBoth phase of a replication connection,
//! run by a task of its own.
//!
//! Owns the only code that sends standby status updates. It knows the
//! framing of `w` (XLogData), `k` (keepalive) and `r` (status update)
//! messages and nothing about output plugins.
//!
//! Invariants:
//! - The flush LSN sent is only ever one the caller passed to
//!   [`ReplicationStream::confirm`] (the largest so far), or `0/0`, which
//!   the server ignores. Keepalive LSNs are never confirmed by this code.
//! - A status update goes out at least every
//!   `min(status interval, wal_sender_timeout / 3)` whether or not the caller
//!   reads events, and at once when the server asks for a reply and the
//!   task reads that request. So a slow consumer never gets the connection
//!   dropped by `wal_sender_timeout`.
//! - A stall is noticed (see [`crate::stall`]): while the task waits for
//!   the server, each status update asks for a reply once nothing has
//!   arrived for a status interval, so a healthy server sends at least a
//!   keepalive; after `stall_timeout_seconds` without a byte the server is
//!   asked on a new connection what its walsender is doing, and the stream
//!   fails with a "stalled" error unless it is busy. Time in which the task
//!   does not read (the caller has not taken the events) does not count.
//!   [`ReplicationStream::stop`] is bounded by the same timeout.
//! - At most [`EVENT_BUFFER`] events plus one are parsed and not yet taken
//!   by the caller; while that many wait, the task does not read the
//!   socket, so the server's send buffer fills and the walsender waits
//!   (memory stays bounded).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, Bytes};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::wire::{self, Backend, Conn, ServerMessage};
use super::Lsn;
use crate::stall::Verdict;
use crate::{Error, ErrorKind};

/// How many events the task parses ahead of the caller.
pub const EVENT_BUFFER: usize = 256;

/// The default interval between status updates.
pub const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// The floor of the status interval, so a tiny value cannot flood the server.
const MIN_STATUS_INTERVAL: Duration = Duration::from_millis(100);

/// Seconds from the Unix epoch to 2000-01-01, the protocol's epoch.
const PG_EPOCH_OFFSET: Duration = Duration::from_secs(946_684_800);

/// A message of the replication stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationEvent {
    /// Output of the plugin (`w`): for wal2json `format-version` 2 one change,
    /// begin or commit per message.
    XLogData {
        /// The LSN the plugin attributed to this message: a change's record,
        /// a transaction's first record for its begin, and for its commit
        /// the **end** of the commit record — the LSN to confirm once the
        /// whole transaction is durably written downstream.
        wal_start: Lsn,
        /// For logical replication the server sends `wal_start` again here
        /// (the WAL end is only in keepalives).
        wal_end: Lsn,
        /// When the server sent it.
        server_time: SystemTime,
        /// The plugin's output.
        data: Bytes,
    },
    /// A keepalive (`k`). Already answered by the stream when
    /// `reply_requested`; delivered so the caller sees progress.
    Keepalive {
        /// The server's current end of WAL. Not a position to confirm: a
        /// transaction may be in progress before it.
        wal_end: Lsn,
        /// When the server sent it.
        server_time: SystemTime,
        /// Whether the server asked for a status update.
        reply_requested: bool,
    },
}

enum Command {
    SendStatus {
        reply_requested: bool,
        done: oneshot::Sender<Result<(), Error>>,
    },
    Stop {
        done: oneshot::Sender<Result<(), Error>>,
    },
}

/// State shared by the stream handle and its task.
struct Shared {
    confirmed: AtomicU64,
    interval_ms: AtomicU64,
    /// Why the task ended, when it failed: (kind, message, sqlstate).
    failure: Mutex<Option<(ErrorKind, String, Option<String>)>>,
}

impl Shared {
    fn failure(&self, what: &str, target: &str) -> Error {
        match &*self.failure.lock().unwrap_or_else(|p| p.into_inner()) {
            Some((kind, message, code)) => {
                let e = Error::new(*kind, message.clone());
                match code {
                    Some(c) => e.with_sqlstate(c.clone()),
                    None => e,
                }
            }
            None => Error::new(
                ErrorKind::Connect,
                format!("{what} on {target}: the replication stream has ended"),
            ),
        }
    }
}

/// A streaming replication session, from
/// [`super::ReplicationClient::start_replication`]. Not `Clone`. Dropping it
/// ends the session (a last status update, then `Terminate`, best effort);
/// [`ReplicationStream::stop`] ends it and reports errors.
pub struct ReplicationStream {
    events: mpsc::Receiver<Result<ReplicationEvent, Error>>,
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    what: String,
    target: String,
    /// Bounds [`ReplicationStream::stop`].
    stop_timeout: Duration,
}

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("what", &self.what)
            .field("target", &self.target)
            .field("confirmed", &self.confirmed())
            .finish_non_exhaustive()
    }
}

impl ReplicationStream {
    pub(crate) fn spawn(
        conn: Conn,
        slot: &str,
        wal_sender_timeout: Option<Duration>,
    ) -> ReplicationStream {
        let what = format!("streaming from replication slot {slot:?}");
        let target = conn.target.clone();
        let stall = conn.config.liveness.stall_timeout;
        let shared = Arc::new(Shared {
            confirmed: AtomicU64::new(0),
            interval_ms: AtomicU64::new(DEFAULT_STATUS_INTERVAL.as_millis() as u64),
            failure: Mutex::new(None),
        });
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let (commands, commands_rx) = mpsc::channel(4);
        let task = Task {
            conn,
            shared: shared.clone(),
            what: what.clone(),
            ceiling: wal_sender_timeout.map(|t| t / 3),
            last_status: Instant::now(),
            last_heard: Instant::now(),
            stall,
        };
        let task = tokio::spawn(task.run(events_tx, commands_rx));
        ReplicationStream {
            events,
            commands,
            shared,
            task,
            what,
            target,
            stop_timeout: if stall.is_zero() {
                crate::Liveness::default().stall_timeout
            } else {
                stall
            },
        }
    }

    /// The next message; `None` once the server has ended the stream (or
    /// after an error was returned). Cancel-safe.
    pub async fn next(&mut self) -> Result<Option<ReplicationEvent>, Error> {
        match self.events.recv().await {
            Some(Ok(event)) => Ok(Some(event)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    /// Records that everything up to `flush` is durably handled downstream,
    /// so the server may free WAL and not resend it. Sent with the next
    /// status update (timer, keepalive request, [`Self::send_status`],
    /// [`Self::stop`]). Never moves backward: a smaller value is ignored.
    pub fn confirm(&self, flush: Lsn) {
        self.shared.confirmed.fetch_max(flush.0, Ordering::AcqRel);
    }

    /// The largest LSN passed to [`Self::confirm`], `0/0` if none.
    pub fn confirmed(&self) -> Lsn {
        Lsn(self.shared.confirmed.load(Ordering::Acquire))
    }

    /// Sets the interval between status updates (default 10 s). The task
    /// also keeps it under a third of the session's `wal_sender_timeout`.
    pub fn set_status_interval(&self, interval: Duration) {
        let ms = interval.max(MIN_STATUS_INTERVAL).as_millis();
        self.shared
            .interval_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Sends a status update now (write = flush = apply = [`Self::confirmed`])
    /// and returns once it is written to the socket. With
    /// `reply_requested`, the server answers with a keepalive, after which
    /// it has processed the update.
    pub async fn send_status(&mut self, reply_requested: bool) -> Result<(), Error> {
        let (done, answer) = oneshot::channel();
        let command = Command::SendStatus {
            reply_requested,
            done,
        };
        if self.commands.send(command).await.is_err() {
            return Err(self.shared.failure(&self.what, &self.target));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(self.shared.failure(&self.what, &self.target)))
    }

    /// Ends the session: a last status update with [`Self::confirmed`],
    /// CopyDone, reading what the server still sends up to ReadyForQuery
    /// (discarded), then Terminate. Events not yet taken are discarded.
    ///
    /// Bounded by `stall_timeout_seconds` (60 s when that is 0): a server
    /// that does not answer within it is reported as a stalled connection
    /// and the connection is dropped.
    pub async fn stop(self) -> Result<(), Error> {
        let (done, answer) = oneshot::channel();
        let exchange = async {
            match self.commands.send(Command::Stop { done }).await {
                Ok(()) => answer.await.unwrap_or_else(|_| self.ended()),
                Err(_) => self.ended(),
            }
        };
        let result = match tokio::time::timeout(self.stop_timeout, exchange).await {
            Ok(r) => r,
            Err(_) => {
                self.task.abort();
                let why = "it did not answer the end of streaming either";
                let message = crate::stall::stall_message(&self.target, self.stop_timeout, why);
                return Err(Error::new(
                    ErrorKind::Connect,
                    format!("stopping the {what}: {message}", what = self.what),
                )
                .with_sqlstate(crate::stall::STALL_SQLSTATE));
            }
        };
        // The task has answered, or ended before it could: let it finish.
        drop(self.events);
        let _ = self.task.await;
        result
    }

    /// The outcome of a task that ended on its own: its failure, or fine
    /// when the server ended the stream.
    fn ended(&self) -> Result<(), Error> {
        let failed = self
            .shared
            .failure
            .lock()
            .map(|f| f.is_some())
            .unwrap_or(true);
        if failed {
            Err(self.shared.failure(&self.what, &self.target))
        } else {
            Ok(())
        }
    }
}

/// The task owning the socket during streaming.
struct Task {
    conn: Conn,
    shared: Arc<Shared>,
    what: String,
    /// A third of `wal_sender_timeout`, the longest allowed interval.
    ceiling: Option<Duration>,
    last_status: Instant,
    /// When a byte last arrived, or the task last started waiting for one
    /// (after handing over an event), or the server was last found busy.
    last_heard: Instant,
    /// `stall_timeout_seconds` (zero: not watched).
    stall: Duration,
}

enum Step<'a> {
    Command(Option<Command>),
    Timer,
    Permit(Result<mpsc::Permit<'a, Result<ReplicationEvent, Error>>, mpsc::error::SendError<()>>),
    Read(io::Result<()>),
}

impl Task {
    async fn run(
        mut self,
        events: mpsc::Sender<Result<ReplicationEvent, Error>>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        match self.drive(&events, &mut commands).await {
            Ok(Some(done)) => {
                let result = self.stop().await;
                let _ = done.send(result);
            }
            Ok(None) => self.conn.terminate().await,
            Err(e) => {
                *self
                    .shared
                    .failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) =
                    Some((e.kind(), e.to_string(), e.sqlstate().map(str::to_string)));
                // Commands from now on see the failure in `shared`.
                drop(commands);
                let _ = events.send(Err(e)).await;
            }
        }
    }

    /// Streams until the caller asks to stop (returns its reply channel),
    /// the handle is dropped or the server ends the stream (`None`), or
    /// something fails.
    async fn drive(
        &mut self,
        events: &mpsc::Sender<Result<ReplicationEvent, Error>>,
        commands: &mut mpsc::Receiver<Command>,
    ) -> Result<Option<oneshot::Sender<Result<(), Error>>>, Error> {
        let mut pending: Option<ReplicationEvent> = None;
        loop {
            if pending.is_none() {
                if let Some(m) = self.conn.try_parse().map_err(|e| self.io_error(e))? {
                    match m {
                        Backend::Message(Message::CopyData(body)) => {
                            let event = self.parse_copy_data(body.into_bytes())?;
                            if let ReplicationEvent::Keepalive {
                                reply_requested: true,
                                ..
                            } = event
                            {
                                self.send_status(false).await?;
                            }
                            pending = Some(event);
                        }
                        Backend::Message(Message::CopyDone) => {
                            self.server_ended().await?;
                            return Ok(None);
                        }
                        Backend::Message(Message::ErrorResponse(body)) => {
                            let m = ServerMessage::parse(body.fields())
                                .map_err(|e| self.io_error(e))?;
                            return Err(m.into_error(&self.what, &self.conn.target));
                        }
                        Backend::Message(Message::NoticeResponse(body)) => {
                            wire::log_notice(&self.conn.target, body.fields())
                        }
                        Backend::Message(Message::ParameterStatus(_)) => {}
                        Backend::Message(_) | Backend::CopyBoth => {
                            return Err(self.protocol_error("unexpected message"))
                        }
                    }
                    continue;
                }
            }
            let mut deadline = self.last_status + self.interval();
            if pending.is_some() {
                // Not reading: the caller is behind, not the server.
                self.last_heard = Instant::now();
            } else if !self.stall.is_zero() {
                deadline = deadline.min(self.last_heard + self.stall);
            }
            let step = tokio::select! {
                biased;
                c = commands.recv() => Step::Command(c),
                _ = tokio::time::sleep_until(deadline) => Step::Timer,
                p = events.reserve(), if pending.is_some() => Step::Permit(p),
                r = self.conn.read_more(), if pending.is_none() => Step::Read(r),
            };
            match step {
                Step::Command(None) => {
                    // The handle was dropped: leave politely, best effort.
                    let _ = self.send_status(false).await;
                    return Ok(None);
                }
                Step::Command(Some(Command::Stop { done })) => return Ok(Some(done)),
                Step::Command(Some(Command::SendStatus {
                    reply_requested,
                    done,
                })) => {
                    let result = self.send_status(reply_requested).await;
                    let failed = result.as_ref().err().map(|e| self.copy_error(e));
                    let _ = done.send(result);
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
                Step::Timer => {
                    let now = Instant::now();
                    let quiet = now - self.last_heard;
                    if pending.is_none() && !self.stall.is_zero() && quiet >= self.stall {
                        self.check_stall(quiet).await?;
                    }
                    if now >= self.last_status + self.interval() {
                        // Heard nothing for a whole interval: ask for an
                        // answer, so that silence means a stall.
                        let ask = pending.is_none() && quiet >= self.interval();
                        self.send_status(ask).await?;
                    }
                }
                Step::Permit(Ok(permit)) => {
                    permit.send(Ok(pending.take().expect("reserved for a pending event")));
                    self.last_heard = Instant::now();
                }
                Step::Permit(Err(_)) => {
                    // The receiver is gone, so is the handle.
                    let _ = self.send_status(false).await;
                    return Ok(None);
                }
                Step::Read(r) => {
                    r.map_err(|e| self.io_error(e))?;
                    self.last_heard = Instant::now();
                }
            }
        }
    }

    /// Nothing for `quiet`: asks the server what the walsender does; an
    /// error unless it is busy (then the wait starts over).
    async fn check_stall(&mut self, quiet: Duration) -> Result<(), Error> {
        let verdict = match self.conn.pid {
            Some(pid) => {
                crate::stall::probe(&self.conn.config, pid, crate::stall::Session::WalSender).await
            }
            None => Verdict::Stalled("the server's process is unknown, so it was not asked".into()),
        };
        match verdict {
            Verdict::Busy(why) => {
                tracing::debug!(
                    "{} on {}: nothing for {} s; {why}",
                    self.what,
                    self.conn.target,
                    quiet.as_secs()
                );
                self.last_heard = Instant::now();
                Ok(())
            }
            Verdict::Stalled(why) => Err(Error::new(
                ErrorKind::Connect,
                format!(
                    "{}: {}",
                    self.what,
                    crate::stall::stall_message(&self.conn.target, quiet, &why)
                ),
            )
            .with_sqlstate(crate::stall::STALL_SQLSTATE)),
        }
    }

    fn interval(&self) -> Duration {
        let chosen = Duration::from_millis(self.shared.interval_ms.load(Ordering::Acquire));
        let mut interval = match self.ceiling {
            Some(c) => chosen.min(c),
            None => chosen,
        };
        if !self.stall.is_zero() {
            // Ask for a reply at least twice before a silence counts as a stall.
            interval = interval.min(self.stall / 3);
        }
        interval.max(MIN_STATUS_INTERVAL)
    }

    fn parse_copy_data(&self, mut data: Bytes) -> Result<ReplicationEvent, Error> {
        match data.first() {
            Some(b'w') if data.len() >= 25 => {
                data.advance(1);
                let wal_start = Lsn(data.get_u64());
                let wal_end = Lsn(data.get_u64());
                let server_time = from_pg_micros(data.get_i64());
                Ok(ReplicationEvent::XLogData {
                    wal_start,
                    wal_end,
                    server_time,
                    data,
                })
            }
            Some(b'k') if data.len() >= 18 => {
                data.advance(1);
                let wal_end = Lsn(data.get_u64());
                let server_time = from_pg_micros(data.get_i64());
                let reply_requested = data.get_u8() != 0;
                Ok(ReplicationEvent::Keepalive {
                    wal_end,
                    server_time,
                    reply_requested,
                })
            }
            Some(tag) => Err(self.protocol_error(&format!(
                "unexpected CopyData message {:?} ({} bytes)",
                *tag as char,
                data.len()
            ))),
            None => Err(self.protocol_error("empty CopyData message")),
        }
    }

    /// Writes a standby status update with the confirmed LSN.
    async fn send_status(&mut self, reply_requested: bool) -> Result<(), Error> {
        let lsn = self.shared.confirmed.load(Ordering::Acquire);
        let mut body = [0u8; 34];
        body[0] = b'r';
        body[1..9].copy_from_slice(&lsn.to_be_bytes());
        body[9..17].copy_from_slice(&lsn.to_be_bytes());
        body[17..25].copy_from_slice(&lsn.to_be_bytes());
        body[25..33].copy_from_slice(&pg_micros_now().to_be_bytes());
        body[33] = u8::from(reply_requested);
        frontend::CopyData::new(&body[..])
            .expect("34 bytes fit a message")
            .write(&mut self.conn.write);
        self.conn.flush().await.map_err(|e| self.io_error(e))?;
        self.last_status = Instant::now();
        tracing::trace!("{}: confirmed {}", self.what, Lsn(lsn));
        Ok(())
    }

    /// The caller's stop: last status, CopyDone, drain to ReadyForQuery,
    /// Terminate.
    async fn stop(mut self) -> Result<(), Error> {
        self.send_status(false).await?;
        frontend::copy_done(&mut self.conn.write);
        self.conn.flush().await.map_err(|e| self.io_error(e))?;
        self.drain().await?;
        self.conn.terminate().await;
        Ok(())
    }

    /// The server sent CopyDone: answer it and drain (`run` terminates).
    async fn server_ended(&mut self) -> Result<(), Error> {
        frontend::copy_done(&mut self.conn.write);
        self.conn.flush().await.map_err(|e| self.io_error(e))?;
        self.drain().await
    }

    /// Reads and discards up to ReadyForQuery; reports a server error.
    async fn drain(&mut self) -> Result<(), Error> {
        let mut failure = None;
        loop {
            match self.conn.read_message(&self.what).await? {
                Backend::Message(Message::ReadyForQuery(_)) => break,
                Backend::Message(Message::ErrorResponse(body)) => {
                    failure =
                        Some(ServerMessage::parse(body.fields()).map_err(|e| self.io_error(e))?)
                }
                _ => {}
            }
        }
        match failure {
            Some(m) => Err(m.into_error(&self.what, &self.conn.target)),
            None => Ok(()),
        }
    }

    fn io_error(&self, e: io::Error) -> Error {
        self.conn.io_error(&self.what, e)
    }

    fn protocol_error(&self, detail: &str) -> Error {
        Error::new(
            ErrorKind::Server,
            format!("{} on {}: {detail}", self.what, self.conn.target),
        )
    }

    /// A copy of `e` for a second recipient (errors are not `Clone`).
    fn copy_error(&self, e: &Error) -> Error {
        let copy = Error::new(e.kind(), e.to_string());
        match e.sqlstate() {
            Some(c) => copy.with_sqlstate(c),
            None => copy,
        }
    }
}

fn from_pg_micros(micros: i64) -> SystemTime {
    let base = UNIX_EPOCH + PG_EPOCH_OFFSET;
    let offset = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        base.checked_add(offset)
    } else {
        base.checked_sub(offset)
    }
    .unwrap_or(base)
}

fn pg_micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH + PG_EPOCH_OFFSET)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_epoch() {
        let t = from_pg_micros(0);
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap(),
            Duration::from_secs(946_684_800)
        );
        assert_eq!(
            from_pg_micros(1_500_000)
                .duration_since(UNIX_EPOCH)
                .unwrap(),
            Duration::from_micros(946_684_801_500_000)
        );
        assert!(pg_micros_now() > 700_000_000_000_000); // after 2022
    }
}

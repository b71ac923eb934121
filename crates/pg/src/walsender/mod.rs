//! A logical-replication (walsender) client: the only code in the project
//! that sends `START_REPLICATION` and standby status updates.
//!
//! tokio-postgres 0.7 cannot open replication connections (no
//! `replication` startup parameter, no CopyBoth), so this module speaks the
//! protocol itself on `tokio` + `postgres-protocol`. Ordinary SQL stays on
//! tokio-postgres ([`crate::connect()`]).
//!
//! # Use
//!
//! ```no_run
//! # async fn f(config: &pg::ConnectionConfig) -> Result<(), pg::Error> {
//! use pg::walsender::{Lsn, ReplicationClient, ReplicationEvent};
//! let gucs = [("DateStyle", "ISO"), ("TimeZone", "UTC"), ("wal_sender_timeout", "60s")];
//! let client = ReplicationClient::connect(config, &gucs).await?;
//! let mut stream = client
//!     .start_replication("my_slot", Lsn::INVALID, &[("format-version", "2")])
//!     .await?;
//! while let Some(event) = stream.next().await? {
//!     if let ReplicationEvent::XLogData { wal_start, data, .. } = event {
//!         // write `data` downstream; once a whole transaction is durable:
//!         stream.confirm(wal_start);
//!     }
//! #   break;
//! }
//! stream.stop().await
//! # }
//! ```
//!
//! # Contract
//!
//! - **A connection streams once.** [`ReplicationClient::start_replication`]
//!   consumes the client: after a stream ends, a second `START_REPLICATION`
//!   on the same connection returns at once without streaming, so every
//!   session opens a fresh connection. Neither type is `Clone`.
//! - **Only the caller confirms.** The flush LSN in status updates is the
//!   largest value given to [`ReplicationStream::confirm`] (`0/0` before any,
//!   which the server ignores). Keepalive `wal_end`s are delivered but never
//!   confirmed here, because whether one is safe depends on where the caller
//!   is in the stream. Between transactions (every BEGIN seen has had its
//!   COMMIT) it is safe: everything committed before it has been delivered,
//!   and a transaction still open commits after it and is decoded whole by a
//!   later session (the slot keeps the WAL from the start of transactions in
//!   progress at its confirmed position). **Inside** a transaction it is not:
//!   output plugins send a transaction when its commit is decoded, so the
//!   sent position is already past that commit, and a session restarted
//!   there skips the rest of it. Confirm a transaction's end (the end of its
//!   commit record), or a keepalive position received between transactions,
//!   once everything before it is durable downstream (`tap-postgres`'s
//!   `log_based::streamer` bookmarks exactly these).
//! - **Feedback does not depend on the caller.** The server asks for a reply
//!   after half of `wal_sender_timeout` without one and drops the
//!   connection at the full timeout; a consumer blocked writing to a slow
//!   pipe must not lose its connection. So the socket belongs to a spawned
//!   task that sends a status update on its own timer (every
//!   [`ReplicationStream::set_status_interval`], default 10 s, and at most a
//!   third of the session's `wal_sender_timeout`, read with `SHOW` before
//!   streaming) and answers reply requests at once. The task runs on the
//!   tokio runtime: the caller must not block its runtime's only thread
//!   (with a current-thread runtime, do blocking writes in
//!   `spawn_blocking`, or use the multi-thread runtime).
//! - **Memory is bounded by backpressure.** The task hands events to the
//!   caller through a channel of [`EVENT_BUFFER`] slots. When it is full the
//!   task stops reading the socket (but keeps its timer), TCP fills up and
//!   the walsender waits. With wal2json `format-version` 2 an event is one
//!   change, so memory is a few hundred changes plus the read chunks (64
//!   KiB each) their `Bytes` share. Format 1 sends a whole transaction per
//!   event, and a single message is always read whole (the server caps one
//!   at 1 GB).
//! - **Exported snapshots.** [`ReplicationClient::create_logical_slot`] with
//!   [`SlotSnapshot::Export`] returns a snapshot name valid only until the
//!   next command on that client. Import it on an ordinary connection first
//!   (`BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT
//!   '…'`), then call `start_replication` from
//!   [`CreatedSlot::consistent_point`]: the snapshot holds exactly the
//!   transactions committed before that point and the stream exactly those
//!   after it, so a copy in that transaction plus the stream sees every
//!   change once.
//! - **Same connection settings as ordinary connections.** Host (or Unix
//!   socket directory), port, user, password, database, every `sslmode`
//!   with the same rustls configuration ([`crate::tls`]), client
//!   certificates, `connect_timeout`, `application_name`; authentication
//!   trust, password, md5, scram-sha-256 (without channel binding), cert.
//!   Commands go over the simple query protocol only: replication
//!   connections refuse the extended protocol, so names are quoted with
//!   [`crate::quote_ident`] and option values with [`crate::quote_literal`].
//!
//! Errors are [`crate::Error`]s naming the command, slot and server, with
//! the server's DETAIL and HINT and its SQLSTATE
//! ([`crate::Error::sqlstate`]); slot and replication-setting problems are
//! [`crate::ErrorKind::Replication`], a lost connection
//! [`crate::ErrorKind::Connect`].

mod client;
mod lsn;
mod stream;
mod wire;

pub use bytes::Bytes;
pub use client::{CreatedSlot, ReplicationClient, SlotSnapshot, SystemInfo};
pub use lsn::Lsn;
pub use stream::{ReplicationEvent, ReplicationStream, DEFAULT_STATUS_INTERVAL, EVENT_BUFFER};

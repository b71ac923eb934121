//! Postgres plumbing shared by `tap-postgres` and `target-postgres`.
//!
//! This crate owns everything both programs need to reach a server and to talk
//! SQL safely; it knows nothing of Singer messages.
//!
//! - [`config`]: the connection settings read from a tap/target config file
//!   (`host`, `port`, `user`, `password`, `dbname`, TLS, timeouts), with the
//!   aliases the pipelinewise/Macrometa connectors accept.
//! - [`tls`]: the rustls client configuration for every `sslmode`.
//! - [`connect()`]: opening a `tokio_postgres` connection from a
//!   [`ConnectionConfig`], with errors that say what failed and what to do.
//! - [`ident`]: the one place where identifiers (and replication-command
//!   literals) are quoted.
//! - [`stall`]: noticing a connection that waits and hears nothing while
//!   TCP sees nothing wrong; socket keepalives are set where sockets are
//!   opened (`socket`).
//! - [`walsender`]: the logical-replication client (`START_REPLICATION`,
//!   standby status updates), the only sender of either.
//!
//! Invariant: a password never appears in a `Debug`/`Display` output or in an
//! error message of this crate.
#![warn(missing_docs)]

pub mod config;
mod connect;
mod error;
pub mod ident;
mod socket;
pub mod stall;
pub mod tls;
pub mod walsender;

pub use config::{ConnectionConfig, Liveness, PemSource, SslMode};
pub use connect::connect;
pub use error::{Error, ErrorKind};
pub use ident::{quote_ident, quote_literal, QualifiedName};
pub use walsender::Lsn;

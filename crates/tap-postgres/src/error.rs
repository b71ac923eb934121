//! The tap's one error type (the binary, `main.rs`, turns it into the
//! CRITICAL line and the exit code).
//!
//! An [`Error`] is opaque: a kind grouped by remedy ([`Error::remedy`]), the
//! context it happened in (stream, column, LSN), a message saying what
//! failed, and the error that caused it ([`std::error::Error::source`]).
//! It reads from the outside in, the way the CRITICAL line prints a chain:
//! `stream public-orders, column price, LSN 0/16B3748: what failed: cause`.
//!
//! Invariants:
//! - An error that only wraps its cause (a server error, an I/O error, with
//!   or without context) is transparent: it displays the cause's text and
//!   its `source()` is the cause's source, so a printer walking the chain
//!   prints each fact once — the server's DETAIL and HINT included, as the
//!   driver's error carries them.
//! - A leaf module: it knows no other module of the crate (an error type
//!   of another module becomes an [`Error`] through
//!   [`Error::source_data`] where it is raised).
//! - The kind is decided where the error is made, from what it is (the
//!   driver's state, the SQLSTATE, the writer's error kind), never from its
//!   text; context added later keeps it.

use std::error::Error as StdError;
use std::fmt;

use pg::Lsn;

/// What kind of failure an [`Error`] is, grouped by remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The server could not be reached, or the connection was lost: check
    /// the network and the server, then rerun (a rerun resumes from the
    /// last state).
    Connection,
    /// A setting, the catalog or the state is invalid: fix them.
    Config,
    /// The source's data or schema is not what the tap can read (a value
    /// the policy refuses, a table that vanished, a privilege missing, a
    /// server error for a statement).
    Source,
    /// The replication slot or the server's replication settings are not
    /// as LOG_BASED needs.
    Slot,
    /// Writing the output failed (the target exited: a broken pipe).
    Output,
}

/// An error of the tap.
pub struct Error {
    kind: Kind,
    stream: Option<String>,
    column: Option<String>,
    lsn: Option<Lsn>,
    /// What failed, in words; `None` for an error that only wraps its
    /// source (transparent).
    message: Option<String>,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

/// The tap's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A tap [`Error`] from a format string: the source-data kind, or the
/// one named first (`err!(config, "…")`, `err!(slot, "…")`).
macro_rules! err {
    (config, $($t:tt)*) => {
        $crate::error::Error::config(format!($($t)*))
    };
    (slot, $($t:tt)*) => {
        $crate::error::Error::slot(format!($($t)*))
    };
    ($($t:tt)*) => {
        $crate::error::Error::msg(format!($($t)*))
    };
}

/// Returns early with [`err!`].
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::error::err!($($t)*).into())
    };
}
pub(crate) use {bail, err};

impl Error {
    fn new(kind: Kind, message: String) -> Error {
        Error {
            kind,
            stream: None,
            column: None,
            lsn: None,
            message: Some(message),
            source: None,
        }
    }

    fn wrap(kind: Kind, source: impl StdError + Send + Sync + 'static) -> Error {
        Error {
            kind,
            stream: None,
            column: None,
            lsn: None,
            message: None,
            source: Some(Box::new(source)),
        }
    }

    /// An error about the source's data or schema.
    pub fn msg(message: impl Into<String>) -> Error {
        Error::new(Kind::Source, message.into())
    }

    /// A row or value of the source the tap cannot read or encode, caused
    /// by `e` (whose text it shows).
    pub fn source_data(e: impl StdError + Send + Sync + 'static) -> Error {
        Error::wrap(Kind::Source, e)
    }

    /// An invalid setting (config, catalog, state).
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(Kind::Config, message.into())
    }

    /// The replication slot or the replication settings.
    pub fn slot(message: impl Into<String>) -> Error {
        Error::new(Kind::Slot, message.into())
    }

    /// A lost or unreachable connection.
    pub fn connection(message: impl Into<String>) -> Error {
        Error::new(Kind::Connection, message.into())
    }

    /// This error as a replication slot one (it keeps its text).
    pub fn into_slot(mut self) -> Error {
        self.kind = Kind::Slot;
        self
    }

    /// `message`, caused by this error (which keeps its kind).
    pub fn context(self, message: impl Into<String>) -> Error {
        Error {
            kind: self.kind,
            stream: None,
            column: None,
            lsn: None,
            message: Some(message.into()),
            source: Some(Box::new(self)),
        }
    }

    /// This error in a layer of context: on itself when it only wraps its
    /// cause and `free` says the field is not set yet (so stream, column
    /// and LSN gather on one error and print as `stream s, column c, LSN
    /// l: …`); otherwise around it, so the text reads as before.
    fn within(self, free: impl Fn(&Error) -> bool, set: impl FnOnce(&mut Error)) -> Error {
        let mut outer = if self.message.is_none() && free(&self) {
            self
        } else {
            Error {
                kind: self.kind,
                stream: None,
                column: None,
                lsn: None,
                message: None,
                source: Some(Box::new(self)),
            }
        };
        set(&mut outer);
        outer
    }

    /// This error, in stream `id`.
    pub fn in_stream(self, id: &str) -> Error {
        self.within(|e| e.stream.is_none(), |e| e.stream = Some(id.to_owned()))
    }

    /// This error, at column `name`.
    pub fn in_column(self, name: &str) -> Error {
        self.within(|e| e.column.is_none(), |e| e.column = Some(name.to_owned()))
    }

    /// This error, at WAL position `lsn`.
    pub fn at_lsn(self, lsn: Lsn) -> Error {
        self.within(|e| e.lsn.is_none(), |e| e.lsn = Some(lsn))
    }

    /// What to do about this kind of failure.
    pub fn remedy(&self) -> &'static str {
        match self.kind {
            Kind::Connection => {
                "check the network and the server, then rerun: a rerun resumes from the last state"
            }
            Kind::Config => "fix the config file, the catalog or the state",
            Kind::Source => "see the message: the source's data, schema or privileges",
            Kind::Slot => "check the replication slot and the server's replication settings",
            Kind::Output => "see the downstream program's error; do not retry",
        }
    }

    /// Whether the output could not be written (the target went away).
    pub fn is_output(&self) -> bool {
        self.kind == Kind::Output
    }

    /// Whether the connection to the server was lost or never made.
    pub fn is_connection(&self) -> bool {
        self.kind == Kind::Connection
    }

    /// The first error of type `T` in this error's causes, including the
    /// ones a transparent error shows as its own text.
    pub fn find<T: StdError + 'static>(&self) -> Option<&T> {
        let mut next: Option<&(dyn StdError + 'static)> = match &self.source {
            Some(s) => Some(s.as_ref()),
            None => None,
        };
        while let Some(e) = next {
            if let Some(t) = e.downcast_ref::<T>() {
                return Some(t);
            }
            next = match e.downcast_ref::<Error>() {
                Some(tap) => tap
                    .source
                    .as_deref()
                    .map(|s| s as &(dyn StdError + 'static)),
                None => e.source(),
            };
        }
        None
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(stream) = &self.stream {
            write!(f, "stream {stream}")?;
            sep = ", ";
        }
        if let Some(column) = &self.column {
            write!(f, "{sep}column {column}")?;
            sep = ", ";
        }
        if let Some(lsn) = self.lsn {
            write!(f, "{sep}LSN {lsn}")?;
            sep = ", ";
        }
        let what: &dyn fmt::Display = match (&self.message, &self.source) {
            (Some(m), _) => m,
            (None, Some(s)) => s,
            (None, None) => return Ok(()),
        };
        if !sep.is_empty() {
            f.write_str(": ")?;
        }
        write!(f, "{what}")
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {self}", self.kind)?;
        let mut next = StdError::source(self);
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let own = self
            .source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static));
        match self.message {
            Some(_) => own,
            None => own.and_then(|s| s.source()),
        }
    }
}

/// Context for a result's error, or for a missing value.
pub trait Context<T> {
    /// Puts `message` before the error (it keeps its kind).
    fn context(self, message: impl Into<String>) -> Result<T>;
    /// [`Context::context`], the message made only on error.
    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, message: impl Into<String>) -> Result<T> {
        self.map_err(|e| e.into().context(message))
    }

    fn with_context<M: Into<String>>(self, message: impl FnOnce() -> M) -> Result<T> {
        self.map_err(|e| e.into().context(message()))
    }
}

/// Whether a driver error means the connection is gone (closed, an I/O
/// failure, or the server ending the session: SQLSTATE class 57P).
pub fn connection_lost(e: &tokio_postgres::Error) -> bool {
    let io = StdError::source(e).is_some_and(|s| s.is::<std::io::Error>());
    let terminated = e
        .as_db_error()
        .is_some_and(|d| d.code().code().starts_with("57P"));
    e.is_closed() || io || terminated
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Error {
        let kind = if connection_lost(&e) {
            Kind::Connection
        } else {
            Kind::Source
        };
        Error::wrap(kind, e)
    }
}

impl From<pg::Error> for Error {
    fn from(e: pg::Error) -> Error {
        let lost = StdError::source(&e)
            .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
            .is_some_and(connection_lost);
        let kind = match e.kind() {
            _ if lost => Kind::Connection,
            pg::ErrorKind::Config | pg::ErrorKind::Auth | pg::ErrorKind::Tls => Kind::Config,
            pg::ErrorKind::Replication => Kind::Slot,
            pg::ErrorKind::Connect => Kind::Connection,
            _ => Kind::Source,
        };
        Error::wrap(kind, e)
    }
}

impl From<singer::Error> for Error {
    fn from(e: singer::Error) -> Error {
        let kind = match e.kind() {
            singer::ErrorKind::Io | singer::ErrorKind::BrokenPipe => Kind::Output,
            _ => Kind::Config,
        };
        Error::wrap(kind, e)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::wrap(Kind::Output, e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::wrap(Kind::Source, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text a CRITICAL line prints: the error and its causes.
    fn chain(e: &Error) -> String {
        let mut s = e.to_string();
        let mut next = StdError::source(e);
        while let Some(c) = next {
            s.push_str(": ");
            s.push_str(&c.to_string());
            next = c.source();
        }
        s
    }

    #[test]
    fn context_reads_outside_in() {
        let e = Error::msg("invalid input syntax for type numeric: \"abc\"");
        assert_eq!(chain(&e), "invalid input syntax for type numeric: \"abc\"");
        let io = std::io::Error::other("disk full");
        let e = Error::from(io).in_column("price").at_lsn(Lsn(0x16B3748));
        assert_eq!(e.to_string(), "column price, LSN 0/16B3748: disk full");
        let e = e.in_stream("public-orders");
        assert_eq!(
            chain(&e),
            "stream public-orders, column price, LSN 0/16B3748: disk full"
        );
        let e = Error::msg("key column \"id\" is null").in_stream("public-orders");
        assert_eq!(chain(&e), "stream public-orders: key column \"id\" is null");
        let e = Error::from(std::io::Error::other("x"))
            .in_stream("public-orders")
            .in_column("price")
            .at_lsn(Lsn(0x16B3748));
        assert_eq!(
            chain(&e),
            "stream public-orders, column price, LSN 0/16B3748: x"
        );
    }

    #[test]
    fn a_wrapped_cause_is_printed_once() {
        let inner = Error::config("`port` must be a TCP port");
        let e: Result<()> = Err(inner);
        let e = e.context("config.json").unwrap_err();
        assert_eq!(chain(&e), "config.json: `port` must be a TCP port");
        let e = Error::from(std::io::Error::other("gone")).context("writing the catalog");
        assert_eq!(chain(&e), "writing the catalog: gone");
        assert!(e.is_output());
        assert!(e.find::<std::io::Error>().is_some());
    }

    /// A writer whose reader has gone.
    struct Closed;

    impl std::io::Write for Closed {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn kinds_come_from_what_failed_and_survive_context() {
        let mut writer = singer::MessageWriter::new(Closed);
        let e = Error::from(writer.write_state(&serde_json::json!({})).unwrap_err())
            .in_stream("public-orders")
            .context("writing the state");
        assert!(e.is_output());
        assert_eq!(
            e.remedy(),
            "see the downstream program's error; do not retry"
        );
        let e = Error::config("`port` must be a TCP port").in_stream("s");
        assert!(!e.is_output() && !e.is_connection());
        assert_eq!(e.remedy(), "fix the config file, the catalog or the state");
        assert!(Error::connection("lost").is_connection());
        assert!(Error::msg("x")
            .into_slot()
            .remedy()
            .contains("replication slot"));
    }
}

//! The crate's one error type. Its [`ErrorKind`] groups failures by what the
//! user should do about them; messages are lowercase, name the setting, host or
//! object at fault, and never contain a password.

use std::fmt;

/// What kind of failure an [`Error`] is, grouped by remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A setting is missing or invalid: fix the config file.
    Config,
    /// The server could not be reached (refused, unreachable, timed out):
    /// check host/port/network, then retry.
    Connect,
    /// The server rejected the credentials or the role may not log in: fix
    /// `user`/`password` or `pg_hba.conf`.
    Auth,
    /// The TLS negotiation or certificate verification failed: fix the
    /// `ssl*` settings or the server's certificate.
    Tls,
    /// The server reported an error for a statement.
    Server,
    /// A replication slot or the server's replication settings are not as
    /// needed (slot missing or active in another session, `wal_level`,
    /// `max_wal_senders`, the role's `REPLICATION` attribute, output plugin
    /// not installed): fix the server or the slot, see the message.
    Replication,
}

impl ErrorKind {
    /// A short hint saying what to do about this kind of failure.
    pub fn remedy(self) -> &'static str {
        match self {
            ErrorKind::Config => "fix the config file",
            ErrorKind::Connect => "check host, port and network, then retry",
            ErrorKind::Auth => "check user and password, and the server's pg_hba.conf",
            ErrorKind::Tls => "check the ssl settings and the server certificate",
            ErrorKind::Server => "see the server's message",
            ErrorKind::Replication => {
                "check the replication slot and the server's replication settings"
            }
        }
    }
}

/// An error of the `pg` crate.
pub struct Error {
    kind: ErrorKind,
    message: String,
    sqlstate: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            sqlstate: None,
            source: None,
        }
    }

    pub(crate) fn with_source(
        kind: ErrorKind,
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error {
            kind,
            message: message.into(),
            sqlstate: None,
            source: Some(source.into()),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// Records the server's SQLSTATE (for errors built from a server's
    /// ErrorResponse outside tokio-postgres, e.g. by [`crate::walsender`]).
    pub(crate) fn with_sqlstate(mut self, code: impl Into<String>) -> Self {
        self.sqlstate = Some(code.into());
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The server's SQLSTATE when the server reported the error, e.g.
    /// `"42704"` for a replication slot that does not exist.
    pub fn sqlstate(&self) -> Option<&str> {
        if let Some(code) = &self.sqlstate {
            return Some(code);
        }
        self.source
            .as_deref()
            .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
            .and_then(|e| e.code())
            .map(|c| c.code())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("sqlstate", &self.sqlstate)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

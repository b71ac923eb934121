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
        }
    }
}

/// An error of the `pg` crate.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
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
            source: Some(source.into()),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, message)
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
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

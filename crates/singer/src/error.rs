//! The crate's one error type.
//!
//! An [`Error`] is opaque: a [`ErrorKind`] to branch on, and a message that
//! is complete on its own. Messages are lowercase and start with where the
//! failure is (`state.json: …`, `line 12: …`, `stream public-orders: …`),
//! then say what is wrong, e.g. `line 3: RECORD is missing field "stream"`.
//!
//! Invariant: `Display` already contains the underlying cause (serde_json's
//! text and column, the I/O error), so `source()` is always `None` and a
//! caller that prints the error chain prints each fact once. The I/O error,
//! when there is one, stays reachable through [`Error::io_error`].

use std::fmt;
use std::io;

/// What kind of failure an [`Error`] is, grouped by remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Reading or writing failed (file missing, permission, disk): fix the
    /// environment, then retry.
    Io,
    /// The reader of our output went away (EPIPE). For a tap this means the
    /// target exited; its own error says why. Stop without retrying.
    BrokenPipe,
    /// The input is not valid JSON: fix whatever produced it.
    InvalidJson,
    /// The input is not valid UTF-8: fix whatever produced it.
    InvalidUtf8,
    /// The last line has no newline and does not parse: the producer most
    /// likely died mid-write; its own error says why.
    Truncated,
    /// A line is longer than the configured limit: raise the limit or find
    /// out why the producer wrote such a line.
    LineTooLong,
    /// A required field is absent: fix the producer or the file.
    MissingField,
    /// A field has the wrong JSON type (e.g. a number where a string is
    /// required): fix the producer or the file.
    WrongType,
    /// A field has the right JSON type but a value that cannot be used (an
    /// unparsable LSN or date-time, an unknown replication method).
    InvalidValue,
}

impl ErrorKind {
    /// A short hint saying what to do about this kind of failure.
    pub fn remedy(self) -> &'static str {
        match self {
            ErrorKind::Io => "check the file or stream, then retry",
            ErrorKind::BrokenPipe => "see the downstream program's error; do not retry",
            ErrorKind::Truncated => "see the upstream program's error; its output was cut off",
            ErrorKind::LineTooLong => "raise the line length limit",
            ErrorKind::InvalidJson
            | ErrorKind::InvalidUtf8
            | ErrorKind::MissingField
            | ErrorKind::WrongType
            | ErrorKind::InvalidValue => "fix the program or file that produced this input",
        }
    }
}

/// An error of the `singer` crate: a [`ErrorKind`] plus a complete message.
#[derive(thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    message: String,
    io: Option<io::Error>,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            io: None,
        }
    }

    /// An I/O failure; `what` names the operation and object, e.g.
    /// `cannot read state.json`. A broken pipe gets its own kind.
    pub(crate) fn io(what: impl fmt::Display, err: io::Error) -> Self {
        let message = format!("{what}: {err}");
        Error::io_with_message(message, err)
    }

    /// An I/O failure with a message of its own (which should include what
    /// the I/O error says, if that matters).
    pub(crate) fn io_with_message(message: String, err: io::Error) -> Self {
        let kind = if err.kind() == io::ErrorKind::BrokenPipe {
            ErrorKind::BrokenPipe
        } else {
            ErrorKind::Io
        };
        Error {
            kind,
            message,
            io: Some(err),
        }
    }

    pub(crate) fn missing_field(what: impl fmt::Display, field: &str) -> Self {
        Error::new(
            ErrorKind::MissingField,
            format!("{what} is missing field \"{field}\""),
        )
    }

    pub(crate) fn wrong_type(field: &str, expected: &str) -> Self {
        Error::new(
            ErrorKind::WrongType,
            format!("field \"{field}\" must be {expected}"),
        )
    }

    /// Prefixes the message with where the failure happened:
    /// `"{place}: {message}"`.
    pub(crate) fn context(mut self, place: impl fmt::Display) -> Self {
        self.message = format!("{place}: {}", self.message);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The underlying I/O error, for [`ErrorKind::Io`] and
    /// [`ErrorKind::BrokenPipe`].
    pub fn io_error(&self) -> Option<&io::Error> {
        self.io.as_ref()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .finish()
    }
}

/// Renders a serde_json syntax error as `invalid JSON at column C: reason`
/// (input of one line) or `invalid JSON at line L, column C: reason` (a
/// file), without serde_json's trailing ` at line L column C`.
pub(crate) fn json_syntax_message(err: &serde_json::Error, with_line: bool) -> String {
    let full = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let reason = full.strip_suffix(&suffix).unwrap_or(&full);
    if with_line {
        format!(
            "invalid JSON at line {}, column {}: {reason}",
            err.line(),
            err.column()
        )
    } else {
        format!("invalid JSON at column {}: {reason}", err.column())
    }
}

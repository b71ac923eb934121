//! The crate's one error type.
//!
//! An [`Error`] is opaque: an [`ErrorKind`] grouped by remedy, and a
//! message that reads from the outside in: where (`stream public-orders,
//! line 1832, column price`) then what (`invalid input syntax for type
//! numeric: "abc"`). Context is added with [`Error::at_line`],
//! [`Error::in_stream`] and [`Error::in_column`], each at most once; the
//! message is assembled only when displayed.
//!
//! Invariant: `Display` is complete on its own (server errors include their
//! DETAIL and HINT), so `source()` is `None` and a caller printing the chain
//! prints each fact once.

use std::fmt;

/// What kind of failure an [`Error`] is, grouped by remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is not what the Singer spec or this target accepts (bad
    /// JSON, a RECORD before its SCHEMA, a missing key, a value the column
    /// cannot hold): fix whatever produced the input.
    Input,
    /// A setting, or the combination of the input with a setting, is
    /// invalid (e.g. a key change on an existing table): fix the config.
    Config,
    /// The database refused or failed: see its message; retry if transient.
    Database,
    /// Reading the input or writing the states failed.
    Io,
}

impl ErrorKind {
    /// A short hint saying what to do about this kind of failure.
    pub fn remedy(self) -> &'static str {
        match self {
            ErrorKind::Input => "fix the program or file that produced this input",
            ErrorKind::Config => "fix the config file or the target table",
            ErrorKind::Database => "see the server's message; retry if it was transient",
            ErrorKind::Io => "check the input and output streams",
        }
    }
}

/// An error of the target.
pub struct Error {
    kind: ErrorKind,
    stream: Option<String>,
    line: Option<u64>,
    column: Option<String>,
    message: String,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error without context.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            stream: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// An input error.
    pub fn input(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Input, message)
    }

    /// A config error.
    pub fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Config, message)
    }

    /// A database error from a statement, with the server's DETAIL and HINT.
    /// `doing` says what the statement was for ("creating table …").
    pub fn database(doing: &str, e: &tokio_postgres::Error) -> Error {
        Error::new(ErrorKind::Database, format!("{doing}: {}", describe_db(e)))
    }

    /// Sets the input line if none is set yet.
    pub fn at_line(mut self, line: u64) -> Error {
        self.line.get_or_insert(line);
        self
    }

    /// Sets the stream if none is set yet.
    pub fn in_stream(mut self, stream: &str) -> Error {
        if self.stream.is_none() {
            self.stream = Some(stream.to_owned());
        }
        self
    }

    /// Sets the column if none is set yet.
    pub fn in_column(mut self, column: &str) -> Error {
        if self.column.is_none() {
            self.column = Some(column.to_owned());
        }
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The input line, if known.
    pub fn line(&self) -> Option<u64> {
        self.line
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(stream) = &self.stream {
            write!(f, "stream {stream}")?;
            sep = ", ";
        }
        if let Some(line) = self.line {
            write!(f, "{sep}line {line}")?;
            sep = ", ";
        }
        if let Some(column) = &self.column {
            write!(f, "{sep}column {column}")?;
            sep = ", ";
        }
        if !sep.is_empty() {
            f.write_str(": ")?;
        }
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {self}", self.kind)
    }
}

impl std::error::Error for Error {}

impl From<singer::Error> for Error {
    fn from(e: singer::Error) -> Error {
        let kind = match e.kind() {
            singer::ErrorKind::Io | singer::ErrorKind::BrokenPipe => ErrorKind::Io,
            _ => ErrorKind::Input,
        };
        Error::new(kind, e.to_string())
    }
}

/// The server's message with its DETAIL, HINT and WHERE, or the client
/// library's text for a non-server failure.
pub fn describe_db(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = db.message().to_owned();
            if let Some(detail) = db.detail() {
                s.push_str(" (detail: ");
                s.push_str(detail);
                s.push(')');
            }
            if let Some(hint) = db.hint() {
                s.push_str(" (hint: ");
                s.push_str(hint);
                s.push(')');
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                s.push_str(": ");
                s.push_str(&cause.to_string());
                source = cause.source();
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_reads_outside_in() {
        let e = Error::input("invalid input syntax for type numeric: \"abc\"")
            .in_column("price")
            .at_line(1832)
            .in_stream("public-orders")
            .at_line(1);
        assert_eq!(
            e.to_string(),
            "stream public-orders, line 1832, column price: invalid input syntax for type numeric: \"abc\""
        );
        assert_eq!(Error::input("x").to_string(), "x");
        assert_eq!(Error::input("x").at_line(3).to_string(), "line 3: x");
    }
}

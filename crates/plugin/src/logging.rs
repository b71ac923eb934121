//! Logging to stderr through `tracing`: stdout belongs to Singer messages
//! (tap) or state lines (target) and nothing else is ever written there.
//!
//! The level comes from `--log-level` or `LOG_LEVEL` (`debug`, `info`,
//! `warn`, `error`, or a full `tracing` filter such as
//! `info,tap_postgres=debug`); the format is text (colours only when stderr is
//! a terminal) or one JSON object per line for log shippers.
//!
//! # One event, one line
//! Messages carry names from the outside (tables, columns, streams, file
//! paths, server messages). A name with a newline must not split a line,
//! nor start one that Meltano or a log shipper would parse as the
//! program's own (`INFO METRIC: {…}`). So escaping happens here, where
//! lines are written, not at each call site: [`one_line`] writes control
//! characters as `\n`, `\r`, `\u{1b}`…, the text logger's writer applies it
//! to each event (the formatter hands it one whole event per write, ending
//! in its own newline, which is kept), the JSON format escapes by itself,
//! and [`crate::cli::exit_code`] applies it to the CRITICAL line.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `2026-11-23T20:40:00.123456Z  INFO tap_postgres: message`
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(s: &str) -> Option<LogFormat> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            _ => None,
        }
    }
}

/// Installs the global subscriber. `level` is a level or filter directive;
/// an invalid one is an error naming it.
pub fn init(level: &str, format: LogFormat) -> Result<(), String> {
    let filter =
        EnvFilter::try_new(level).map_err(|e| format!("invalid log level {level:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let ansi = std::io::stderr().is_terminal();
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(ansi)
            .with_writer(move || OneLineStderr { keep_escape: ansi })
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}

/// `text` with every control character but the tab escaped (`\n`, `\r`,
/// `\u{7f}`, …; also the Unicode line and paragraph separators), so that it
/// prints as one line. `keep_escape` leaves ESC alone (terminal colours).
pub fn one_line(text: &str, keep_escape: bool) -> Cow<'_, str> {
    let needs = |c: char| {
        (c.is_control() && c != '\t' && !(keep_escape && c == '\u{1b}'))
            || c == '\u{2028}'
            || c == '\u{2029}'
    };
    if !text.chars().any(needs) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if needs(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// stderr for the text logger: each write is one formatted event; it is
/// written as one line (its final newline kept, any other escaped).
struct OneLineStderr {
    keep_escape: bool,
}

impl Write for OneLineStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let (body, end) = match text.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (&*text, ""),
        };
        let mut err = std::io::stderr().lock();
        err.write_all(one_line(body, self.keep_escape).as_bytes())?;
        err.write_all(end.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_line() {
        assert_eq!(one_line("plain\ttext", false), "plain\ttext");
        assert_eq!(
            one_line("x\nINFO METRIC: {}\r\u{1b}[31m\u{2028}", false),
            "x\\nINFO METRIC: {}\\r\\u{1b}[31m\\u{2028}"
        );
        assert_eq!(one_line("\u{1b}[31m", true), "\u{1b}[31m");
    }
}

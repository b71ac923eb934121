//! The target's input: Singer messages read line by line from any
//! [`BufRead`] (stdin, a file, a test slice).
//!
//! Invariants:
//! - One `Vec<u8>` line buffer is reused for the reader's whole life; a
//!   returned [`Line`] borrows from it, so the next call needs the previous
//!   line to be dropped (a lending iterator, hence no `Iterator` impl).
//! - Line numbers are 1-based and count every line, blank ones included, so
//!   they match `sed -n Np` on the input.
//! - Blank lines (only spaces, tabs, `\r`) are skipped. A trailing `\r\n` is
//!   accepted.
//! - Every error names the line: `line 12: …`. The last line may lack its
//!   newline if it is valid JSON; if it is not, the error says the input
//!   looks truncated (the producer likely died mid-write).
//! - A parse error (bad JSON, bad field) leaves the reader at the next line,
//!   so a caller may log and go on. After an I/O or line-too-long error the
//!   position is unspecified; stop.
//!
//! The reader is synchronous; an async target runs it on a blocking thread.

use std::io::{BufRead, Read};

use crate::error::{Error, ErrorKind, Result};
use crate::message::MessageRef;

/// One parsed input line.
#[derive(Debug)]
pub struct Line<'a> {
    /// 1-based line number.
    pub number: u64,
    /// The line's text, without its line ending.
    pub text: &'a str,
    /// The message on the line.
    pub message: MessageRef<'a>,
}

/// Reads Singer messages, one per line, from `R`.
pub struct MessageReader<R> {
    inner: R,
    buf: Vec<u8>,
    line: u64,
    max_line_bytes: Option<usize>,
}

impl<R: BufRead> MessageReader<R> {
    /// A reader on `inner`, with no line length limit.
    pub fn new(inner: R) -> Self {
        MessageReader {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            line: 0,
            max_line_bytes: None,
        }
    }

    /// Fails with [`ErrorKind::LineTooLong`] on a line longer than `max`
    /// bytes (line ending excluded) instead of growing the buffer past it.
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = Some(max);
        self
    }

    /// The number of the last line read (0 before the first).
    pub fn line_number(&self) -> u64 {
        self.line
    }

    /// Reads the next non-blank line and parses it; `Ok(None)` at the end of
    /// the input.
    pub fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        loop {
            self.buf.clear();
            let n = self.read_line()?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            let number = self.line;
            let terminated = self.buf.last() == Some(&b'\n');
            if let Some(max) = self.max_line_bytes {
                if !terminated && n > max {
                    return Err(Error::new(
                        ErrorKind::LineTooLong,
                        format!("line {number}: longer than the limit of {max} bytes"),
                    ));
                }
            }
            let mut end = self.buf.len();
            if terminated {
                end -= 1;
                if end > 0 && self.buf[end - 1] == b'\r' {
                    end -= 1;
                }
            }
            if self.buf[..end]
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r'))
            {
                continue;
            }
            let text = std::str::from_utf8(&self.buf[..end]).map_err(|e| {
                Error::new(
                    ErrorKind::InvalidUtf8,
                    format!(
                        "line {number}: invalid UTF-8 at byte {}",
                        e.valid_up_to() + 1
                    ),
                )
            })?;
            return match MessageRef::parse(text) {
                Ok(message) => Ok(Some(Line {
                    number,
                    text,
                    message,
                })),
                Err(e) if !terminated && e.kind() == ErrorKind::InvalidJson => Err(Error::new(
                    ErrorKind::Truncated,
                    format!(
                        "line {number}: {e}; this last line has no trailing newline, \
                             so the input looks truncated (did the tap stop mid-write?)"
                    ),
                )),
                Err(e) => Err(e.context(format_args!("line {number}"))),
            };
        }
    }

    /// Reads one line, newline included, into `self.buf`; at most
    /// `max_line_bytes + 1` bytes when there is a limit.
    fn read_line(&mut self) -> Result<usize> {
        let r = match self.max_line_bytes {
            None => self.inner.read_until(b'\n', &mut self.buf),
            Some(max) => {
                let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
                (&mut self.inner)
                    .take(limit)
                    .read_until(b'\n', &mut self.buf)
            }
        };
        r.map_err(|e| Error::io(format_args!("line {}: cannot read input", self.line + 1), e))
    }

    /// The inner reader, e.g. to ask it whether a whole line is buffered.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// The inner reader, mutably (reading from it directly desynchronizes
    /// the line numbers).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The inner reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

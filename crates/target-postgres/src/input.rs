//! The input as events: [`Input::next_event`] returns the next Singer line,
//! [`Event::Idle`] when nothing complete arrived for a tick, or
//! [`Event::End`]. The caller decides what to do while idle (flush batches
//! that are due, so their states print while a LOG_BASED tap is quiet); no
//! callback runs inside the reader.
//!
//! A thread reads stdin (or `--input FILE`; a regular file on stdin works as
//! well) in large chunks and hands them over a bounded channel, so waiting
//! for input can time out. [`Chunks`] queues what arrived and knows where
//! the last complete line ends; a line is parsed only once it is complete,
//! so [`singer::MessageReader`] never waits inside a line and an idle tick
//! can come at any time, also while half of the next line has arrived.
//! Every record handed out before an [`Event::Idle`] is complete, so
//! flushing then is safe.
//!
//! Memory: at most `CHANNEL_CHUNKS` chunks of `CHUNK_BYTES` are in flight;
//! [`Chunks`] holds the chunks of the line being read (one or two, unless a
//! line is longer than a chunk).

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

use singer::{Line, MessageReader};

use crate::error::Result;

const CHUNK_BYTES: usize = 256 * 1024;
const CHANNEL_CHUNKS: usize = 4;

/// What the input has for the caller next.
#[derive(Debug)]
pub enum Event<'a> {
    /// A parsed, complete line.
    Line(Line<'a>),
    /// No complete line arrived for a tick.
    Idle,
    /// The input ended.
    End,
}

/// Singer lines from the chunks of [`spawn`], with idle ticks.
pub struct Input {
    reader: MessageReader<Chunks>,
    tick: Option<Duration>,
}

impl Input {
    /// Reads `rx`; with `tick`, [`Event::Idle`] comes after each `tick`
    /// without a complete line (never without).
    pub fn new(rx: Receiver<io::Result<Vec<u8>>>, tick: Option<Duration>) -> Input {
        Input {
            reader: MessageReader::new(Chunks::new(rx)),
            tick,
        }
    }

    /// The next event; an error names the line.
    pub fn next_event(&mut self) -> Result<Event<'_>> {
        loop {
            if self.reader.get_ref().line_ready() {
                return Ok(match self.reader.next_line()? {
                    Some(line) => Event::Line(line),
                    None => Event::End,
                });
            }
            if !self.reader.get_mut().receive(self.tick) {
                return Ok(Event::Idle);
            }
        }
    }
}

/// Starts the thread reading `source`; the receiver yields chunks, then
/// closes at end of input (or after passing on a read error).
pub fn spawn(mut source: Box<dyn Read + Send>) -> Receiver<io::Result<Vec<u8>>> {
    let (tx, rx): (SyncSender<io::Result<Vec<u8>>>, _) = mpsc::sync_channel(CHANNEL_CHUNKS);
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || loop {
            // One read per chunk, handed over at once: a second read could
            // block on a quiet pipe while holding data that is due (a tap
            // that wrote a burst and then waits). A file fills the chunk;
            // a pipe gives what it holds (64 KiB at most on Linux).
            let mut chunk = vec![0u8; CHUNK_BYTES];
            let n = loop {
                match source.read(&mut chunk) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other,
                }
            };
            match n {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        })
        .expect("spawn the input thread");
    rx
}

/// The chunks received and not yet read, as a `BufRead`. Offsets count
/// bytes from the start of the input.
struct Chunks {
    rx: Receiver<io::Result<Vec<u8>>>,
    queue: VecDeque<Vec<u8>>,
    /// Read position in `queue.front()`.
    pos: usize,
    /// Bytes read (consumed) so far.
    consumed: u64,
    /// Bytes received so far.
    received: u64,
    /// Offset just past the last `\n` received.
    complete_end: u64,
    /// The input thread finished.
    closed: bool,
    /// A read error, returned once the data before it is read.
    error: Option<io::Error>,
}

impl Chunks {
    fn new(rx: Receiver<io::Result<Vec<u8>>>) -> Chunks {
        Chunks {
            rx,
            queue: VecDeque::new(),
            pos: 0,
            consumed: 0,
            received: 0,
            complete_end: 0,
            closed: false,
            error: None,
        }
    }

    /// Whether the next non-blank line is complete (or the input ended or
    /// failed), so reading it does not wait. Blank lines before it are
    /// looked through, as the reader skips them.
    fn line_ready(&self) -> bool {
        if self.closed || self.error.is_some() {
            return true;
        }
        let mut at = self.consumed;
        for (i, chunk) in self.queue.iter().enumerate() {
            let start = if i == 0 { self.pos } else { 0 };
            for &b in &chunk[start..] {
                if at >= self.complete_end {
                    return false;
                }
                if !matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
                    return true;
                }
                at += 1;
            }
        }
        false
    }

    /// Waits up to `tick` (for ever without) for the input thread; false
    /// on a timeout.
    fn receive(&mut self, tick: Option<Duration>) -> bool {
        let got = match tick {
            None => self.rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(tick) => self.rx.recv_timeout(tick),
        };
        match got {
            Ok(Ok(chunk)) => {
                if let Some(i) = memchr::memrchr(b'\n', &chunk) {
                    self.complete_end = self.received + i as u64 + 1;
                }
                self.received += chunk.len() as u64;
                self.queue.push_back(chunk);
            }
            Ok(Err(e)) => self.error = Some(e),
            Err(RecvTimeoutError::Disconnected) => self.closed = true,
            Err(RecvTimeoutError::Timeout) => return false,
        }
        true
    }
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Chunks {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        loop {
            if self.queue.front().is_some_and(|c| self.pos < c.len()) {
                break;
            }
            if self.queue.pop_front().is_some() {
                self.pos = 0;
                continue;
            }
            if let Some(e) = self.error.take() {
                self.closed = true;
                return Err(e);
            }
            if self.closed {
                return Ok(&[]);
            }
            // Not reached after `line_ready`; a plain blocking read.
            self.receive(None);
        }
        Ok(&self.queue.front().expect("checked")[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        let len = self.queue.front().map_or(0, Vec::len);
        let amt = amt.min(len - self.pos);
        self.pos += amt;
        self.consumed += amt as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"type":"STATE","value":{"n":1}}"#;

    #[test]
    fn reads_every_line_in_order_across_chunks() {
        let text: String = (0..50_000)
            .map(|i| format!("{{\"type\":\"STATE\",\"value\":{{\"n\":{i}}}}}\n"))
            .collect();
        let rx = spawn(Box::new(std::io::Cursor::new(text.into_bytes())));
        let mut input = Input::new(rx, None);
        let mut n = 0u64;
        loop {
            match input.next_event().unwrap() {
                Event::Line(l) => {
                    assert_eq!(l.number, n + 1);
                    assert_eq!(
                        l.text,
                        format!("{{\"type\":\"STATE\",\"value\":{{\"n\":{n}}}}}")
                    );
                    n += 1;
                }
                Event::Idle => panic!("no tick was asked for"),
                Event::End => break,
            }
        }
        assert_eq!(n, 50_000);
    }

    #[test]
    fn idle_comes_while_half_a_line_waits_and_blank_lines_are_looked_through() {
        let (tx, rx) = mpsc::sync_channel(4);
        let mut input = Input::new(rx, Some(Duration::from_millis(5)));
        tx.send(Ok(format!("{RECORD}\n\n  \n{}", &RECORD[..10]).into_bytes()))
            .unwrap();
        match input.next_event().unwrap() {
            Event::Line(l) => assert_eq!(l.number, 1),
            other => panic!("{other:?}"),
        }
        // Two blank lines, then half a line: nothing complete.
        assert!(matches!(input.next_event().unwrap(), Event::Idle));
        assert!(matches!(input.next_event().unwrap(), Event::Idle));
        tx.send(Ok(format!("{}\n", &RECORD[10..]).into_bytes()))
            .unwrap();
        match input.next_event().unwrap() {
            Event::Line(l) => {
                assert_eq!(l.number, 4);
                assert_eq!(l.text, RECORD);
            }
            other => panic!("{other:?}"),
        }
        drop(tx);
        assert!(matches!(input.next_event().unwrap(), Event::End));
    }

    #[test]
    fn a_read_error_comes_after_the_data_before_it_and_names_the_line() {
        let (tx, rx) = mpsc::sync_channel(4);
        tx.send(Ok(format!("{RECORD}\n").into_bytes())).unwrap();
        tx.send(Err(io::Error::other("boom"))).unwrap();
        drop(tx);
        let mut input = Input::new(rx, None);
        assert!(matches!(input.next_event().unwrap(), Event::Line(_)));
        let e = input.next_event().unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("boom"), "{e}");
    }
}

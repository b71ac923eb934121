//! The input bytes: a thread reads stdin (or `--input FILE`; a regular file
//! on stdin works as well) in large chunks and hands them over a bounded
//! channel to [`ChunkReader`], the `BufRead` the converter's
//! [`singer::MessageReader`] reads from.
//!
//! Why a thread: while the input is quiet (a LOG_BASED tap waiting for
//! changes), the converter must still wake up to flush batches that are due
//! (`batch_flush_interval`) so their states get printed. [`ChunkReader`]
//! waits for the next chunk with a timeout and calls its idle hook on each
//! timeout. The hook runs between two reads, never inside a record: every
//! record already buffered is complete, so flushing then is safe even when
//! half of the next line has been read.
//!
//! Memory: at most `CHANNEL_CHUNKS` chunks of `CHUNK_BYTES` are in flight.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::time::Duration;

const CHUNK_BYTES: usize = 256 * 1024;
const CHANNEL_CHUNKS: usize = 4;

/// Called when no input arrived for a while.
pub type IdleHook = Box<dyn FnMut() -> io::Result<()>>;

/// Starts the thread reading `source`; the receiver yields chunks, then
/// closes at end of input (or after passing on a read error).
pub fn spawn(mut source: Box<dyn Read + Send>) -> Receiver<io::Result<Vec<u8>>> {
    let (tx, rx): (SyncSender<io::Result<Vec<u8>>>, _) = mpsc::sync_channel(CHANNEL_CHUNKS);
    std::thread::Builder::new()
        .name("input".into())
        .spawn(move || loop {
            let mut chunk = vec![0u8; CHUNK_BYTES];
            let mut filled = 0;
            // Fill most of the chunk when data is flowing, but hand over
            // what we have as soon as a read returns less (a quiet pipe).
            let result = loop {
                match source.read(&mut chunk[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(n) => {
                        filled += n;
                        if filled >= CHUNK_BYTES / 2 || n < 4096 {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            let eof = matches!(result, Ok(())) && filled == 0;
            if let Err(e) = result {
                if filled > 0 {
                    chunk.truncate(filled);
                    let _ = tx.send(Ok(chunk));
                }
                let _ = tx.send(Err(e));
                return;
            }
            if eof {
                return;
            }
            chunk.truncate(filled);
            if tx.send(Ok(chunk)).is_err() {
                return;
            }
        })
        .expect("spawn the input thread");
    rx
}

/// A `BufRead` over the chunks of [`spawn`], calling an idle hook while it
/// waits.
pub struct ChunkReader {
    rx: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    done: bool,
    idle: Option<(Duration, IdleHook)>,
}

impl ChunkReader {
    /// A reader of `rx`; with `idle`, `hook` runs every `tick` without input.
    pub fn new(rx: Receiver<io::Result<Vec<u8>>>, idle: Option<(Duration, IdleHook)>) -> Self {
        ChunkReader {
            rx,
            chunk: Vec::new(),
            pos: 0,
            done: false,
            idle,
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChunkReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos >= self.chunk.len() && !self.done {
            let next = match &mut self.idle {
                None => self.rx.recv().ok(),
                Some((tick, hook)) => match self.rx.recv_timeout(*tick) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => {
                        hook()?;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            match next {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => self.done = true,
            }
        }
        Ok(&self.chunk[self.pos..])
    }

    fn consume(&mut self, amt: usize) {
        self.pos = (self.pos + amt).min(self.chunk.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_everything_in_order() {
        let data: Vec<u8> = (0..1_000_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let rx = spawn(Box::new(std::io::Cursor::new(data.clone())));
        let mut out = Vec::new();
        ChunkReader::new(rx, None).read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn idle_hook_runs_while_waiting() {
        let (tx, rx) = mpsc::sync_channel(1);
        let count = std::rc::Rc::new(std::cell::Cell::new(0));
        let c = count.clone();
        let hook: IdleHook = Box::new(move || {
            c.set(c.get() + 1);
            Ok(())
        });
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(60));
            tx.send(Ok(b"x\n".to_vec())).unwrap();
        });
        let mut r = ChunkReader::new(rx, Some((Duration::from_millis(10), hook)));
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        t.join().unwrap();
        assert_eq!(line, "x\n");
        assert!(count.get() >= 2, "{}", count.get());
    }
}

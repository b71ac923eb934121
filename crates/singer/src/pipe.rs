//! Stdout written by a thread of its own ([`ThreadedStdout`]), so that a
//! tap's async runtime thread never blocks on a slow reader.
//!
//! Why: the tap runs its connections and its encoding on one thread (a
//! current-thread runtime: handing every few kilobytes of COPY data between
//! two threads cost more in wakeups than the overlap gained). A blocking
//! `write` to a full pipe (the target is busy committing) would freeze that
//! thread, and with it every connection's timers: a walsender would get no
//! status update and end the session after `wal_sender_timeout`, and the
//! stall watch could mistake our own silence for the server's.
//!
//! Invariants:
//! - Bytes are written to stdout in the order they were given, each
//!   `write` whole; nothing is dropped while no error occurred.
//! - The bytes handed over and not yet written ("pending") are bounded:
//!   [`Writable::wait`] resolves once they are at most [`SOFT_LIMIT`], and
//!   a `write` that would find more than [`HARD_LIMIT`] blocks until the
//!   thread catches up (a caller that never awaits is still bounded).
//! - The first write error (a closed pipe is [`io::ErrorKind::BrokenPipe`])
//!   is kept and returned by every later `write`, `flush` and by
//!   [`ThreadedStdout::finish`], which waits until everything is written.

use std::future::Future;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

/// [`Writable::wait`] resolves when at most this many bytes are pending.
pub const SOFT_LIMIT: usize = 4 << 20;
/// A `write` blocks while more than this many bytes are pending.
pub const HARD_LIMIT: usize = 16 << 20;

/// A [`Write`] that hands its bytes to a writer thread.
pub struct ThreadedStdout {
    shared: Arc<Shared>,
    chunks: Option<mpsc::Sender<Vec<u8>>>,
    spare: mpsc::Receiver<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    pending: AtomicUsize,
    state: Mutex<Waiting>,
    drained: Condvar,
}

#[derive(Default)]
struct Waiting {
    error: Option<(io::ErrorKind, String)>,
    waker: Option<Waker>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn error(&self) -> Option<io::Error> {
        let w = self.lock();
        w.error.as_ref().map(|(k, m)| io::Error::new(*k, m.clone()))
    }
}

impl ThreadedStdout {
    /// Starts the writer thread on the process's stdout.
    pub fn start() -> io::Result<ThreadedStdout> {
        ThreadedStdout::on(io::stdout())
    }

    /// Starts the writer thread on `out`.
    pub fn on<W: Write + Send + 'static>(mut out: W) -> io::Result<ThreadedStdout> {
        let shared = Arc::new(Shared {
            pending: AtomicUsize::new(0),
            state: Mutex::new(Waiting::default()),
            drained: Condvar::new(),
        });
        let (chunks, rx) = mpsc::channel::<Vec<u8>>();
        let (give_back, spare) = mpsc::sync_channel::<Vec<u8>>(4);
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                for chunk in rx {
                    let result = out.write_all(&chunk).and_then(|()| out.flush());
                    s.pending.fetch_sub(chunk.len(), Ordering::AcqRel);
                    let failed = result.is_err();
                    let waker = {
                        let mut w = s.lock();
                        if let Err(e) = result {
                            w.error = Some((e.kind(), e.to_string()));
                        }
                        w.waker.take()
                    };
                    s.drained.notify_all();
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                    if failed {
                        return;
                    }
                    let _ = give_back.try_send(chunk);
                }
            })?;
        Ok(ThreadedStdout {
            shared,
            chunks: Some(chunks),
            spare,
            thread: Some(thread),
        })
    }

    /// A handle to wait on until the pending bytes are few.
    pub fn writable(&self) -> Writable {
        Writable(Some(Arc::clone(&self.shared)))
    }

    /// Waits until every byte is written; the first write error, if any
    /// (a closed pipe says the downstream target exited).
    pub fn finish(mut self) -> crate::Result<()> {
        self.join();
        match self.shared.error() {
            Some(e) => Err(crate::writer::write_error(e)),
            None => Ok(()),
        }
    }

    fn join(&mut self) {
        self.chunks.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ThreadedStdout {
    fn drop(&mut self) {
        self.join();
    }
}

impl Write for ThreadedStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(e) = self.shared.error() {
            return Err(e);
        }
        if self.shared.pending.load(Ordering::Acquire) > HARD_LIMIT {
            let mut w = self.shared.lock();
            while w.error.is_none() && self.shared.pending.load(Ordering::Acquire) > HARD_LIMIT {
                w = self
                    .shared
                    .drained
                    .wait(w)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        let mut chunk = self.spare.try_recv().unwrap_or_default();
        chunk.clear();
        chunk.extend_from_slice(buf);
        self.shared.pending.fetch_add(buf.len(), Ordering::AcqRel);
        let sent = self.chunks.as_ref().map(|c| c.send(chunk));
        if !matches!(sent, Some(Ok(()))) {
            // The thread ended: it kept its error.
            return Err(self.shared.error().unwrap_or_else(|| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the stdout thread ended")
            }));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.shared.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Waits for a [`ThreadedStdout`] to have few bytes pending; a handle of
/// no writer ([`Writable::always`]) is always ready. One waiter at a time.
#[derive(Clone)]
pub struct Writable(Option<Arc<Shared>>);

impl Writable {
    /// A handle that never waits (output that is not a [`ThreadedStdout`]).
    pub fn always() -> Writable {
        Writable(None)
    }

    /// Resolves once at most [`SOFT_LIMIT`] bytes are pending, or the
    /// writer failed (the next write returns the error).
    pub fn wait(&self) -> WaitWritable<'_> {
        WaitWritable(self.0.as_deref())
    }
}

/// The future of [`Writable::wait`].
pub struct WaitWritable<'a>(Option<&'a Shared>);

impl Future for WaitWritable<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(s) = self.0 else {
            return Poll::Ready(());
        };
        if s.pending.load(Ordering::Acquire) <= SOFT_LIMIT {
            return Poll::Ready(());
        }
        let mut w = s.lock();
        // Checked again under the lock the writer thread takes before it
        // wakes: no wake-up is lost between the check and the registration.
        if w.error.is_some() || s.pending.load(Ordering::Acquire) <= SOFT_LIMIT {
            return Poll::Ready(());
        }
        w.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{Receiver, SyncSender};

    /// A writer that blocks each write until the test lets it through.
    struct Gate {
        out: Arc<Mutex<Vec<u8>>>,
        go: Receiver<io::Result<()>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.go.recv().expect("the test lets writes through")?;
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The writer, what it wrote, and the gate's key.
    type Gated = (
        ThreadedStdout,
        Arc<Mutex<Vec<u8>>>,
        SyncSender<io::Result<()>>,
    );

    fn gated() -> Gated {
        let out = Arc::new(Mutex::new(Vec::new()));
        let (tx, go) = mpsc::sync_channel(1024);
        let w = ThreadedStdout::on(Gate {
            out: Arc::clone(&out),
            go,
        })
        .unwrap();
        (w, out, tx)
    }

    fn poll_once(f: &mut WaitWritable<'_>) -> Poll<()> {
        let waker = Waker::noop();
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn writes_in_order_and_finish_waits_for_all() {
        let (mut w, out, go) = gated();
        for i in 0..100u8 {
            go.send(Ok(())).unwrap();
            w.write_all(&[i; 3]).unwrap();
        }
        w.finish().unwrap();
        let want: Vec<u8> = (0..100u8).flat_map(|i| [i; 3]).collect();
        assert_eq!(*out.lock().unwrap(), want);
    }

    #[test]
    fn writable_waits_while_more_than_the_soft_limit_is_pending() {
        let (mut w, out, go) = gated();
        let writable = w.writable();
        w.write_all(&vec![b'x'; SOFT_LIMIT]).unwrap();
        assert_eq!(poll_once(&mut writable.wait()), Poll::Ready(()));
        w.write_all(b"y").unwrap();
        assert_eq!(poll_once(&mut writable.wait()), Poll::Pending);
        go.send(Ok(())).unwrap();
        go.send(Ok(())).unwrap();
        w.finish().unwrap();
        assert_eq!(poll_once(&mut writable.wait()), Poll::Ready(()));
        assert_eq!(out.lock().unwrap().len(), SOFT_LIMIT + 1);
    }

    #[test]
    fn a_write_error_is_returned_by_later_writes_and_finish() {
        let (mut w, _out, go) = gated();
        go.send(Err(io::Error::new(io::ErrorKind::BrokenPipe, "closed")))
            .unwrap();
        w.write_all(b"first").unwrap();
        let later = loop {
            match w.write_all(b"more") {
                Ok(()) => std::thread::yield_now(),
                Err(e) => break e,
            }
        };
        assert_eq!(later.kind(), io::ErrorKind::BrokenPipe);
        let err = w.finish().unwrap_err();
        assert!(err.to_string().contains("stdout closed"), "{err}");
    }

    #[test]
    fn write_blocks_above_the_hard_limit_until_the_thread_catches_up() {
        let (mut w, out, go) = gated();
        w.write_all(&vec![b'a'; HARD_LIMIT + 1]).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(200));
            go.send(Ok(())).unwrap();
            go.send(Ok(())).unwrap();
        });
        let t = std::time::Instant::now();
        w.write_all(b"b").unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(150));
        release.join().unwrap();
        w.finish().unwrap();
        assert_eq!(out.lock().unwrap().len(), HARD_LIMIT + 2);
    }
}

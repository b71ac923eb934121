//! Noticing a stalled connection: one that waits for the server and hears
//! nothing, while TCP sees nothing wrong (a frozen server, a proxy or
//! middlebox that stopped forwarding but still acknowledges).
//!
//! Owns the stall rule for both connection kinds and the watch on ordinary
//! (tokio-postgres) connections; [`crate::walsender`] applies the same rule
//! to its stream. Knows the wire protocol only as far as message framing.
//!
//! # The rule
//! A connection that has waited `stall_timeout_seconds` for the server with
//! nothing arriving is not yet declared dead: a slow statement (a big sort,
//! a lock wait, a walsender decoding a long transaction) is silent too. It
//! is checked on a **new** connection ([`probe`]), which asks
//! `pg_stat_activity` what the server is doing for it:
//! - the new connection gets no answer within the timeout either, or fails
//!   at the network level: the path is down → stalled;
//! - the session is gone → stalled (the server dropped it);
//! - an ordinary session is `idle`/`idle in transaction` (the server
//!   answered and waits for us), or blocked in `ClientWrite` (it cannot
//!   send to us while we read nothing) → stalled;
//! - a walsender blocked sending (`WalSenderWriteData`), or idle in its
//!   main loop or waiting for WAL although we asked for a reply → stalled;
//! - anything else (the server is working) → not stalled; checked again
//!   after another `stall_timeout_seconds`.
//!
//! The check needs the server session to stay the connection's: behind a
//! transaction-pooling proxy (pgbouncer in transaction mode) it does not,
//! and `stall_timeout_seconds` must be 0 there (the schema says so).
//!
//! A stalled connection fails its pending request with an error saying the
//! connection stalled and that a rerun resumes from the last state. So a
//! stall is reported like a cut connection, in bounded time: at most about
//! `2 × stall_timeout_seconds` (the wait, then the check's own timeout).
//!
//! # Watching an ordinary connection
//! tokio-postgres owns its socket, so the watch sits in the byte stream
//! ([`Watch`]): below tokio-postgres and above TLS, it sees the plaintext
//! protocol. It counts requests that end with ReadyForQuery (startup,
//! `Query`, `Sync`) against the ReadyForQuery messages received, so it
//! knows whether the client waits for the server (an idle connection is
//! never suspected), and when tokio-postgres last asked for bytes and got
//! none (a client that stops reading because its consumer is slow is not
//! waiting, so it is never suspected either). A task per connection
//! ([`spawn_watch`]) runs the rule; on a stall it makes the next read of
//! the connection return a FATAL ErrorResponse (SQLSTATE 08006, the
//! message above) followed by the end of the stream, exactly what a server
//! sends when it ends a session, so the pending statement fails with the
//! message and the connection closes. The response is only inserted
//! between whole messages; mid-message the read fails with the same text
//! as an I/O error instead.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

use crate::config::ConnectionConfig;
use crate::ErrorKind;

/// The SQLSTATE of a stall error (`connection_failure`).
pub const STALL_SQLSTATE: &str = "08006";

/// The message of a stall error on the connection to `target`.
pub(crate) fn stall_message(target: &str, quiet: Duration, why: &str) -> String {
    format!(
        "the connection to {target} stalled: nothing arrived for {} s while waiting for the \
         server, and {why}; a rerun resumes from the last state (stall_timeout_seconds, \
         keepalives_idle and tcp_user_timeout set how soon a stall is noticed)",
        quiet.as_secs()
    )
}

/// Which kind of session [`probe`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// An ordinary connection.
    Sql,
    /// A replication connection in streaming mode.
    WalSender,
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The server is working for the connection: wait on.
    Busy(String),
    /// The connection is stalled, and why.
    Stalled(String),
}

/// Asks the server, on a new connection, what backend `pid` is doing (see
/// the [module documentation](self) for the rule). Bounded by the stall
/// timeout (at least one second).
pub(crate) async fn probe(config: &ConnectionConfig, pid: i32, session: Session) -> Verdict {
    let budget = config.liveness.stall_timeout.max(Duration::from_secs(1));
    let mut check = config.clone();
    // Longer than the budget: a hang is reported by the budget below.
    check.connect_timeout = budget * 2;
    check.liveness.stall_timeout = Duration::ZERO;
    let attempt = look(check, pid);
    match tokio::time::timeout(budget, attempt).await {
        Err(_) => Verdict::Stalled(format!(
            "a new connection got no answer within {} s either",
            budget.as_secs()
        )),
        Ok(Err(e)) if e.kind() == ErrorKind::Connect => {
            Verdict::Stalled(format!("a new connection failed too ({e})"))
        }
        // Refused for another reason (too many connections, …): cannot tell.
        Ok(Err(e)) => Verdict::Busy(format!("the check failed: {e}")),
        Ok(Ok(None)) => {
            Verdict::Stalled("the server has no session for this connection any more".into())
        }
        Ok(Ok(Some((state, wait)))) => classify(session, &state, &wait),
    }
}

/// `state` and `wait_event` of backend `pid`, on a new connection, made
/// on a thread of its own with a one-thread runtime: the compiler cannot
/// prove a tokio-postgres connect future `Send` inside a spawned task (a
/// known higher-ranked-lifetime limitation), and a check is rare (only
/// after `stall_timeout_seconds` of silence).
async fn look(check: ConnectionConfig, pid: i32) -> Looked {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("stall-check".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = match runtime {
                Ok(rt) => rt.block_on(look_here(check, pid)),
                Err(e) => Err(crate::Error::new(ErrorKind::Server, e.to_string())),
            };
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(crate::Error::new(ErrorKind::Server, e.to_string()));
    }
    rx.await
        .unwrap_or_else(|_| Err(crate::Error::new(ErrorKind::Server, "the check ended")))
}

async fn look_here(check: ConnectionConfig, pid: i32) -> Looked {
    let client = crate::connect::connect_unwatched(&check).await?;
    // The pid is an `i32` written by `Display`: nothing to escape.
    let sql = format!("SELECT state, wait_event FROM pg_stat_activity WHERE pid = {pid}");
    let messages = client
        .simple_query(&sql)
        .await
        .map_err(|e| crate::Error::with_source(ErrorKind::Server, e.to_string(), e))?;
    Ok(messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some((
            r.get(0).unwrap_or_default().to_string(),
            r.get(1).unwrap_or_default().to_string(),
        )),
        _ => None,
    }))
}

type Looked = Result<Option<(String, String)>, crate::Error>;

/// The rule for a session's `state` and `wait_event`.
fn classify(session: Session, state: &str, wait: &str) -> Verdict {
    let blocked_sending = "the server is blocked sending to this client";
    match session {
        Session::Sql if wait.eq_ignore_ascii_case("ClientWrite") => {
            Verdict::Stalled(blocked_sending.into())
        }
        Session::Sql if state != "active" => Verdict::Stalled(format!(
            "the server's session is {state}: it has answered and waits for this client"
        )),
        Session::WalSender
            if wait.eq_ignore_ascii_case("WalSenderWriteData")
                || wait.eq_ignore_ascii_case("ClientWrite") =>
        {
            Verdict::Stalled(blocked_sending.into())
        }
        Session::WalSender
            if wait.eq_ignore_ascii_case("WalSenderMain")
                || wait.eq_ignore_ascii_case("WalSenderWaitForWAL") =>
        {
            Verdict::Stalled(
                "the server's walsender is idle and did not receive this client's requests \
                 for a reply"
                    .into(),
            )
        }
        _ if wait.is_empty() => Verdict::Busy("the server is working on it".into()),
        _ => Verdict::Busy(format!("the server is working on it (waiting on {wait})")),
    }
}

/// What a [`Watch`] shares with its watching task.
#[derive(Default)]
pub(crate) struct Tracker {
    state: Mutex<TrackState>,
}

#[derive(Default)]
struct TrackState {
    /// Requests sent that end with ReadyForQuery, minus those received.
    outstanding: u32,
    /// Since when the reader has been asking for bytes and getting none.
    waiting_since: Option<Instant>,
    /// The reader to wake when the connection is declared stalled.
    waker: Option<Waker>,
    /// The stall message, once declared.
    failed: Option<String>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, TrackState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the client has waited for an answer with nothing arriving.
    fn quiet(&self) -> Option<Duration> {
        let s = self.lock();
        if s.outstanding == 0 || s.failed.is_some() {
            return None;
        }
        s.waiting_since.map(|t| t.elapsed())
    }

    /// Starts the wait over (the server was found busy).
    fn rewind(&self) {
        let mut s = self.lock();
        if s.waiting_since.is_some() {
            s.waiting_since = Some(Instant::now());
        }
    }

    fn fail(&self, message: String) {
        let mut s = self.lock();
        s.failed = Some(message);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }
}

/// Runs the stall rule for an ordinary connection to backend `pid` until
/// the connection is gone. Does nothing when `stall_timeout_seconds` is 0.
pub(crate) fn spawn_watch(tracker: &Arc<Tracker>, config: &ConnectionConfig, pid: i32) {
    let stall = config.liveness.stall_timeout;
    if stall.is_zero() {
        return;
    }
    let tracker: Weak<Tracker> = Arc::downgrade(tracker);
    let config = config.clone();
    let tick = (stall / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(tick).await;
            let Some(t) = tracker.upgrade() else { return };
            let Some(quiet) = t.quiet() else { continue };
            if quiet < stall {
                continue;
            }
            match probe(&config, pid, Session::Sql).await {
                Verdict::Busy(why) => {
                    tracing::debug!(
                        "connection to {}: nothing for {} s; {why}",
                        config.describe(),
                        quiet.as_secs()
                    );
                    t.rewind();
                }
                Verdict::Stalled(why) => {
                    t.fail(stall_message(&config.describe(), quiet, &why));
                    return;
                }
            }
        }
    });
}

/// The header of a protocol message.
enum Header {
    /// A typed message: its tag.
    Typed(u8),
    /// An untyped one (startup phase): its request code.
    Untyped(u32),
}

/// Follows the message framing of one direction of the protocol.
struct Framer {
    typed: bool,
    header: [u8; 8],
    have: usize,
    skip: usize,
}

impl Framer {
    fn new(typed: bool) -> Framer {
        Framer {
            typed,
            header: [0; 8],
            have: 0,
            skip: 0,
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.skip == 0
    }

    /// Consumes `data` up to the next complete header and returns it.
    fn next(&mut self, data: &mut &[u8]) -> Option<Header> {
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                self.skip -= n;
                *data = &data[n..];
                continue;
            }
            let len = if self.typed { 5 } else { 8 };
            let n = (len - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            *data = &data[n..];
            if self.have < len {
                continue;
            }
            self.have = 0;
            let word =
                |i: usize| u32::from_be_bytes(self.header[i..i + 4].try_into().expect("4 bytes"));
            return Some(if self.typed {
                self.skip = (word(1) as usize).saturating_sub(4);
                Header::Typed(self.header[0])
            } else {
                self.skip = (word(0) as usize).saturating_sub(8);
                Header::Untyped(word(4))
            });
        }
        None
    }
}

/// `SSLRequest`'s request code.
const SSL_REQUEST: u32 = 80_877_103;
/// Protocol 3.0's startup code.
const PROTOCOL_3: u32 = 196_608;

/// A byte stream that follows the protocol for the stall rule (see the
/// [module documentation](self)). Wraps the socket; when TLS is
/// negotiated it goes passive and a second `Watch` around the TLS stream
/// (made by [`WatchTls`]) takes over.
pub(crate) struct Watch<S> {
    inner: S,
    tracker: Arc<Tracker>,
    front: Framer,
    back: Framer,
    /// Sent SSLRequest, the one-byte answer is next.
    ssl_answer_next: bool,
    /// TLS runs on top: the bytes here are ciphertext.
    passive: bool,
    /// The ErrorResponse being handed out, and how much of it is.
    inject: Option<(Vec<u8>, usize)>,
    ended: bool,
}

impl<S> Watch<S> {
    pub(crate) fn new(inner: S, tracker: Arc<Tracker>, startup: bool) -> Watch<S> {
        Watch {
            inner,
            tracker,
            front: Framer::new(!startup),
            back: Framer::new(true),
            ssl_answer_next: false,
            passive: false,
            inject: None,
            ended: false,
        }
    }

    fn scan_front(&mut self, mut data: &[u8]) {
        while let Some(h) = self.front.next(&mut data) {
            match h {
                Header::Untyped(SSL_REQUEST) => self.ssl_answer_next = true,
                Header::Untyped(PROTOCOL_3) => {
                    self.front.typed = true;
                    self.tracker.lock().outstanding += 1;
                }
                Header::Untyped(_) => {}
                Header::Typed(b'Q' | b'S') => self.tracker.lock().outstanding += 1,
                Header::Typed(_) => {}
            }
        }
    }

    fn scan_back(&mut self, mut data: &[u8]) {
        if self.ssl_answer_next {
            self.ssl_answer_next = false;
            match data.first() {
                Some(b'S') => {
                    self.passive = true;
                    return;
                }
                Some(_) => data = &data[1..],
                None => {}
            }
        }
        while let Some(h) = self.back.next(&mut data) {
            if let Header::Typed(b'Z') = h {
                let mut s = self.tracker.lock();
                s.outstanding = s.outstanding.saturating_sub(1);
            }
        }
    }
}

/// A FATAL ErrorResponse carrying `message`, as a server ends a session,
/// then ReadyForQuery, for each of `answers` waiting requests: every one
/// fails with the message (tokio-postgres hands each request the messages
/// up to a ReadyForQuery; without one the first request would take the
/// error and the others only "connection closed").
fn error_responses(message: &str, answers: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(message.len() + 32);
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', STALL_SQLSTATE),
        (b'M', message),
    ] {
        body.push(tag);
        body.extend_from_slice(value.replace('\0', " ").as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = Vec::with_capacity((body.len() + 11) * answers as usize);
    for _ in 0..answers {
        out.push(b'E');
        out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
    }
    out
}

impl<S: AsyncRead + Unpin> AsyncRead for Watch<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some((bytes, done)) = &mut this.inject {
            let n = (bytes.len() - *done).min(buf.remaining());
            buf.put_slice(&bytes[*done..*done + n]);
            *done += n;
            if *done == bytes.len() {
                this.inject = None;
                this.ended = true;
            }
            return Poll::Ready(Ok(()));
        }
        if this.ended {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if !this.passive {
                    this.tracker.lock().waiting_since = None;
                    this.scan_back(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending if this.passive => Poll::Pending,
            Poll::Pending => {
                let mut s = this.tracker.lock();
                if let Some(message) = s.failed.clone() {
                    drop(s);
                    if this.back.at_boundary() {
                        let answers = this.tracker.lock().outstanding.max(1);
                        this.inject = Some((error_responses(&message, answers), 0));
                        return Pin::new(this).poll_read(cx, buf);
                    }
                    this.ended = true;
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, message)));
                }
                s.waiting_since.get_or_insert_with(Instant::now);
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watch<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if !this.passive {
                this.scan_front(&buf[..n]);
            }
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: TlsStream + Unpin> TlsStream for Watch<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

/// A TLS connector whose streams are [`Watch`]ed (the plaintext side).
pub(crate) struct WatchTls<T> {
    pub(crate) inner: T,
    pub(crate) tracker: Arc<Tracker>,
}

impl<S, T> TlsConnect<S> for WatchTls<T>
where
    T: TlsConnect<S>,
    T::Future: Send + 'static,
    T::Stream: Unpin,
{
    type Stream = Watch<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Stream, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let tracker = self.tracker;
        let handshake = self.inner.connect(stream);
        Box::pin(async move { Ok(Watch::new(handshake.await?, tracker, true)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_counts_requests_and_answers() {
        let tracker = Arc::new(Tracker::default());
        let mut w = Watch::new((), tracker.clone(), true);
        // SSLRequest, refused, then the startup message.
        w.scan_front(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        w.scan_back(b"N");
        let mut startup = vec![0, 0, 0, 13, 0, 3, 0, 0];
        startup.extend_from_slice(b"user\0");
        w.scan_front(&startup[..5]);
        w.scan_front(&startup[5..]);
        assert_eq!(tracker.lock().outstanding, 1);
        // A Query split anywhere, then ReadyForQuery split too.
        let q = [
            b'Q', 0, 0, 0, 13, b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'1', 0,
        ];
        w.scan_front(&q[..3]);
        w.scan_front(&q[3..]);
        assert_eq!(tracker.lock().outstanding, 2);
        w.scan_back(&[b'Z', 0, 0, 0, 5, b'I', b'Z', 0]);
        assert_eq!(tracker.lock().outstanding, 1);
        assert!(!w.back.at_boundary());
        w.scan_back(&[0, 0, 5, b'I']);
        assert_eq!(tracker.lock().outstanding, 0);
        assert!(w.back.at_boundary());
    }

    #[test]
    fn tls_makes_the_socket_layer_passive() {
        let tracker = Arc::new(Tracker::default());
        let mut w = Watch::new((), tracker.clone(), true);
        w.scan_front(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        w.scan_back(b"S");
        assert!(w.passive);
    }

    #[test]
    fn rule() {
        use Session::*;
        assert!(matches!(classify(Sql, "active", ""), Verdict::Busy(_)));
        assert!(matches!(classify(Sql, "active", "Lock"), Verdict::Busy(_)));
        assert!(matches!(
            classify(Sql, "active", "ClientWrite"),
            Verdict::Stalled(_)
        ));
        assert!(matches!(
            classify(Sql, "idle in transaction", "ClientRead"),
            Verdict::Stalled(_)
        ));
        assert!(matches!(
            classify(WalSender, "active", "WalSenderMain"),
            Verdict::Stalled(_)
        ));
        assert!(matches!(
            classify(WalSender, "active", ""),
            Verdict::Busy(_)
        ));
    }

    #[test]
    fn error_responses_are_whole_messages() {
        let m = error_responses("stalled", 2);
        let tracker = Arc::new(Tracker::default());
        let mut w = Watch::new((), tracker, false);
        let mut tags = Vec::new();
        let mut data = &m[..];
        while let Some(Header::Typed(t)) = w.back.next(&mut data) {
            tags.push(t);
        }
        assert_eq!(tags, b"EZEZ");
        assert!(w.back.at_boundary());
    }
}

//! The wire under the replication client: one socket (TCP, TCP + TLS, or a
//! Unix socket), the startup packet with `replication=database`,
//! authentication, framing of backend messages, and turning a server's
//! ErrorResponse into a [`crate::Error`].
//!
//! Owns no replication logic: [`super::client`] decides which commands to
//! send, [`super::stream`] runs the CopyBoth phase. It must not know about
//! slots or output plugins.
//!
//! Invariants: TLS is negotiated exactly as [`crate::connect()`] does it (the
//! same rustls configuration from [`crate::tls::make_tls_connect`], the same
//! host name for `verify-full`, `prefer` falling back to plain text when the
//! server answers `N`); the password is only ever written to the socket,
//! never into a message or a log line.

use std::collections::HashMap;
use std::io;

use bytes::{Buf, BytesMut};
use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{self, ScramSha256};
use postgres_protocol::message::backend::{ErrorFields, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};

use crate::config::{ConnectionConfig, SslMode};
use crate::socket::Socket;
use crate::tls::make_tls_connect;
use crate::{Error, ErrorKind};

/// Tag of CopyBothResponse, which postgres-protocol's parser does not know.
const COPY_BOTH_RESPONSE_TAG: u8 = b'W';

/// A message from the server.
pub(crate) enum Backend {
    /// Any message postgres-protocol parses.
    Message(Message),
    /// CopyBothResponse: the server entered the streaming phase.
    CopyBoth,
}

/// An authenticated connection, idle (after ReadyForQuery).
pub(crate) struct Conn {
    socket: Box<dyn Socket>,
    read: BytesMut,
    pub(crate) write: BytesMut,
    /// `host:port/dbname as user`, for messages.
    pub(crate) target: String,
    /// ParameterStatus values reported by the server (`server_version`, …).
    pub(crate) parameters: HashMap<String, String>,
    /// Whether the socket is encrypted.
    pub(crate) tls: bool,
    /// The server process (BackendKeyData), for the stall check.
    pub(crate) pid: Option<i32>,
    /// The settings it was opened with, for the stall check's own
    /// connection.
    pub(crate) config: ConnectionConfig,
}

/// A server's ErrorResponse (or NoticeResponse), with the fields we report.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerMessage {
    pub(crate) severity: String,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) detail: Option<String>,
    pub(crate) hint: Option<String>,
}

impl ServerMessage {
    pub(crate) fn parse(mut fields: ErrorFields<'_>) -> io::Result<ServerMessage> {
        let mut m = ServerMessage::default();
        while let Some(field) = fields.next()? {
            let value = String::from_utf8_lossy(field.value_bytes()).into_owned();
            match field.type_() {
                b'V' => m.severity = value,
                b'S' if m.severity.is_empty() => m.severity = value,
                b'C' => m.code = value,
                b'M' => m.message = value,
                b'D' => m.detail = Some(value),
                b'H' => m.hint = Some(value),
                _ => {}
            }
        }
        Ok(m)
    }

    /// `message; DETAIL: …; HINT: …`.
    pub(crate) fn describe(&self) -> String {
        let mut s = self.message.clone();
        if let Some(d) = &self.detail {
            s.push_str("; DETAIL: ");
            s.push_str(d);
        }
        if let Some(h) = &self.hint {
            s.push_str("; HINT: ");
            s.push_str(h);
        }
        s
    }

    /// The kind of failure, by remedy.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self.code.as_str() {
            // invalid_password, invalid_authorization_specification
            "28P01" | "28000" => ErrorKind::Auth,
            // invalid_catalog_name: the database does not exist
            "3D000" => ErrorKind::Config,
            // admin_shutdown (pg_terminate_backend, server shutdown),
            // crash_shutdown, cannot_connect_now (starting up): retry
            "57P01" | "57P02" | "57P03" => ErrorKind::Connect,
            // undefined_object (slot missing), object_in_use (slot active),
            // duplicate_object (slot exists), configuration_limit_exceeded
            // (max_replication_slots), object_not_in_prerequisite_state
            // (wal_level), too_many_connections (max_wal_senders),
            // insufficient_privilege (no REPLICATION attribute),
            // undefined_file (output plugin not installed)
            "42704" | "55006" | "42710" | "53400" | "55000" | "53300" | "42501" | "58P01" => {
                ErrorKind::Replication
            }
            _ => ErrorKind::Server,
        }
    }

    /// This message as an [`Error`] of the command `what`.
    pub(crate) fn into_error(self, what: &str, target: &str) -> Error {
        Error::new(
            self.kind(),
            format!("{what} on {target}: {}", self.describe()),
        )
        .with_sqlstate(self.code)
    }
}

fn io_error(what: &str, target: &str, e: io::Error) -> Error {
    let kind = ErrorKind::Connect;
    let cause = if e.kind() == io::ErrorKind::UnexpectedEof {
        "the server closed the connection".to_string()
    } else {
        e.to_string()
    };
    Error::with_source(
        kind,
        format!("{what} on {target}: {cause} ({})", kind.remedy()),
        e,
    )
}

impl Conn {
    /// Reads the next message. `what` names the command for errors.
    /// A silence of `stall_timeout_seconds` is checked as [`crate::stall`]
    /// says, and a stall is an error.
    pub(crate) async fn read_message(&mut self, what: &str) -> Result<Backend, Error> {
        let stall = self.config.liveness.stall_timeout;
        let mut waiting = tokio::time::Instant::now();
        loop {
            if let Some(m) = self.try_parse().map_err(|e| self.io_error(what, e))? {
                return Ok(m);
            }
            let read = if stall.is_zero() {
                Ok(self.read_more().await)
            } else {
                tokio::time::timeout(stall, self.read_more()).await
            };
            match read {
                Ok(r) => {
                    r.map_err(|e| io_error(what, &self.target, e))?;
                    waiting = tokio::time::Instant::now();
                }
                Err(_) => {
                    check_stall(
                        &self.config,
                        self.pid,
                        &self.target,
                        what,
                        waiting.elapsed(),
                    )
                    .await?
                }
            }
        }
    }
}

/// Nothing for `quiet` while waiting for an answer: an error unless the
/// server is busy with it.
async fn check_stall(
    config: &ConnectionConfig,
    pid: Option<i32>,
    target: &str,
    what: &str,
    quiet: std::time::Duration,
) -> Result<(), Error> {
    let verdict = match pid {
        Some(pid) => crate::stall::probe(config, pid, crate::stall::Session::Sql).await,
        None => crate::stall::Verdict::Stalled(
            "the server's process is unknown, so it was not asked".into(),
        ),
    };
    match verdict {
        crate::stall::Verdict::Busy(why) => {
            tracing::debug!(
                "{what} on {target}: nothing for {} s; {why}",
                quiet.as_secs()
            );
            Ok(())
        }
        crate::stall::Verdict::Stalled(why) => Err(Error::new(
            ErrorKind::Connect,
            format!(
                "{what}: {}",
                crate::stall::stall_message(target, quiet, &why)
            ),
        )
        .with_sqlstate(crate::stall::STALL_SQLSTATE)),
    }
}

impl Conn {
    /// Parses one complete message from the read buffer, if there is one.
    pub(crate) fn try_parse(&mut self) -> io::Result<Option<Backend>> {
        if self.read.len() >= 5 && self.read[0] == COPY_BOTH_RESPONSE_TAG {
            let len = u32::from_be_bytes(self.read[1..5].try_into().expect("4 bytes")) as usize;
            if self.read.len() < len + 1 {
                return Ok(None);
            }
            self.read.advance(len + 1);
            return Ok(Some(Backend::CopyBoth));
        }
        Ok(Message::parse(&mut self.read)?.map(Backend::Message))
    }

    /// Reads whatever the socket has into the read buffer; an end of
    /// stream is an `UnexpectedEof` error. Cancel-safe.
    pub(crate) async fn read_more(&mut self) -> io::Result<()> {
        if self.read.capacity() - self.read.len() < 4096 {
            self.read.reserve(64 * 1024);
        }
        match self.socket.read_buf(&mut self.read).await? {
            0 => Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            _ => Ok(()),
        }
    }

    /// Writes and flushes the write buffer.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        let r = self.socket.write_all(&self.write).await;
        self.write.clear();
        r?;
        self.socket.flush().await
    }

    pub(crate) fn io_error(&self, what: &str, e: io::Error) -> Error {
        io_error(what, &self.target, e)
    }

    /// Sends `Terminate` and closes the socket, ignoring failures (the
    /// connection is being abandoned either way).
    pub(crate) async fn terminate(mut self) {
        frontend::terminate(&mut self.write);
        if self.flush().await.is_ok() {
            let _ = self.socket.shutdown().await;
        }
    }
}

/// Logs a NoticeResponse the server sent.
pub(crate) fn log_notice(target: &str, fields: ErrorFields<'_>) {
    if let Ok(n) = ServerMessage::parse(fields) {
        tracing::info!("{target}: {}: {}", n.severity, n.describe());
    }
}

/// Opens, secures and authenticates a replication connection; returns it
/// idle. The whole exchange is bounded by `config.connect_timeout`.
pub(crate) async fn connect(
    config: &ConnectionConfig,
    gucs: &[(&str, &str)],
) -> Result<Conn, Error> {
    let target = config.describe();
    let fail = |kind: ErrorKind, cause: String| {
        Error::new(
            kind,
            format!(
                "cannot open a replication connection to {target}: {cause} ({})",
                kind.remedy()
            ),
        )
    };
    let options = options(gucs).map_err(|cause| fail(ErrorKind::Config, cause))?;
    let tls = make_tls_connect(&config.ssl)?;
    let attempt = handshake(config, &options, tls);
    match tokio::time::timeout(config.connect_timeout, attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(Failure::Server(m))) => {
            let kind = m.kind();
            let code = m.code.clone();
            Err(fail(kind, m.describe()).with_sqlstate(code))
        }
        Ok(Err(Failure::Other(kind, cause, source))) => {
            let e = fail(kind, cause);
            Err(match source {
                Some(s) => Error::with_source(kind, e.to_string(), s),
                None => e,
            })
        }
        Err(_) => Err(fail(
            ErrorKind::Connect,
            format!(
                "no answer within {} s (connect_timeout)",
                config.connect_timeout.as_secs()
            ),
        )),
    }
}

/// `-c name=value …` for the startup packet's `options`, with spaces and
/// backslashes escaped as the server's option parser expects.
fn options(gucs: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::new();
    for (name, value) in gucs {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            return Err(format!("{name:?} is not a server setting name"));
        }
        if value.contains('\0') {
            return Err(format!("the value of {name} contains a NUL byte"));
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("-c ");
        out.push_str(name);
        out.push('=');
        for c in value.chars() {
            if c == ' ' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
    }
    Ok(out)
}

/// Why the handshake failed, before the message gets its context.
enum Failure {
    Server(ServerMessage),
    Other(
        ErrorKind,
        String,
        Option<Box<dyn std::error::Error + Send + Sync>>,
    ),
}

impl Failure {
    fn io(e: io::Error) -> Failure {
        let cause = if e.kind() == io::ErrorKind::UnexpectedEof {
            "the server closed the connection".to_string()
        } else {
            e.to_string()
        };
        Failure::Other(ErrorKind::Connect, cause, Some(Box::new(e)))
    }

    fn auth(cause: impl Into<String>) -> Failure {
        Failure::Other(ErrorKind::Auth, cause.into(), None)
    }

    fn protocol(cause: impl Into<String>) -> Failure {
        Failure::Other(ErrorKind::Server, cause.into(), None)
    }
}

async fn handshake(
    config: &ConnectionConfig,
    options: &str,
    mut tls: tokio_postgres_rustls::MakeRustlsConnect,
) -> Result<Conn, Failure> {
    let mut socket: Box<dyn Socket> = crate::socket::open(config).await.map_err(Failure::io)?;

    let mut encrypted = false;
    if config.ssl.mode != SslMode::Disable {
        let mut buf = BytesMut::new();
        frontend::ssl_request(&mut buf);
        socket.write_all(&buf).await.map_err(Failure::io)?;
        let mut answer = [0u8];
        socket.read_exact(&mut answer).await.map_err(Failure::io)?;
        if answer[0] == b'S' {
            let connect = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<
                Box<dyn Socket>,
            >>::make_tls_connect(&mut tls, &config.host)
            .map_err(|e| Failure::Other(ErrorKind::Tls, format!("tls: {e}"), Some(Box::new(e))))?;
            let stream = connect.connect(socket).await.map_err(|e| {
                let cause = match e.get_ref() {
                    Some(inner) => format!("tls: {inner}"),
                    None => format!("tls: {e}"),
                };
                Failure::Other(ErrorKind::Tls, cause, Some(Box::new(e)))
            })?;
            socket = Box::new(stream);
            encrypted = true;
        } else if config.ssl.mode != SslMode::Prefer {
            return Err(Failure::Other(
                ErrorKind::Tls,
                format!(
                    "the server does not support TLS (sslmode {})",
                    config.ssl.mode.as_str()
                ),
                None,
            ));
        }
    }

    let mut conn = Conn {
        socket,
        read: BytesMut::with_capacity(64 * 1024),
        write: BytesMut::with_capacity(1024),
        target: config.describe(),
        parameters: HashMap::new(),
        tls: encrypted,
        pid: None,
        config: config.clone(),
    };
    let mut params: Vec<(&str, &str)> = vec![
        ("user", config.user.as_str()),
        ("database", config.dbname.as_str()),
        ("replication", "database"),
        ("application_name", config.application_name.as_str()),
        ("client_encoding", "UTF8"),
    ];
    if !options.is_empty() {
        params.push(("options", options));
    }
    frontend::startup_message(params, &mut conn.write)
        .map_err(|e| Failure::Other(ErrorKind::Config, e.to_string(), None))?;
    conn.flush().await.map_err(Failure::io)?;
    authenticate(&mut conn, config).await?;

    loop {
        match next(&mut conn).await? {
            Message::ReadyForQuery(_) => return Ok(conn),
            Message::ParameterStatus(p) => {
                if let (Ok(name), Ok(value)) = (p.name(), p.value()) {
                    conn.parameters.insert(name.to_string(), value.to_string());
                }
            }
            Message::BackendKeyData(k) => conn.pid = Some(k.process_id()),
            other => return Err(unexpected(&other)),
        }
    }
}

/// The next message of the handshake; ErrorResponse becomes a failure and
/// notices are logged.
async fn next(conn: &mut Conn) -> Result<Message, Failure> {
    loop {
        if let Some(m) = conn.try_parse().map_err(Failure::io)? {
            match m {
                Backend::Message(Message::ErrorResponse(body)) => {
                    return Err(match ServerMessage::parse(body.fields()) {
                        Ok(m) => Failure::Server(m),
                        Err(e) => Failure::io(e),
                    })
                }
                Backend::Message(Message::NoticeResponse(body)) => {
                    log_notice(&conn.target, body.fields())
                }
                Backend::Message(m) => return Ok(m),
                Backend::CopyBoth => return Err(Failure::protocol("unexpected CopyBothResponse")),
            }
        } else {
            conn.read_more().await.map_err(Failure::io)?;
        }
    }
}

fn unexpected(m: &Message) -> Failure {
    let name = match m {
        Message::AuthenticationOk => "AuthenticationOk",
        Message::CommandComplete(_) => "CommandComplete",
        Message::DataRow(_) => "DataRow",
        Message::RowDescription(_) => "RowDescription",
        _ => "a message",
    };
    Failure::protocol(format!("unexpected {name} from the server"))
}

/// Answers the server's authentication requests until AuthenticationOk:
/// trust, cleartext password, MD5, SCRAM-SHA-256.
///
/// SCRAM is done without channel binding (`n`): the TLS glue does not
/// expose the server certificate, and the server accepts `n` whether or not
/// it offers SCRAM-SHA-256-PLUS. The password still never crosses the wire.
async fn authenticate(conn: &mut Conn, config: &ConnectionConfig) -> Result<(), Failure> {
    let password = || {
        config
            .password()
            .map(str::as_bytes)
            .ok_or_else(|| Failure::auth("the server asks for a password and the config has none"))
    };
    loop {
        match next(conn).await? {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password()?, &mut conn.write).map_err(Failure::io)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(config.user.as_bytes(), password()?, body.salt());
                frontend::password_message(hash.as_bytes(), &mut conn.write)
                    .map_err(Failure::io)?;
            }
            Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let mut scram = false;
                while let Some(m) = mechanisms.next().map_err(Failure::io)? {
                    scram |= m == sasl::SCRAM_SHA_256;
                }
                if !scram {
                    return Err(Failure::auth(
                        "the server offers no SASL mechanism this client supports \
                         (SCRAM-SHA-256)",
                    ));
                }
                let mut state = ScramSha256::new(password()?, sasl::ChannelBinding::unsupported());
                frontend::sasl_initial_response(
                    sasl::SCRAM_SHA_256,
                    state.message(),
                    &mut conn.write,
                )
                .map_err(Failure::io)?;
                conn.flush().await.map_err(Failure::io)?;
                match next(conn).await? {
                    Message::AuthenticationSaslContinue(body) => {
                        state
                            .update(body.data())
                            .map_err(|e| Failure::auth(format!("SCRAM exchange failed: {e}")))?;
                    }
                    other => return Err(unexpected(&other)),
                }
                frontend::sasl_response(state.message(), &mut conn.write).map_err(Failure::io)?;
                conn.flush().await.map_err(Failure::io)?;
                match next(conn).await? {
                    Message::AuthenticationSaslFinal(body) => {
                        state.finish(body.data()).map_err(|e| {
                            Failure::auth(format!(
                                "the server's SCRAM signature is wrong (is it the right \
                                 server?): {e}"
                            ))
                        })?;
                    }
                    other => return Err(unexpected(&other)),
                }
                continue;
            }
            Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationGss
            | Message::AuthenticationSspi => {
                return Err(Failure::auth(
                    "the server asks for Kerberos/GSSAPI/SSPI authentication, which is not \
                     supported; use scram-sha-256, md5, password, cert or trust in pg_hba.conf",
                ))
            }
            other => return Err(unexpected(&other)),
        }
        conn.flush().await.map_err(Failure::io)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_escape_spaces_and_backslashes() {
        assert_eq!(options(&[]).unwrap(), "");
        assert_eq!(
            options(&[("DateStyle", "ISO"), ("wal_sender_timeout", "2s")]).unwrap(),
            "-c DateStyle=ISO -c wal_sender_timeout=2s"
        );
        assert_eq!(
            options(&[("search_path", r"a b\c")]).unwrap(),
            r"-c search_path=a\ b\\c"
        );
        assert!(options(&[("bad name", "x")]).is_err());
        assert!(options(&[("x", "a\0")]).is_err());
    }
}

//! Opening the byte stream under every connection, ordinary and
//! replication: TCP (with keepalives and `TCP_USER_TIMEOUT` from
//! [`Liveness`]) or a Unix socket.
//!
//! Owns the socket options; knows nothing of the protocol spoken over it.
//! Invariant: every TCP socket either connection kind uses gets the same
//! options, so a path that silently stops delivering is dropped by the
//! kernel: an idle connection after `keepalives_idle + keepalives_interval
//! × keepalives_count`, one with unacknowledged data after
//! `tcp_user_timeout`. (A peer whose kernel still acknowledges — a frozen
//! server, a proxy that stopped forwarding — is caught by [`crate::stall`].)

use std::io;

use socket2::{SockRef, TcpKeepalive};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::config::{ConnectionConfig, Liveness};

/// A byte stream to the server, whatever its transport.
pub(crate) trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Socket for T {}

/// Connects to `config.host` (a Unix-socket directory when it starts with
/// `/`) and `config.port`. Not bounded in time: callers wrap the whole
/// handshake in `connect_timeout`.
pub(crate) async fn open(config: &ConnectionConfig) -> io::Result<Box<dyn Socket>> {
    if config.host.starts_with('/') {
        let path = format!("{}/.s.PGSQL.{}", config.host, config.port);
        return Ok(Box::new(UnixStream::connect(path).await?));
    }
    // An owned host: a borrowed one makes the future not `Send` for the
    // compiler (a known limitation of `ToSocketAddrs` with `&str`).
    let stream = TcpStream::connect((config.host.clone(), config.port)).await?;
    stream.set_nodelay(true)?;
    apply(&stream, &config.liveness)?;
    Ok(Box::new(stream))
}

/// Sets keepalives and the user timeout on a TCP socket; a zero setting
/// leaves that mechanism off.
fn apply(stream: &TcpStream, liveness: &Liveness) -> io::Result<()> {
    let socket = SockRef::from(stream);
    if !liveness.keepalives_idle.is_zero() {
        let mut keepalive = TcpKeepalive::new().with_time(liveness.keepalives_idle);
        if !liveness.keepalives_interval.is_zero() {
            keepalive = keepalive.with_interval(liveness.keepalives_interval);
        }
        if liveness.keepalives_count > 0 {
            keepalive = keepalive.with_retries(liveness.keepalives_count);
        }
        socket.set_tcp_keepalive(&keepalive)?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if !liveness.tcp_user_timeout.is_zero() {
        socket.set_tcp_user_timeout(Some(liveness.tcp_user_timeout))?;
    }
    Ok(())
}

//! Opening a connection: [`ConnectionConfig`] → `tokio_postgres::Client`.
//!
//! The `tokio_postgres::Config` is built field by field, never from a
//! connection string, so no setting can inject another and the password is
//! never formatted into text. Failures are classified by remedy
//! ([`ErrorKind`]) and their message names the server, database and role.

use std::sync::Arc;

use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{ConnectionConfig, SslMode};
use crate::socket::Socket;
use crate::stall::{Tracker, Watch, WatchTls};
use crate::tls::make_tls_connect;
use crate::{Error, ErrorKind};

/// Opens a connection and spawns its driver task on the current tokio
/// runtime, with keepalives and the user timeout on its socket
/// ([`crate::socket`]) and a stall watch ([`crate::stall`]). The task ends
/// when the client is dropped; a connection lost later shows up as an
/// error on the next statement, a stalled one as an error of the statement
/// waiting on it (SQLSTATE [`crate::stall::STALL_SQLSTATE`]).
pub async fn connect(config: &ConnectionConfig) -> Result<Client, Error> {
    let tracker = Arc::new(Tracker::default());
    let client = open(config, tracker.clone()).await?;
    if !config.liveness.stall_timeout.is_zero() {
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| connect_error(config, e))?
            .get(0);
        crate::stall::spawn_watch(&tracker, config, pid);
    }
    Ok(client)
}

/// [`connect`] without the stall watch (for the watch's own checks).
pub(crate) async fn connect_unwatched(config: &ConnectionConfig) -> Result<Client, Error> {
    open(config, Arc::default()).await
}

async fn open(config: &ConnectionConfig, tracker: Arc<Tracker>) -> Result<Client, Error> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(&config.dbname)
        .application_name(&config.application_name)
        .connect_timeout(config.connect_timeout)
        .ssl_mode(match config.ssl.mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
    if let Some(pw) = config.password() {
        pg.password(pw);
    }
    let mut make_tls = make_tls_connect(&config.ssl)?;
    let tls = <MakeRustlsConnect as MakeTlsConnect<Watch<Box<dyn Socket>>>>::make_tls_connect(
        &mut make_tls,
        &config.host,
    )
    .map_err(|e| match e {})?;
    let attempt = handshake(config.clone(), pg, tls, tracker);
    let (client, connection) = tokio::time::timeout(config.connect_timeout, attempt)
        .await
        .map_err(|_| {
            let kind = ErrorKind::Connect;
            Error::new(
                kind,
                format!(
                    "cannot connect to {}: no answer within {} s (connect_timeout) ({})",
                    config.describe(),
                    config.connect_timeout.as_secs(),
                    kind.remedy()
                ),
            )
        })??;
    let target = config.describe();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection to {target} ended: {e}");
        }
    });
    Ok(client)
}

/// The socket and the protocol handshake. Owned arguments: a borrowing
/// async block makes the futures of the stall watch not `Send` for the
/// compiler.
async fn handshake(
    config: ConnectionConfig,
    pg: tokio_postgres::Config,
    tls: <MakeRustlsConnect as MakeTlsConnect<Watch<Box<dyn Socket>>>>::TlsConnect,
    tracker: Arc<Tracker>,
) -> Result<
    (
        Client,
        tokio_postgres::Connection<
            Watch<Box<dyn Socket>>,
            Watch<<MakeRustlsConnect as MakeTlsConnect<Watch<Box<dyn Socket>>>>::Stream>,
        >,
    ),
    Error,
> {
    let socket = crate::socket::open(&config)
        .await
        .map_err(|e| io_connect_error(&config, e))?;
    let stream = Watch::new(socket, tracker.clone(), true);
    let tls = WatchTls {
        inner: tls,
        tracker,
    };
    pg.connect_raw(stream, tls)
        .await
        .map_err(|e| connect_error(&config, e))
}

fn io_connect_error(config: &ConnectionConfig, e: std::io::Error) -> Error {
    let kind = ErrorKind::Connect;
    let message = format!(
        "cannot connect to {}: {e} ({})",
        config.describe(),
        kind.remedy()
    );
    Error::with_source(kind, message, e)
}

fn connect_error(config: &ConnectionConfig, e: tokio_postgres::Error) -> Error {
    let (kind, mut cause) = classify(&e);
    if cause.contains("timeout") || cause.contains("timed out") {
        cause = format!(
            "no answer within {} s (connect_timeout)",
            config.connect_timeout.as_secs()
        );
    }
    let message = format!(
        "cannot connect to {}: {cause} ({})",
        config.describe(),
        kind.remedy()
    );
    Error::with_source(kind, message, e)
}

/// Decides the kind of a connection failure and the text of its cause.
fn classify(e: &tokio_postgres::Error) -> (ErrorKind, String) {
    if let Some(db) = e.as_db_error() {
        let kind = match *db.code() {
            SqlState::INVALID_PASSWORD | SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                ErrorKind::Auth
            }
            SqlState::INVALID_CATALOG_NAME => ErrorKind::Config,
            _ => ErrorKind::Server,
        };
        return (kind, db.message().to_string());
    }
    // Walk the source chain for the root cause (io error, rustls error).
    let mut cause = String::new();
    let mut kind = ErrorKind::Connect;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = current {
        if err.downcast_ref::<rustls::Error>().is_some() {
            kind = ErrorKind::Tls;
        }
        cause = err.to_string();
        current = err.source();
    }
    let top = e.to_string();
    if top.contains("TLS") || top.contains("tls") {
        kind = ErrorKind::Tls;
        if !cause.contains("TLS") && cause != top {
            cause = format!("tls: {cause}");
        }
    }
    if cause.contains("password missing") {
        kind = ErrorKind::Auth;
        cause = "the server asks for a password and the config has none".to_string();
    }
    (kind, cause)
}

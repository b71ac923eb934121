//! Opening a connection: [`ConnectionConfig`] → `tokio_postgres::Client`.
//!
//! The `tokio_postgres::Config` is built field by field, never from a
//! connection string, so no setting can inject another and the password is
//! never formatted into text. Failures are classified by remedy
//! ([`ErrorKind`]) and their message names the server, database and role.

use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::config::{ConnectionConfig, SslMode};
use crate::tls::make_tls_connect;
use crate::{Error, ErrorKind};

/// Opens a connection and spawns its driver task on the current tokio
/// runtime. The task ends when the client is dropped; a connection lost later
/// shows up as an error on the next statement.
pub async fn connect(config: &ConnectionConfig) -> Result<Client, Error> {
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .dbname(&config.dbname)
        .application_name(&config.application_name)
        .connect_timeout(config.connect_timeout)
        .keepalives(true)
        .ssl_mode(match config.ssl.mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
    if let Some(pw) = config.password() {
        pg.password(pw);
    }
    let tls = make_tls_connect(&config.ssl)?;
    let (client, connection) = pg
        .connect(tls)
        .await
        .map_err(|e| connect_error(config, e))?;
    let target = config.describe();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("connection to {target} ended: {e}");
        }
    });
    Ok(client)
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

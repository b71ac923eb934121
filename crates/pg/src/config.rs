//! Connection settings, read from the JSON config file of either program.
//!
//! Keys (aliases in brackets) — the same as the pipelinewise/Macrometa
//! connectors so their config files keep working:
//!
//! | key | meaning |
//! |---|---|
//! | `host` | server host name, IP address, or a Unix-socket directory (`/…`) |
//! | `port` | default 5432; an integer or a numeric string |
//! | `user` | role to log in as |
//! | `password` | optional (trust / peer authentication need none) |
//! | `dbname` (`database`) | database to connect to |
//! | `sslmode` | `disable`, `prefer` (default), `require`, `verify-ca`, `verify-full` |
//! | `ssl` | pipelinewise's switch: `true` / `"true"` means `require`, `false` / `"false"` means `disable`; `sslmode` wins when both are set |
//! | `ssl_root_ca_cert` (`sslrootcert`) | CA certificate(s): a file path or inline PEM; `system` = the system store |
//! | `ssl_client_certificate` (`sslcert`) | client certificate: a file path or inline PEM |
//! | `ssl_client_key` (`sslkey`) | client private key: a file path or inline PEM (unencrypted) |
//! | `connect_timeout` | seconds, default 30 |
//! | `application_name` | shown in `pg_stat_activity`; default the program's name |
//! | `keepalives_idle`, `keepalives_interval`, `keepalives_count` | TCP keepalives, as libpq's (seconds, seconds, probes): default 20, 5, 6 |
//! | `tcp_user_timeout` | milliseconds unacknowledged data may wait, as libpq's: default 60000 |
//! | `stall_timeout_seconds` | seconds without a byte while waiting for one before the connection is checked (see [`crate::stall`]): default 60 |
//!
//! Invariant: the password is only reachable through
//! [`ConnectionConfig::password`]; `Debug` prints it as `***`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::Error;

/// How TLS is used, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never use TLS.
    Disable,
    /// Use TLS when the server offers it, else a plain connection. The
    /// certificate is not verified unless a CA is given.
    Prefer,
    /// Always use TLS. The certificate is not verified unless a CA is given
    /// (then as `verify-ca`, as libpq does).
    Require,
    /// Always use TLS and verify the certificate chain, not the host name.
    VerifyCa,
    /// Always use TLS, verify the chain and that the certificate is for `host`.
    VerifyFull,
}

impl SslMode {
    /// Parses a libpq `sslmode` value.
    pub fn parse(s: &str) -> Option<SslMode> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" | "verify_ca" => SslMode::VerifyCa,
            "verify-full" | "verify_full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    /// The libpq spelling of this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// PEM material given either inline (Macrometa users paste PEM strings) or as
/// a path to a file.
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    /// The PEM text itself.
    Inline(String),
    /// A file holding PEM text.
    Path(PathBuf),
    /// The operating system's CA store (`sslrootcert=system`).
    System,
}

impl PemSource {
    /// Reads a setting value: PEM text if it contains a `-----BEGIN` line,
    /// `system` for the system store, else a file path.
    pub fn from_setting(value: &str) -> PemSource {
        if value.contains("-----BEGIN") {
            PemSource::Inline(value.to_string())
        } else if value.trim() == "system" {
            PemSource::System
        } else {
            PemSource::Path(PathBuf::from(value.trim()))
        }
    }
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Inline PEM may be a private key: never print it.
            PemSource::Inline(s) => write!(f, "Inline(<{} bytes of PEM>)", s.len()),
            PemSource::Path(p) => write!(f, "Path({})", p.display()),
            PemSource::System => f.write_str("System"),
        }
    }
}

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslConfig {
    /// The mode.
    pub mode: SslMode,
    /// CA certificates to verify the server against.
    pub root_cert: Option<PemSource>,
    /// Client certificate chain for certificate authentication.
    pub client_cert: Option<PemSource>,
    /// Client private key.
    pub client_key: Option<PemSource>,
}

/// Everything needed to open a connection.
#[derive(Clone)]
pub struct ConnectionConfig {
    /// Host name, IP address or Unix-socket directory.
    pub host: String,
    /// TCP port (also the socket file's suffix for Unix sockets).
    pub port: u16,
    /// Role to log in as.
    pub user: String,
    password: Option<String>,
    /// Database name.
    pub dbname: String,
    /// TLS settings.
    pub ssl: SslConfig,
    /// How long to wait for the connection to be established.
    pub connect_timeout: Duration,
    /// `application_name` reported to the server.
    pub application_name: String,
    /// How a silent path is noticed.
    pub liveness: Liveness,
}

/// How a connection whose path stops delivering (a lost NAT or firewall
/// state, a frozen peer) is noticed: TCP keepalives and `TCP_USER_TIMEOUT`
/// on every socket, and the stall watch of [`crate::stall`]. Zero turns a
/// setting off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Idle time before the first keepalive probe (`keepalives_idle`).
    pub keepalives_idle: Duration,
    /// Time between probes (`keepalives_interval`).
    pub keepalives_interval: Duration,
    /// Unanswered probes before the connection is dropped (`keepalives_count`).
    pub keepalives_count: u32,
    /// How long sent data may stay unacknowledged (`tcp_user_timeout`).
    pub tcp_user_timeout: Duration,
    /// How long a connection waiting for the server may hear nothing before
    /// it is checked (`stall_timeout_seconds`).
    pub stall_timeout: Duration,
}

impl Default for Liveness {
    /// A silent path fails within about a minute: keepalives after 20 s of
    /// idleness, then 6 probes 5 s apart (50 s), data unacknowledged for
    /// 60 s, and 60 s without an answer.
    fn default() -> Self {
        Liveness {
            keepalives_idle: Duration::from_secs(20),
            keepalives_interval: Duration::from_secs(5),
            keepalives_count: 6,
            tcp_user_timeout: Duration::from_secs(60),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for ConnectionConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("dbname", &self.dbname)
            .field("ssl", &self.ssl)
            .field("connect_timeout", &self.connect_timeout)
            .field("application_name", &self.application_name)
            .field("liveness", &self.liveness)
            .finish()
    }
}

/// The default `connect_timeout`, as the pipelinewise connectors use.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

impl ConnectionConfig {
    /// Reads the connection keys of a config object. Other keys are ignored
    /// (they belong to the tap or the target). `default_application_name` is
    /// used when the config has no `application_name`.
    pub fn from_json(
        config: &Map<String, Value>,
        default_application_name: &str,
    ) -> Result<Self, Error> {
        let host = required_str(config, &["host"])?;
        let port = match lookup(config, &["port"]) {
            None => 5432,
            Some((key, v)) => {
                let n = integer(key, v)?;
                u16::try_from(n)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| Error::config(format!("`{key}`: {n} is not a TCP port")))?
            }
        };
        let user = required_str(config, &["user"])?;
        let password = optional_str(config, &["password"])?;
        let dbname = required_str(config, &["dbname", "database"])?;

        let mode = match optional_str(config, &["sslmode"])? {
            Some(s) => SslMode::parse(&s).ok_or_else(|| {
                Error::config(format!(
                    "`sslmode`: {s:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            })?,
            None => match lookup(config, &["ssl"]) {
                None | Some((_, Value::Null)) => SslMode::Prefer,
                Some((key, v)) => {
                    if boolean(key, v)? {
                        SslMode::Require
                    } else {
                        SslMode::Disable
                    }
                }
            },
        };
        let pem = |keys: &[&str]| -> Result<Option<PemSource>, Error> {
            Ok(optional_str(config, keys)?
                .filter(|s| !s.trim().is_empty())
                .map(|s| PemSource::from_setting(&s)))
        };
        let ssl = SslConfig {
            mode,
            root_cert: pem(&["ssl_root_ca_cert", "sslrootcert"])?,
            client_cert: pem(&["ssl_client_certificate", "sslcert"])?,
            client_key: pem(&["ssl_client_key", "sslkey"])?,
        };
        if ssl.client_cert.is_some() != ssl.client_key.is_some() {
            return Err(Error::config(
                "`ssl_client_certificate` and `ssl_client_key` must be given together",
            ));
        }
        if let Some(p) = optional_str(config, &["ssl_client_password", "sslpassword"])? {
            if !p.is_empty() {
                return Err(Error::config(
                    "`ssl_client_password`: encrypted client keys are not supported; \
                     decrypt the key once with `openssl pkey -in key.pem -out key-plain.pem` \
                     and give the plain key in `ssl_client_key`",
                ));
            }
        }
        let connect_timeout = match lookup(config, &["connect_timeout"]) {
            None | Some((_, Value::Null)) => DEFAULT_CONNECT_TIMEOUT,
            Some((key, v)) => Duration::from_secs(integer(key, v)?),
        };
        let application_name = optional_str(config, &["application_name"])?
            .unwrap_or_else(|| default_application_name.to_string());
        let defaults = Liveness::default();
        let seconds = |key: &str, default: Duration| -> Result<Duration, Error> {
            Ok(match lookup(config, &[key]) {
                None | Some((_, Value::Null)) => default,
                Some((key, v)) => Duration::from_secs(integer(key, v)?),
            })
        };
        let liveness = Liveness {
            keepalives_idle: seconds("keepalives_idle", defaults.keepalives_idle)?,
            keepalives_interval: seconds("keepalives_interval", defaults.keepalives_interval)?,
            keepalives_count: match lookup(config, &["keepalives_count"]) {
                None | Some((_, Value::Null)) => defaults.keepalives_count,
                Some((key, v)) => u32::try_from(integer(key, v)?)
                    .map_err(|_| Error::config(format!("`{key}` is too large")))?,
            },
            tcp_user_timeout: match lookup(config, &["tcp_user_timeout"]) {
                None | Some((_, Value::Null)) => defaults.tcp_user_timeout,
                Some((key, v)) => Duration::from_millis(integer(key, v)?),
            },
            stall_timeout: seconds("stall_timeout_seconds", defaults.stall_timeout)?,
        };
        Ok(ConnectionConfig {
            host,
            port,
            user,
            password,
            dbname,
            ssl,
            connect_timeout,
            application_name,
            liveness,
        })
    }

    /// The password, if any. Never log it.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Sets the password.
    pub fn set_password(&mut self, password: Option<String>) {
        self.password = password;
    }

    /// The same settings for another database (the tap reads each stream's
    /// `database-name`).
    pub fn for_database(&self, dbname: &str) -> ConnectionConfig {
        ConnectionConfig {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }

    /// The same settings for another server (a read replica).
    pub fn for_host(&self, host: &str, port: u16) -> ConnectionConfig {
        ConnectionConfig {
            host: host.to_string(),
            port,
            ..self.clone()
        }
    }

    /// `host:port/dbname as user`, for messages (no password).
    pub fn describe(&self) -> String {
        format!(
            "{}:{}/{} as {}",
            self.host, self.port, self.dbname, self.user
        )
    }
}

fn lookup<'a>(config: &'a Map<String, Value>, keys: &[&'a str]) -> Option<(&'a str, &'a Value)> {
    keys.iter().find_map(|k| config.get(*k).map(|v| (*k, v)))
}

fn required_str(config: &Map<String, Value>, keys: &[&str]) -> Result<String, Error> {
    match optional_str(config, keys)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Error::config(format!(
            "`{}` is required{}",
            keys[0],
            if keys.len() > 1 {
                format!(" (or `{}`)", keys[1..].join("`, `"))
            } else {
                String::new()
            }
        ))),
    }
}

fn optional_str(config: &Map<String, Value>, keys: &[&str]) -> Result<Option<String>, Error> {
    match lookup(config, keys) {
        None | Some((_, Value::Null)) => Ok(None),
        Some((_, Value::String(s))) => Ok(Some(s.clone())),
        // A numeric password or user is still a string to the server.
        Some((_, Value::Number(n))) => Ok(Some(n.to_string())),
        Some((key, other)) => Err(Error::config(format!(
            "`{key}` must be a string, not {}",
            kind_of(other)
        ))),
    }
}

/// A non-negative integer given as a JSON number or a numeric string.
fn integer(key: &str, v: &Value) -> Result<u64, Error> {
    let parsed = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        Error::config(format!(
            "`{key}` must be a non-negative integer, not {}",
            short(v)
        ))
    })
}

/// A boolean given as JSON `true`/`false` or the strings `"true"`/`"false"`
/// (the pipelinewise connectors write strings).
pub fn boolean(key: &str, v: &Value) -> Result<bool, Error> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(Error::config(format!(
            "`{key}` must be true or false, not {}",
            short(v)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<ConnectionConfig, Error> {
        ConnectionConfig::from_json(v.as_object().unwrap(), "test")
    }

    #[test]
    fn minimal_and_defaults() {
        let c = parse(json!({"host": "db", "user": "u", "dbname": "d"})).unwrap();
        assert_eq!(c.port, 5432);
        assert_eq!(c.ssl.mode, SslMode::Prefer);
        assert_eq!(c.password(), None);
        assert_eq!(c.connect_timeout, Duration::from_secs(30));
        assert_eq!(c.application_name, "test");
    }

    #[test]
    fn aliases_and_string_numbers() {
        let c = parse(json!({"host": "db", "port": "6543", "user": "u",
            "password": "s3cret", "database": "d", "connect_timeout": "5", "ssl": "true"}))
        .unwrap();
        assert_eq!((c.port, c.dbname.as_str()), (6543, "d"));
        assert_eq!(c.ssl.mode, SslMode::Require);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        let c = parse(json!({"host": "db", "user": "u", "dbname": "d", "ssl": false})).unwrap();
        assert_eq!(c.ssl.mode, SslMode::Disable);
        let c = parse(
            json!({"host": "db", "user": "u", "dbname": "d", "ssl": "true",
            "sslmode": "verify-full"}),
        )
        .unwrap();
        assert_eq!(c.ssl.mode, SslMode::VerifyFull);
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse(json!({"user": "u", "dbname": "d"})).unwrap_err();
        assert_eq!(e.to_string(), "`host` is required");
        let e = parse(json!({"host": "h", "user": "u"})).unwrap_err();
        assert_eq!(e.to_string(), "`dbname` is required (or `database`)");
        let e = parse(json!({"host": "h", "user": "u", "dbname": "d", "port": "abc"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`port` must be a non-negative integer, not \"abc\""
        );
        let e = parse(json!({"host": "h", "user": "u", "dbname": "d", "port": 70000})).unwrap_err();
        assert_eq!(e.to_string(), "`port`: 70000 is not a TCP port");
        let e =
            parse(json!({"host": "h", "user": "u", "dbname": "d", "sslmode": "on"})).unwrap_err();
        assert!(e.to_string().starts_with("`sslmode`: \"on\" is not one of"));
        let e = parse(json!({"host": "h", "user": "u", "dbname": "d", "ssl": "yes"})).unwrap_err();
        assert_eq!(e.to_string(), "`ssl` must be true or false, not \"yes\"");
    }

    #[test]
    fn pem_inline_or_path() {
        let c = parse(json!({"host": "h", "user": "u", "dbname": "d",
            "ssl_root_ca_cert": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "sslcert": "/etc/c.pem", "sslkey": "/etc/k.pem"}))
        .unwrap();
        assert!(matches!(c.ssl.root_cert, Some(PemSource::Inline(_))));
        assert_eq!(
            c.ssl.client_cert,
            Some(PemSource::Path(PathBuf::from("/etc/c.pem")))
        );
        let e =
            parse(json!({"host": "h", "user": "u", "dbname": "d", "sslcert": "/c"})).unwrap_err();
        assert!(e.to_string().contains("must be given together"));
    }

    #[test]
    fn numeric_user_and_password_are_their_digits() {
        let c = parse(json!({"host": "h", "user": 12345, "dbname": "d",
            "password": 98765432109876u64}))
        .unwrap();
        assert_eq!(
            (c.user.as_str(), c.password()),
            ("12345", Some("98765432109876"))
        );
    }

    #[test]
    fn liveness_settings_and_defaults() {
        let c = parse(json!({"host": "h", "user": "u", "dbname": "d"})).unwrap();
        assert_eq!(c.liveness, Liveness::default());
        let c = parse(
            json!({"host": "h", "user": "u", "dbname": "d", "keepalives_idle": "3",
            "keepalives_interval": 2, "keepalives_count": 4, "tcp_user_timeout": 1500,
            "stall_timeout_seconds": 0}),
        )
        .unwrap();
        assert_eq!(
            c.liveness,
            Liveness {
                keepalives_idle: Duration::from_secs(3),
                keepalives_interval: Duration::from_secs(2),
                keepalives_count: 4,
                tcp_user_timeout: Duration::from_millis(1500),
                stall_timeout: Duration::ZERO,
            }
        );
    }

    #[test]
    fn password_never_printed() {
        let c = parse(
            json!({"host": "h", "user": "u", "dbname": "d", "password": "hunter2",
            "ssl_client_key": "-----BEGIN PRIVATE KEY-----\nsecretkey\n-----END PRIVATE KEY-----",
            "ssl_client_certificate": "/c"}),
        )
        .unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(!dbg.contains("secretkey"), "{dbg}");
        assert!(!c.describe().contains("hunter2"));
        assert_eq!(c.password(), Some("hunter2"));
    }
}

//! [`Cluster`]: a server the tests may use, local or external, and how to
//! connect to it.
//!
//! Owns: the connection parameters handed to tests (TCP host, port,
//! superuser and password), the separate *admin* connection the kit itself
//! uses (the unix socket of a local server, so custom `pg_hba.conf` lines
//! cannot lock the kit out), and database creation.
//!
//! Invariant: a [`Cluster`] and every [`TestDb`] made from it share one
//! `Arc<Inner>`; a local server stops when the last of them is dropped, so a
//! database never outlives the server it must be dropped from.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

use crate::server::{LocalServer, ServerSpec, SUPERUSER_PASSWORD};
use crate::TestDb;

/// A PostgreSQL server for tests: the shared one from [`crate::cluster`], or
/// a custom one from [`crate::ClusterBuilder::start`], which stops and
/// removes its cluster when dropped (after any [`TestDb`] made from it).
pub struct Cluster {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// What tests connect with: TCP endpoint and superuser, database `postgres`.
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) password: String,
    /// TCP config as handed to tests (keeps `PGTEST_URL` options such as sslmode).
    pub(crate) tcp: Config,
    /// How the kit connects as superuser to create and drop databases.
    pub(crate) admin: Config,
    /// `None` for an external server (`PGTEST_URL`).
    pub(crate) server: Option<LocalServer>,
}

impl Cluster {
    /// Start a local server per `spec`.
    pub(crate) fn start_local(spec: &ServerSpec) -> Result<Cluster, String> {
        let server = LocalServer::start(spec)?;
        let host = "127.0.0.1".to_string();
        let port = server.port();
        let mut tcp = Config::new();
        tcp.host(&host)
            .port(port)
            .user("postgres")
            .password(SUPERUSER_PASSWORD)
            .dbname("postgres");
        let admin = match &server.socket_dir {
            Some(dir) => {
                let mut admin = Config::new();
                admin
                    .host_path(dir)
                    .port(port)
                    .user("postgres")
                    .dbname("postgres");
                admin
            }
            None => tcp.clone(),
        };
        let inner = Inner {
            host,
            port,
            user: "postgres".to_string(),
            password: SUPERUSER_PASSWORD.to_string(),
            tcp,
            admin,
            server: Some(server),
        };
        Ok(Cluster {
            inner: Arc::new(inner),
        })
    }

    /// Use the server at `url` (from `PGTEST_URL`) without starting one.
    pub(crate) fn external(url: &str) -> Result<Cluster, String> {
        let config = Config::from_str(url)
            .map_err(|e| format!("PGTEST_URL is not a valid postgres URL: {e}"))?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().unwrap_or("postgres").to_string();
        let password = config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default();
        let mut tcp = config.clone();
        tcp.user(&user);
        if tcp.get_dbname().is_none() {
            tcp.dbname("postgres");
        }
        let inner = Inner {
            host,
            port,
            user,
            password,
            admin: tcp.clone(),
            tcp,
            server: None,
        };
        Ok(Cluster {
            inner: Arc::new(inner),
        })
    }

    /// Host tests connect to (`127.0.0.1` for a local server).
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// Superuser name (`postgres` for a local server).
    pub fn user(&self) -> &str {
        &self.inner.user
    }

    /// Superuser password (`postgres` for a local server, where trust auth
    /// ignores it unless custom `pg_hba.conf` lines ask for one).
    pub fn password(&self) -> &str {
        &self.inner.password
    }

    /// The data directory of a local server; `None` for `PGTEST_URL`.
    pub fn data_dir(&self) -> Option<std::path::PathBuf> {
        self.inner.server.as_ref().map(|s| s.root().join("data"))
    }

    /// The server log of a local server (read it when a test fails on
    /// authentication or TLS); `None` for `PGTEST_URL`.
    pub fn log_path(&self) -> Option<std::path::PathBuf> {
        self.inner.server.as_ref().map(|s| s.root().join("log"))
    }

    /// A TCP connection config as superuser to database `postgres`; change
    /// `user`, `password`, `dbname`, `ssl_mode` to test other logins.
    pub fn pg_config(&self) -> Config {
        self.inner.tcp.clone()
    }

    /// A superuser client on the admin connection, database `postgres`; its
    /// connection task runs on the current tokio runtime.
    ///
    /// # Panics
    /// If the server cannot be reached.
    pub async fn client(&self) -> Client {
        connect(&self.inner.admin).await.or_panic(|e| {
            format!(
                "pg-testkit: superuser connection to port {}: {e}",
                self.port()
            )
        })
    }

    /// Run `sql` (one or more statements, simple query protocol) as
    /// superuser in database `postgres`, e.g. `CREATE ROLE … PASSWORD …`.
    ///
    /// # Panics
    /// If the statements fail.
    pub async fn execute_batch(&self, sql: &str) {
        let client = self.client().await;
        client
            .batch_execute(sql)
            .await
            .or_panic(|e| format!("pg-testkit: {sql}: {}", describe(&e)));
    }

    /// Create a fresh database `t_<pid>_<n>_<random>`; dropping the returned
    /// [`TestDb`] drops it (and its replication slots).
    ///
    /// # Panics
    /// If the database cannot be created.
    pub async fn create_database(&self) -> TestDb {
        let name = unique_name();
        let client = self.client().await;
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
            .await
            .or_panic(|e| format!("pg-testkit: CREATE DATABASE {name}: {}", describe(&e)));
        TestDb {
            name,
            cluster: self.inner.clone(),
        }
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .field("user", &self.inner.user)
            .field("data_dir", &self.data_dir())
            .finish_non_exhaustive()
    }
}

/// Panic with a message built from the error (for test helpers).
pub(crate) trait OrPanic<T, E> {
    fn or_panic(self, msg: impl FnOnce(E) -> String) -> T;
}

impl<T, E> OrPanic<T, E> for Result<T, E> {
    #[track_caller]
    fn or_panic(self, msg: impl FnOnce(E) -> String) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{}", msg(e)),
        }
    }
}

/// Connect and run the connection on the current tokio runtime.
pub(crate) async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    // Errors surface through the client; a connection ended by DROP
    // DATABASE … WITH (FORCE) is expected and not worth printing.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// An error with the server's DETAIL and HINT, which `Display` may omit.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(detail) = db.detail() {
                s.push_str(&format!("; DETAIL: {detail}"));
            }
            if let Some(hint) = db.hint() {
                s.push_str(&format!("; HINT: {hint}"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// `"name"` with embedded quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `t_<pid>_<counter>_<6 random hex>`: unique in the process by the counter,
/// across processes sharing a `PGTEST_URL` server by pid and the random part.
fn unique_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    let random = h.finish() & 0xff_ffff;
    format!("t_{}_{n}_{random:06x}", std::process::id())
}

/// Percent-encode a URL component (unreserved characters pass).
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

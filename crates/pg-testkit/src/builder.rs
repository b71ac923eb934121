//! [`ClusterBuilder`]: an additional, separately owned local cluster with
//! extra settings, `pg_hba.conf` lines or TLS, for tests of authentication,
//! TLS and server settings.
//!
//! Owns: the translation of builder calls into a [`ServerSpec`]; the server
//! itself is [`crate::server`]'s. Always starts a local server, also when
//! `PGTEST_URL` is set (custom `pg_hba.conf` needs a server we own).
//!
//! Invariant: the harness keeps superuser access whatever the `hba` lines
//! say, because it connects over the unix socket, which stays `trust`.

use std::path::{Path, PathBuf};

use crate::server::ServerSpec;
use crate::Cluster;

/// Options for a custom cluster; [`ClusterBuilder::start`] returns an owned
/// [`Cluster`] that stops and removes the server when dropped.
///
/// ```no_run
/// # async fn f() {
/// let cluster = pg_testkit::ClusterBuilder::new()
///     .setting("password_encryption", "scram-sha-256")
///     .hba("host all all 127.0.0.1/32 scram-sha-256")
///     .start();
/// cluster.execute_batch("CREATE ROLE alice LOGIN PASSWORD 'secret'").await;
/// let mut config = cluster.pg_config();
/// config.user("alice").password("secret");
/// # }
/// ```
#[derive(Debug, Default, Clone)]
pub struct ClusterBuilder {
    spec: ServerSpec,
}

impl ClusterBuilder {
    /// The defaults of the shared cluster: trust auth, `wal_level=logical`,
    /// 32 replication slots and WAL senders, `fsync=off`.
    pub fn new() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Add `name = 'value'` to `postgresql.conf`, after (so overriding) the
    /// defaults. The value is quoted for you; every setting type accepts the
    /// quoted form (`setting("max_connections", "20")`).
    pub fn setting(mut self, name: &str, value: &str) -> ClusterBuilder {
        self.spec
            .settings
            .push((name.to_string(), value.to_string()));
        self
    }

    /// Add a `pg_hba.conf` line, e.g. `host all all 127.0.0.1/32
    /// scram-sha-256`. With any such line the file becomes `local … trust`
    /// (the harness's unix socket) followed by the given lines in order, so
    /// TCP logins get only what the lines allow; without any, every login is
    /// trusted.
    pub fn hba(mut self, line: &str) -> ClusterBuilder {
        self.spec.hba.push(line.to_string());
        self
    }

    /// Serve TLS (`ssl = on`) with this PEM certificate and private key.
    /// Both are copied into the data directory as `server.crt` (0644) and
    /// `server.key` (0600), owned by the server's OS user, as PostgreSQL
    /// requires; the originals may be anywhere readable by the test.
    pub fn tls(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> ClusterBuilder {
        self.spec.tls = Some((PathBuf::from(cert.as_ref()), PathBuf::from(key.as_ref())));
        self
    }

    /// initdb and start the cluster (about a second; blocks the thread).
    ///
    /// # Panics
    /// If the server cannot be set up or started; the message includes the
    /// server log, e.g. for a setting PostgreSQL rejects.
    pub fn start(self) -> Cluster {
        Cluster::start_local(&self.spec).unwrap_or_else(|e| panic!("pg-testkit: {e}"))
    }
}

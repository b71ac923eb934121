//! Throwaway PostgreSQL clusters for tests: one cluster per test process,
//! one database per test.
//!
//! ```no_run
//! #[tokio::test]
//! async fn copies_rows() {
//!     let db = pg_testkit::cluster().create_database().await;
//!     db.execute_batch("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)").await;
//!     assert_eq!(db.query_json("SELECT id FROM t").await, vec![serde_json::json!({"id": 1})]);
//!     // `db.conn_config()` is a tap/target config; `db.client().await` a client.
//! } // the database and its replication slots are dropped here, also on panic
//! ```
//!
//! Owns: finding and starting PostgreSQL, per-test databases, and cleanup.
//! Must not know anything about Singer, the tap or the target.
//!
//! # The shared cluster
//!
//! [`cluster()`] starts one server per test process on first use (initdb
//! into `/dev/shm/pg-testkit-<pid>-<random>/` — tmpfs makes `CREATE
//! DATABASE` ten times faster — or the temp dir, a free port on 127.0.0.1,
//! `wal_level=logical`, 32 replication slots and WAL senders, `fsync=off`,
//! trust auth, superuser `postgres` with password `postgres`). It is started
//! with `std::process` from its own thread, so it is tied to no tokio runtime:
//! `#[tokio::test]`s with their own runtimes share it. Run as root, initdb and
//! the server run as the `postgres` OS user. wal2json is an output plugin and
//! needs no preloading, but its absence is reported at start, pointing to
//! `make setup`.
//!
//! The server never outlives the test process and its directory is removed.
//! `src/server.rs` argues it in full; in short: custom clusters stop on
//! `Drop`; an `atexit` handler stops every server still running when the
//! test binary exits (also after failed or panicked tests); if the process
//! dies abruptly (SIGKILL, abort), `PR_SET_PDEATHSIG` stops the server and
//! the next start in any test process sweeps the directory.
//!
//! # Environment
//!
//! - `PGTEST_URL=postgres://user:pw@host:5432/postgres` — use that server
//!   instead of starting one; databases are created and dropped there. It
//!   must have `wal_level=logical`, free replication slots and wal2json for
//!   the LOG_BASED tests (and `synchronous_commit=on`, the default: logical
//!   decoding reads only flushed WAL, so with `off` changes reach a slot up
//!   to ~0.6 s late), PostgreSQL 13 or newer (`DROP DATABASE … WITH
//!   (FORCE)`), a user allowed to create databases and to terminate
//!   backends, and it must accept connections without TLS (the kit uses
//!   `NoTls`). [`ClusterBuilder`] still starts local servers.
//! - `PGTEST_BINDIR` — the directory holding `initdb` and `postgres`, if the
//!   lookup (`pg_config --bindir`, then the highest
//!   `/usr/lib/postgresql/<major>/bin`) would pick the wrong one.
//! - `PGTEST_TMPDIR` — where run directories go, instead of `/dev/shm` (used
//!   if writable with 2 GiB free) or the temp dir (`TMPDIR`). As root, it
//!   must be traversable by the `postgres` user.
#![warn(missing_docs)]

use std::path::PathBuf;
use std::sync::OnceLock;

mod builder;
mod cluster;
mod install;
mod pki;
mod proxy;
mod server;
mod testdb;
mod wait;

pub use builder::ClusterBuilder;
pub use cluster::Cluster;
pub use pki::TestPki;
pub use proxy::StallProxy;
pub use testdb::TestDb;
pub use wait::wait_until;

/// The cluster shared by all tests of this process, started on first call
/// (blocking, about a second), or the `PGTEST_URL` server.
///
/// # Panics
/// If the server cannot be started (every call panics with the same
/// message, e.g. "wal2json.so not found … run `make setup`").
pub fn cluster() -> &'static Cluster {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| match std::env::var("PGTEST_URL") {
        Ok(url) if !url.trim().is_empty() => Cluster::external(url.trim()),
        _ => Cluster::start_local(&server::ServerSpec::default()),
    });
    match shared {
        Ok(cluster) => cluster,
        Err(e) => panic!("pg-testkit: {e}"),
    }
}

/// Path of a program (`psql`, `pg_recvlogical`, `pg_dump`, …) from the
/// PostgreSQL installation the kit uses. Whether it exists is not checked.
///
/// # Panics
/// If no installation is found.
pub fn pg_bin(program: &str) -> PathBuf {
    match install::get() {
        Ok(install) => install.bindir.join(program),
        Err(e) => panic!("pg-testkit: {e}"),
    }
}

//! [`TestDb`]: one test's own database, dropped with its replication slots
//! when the value is dropped — also when the test panics, since unwinding
//! drops locals.
//!
//! Owns: the per-test connection parameters (as a URL, a tap/target config
//! object, a `tokio_postgres::Config`), small query helpers, and the drop.
//!
//! Invariant: `Drop` never panics and does not depend on the caller's tokio
//! runtime (there may be none, or it may be a current-thread runtime that
//! cannot be blocked on): it runs on a fresh thread with its own runtime and
//! is joined, so when `Drop` returns the database is gone or a failure was
//! printed to stderr.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::{Client, Config};

use crate::cluster::{connect, describe, quote_ident, url_encode, Inner, OrPanic};

/// How long Drop keeps retrying while slots are still held by backends that
/// are being terminated.
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh database on a [`crate::Cluster`], from
/// [`crate::Cluster::create_database`]. Connection details are the cluster's
/// superuser over TCP. Dropping it terminates the backends holding its
/// logical replication slots, drops those slots, then runs `DROP DATABASE …
/// WITH (FORCE)` (PostgreSQL 13 or newer).
pub struct TestDb {
    pub(crate) name: String,
    pub(crate) cluster: Arc<Inner>,
}

impl TestDb {
    /// Database name, `t_<pid>_<n>_<random>` (lower case, needs no quoting).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Host (`127.0.0.1` for a local cluster).
    pub fn host(&self) -> &str {
        &self.cluster.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.cluster.port
    }

    /// User (the cluster's superuser).
    pub fn user(&self) -> &str {
        &self.cluster.user
    }

    /// Password (may be empty for a `PGTEST_URL` without one).
    pub fn password(&self) -> &str {
        &self.cluster.password
    }

    /// `postgres://user:password@host:port/name`, components percent-encoded.
    pub fn url(&self) -> String {
        let auth = match self.password() {
            "" => url_encode(self.user()),
            pw => format!("{}:{}", url_encode(self.user()), url_encode(pw)),
        };
        let host = if self.host().contains(':') {
            format!("[{}]", self.host())
        } else {
            url_encode(self.host())
        };
        format!(
            "postgres://{auth}@{host}:{}/{}",
            self.port(),
            url_encode(&self.name)
        )
    }

    /// The shape of a tap/target config file:
    /// `{"host", "port" (a number), "user", "password", "dbname"}`.
    /// Extend it with `as_object_mut()` for other keys.
    pub fn conn_config(&self) -> Value {
        serde_json::json!({
            "host": self.host(),
            "port": self.port(),
            "user": self.user(),
            "password": self.password(),
            "dbname": self.name,
        })
    }

    /// A `tokio_postgres::Config` for this database, to adjust before
    /// connecting.
    pub fn pg_config(&self) -> Config {
        let mut config = self.cluster.tcp.clone();
        config.dbname(&self.name);
        config
    }

    /// A new client for this database; its connection task runs on the
    /// current tokio runtime.
    ///
    /// # Panics
    /// If the connection fails.
    pub async fn client(&self) -> Client {
        connect(&self.pg_config())
            .await
            .or_panic(|e| format!("pg-testkit: connect to {}: {}", self.name, describe(&e)))
    }

    /// Run `sql` (one or more statements, simple query protocol) on a new
    /// connection.
    ///
    /// # Panics
    /// If the statements fail; the message has the server's DETAIL and HINT.
    pub async fn execute_batch(&self, sql: &str) {
        let client = self.client().await;
        client
            .batch_execute(sql)
            .await
            .or_panic(|e| format!("pg-testkit: in {}: {sql}: {}", self.name, describe(&e)));
    }

    /// Rows of the query `sql` as JSON objects, for exact comparisons: runs
    /// `SELECT row_to_json(t)::text FROM (<sql>) t`, so values are encoded by
    /// the server (numbers exact, keys in column order). An `ORDER BY` in
    /// `sql` is kept, since the outer query neither sorts nor joins.
    ///
    /// # Panics
    /// If the query fails.
    pub async fn query_json(&self, sql: &str) -> Vec<Value> {
        let inner = sql.trim().trim_end_matches(';');
        let wrapped = format!("SELECT row_to_json(t)::text FROM ({inner}) t");
        let client = self.client().await;
        let rows = client
            .query(&wrapped, &[])
            .await
            .or_panic(|e| format!("pg-testkit: in {}: {sql}: {}", self.name, describe(&e)));
        rows.iter()
            .map(|row| {
                let text: &str = row.get(0);
                serde_json::from_str(text)
                    .or_panic(|e| format!("pg-testkit: row_to_json gave bad JSON: {e}"))
            })
            .collect()
    }
}

impl fmt::Debug for TestDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestDb")
            .field("name", &self.name)
            .field("host", &self.cluster.host)
            .field("port", &self.cluster.port)
            .finish_non_exhaustive()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let cluster = self.cluster.clone();
        let outcome = std::thread::Builder::new()
            .name("pg-testkit-dropdb".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| format!("cannot build a runtime: {e}"))?;
                runtime.block_on(drop_database(&cluster, &name))
            })
            .map_err(|e| format!("cannot spawn a thread: {e}"))
            .and_then(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err("the drop thread panicked".into()))
            });
        if let Err(e) = outcome {
            eprintln!("pg-testkit: could not drop database {}: {e}", self.name);
        }
    }
}

/// Terminate slot holders, drop the slots, drop the database; retry while a
/// terminated backend still holds a slot (DROP DATABASE refuses then).
async fn drop_database(cluster: &Inner, name: &str) -> Result<(), String> {
    let client = connect(&cluster.admin).await.map_err(|e| describe(&e))?;
    let drop_sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote_ident(name));
    let deadline = Instant::now() + DROP_TIMEOUT;
    loop {
        client
            .execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE database = $1 AND active_pid IS NOT NULL",
                &[&name],
            )
            .await
            .map_err(|e| describe(&e))?;
        let slots = client
            .query(
                "SELECT slot_name::text FROM pg_replication_slots WHERE database = $1 AND NOT active",
                &[&name],
            )
            .await
            .map_err(|e| describe(&e))?;
        for slot in slots {
            let slot: &str = slot.get(0);
            // It may have turned active or been dropped since: the loop retries.
            let _ = client
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
                .await;
        }
        match client.batch_execute(&drop_sql).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(describe(&e)),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

//! Tests of pg-testkit itself: the shared cluster, per-test databases and
//! their drop, custom clusters (auth, TLS), and that no server or directory
//! survives the test process, whether it panics or is killed.
//!
//! The process tests re-run this binary filtered to `helper_process`, which
//! does nothing unless `PG_TESTKIT_HELPER` is set. Every wait is a bounded
//! poll on a condition.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant};

use pg_testkit::{cluster, ClusterBuilder};
use serde_json::{json, Value};

const HELPER_ENV: &str = "PG_TESTKIT_HELPER";

/// Poll `cond` every 20 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Pids of processes whose working directory or command line is inside `dir`
/// (postgres backends run in their data dir; the postmaster names it in `-D`).
fn processes_in(dir: &Path) -> Vec<u32> {
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cwd.starts_with(dir) || cmdline.windows(needle.len()).any(|w| w == needle)
        })
        .collect()
}

async fn count(sql: &str, param: &str) -> i64 {
    let client = cluster().client().await;
    client.query_one(sql, &[&param]).await.unwrap().get(0)
}

async fn database_exists(name: &str) -> bool {
    count("SELECT count(*) FROM pg_database WHERE datname = $1", name).await == 1
}

#[tokio::test]
async fn wal_level_is_logical_with_enough_slots() {
    let db = cluster().create_database().await;
    let rows = db
        .query_json(
            "SELECT current_setting('wal_level') AS wal_level, \
             current_setting('max_replication_slots')::int AS slots, \
             current_setting('max_wal_senders')::int AS senders",
        )
        .await;
    assert_eq!(rows[0]["wal_level"], "logical");
    assert!(rows[0]["slots"].as_i64().unwrap() >= 20, "{rows:?}");
    assert!(rows[0]["senders"].as_i64().unwrap() >= 20, "{rows:?}");
}

/// Two users, each with its own thread and runtime as `#[tokio::test]`s
/// have, start using the kit at the same moment.
#[test]
fn concurrent_users_with_their_own_runtimes_get_distinct_databases_on_one_cluster() {
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let db = cluster().create_database().await;
                    let row = db
                        .client()
                        .await
                        .query_one("SELECT current_database()::text", &[])
                        .await
                        .unwrap();
                    assert_eq!(row.get::<_, String>(0), db.name());
                    db
                })
            })
        })
        .collect();
    let dbs: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_ne!(dbs[0].name(), dbs[1].name());
    assert_eq!(dbs[0].port(), dbs[1].port());
    assert_eq!(dbs[0].port(), cluster().port());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for db in &dbs {
            assert!(database_exists(db.name()).await, "{db:?} missing");
        }
    });
}

#[tokio::test]
async fn conn_config_and_url_reach_the_database() {
    let db = cluster().create_database().await;
    let config = db.conn_config();
    assert_eq!(config["dbname"], db.name());
    assert_eq!(config["port"], json!(db.port()));
    assert_eq!(config["user"], db.user());
    assert_eq!(config["password"], db.password());
    assert_eq!(config["host"], db.host());
    let url_config: tokio_postgres::Config = db.url().parse().unwrap();
    let (client, connection) = url_config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), db.name());
}

#[tokio::test]
async fn query_json_returns_rows_in_order_with_exact_values() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE t (id int, n numeric, s text, j jsonb); \
         INSERT INTO t VALUES (2, 12345678901234567890.123456789, 'b', '{\"k\": [1]}'), (1, NULL, 'a', NULL);",
    )
    .await;
    let rows = db.query_json("SELECT * FROM t ORDER BY id;").await;
    let expected: Vec<Value> = serde_json::from_str(
        r#"[{"id":1,"n":null,"s":"a","j":null},{"id":2,"n":12345678901234567890.123456789,"s":"b","j":{"k":[1]}}]"#,
    )
    .unwrap();
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn wal2json_decodes_an_insert_and_the_slot_goes_with_the_database() {
    let db = cluster().create_database().await;
    let slot = format!("s_{}", db.name());
    db.execute_batch("CREATE TABLE t (id int PRIMARY KEY, v text)")
        .await;
    db.execute_batch(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"
    ))
    .await;
    // Decoding sees only flushed WAL; a PGTEST_URL server may commit async.
    db.execute_batch("SET synchronous_commit = on; INSERT INTO t VALUES (1, 'one')")
        .await;

    let rows = db
        .query_json(&format!(
            "SELECT data FROM pg_logical_slot_peek_changes('{slot}', NULL, NULL)"
        ))
        .await;
    let changes: Vec<Value> = rows
        .iter()
        .flat_map(|r| {
            let data: Value = serde_json::from_str(r["data"].as_str().unwrap()).unwrap();
            data["change"].as_array().unwrap().clone()
        })
        .collect();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["kind"], "insert");
    assert_eq!(changes[0]["table"], "t");
    assert_eq!(changes[0]["columnvalues"], json!([1, "one"]));

    let name = db.name().to_string();
    drop(db);
    assert!(!database_exists(&name).await);
    assert_eq!(
        count(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &slot
        )
        .await,
        0
    );
}

/// A walsender streaming from the slot (as the tap's would) is terminated.
#[tokio::test]
async fn drop_terminates_a_walsender_holding_a_slot() {
    let db = cluster().create_database().await;
    let slot = format!("s_{}", db.name());
    db.execute_batch(&format!(
        "SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"
    ))
    .await;
    let mut recv = Command::new(pg_testkit::pg_bin("pg_recvlogical"))
        .args([
            "--no-loop",
            "--start",
            "-f",
            "/dev/null",
            "-S",
            &slot,
            "-d",
            &db.url(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null()) // it reports the termination we cause
        .spawn()
        .unwrap();
    let admin = cluster().client().await;
    pg_testkit::wait_until(
        "pg_recvlogical to take the slot",
        Duration::from_secs(10),
        || async {
            let row = admin
                .query_one(
                    "SELECT bool_or(active) FROM pg_replication_slots WHERE slot_name = $1",
                    &[&slot],
                )
                .await;
            row.unwrap().get::<_, Option<bool>>(0) == Some(true)
        },
    )
    .await;

    let name = db.name().to_string();
    drop(db);
    assert!(!database_exists(&name).await);
    assert_eq!(
        count(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1",
            &slot
        )
        .await,
        0
    );
    assert!(wait_until(Duration::from_secs(10), || recv
        .try_wait()
        .unwrap()
        .is_some()));
    let _ = recv.kill();
}

#[tokio::test]
async fn drop_removes_the_database_with_a_client_still_connected() {
    let db = cluster().create_database().await;
    let client = db.client().await;
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let name = db.name().to_string();
    assert!(database_exists(&name).await);
    drop(db);
    assert!(!database_exists(&name).await);
    assert!(client.batch_execute("SELECT 1").await.is_err());
}

#[test]
fn drop_runs_when_a_test_panics() {
    let (tx, rx) = mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let db = cluster().create_database().await;
            tx.send(db.name().to_string()).unwrap();
            panic!("deliberate panic holding {}", db.name());
        })
    })
    .join();
    assert!(outcome.is_err());
    let name = rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(!rt.block_on(database_exists(&name)));
}

#[tokio::test]
async fn custom_cluster_with_a_scram_line_rejects_a_wrong_password() {
    let custom = ClusterBuilder::new()
        .setting("password_encryption", "scram-sha-256")
        .hba("host all all 127.0.0.1/32 scram-sha-256")
        .start();
    assert_ne!(custom.port(), cluster().port());
    custom
        .execute_batch("CREATE ROLE alice LOGIN PASSWORD 'right'")
        .await;

    let login = |password: Option<&str>| {
        let mut config = custom.pg_config();
        config.user("alice").dbname("postgres");
        if let Some(p) = password {
            config.password(p);
        }
        async move { config.connect(tokio_postgres::NoTls).await.map(|_| ()) }
    };
    let wrong = login(Some("wrong")).await.unwrap_err();
    assert_eq!(
        wrong.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{wrong}"
    );
    assert!(
        login(None).await.is_err(),
        "no password must not be trusted"
    );
    login(Some("right")).await.unwrap();
    // The superuser has a password too, so tap/target configs work here.
    let _superuser = custom
        .pg_config()
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();

    let root = custom.data_dir().unwrap().parent().unwrap().to_path_buf();
    let port = custom.port();
    drop(custom);
    assert!(!root.exists());
    assert!(!port_open(port));
}

/// Started by the process tests below; a no-op in a normal run.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let c = cluster();
    println!(
        "PGTESTKIT dir={} port={}",
        c.data_dir().unwrap().parent().unwrap().display(),
        c.port()
    );
    match mode.as_str() {
        "panic" => panic!("deliberate panic with the cluster running"),
        // Wait to be killed (or for the parent to go away).
        _ => {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        }
    }
}

/// Run `helper_process` in a child and return it with its cluster's dir and port.
fn spawn_helper(mode: &str) -> (Child, PathBuf, u16) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, mode)
        .env_remove("PGTEST_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // The harness may print "test helper_process ... " on the same line.
            if let Some((_, rest)) = line.split_once("PGTESTKIT ") {
                let _ = tx.send(rest.to_string());
            }
        }
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "helper did not report its cluster; its stderr:\n{}",
            stderr.join().unwrap()
        );
    };
    let (dir, port) = line.split_once(" port=").unwrap();
    let dir = PathBuf::from(dir.strip_prefix("dir=").unwrap());
    assert!(dir.join("data").is_dir());
    assert!(port_open(port.parse().unwrap()));
    (child, dir, port.parse().unwrap())
}

fn assert_server_gone(dir: &Path, port: u16) {
    assert!(
        wait_until(Duration::from_secs(10), || !port_open(port)
            && processes_in(dir).is_empty()),
        "server of {} still running: {:?}",
        dir.display(),
        processes_in(dir)
    );
}

#[test]
fn server_and_dir_are_gone_after_a_test_process_panics() {
    let (mut child, dir, port) = spawn_helper("panic");
    assert!(wait_until(Duration::from_secs(30), || child
        .try_wait()
        .unwrap()
        .is_some()));
    assert!(!child.wait().unwrap().success(), "the helper should fail");
    assert_server_gone(&dir, port);
    assert!(
        wait_until(Duration::from_secs(5), || !dir.exists()),
        "{} left behind",
        dir.display()
    );
}

#[test]
fn server_stops_when_the_test_process_is_killed_and_a_later_start_sweeps_its_dir() {
    let (mut child, dir, port) = spawn_helper("hang");
    child.kill().unwrap(); // SIGKILL: no unwinding, no atexit
    child.wait().unwrap();
    assert_server_gone(&dir, port);
    let _other = ClusterBuilder::new().start();
    assert!(!dir.exists(), "{} not swept", dir.display());
}

//! The walsender client against real servers: wal2json messages and their
//! LSNs, confirmation reaching `confirmed_flush_lsn` exactly, keepalives
//! while the consumer stalls, exported snapshots, every authentication
//! method, TLS, and the errors for a missing or busy slot.

use std::time::{Duration, Instant};

use pg::walsender::{Lsn, ReplicationClient, ReplicationEvent, ReplicationStream, SlotSnapshot};
use pg::{ConnectionConfig, ErrorKind};
use pg_testkit::{cluster, wait_until, ClusterBuilder, TestDb, TestPki};
use serde_json::{json, Value};

/// The session settings the tap uses.
const GUCS: &[(&str, &str)] = &[
    ("DateStyle", "ISO"),
    ("TimeZone", "UTC"),
    ("extra_float_digits", "3"),
    ("IntervalStyle", "postgres"),
    ("bytea_output", "hex"),
];

const WAL2JSON: &[(&str, &str)] = &[
    ("format-version", "2"),
    ("include-lsn", "1"),
    ("include-timestamp", "1"),
];

/// Longest wait for anything the server should do at once.
const PATIENCE: Duration = Duration::from_secs(30);

fn config(v: Value) -> ConnectionConfig {
    ConnectionConfig::from_json(v.as_object().unwrap(), "walsender-tests").unwrap()
}

fn db_config(db: &TestDb) -> ConnectionConfig {
    config(db.conn_config())
}

/// The next XLogData as (wal_start, JSON), keepalives skipped.
async fn next_change(stream: &mut ReplicationStream) -> (Lsn, Value) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, stream.next())
            .await
            .expect("no change within 30 s")
            .unwrap()
            .expect("the stream ended");
        if let ReplicationEvent::XLogData {
            wal_start, data, ..
        } = event
        {
            return (wal_start, serde_json::from_slice(&data).unwrap());
        }
    }
}

fn lsn_of(v: &Value, key: &str) -> Lsn {
    v[key].as_str().unwrap().parse().unwrap()
}

async fn confirmed_flush_lsn(db: &TestDb, slot: &str) -> Option<Lsn> {
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .unwrap();
    row.get::<_, Option<String>>(0).map(|s| s.parse().unwrap())
}

/// Waits until the slot's `confirmed_flush_lsn` is `want`; it may only be
/// `from` meanwhile.
async fn wait_confirmed(db: &TestDb, slot: &str, from: Lsn, want: Lsn) {
    wait_until(&format!("{slot} confirmed at {want}"), PATIENCE, || async {
        let now = confirmed_flush_lsn(db, slot).await.unwrap();
        assert!(
            now == want || now == from,
            "confirmed_flush_lsn moved to {now}"
        );
        now == want
    })
    .await;
}

async fn wait_inactive(db: &TestDb, slot: &str) {
    let client = db.client().await;
    wait_until(&format!("slot {slot} to be released"), PATIENCE, || async {
        let active: bool = client
            .query_one(
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await
            .unwrap()
            .get(0);
        !active
    })
    .await;
}

/// A wal2json v2 message with its timestamp taken out (checked separately).
fn without_timestamp(mut v: Value) -> (Value, String) {
    let ts = v
        .as_object_mut()
        .unwrap()
        .remove("timestamp")
        .and_then(|t| t.as_str().map(str::to_string))
        .expect("include-timestamp gives a timestamp");
    (v, ts)
}

/// Receives one transaction of inserts into `public.t (id, name)` and
/// checks every message exactly; returns the commit's `wal_start`.
async fn expect_inserts(stream: &mut ReplicationStream, rows: &[(i32, &str)]) -> Lsn {
    let (begin_at, begin) = next_change(stream).await;
    let (begin, ts) = without_timestamp(begin);
    let commit_lsn = lsn_of(&begin, "lsn");
    let end_lsn = lsn_of(&begin, "nextlsn");
    assert_eq!(
        begin,
        json!({"action": "B", "lsn": commit_lsn.to_string(), "nextlsn": end_lsn.to_string()})
    );
    let mut previous = begin_at;
    for (i, (id, name)) in rows.iter().enumerate() {
        let (at, insert) = next_change(stream).await;
        let (insert, insert_ts) = without_timestamp(insert);
        assert_eq!(insert_ts, ts);
        assert_eq!(
            insert,
            json!({"action": "I", "lsn": at.to_string(), "schema": "public", "table": "t",
                "columns": [{"name": "id", "type": "integer", "value": id},
                            {"name": "name", "type": "text", "value": name}]})
        );
        if i == 0 {
            assert_eq!(at, begin_at, "a transaction begins at its first change");
        }
        assert!(at >= previous && at < commit_lsn);
        previous = at;
    }
    let (commit_at, commit) = next_change(stream).await;
    let (commit, commit_ts) = without_timestamp(commit);
    assert_eq!(commit_ts, ts);
    assert_eq!(
        commit,
        json!({"action": "C", "lsn": commit_lsn.to_string(), "nextlsn": end_lsn.to_string()})
    );
    assert_eq!(
        commit_at, end_lsn,
        "the commit's wal_start is the end of its record"
    );
    commit_at
}

#[tokio::test]
async fn streams_wal2json_and_confirms_exactly_what_the_caller_says() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE t (id int PRIMARY KEY, name text)")
        .await;
    let mut client = ReplicationClient::connect(&db_config(&db), GUCS)
        .await
        .unwrap();
    assert!(!client.is_tls(), "prefer falls back to plain text");

    let system = client.identify_system().await.unwrap();
    assert_eq!(system.dbname.as_deref(), Some(db.name()));
    assert_eq!(system.timeline, 1);
    assert!(system.systemid.parse::<u64>().is_ok(), "{system:?}");
    assert!(!system.xlogpos.is_invalid());
    assert_eq!(
        client.simple_query("SHOW TimeZone").await.unwrap(),
        vec![vec![Some("UTC".to_string())]]
    );
    assert_eq!(
        client
            .simple_query("SELECT 1 AS a, NULL AS b")
            .await
            .unwrap(),
        vec![vec![Some("1".to_string()), None]]
    );
    let err = client.simple_query("SELEC 1").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server);
    assert!(
        err.to_string()
            .starts_with("query \"SELEC 1\" on 127.0.0.1:"),
        "{err}"
    );

    let slot = client
        .create_logical_slot("s_stream", "wal2json", SlotSnapshot::NoExport)
        .await
        .unwrap();
    assert_eq!(slot.name, "s_stream");
    assert_eq!(slot.output_plugin, "wal2json");
    assert_eq!(slot.snapshot_name, None);
    assert!(slot.consistent_point >= system.xlogpos);
    assert_eq!(
        confirmed_flush_lsn(&db, "s_stream").await,
        Some(slot.consistent_point)
    );

    db.execute_batch(
        "BEGIN; INSERT INTO t VALUES (1, 'a'); INSERT INTO t VALUES (2, 'it''s'); COMMIT",
    )
    .await;
    let mut stream = client
        .start_replication("s_stream", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap();
    let commit_end = expect_inserts(&mut stream, &[(1, "a"), (2, "it's")]).await;

    // Status updates and keepalives do not move the slot by themselves.
    stream.send_status(true).await.unwrap();
    loop {
        if let ReplicationEvent::Keepalive { .. } = stream.next().await.unwrap().unwrap() {
            break;
        }
    }
    assert_eq!(
        confirmed_flush_lsn(&db, "s_stream").await,
        Some(slot.consistent_point)
    );

    // What the caller confirms arrives exactly.
    stream.confirm(commit_end);
    stream.confirm(Lsn(commit_end.0 - 1)); // never backward
    assert_eq!(stream.confirmed(), commit_end);
    stream.send_status(false).await.unwrap();
    wait_confirmed(&db, "s_stream", slot.consistent_point, commit_end).await;
    stream.stop().await.unwrap();

    // A second session from the confirmed LSN sees only what is new.
    let client = ReplicationClient::connect(&db_config(&db), GUCS)
        .await
        .unwrap();
    let mut stream = client
        .start_replication("s_stream", commit_end, WAL2JSON)
        .await
        .unwrap();
    db.execute_batch("INSERT INTO t VALUES (3, 'c')").await;
    expect_inserts(&mut stream, &[(3, "c")]).await;
    stream.stop().await.unwrap();
}

#[tokio::test]
async fn a_stalled_consumer_stays_connected_past_wal_sender_timeout() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE t (id int PRIMARY KEY, name text)")
        .await;
    let mut v = db.conn_config();
    v["application_name"] = json!("stalled-consumer");
    let mut gucs = GUCS.to_vec();
    gucs.push(("wal_sender_timeout", "2s"));
    let mut client = ReplicationClient::connect(&config(v), &gucs).await.unwrap();
    assert_eq!(
        client
            .simple_query("SHOW wal_sender_timeout")
            .await
            .unwrap(),
        vec![vec![Some("2s".to_string())]]
    );
    client
        .create_logical_slot("s_stall", "wal2json", SlotSnapshot::NoExport)
        .await
        .unwrap();
    // More changes than the event buffer holds: the task stops reading the
    // socket while the consumer does nothing.
    let rows = 3 * pg::walsender::EVENT_BUFFER as i32;
    db.execute_batch(&format!(
        "INSERT INTO t SELECT i, 'row ' || i FROM generate_series(1, {rows}) i"
    ))
    .await;
    let mut stream = client
        .start_replication("s_stall", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap();
    // The default status interval (10 s) is longer than the timeout: the
    // stream must keep under it on its own.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let client = db.client().await;
    let senders: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'stalled-consumer'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(senders, 1, "the walsender is still there");

    let (_, begin) = next_change(&mut stream).await;
    assert_eq!(begin["action"], "B");
    for id in 1..=rows {
        let (_, insert) = next_change(&mut stream).await;
        assert_eq!(insert["columns"][0]["value"], id);
    }
    let (_, commit) = next_change(&mut stream).await;
    assert_eq!(commit["action"], "C");
    db.execute_batch("INSERT INTO t VALUES (0, 'after the stall')")
        .await;
    let (_, begin) = next_change(&mut stream).await;
    assert_eq!(begin["action"], "B");
    let (_, insert) = next_change(&mut stream).await;
    assert_eq!(insert["columns"][1]["value"], "after the stall");
    stream.stop().await.unwrap();
}

#[tokio::test]
async fn exported_snapshot_and_stream_see_each_change_once() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE t (id int PRIMARY KEY, name text); INSERT INTO t VALUES (1, 'before')",
    )
    .await;
    let mut client = ReplicationClient::connect(&db_config(&db), GUCS)
        .await
        .unwrap();
    let slot = client
        .create_logical_slot("s_snap", "wal2json", SlotSnapshot::Export)
        .await
        .unwrap();
    let snapshot = slot.snapshot_name.clone().expect("a snapshot is exported");

    // Import it before the next command on the replication connection.
    let reader = db.client().await;
    reader
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT {}",
            pg::quote_literal(&snapshot).unwrap()
        ))
        .await
        .unwrap();
    db.execute_batch("INSERT INTO t VALUES (2, 'after')").await;

    let mut stream = client
        .start_replication("s_snap", slot.consistent_point, WAL2JSON)
        .await
        .unwrap();
    let seen: Vec<i32> = reader
        .query("SELECT id FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, vec![1], "the snapshot is the slot's consistent point");
    reader.batch_execute("COMMIT").await.unwrap();

    expect_inserts(&mut stream, &[(2, "after")]).await;
    // Exactly once: the next thing streamed is the next transaction.
    db.execute_batch("INSERT INTO t VALUES (3, 'sentinel')")
        .await;
    expect_inserts(&mut stream, &[(3, "sentinel")]).await;
    stream.stop().await.unwrap();
}

#[tokio::test]
async fn every_password_method_and_a_wrong_password() {
    let server = ClusterBuilder::new()
        .hba("host all md5_role 127.0.0.1/32 md5")
        .hba("host all plain_role 127.0.0.1/32 password")
        .hba("host all all 127.0.0.1/32 scram-sha-256")
        .start();
    server
        .execute_batch(
            "SET password_encryption = 'md5';
             CREATE ROLE md5_role LOGIN REPLICATION PASSWORD 'md5-pw';
             RESET password_encryption;
             CREATE ROLE scram_role LOGIN REPLICATION PASSWORD 'scram-pw';
             CREATE ROLE plain_role LOGIN REPLICATION PASSWORD 'plain-pw';
             CREATE ROLE no_replication LOGIN PASSWORD 'x-pw';
             CREATE TABLE t (id int PRIMARY KEY, name text);
             GRANT ALL ON t TO scram_role",
        )
        .await;
    let login = |user: &str, password: Option<&str>| {
        let mut v = json!({"host": "127.0.0.1", "port": server.port(), "user": user,
            "dbname": "postgres", "sslmode": "disable"});
        if let Some(pw) = password {
            v["password"] = json!(pw);
        }
        config(v)
    };

    for (user, password) in [
        ("md5_role", "md5-pw"),
        ("plain_role", "plain-pw"),
        ("scram_role", "scram-pw"),
    ] {
        let mut client = ReplicationClient::connect(&login(user, Some(password)), GUCS)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        let system = client.identify_system().await.unwrap();
        assert_eq!(system.dbname.as_deref(), Some("postgres"), "{user}");
    }

    // A whole session over SCRAM.
    let mut client = ReplicationClient::connect(&login("scram_role", Some("scram-pw")), GUCS)
        .await
        .unwrap();
    client
        .create_logical_slot("s_scram", "wal2json", SlotSnapshot::NoExport)
        .await
        .unwrap();
    let mut stream = client
        .start_replication("s_scram", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap();
    server
        .execute_batch("INSERT INTO t VALUES (7, 'scram')")
        .await;
    expect_inserts(&mut stream, &[(7, "scram")]).await;
    stream.stop().await.unwrap();

    let err = ReplicationClient::connect(&login("scram_role", Some("wrong-pw")), GUCS)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot open a replication connection to 127.0.0.1:{}/postgres as scram_role: \
             password authentication failed for user \"scram_role\" \
             (check user and password, and the server's pg_hba.conf)",
            server.port()
        )
    );
    assert!(!format!("{err:?}").contains("wrong-pw"));
    assert_eq!(err.sqlstate(), Some("28P01"));

    let err = ReplicationClient::connect(&login("md5_role", None), GUCS)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    assert!(err.to_string().contains("the config has none"), "{err}");

    let err = ReplicationClient::connect(&login("no_replication", Some("x-pw")), GUCS)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Replication, "{err}");
    assert!(
        err.to_string()
            .contains("must be superuser or replication role"),
        "{err}"
    );
}

#[tokio::test]
async fn streams_over_tls_and_authenticates_by_client_certificate() {
    let pki = TestPki::new("cert_role");
    // TLS for everyone; cert_role must present its certificate.
    let server = pki.start_cluster(&[
        "hostssl all cert_role 127.0.0.1/32 cert",
        "host all all 127.0.0.1/32 trust",
    ]);
    server
        .execute_batch(
            "CREATE TABLE t (id int PRIMARY KEY, name text);
             CREATE ROLE cert_role LOGIN REPLICATION",
        )
        .await;
    let tls = |host: &str, extra: Value| {
        let mut v = json!({"host": host, "port": server.port(), "user": "postgres",
            "password": server.password(), "dbname": "postgres"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        config(v)
    };

    for (i, (host, settings)) in [
        ("127.0.0.1", json!({"sslmode": "require"})),
        (
            "localhost",
            json!({"sslmode": "verify-full", "ssl_root_ca_cert": pki.ca_pem}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mode = settings["sslmode"].clone();
        let mut client = ReplicationClient::connect(&tls(host, settings), GUCS)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(client.is_tls(), "{mode}");
        assert_eq!(
            client
                .simple_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .await
                .unwrap(),
            vec![vec![Some("t".to_string())]],
            "{mode}"
        );
        let slot = format!("s_tls_{i}");
        client
            .create_logical_slot(&slot, "wal2json", SlotSnapshot::NoExport)
            .await
            .unwrap();
        let mut stream = client
            .start_replication(&slot, Lsn::INVALID, WAL2JSON)
            .await
            .unwrap();
        let id = i as i32;
        server
            .execute_batch(&format!("INSERT INTO t VALUES ({id}, 'tls')"))
            .await;
        expect_inserts(&mut stream, &[(id, "tls")]).await;
        stream.stop().await.unwrap();
    }

    // Client certificate authentication.
    let mut v = json!({"host": "localhost", "port": server.port(), "user": "cert_role",
        "dbname": "postgres", "sslmode": "verify-full", "ssl_root_ca_cert": pki.ca_pem,
        "ssl_client_certificate": pki.read("client.pem"),
        "ssl_client_key": pki.read("client.key")});
    let mut client = ReplicationClient::connect(&config(v.clone()), GUCS)
        .await
        .unwrap();
    assert_eq!(
        client.simple_query("SELECT current_user").await.unwrap(),
        vec![vec![Some("cert_role".to_string())]]
    );
    v.as_object_mut().unwrap().remove("ssl_client_certificate");
    v.as_object_mut().unwrap().remove("ssl_client_key");
    let err = ReplicationClient::connect(&config(v), GUCS)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");

    // verify-full checks the host name.
    let err = ReplicationClient::connect(
        &tls(
            "127.0.0.1",
            json!({"sslmode": "verify-full", "ssl_root_ca_cert": pki.ca_pem}),
        ),
        GUCS,
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");

    // require refuses a server without TLS.
    let db = cluster().create_database().await;
    let mut v = db.conn_config();
    v["sslmode"] = json!("require");
    let err = ReplicationClient::connect(&config(v), GUCS)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(err.to_string().contains("does not support TLS"), "{err}");
}

#[tokio::test]
async fn slot_errors_and_ended_sessions_name_the_slot() {
    let db = cluster().create_database().await;
    let settings = db_config(&db);
    let connect = || ReplicationClient::connect(&settings, GUCS);

    let err = connect()
        .await
        .unwrap()
        .start_replication("no_such_slot", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Replication, "{err}");
    assert_eq!(err.sqlstate(), Some("42704"));
    assert_eq!(
        err.to_string(),
        format!(
            "starting replication from slot \"no_such_slot\" on {}:{}/{} as {}: \
             replication slot \"no_such_slot\" does not exist",
            db.host(),
            db.port(),
            db.name(),
            db.user()
        )
    );

    let mut client = connect().await.unwrap();
    client
        .create_logical_slot("s_busy", "wal2json", SlotSnapshot::NoExport)
        .await
        .unwrap();
    let err = client
        .create_logical_slot("s_busy", "wal2json", SlotSnapshot::NoExport)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Replication, "{err}");
    assert!(
        err.to_string()
            .ends_with("replication slot \"s_busy\" already exists"),
        "{err}"
    );
    // The client is still usable after a failed command.
    client.identify_system().await.unwrap();

    let stream = client
        .start_replication("s_busy", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap();
    let err = connect()
        .await
        .unwrap()
        .start_replication("s_busy", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Replication, "{err}");
    assert_eq!(err.sqlstate(), Some("55006"));
    assert!(
        err.to_string()
            .contains("replication slot \"s_busy\" is active for PID"),
        "{err}"
    );
    stream.stop().await.unwrap();

    // A dropped stream frees the slot too.
    let stream = connect()
        .await
        .unwrap()
        .start_replication("s_busy", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap();
    drop(stream);
    wait_inactive(&db, "s_busy").await;

    // A walsender terminated by the server is a retryable error naming the slot.
    let mut stream = connect()
        .await
        .unwrap()
        .start_replication("s_busy", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap();
    db.client()
        .await
        .execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = 's_busy'",
            &[],
        )
        .await
        .unwrap();
    let err = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Err(e) = stream.next().await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(
        err.to_string()
            .starts_with("streaming from replication slot \"s_busy\" on "),
        "{err}"
    );
    assert!(stream.next().await.unwrap().is_none());
    let err = stream.stop().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");

    // An unknown plugin option is the server's error, with the slot named.
    let err = connect()
        .await
        .unwrap()
        .start_replication("s_busy", Lsn::INVALID, &[("no-such-option", "it's")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Server, "{err}");
    assert!(
        err.to_string()
            .starts_with("starting replication from slot \"s_busy\" on "),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("option \"no-such-option\" = \"it's\" is unknown"),
        "{err}"
    );
}

/// Issue 10, item 1: a replication stream whose path stops delivering
/// without closing fails within a bounded time, saying it stalled (before
/// the fix it waited forever), and `stop()` does not wait for a server that
/// cannot answer. An idle but healthy stream is not a stall: it asks the
/// server for replies.
#[tokio::test]
async fn a_stalled_stream_fails_and_stop_is_bounded() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE t (id int PRIMARY KEY)")
        .await;
    let proxy = pg_testkit::StallProxy::start(db.host(), db.port());
    let v = super::via_proxy(&db, &proxy, 1);
    let mut client = ReplicationClient::connect(&config(v), GUCS).await.unwrap();
    client
        .create_logical_slot("s_stalled", "wal2json", SlotSnapshot::NoExport)
        .await
        .unwrap();
    let mut stream = client
        .start_replication("s_stalled", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap();
    // Idle for three stall timeouts: keepalives answer the requests.
    tokio::time::sleep(Duration::from_secs(3)).await;
    db.execute_batch("INSERT INTO t VALUES (1)").await;
    let (_, begin) = next_change(&mut stream).await;
    assert_eq!(begin["action"], "B");

    proxy.stall();
    let started = Instant::now();
    let err = loop {
        match tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("the stream still waits after 30 s")
        {
            Ok(Some(_)) => continue, // what arrived before the stall
            Ok(None) => panic!("the stream ended without an error"),
            Err(e) => break e,
        }
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(err.kind(), ErrorKind::Connect);
    assert_eq!(err.sqlstate(), Some(pg::stall::STALL_SQLSTATE));
    let text = err.to_string();
    assert!(
        text.starts_with("streaming from replication slot \"s_stalled\": the connection to ")
            && text.contains(" stalled: nothing arrived for ")
            && text.contains("a rerun resumes from the last state"),
        "{text}"
    );
    let started = Instant::now();
    let stopped = stream.stop().await;
    assert!(stopped.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Issue 10, item 1: `stop()` on a stream whose path stalled before the
/// stall was noticed is bounded and reports the stall.
#[tokio::test]
async fn stopping_a_stream_over_a_stalled_path_is_bounded() {
    let db = cluster().create_database().await;
    let proxy = pg_testkit::StallProxy::start(db.host(), db.port());
    let v = super::via_proxy(&db, &proxy, 2);
    let mut client = ReplicationClient::connect(&config(v), GUCS).await.unwrap();
    client
        .create_logical_slot("s_stop", "wal2json", SlotSnapshot::NoExport)
        .await
        .unwrap();
    let stream = client
        .start_replication("s_stop", Lsn::INVALID, WAL2JSON)
        .await
        .unwrap();
    proxy.stall();
    let started = Instant::now();
    let err = tokio::time::timeout(PATIENCE, stream.stop())
        .await
        .expect("stop() still waits after 30 s")
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    let text = err.to_string();
    assert!(
        text.contains("replication slot \"s_stop\"") && text.contains(" stalled: "),
        "{text}"
    );
}

//! LOG_BASED regression tests of issue #9: no silent loss. Each failed on
//! the code before the fix (a commit missed by the initial copy, a table
//! name that broke `add-tables`, a state behind the slot accepted, …).

use std::process::Stdio;
use std::time::{Duration, Instant};

use pg_testkit::{cluster, ClusterBuilder, TestDb};
use serde_json::{json, Value};

use crate::support::{config, discover, log_config, select, sync, sync_command, Files, Run};

fn ids(run: &Run, stream: &str) -> Vec<i64> {
    run.of_type("RECORD")
        .iter()
        .filter(|m| m["stream"] == stream)
        .map(|m| m["record"]["id"].as_i64().unwrap())
        .collect()
}

/// Waits (bounded) until `query` returns a row.
async fn wait_for(db: &TestDb, query: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while db.query_json(query).await.is_empty() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the tap (`cmd`) while a commit (`held`, spawned) waits for a
/// standby that never connects; once the tap has ended or `waiting` (a
/// query) returns a row, the standby requirement is dropped so the commit
/// completes, and the tap's run is returned.
async fn run_while_held(
    custom: &pg_testkit::Cluster,
    db: &TestDb,
    mut cmd: std::process::Command,
    waiting: &str,
    held: tokio::task::JoinHandle<()>,
) -> Run {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && db.query_json(waiting).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the tap neither ended nor waited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    custom
        .execute_batch("ALTER SYSTEM SET synchronous_standby_names = ''")
        .await;
    custom.execute_batch("SELECT pg_reload_conf()").await;
    held.await.unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    Run {
        lines: stdout.lines().map(str::to_string).collect(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output,
    }
}

#[tokio::test]
async fn issue9_a_commit_waiting_for_a_standby_during_the_initial_copy_arrives() {
    // Every commit that asks for it waits for a standby that never comes.
    let custom = ClusterBuilder::new()
        .setting("synchronous_standby_names", "never_connects")
        .setting("synchronous_commit", "local")
        .start();
    let db = custom.create_database().await;
    db.execute_batch("CREATE TABLE w (id int PRIMARY KEY);")
        .await;
    db.execute_batch("SELECT pg_create_logical_replication_slot('s_sync', 'wal2json');")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_sync", json!({"create_replication_slot": false}));
    let catalog = select(&discover(&files, &cfg), &[("public-w", "LOG_BASED", None)]);

    // A transaction whose commit record is written, held invisible.
    let held = db.client().await;
    let insert = tokio::spawn(async move {
        held.batch_execute("SET synchronous_commit = on; INSERT INTO w VALUES (1)")
            .await
            .unwrap();
    });
    wait_for(
        &db,
        "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
        "the commit to wait for the standby",
    )
    .await;

    // The tap's initial copy starts while it is held; release it once the
    // tap has either finished or is waiting for it.
    let first = run_while_held(
        &custom,
        &db,
        sync_command(&files, &cfg, &catalog, None),
        "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'transactionid'",
        insert,
    )
    .await;
    assert!(first.output.status.success(), "{}", first.stderr);
    let second = sync(&files, &cfg, &catalog, Some(&first.last_state()));
    assert!(second.output.status.success(), "{}", second.stderr);
    let mut got = ids(&first, "public-w");
    got.extend(ids(&second, "public-w"));
    assert_eq!(got, [1], "the held row arrives exactly once");
}

#[tokio::test]
async fn issue9_a_tab_or_newline_in_a_table_name_streams() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE \"tab\there\" (id int PRIMARY KEY);
         CREATE TABLE \"new\nline\" (id int PRIMARY KEY);
         CREATE TABLE plain (id int PRIMARY KEY);",
    )
    .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_tab", json!({}));
    let streams = ["public-tab\there", "public-new\nline", "public-plain"];
    let wanted: Vec<(&str, &str, Option<&str>)> =
        streams.iter().map(|s| (*s, "LOG_BASED", None)).collect();
    let catalog = select(&discover(&files, &cfg), &wanted);
    let r1 = sync(&files, &cfg, &catalog, None);
    assert!(r1.output.status.success(), "{}", r1.stderr);
    db.execute_batch(
        "INSERT INTO \"tab\there\" VALUES (1); INSERT INTO \"new\nline\" VALUES (2);
         INSERT INTO plain VALUES (3);",
    )
    .await;
    let r2 = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    assert!(r2.output.status.success(), "{}", r2.stderr);
    for (stream, id) in streams.iter().zip([1, 2, 3]) {
        assert_eq!(ids(&r2, stream), [id], "{stream:?}");
    }
}

#[tokio::test]
async fn issue9_a_state_behind_the_slot_is_refused_unless_allowed() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE b (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_behind", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-b", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    db.execute_batch("INSERT INTO b VALUES (1);").await;
    let r2 = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    db.execute_batch("INSERT INTO b VALUES (2);").await;
    // Run 3 confirms run 2's state, so run 1's state is now behind the slot.
    let r3 = sync(&files, &cfg, &catalog, Some(&r2.last_state()));
    assert!(r3.output.status.success(), "{}", r3.stderr);
    let old = r1.last_state()["bookmarks"]["public-b"]["lsn"]
        .as_u64()
        .unwrap();
    let confirmed = r2.last_state()["bookmarks"]["public-b"]["lsn"]
        .as_u64()
        .unwrap();
    let text = |n: u64| format!("{:X}/{:X}", n >> 32, n & 0xffff_ffff);
    let run = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    assert_eq!(run.output.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "stream public-b: the state's lsn {} is behind replication slot \"s_behind\"'s confirmed_flush_lsn {}",
            text(old),
            text(confirmed)
        )) && run.stderr.contains("remove its `lsn` bookmark from the state"),
        "{}",
        run.stderr
    );
    assert!(run.of_type("RECORD").is_empty());
    let mut allow = cfg.clone();
    allow["allow_state_behind_slot"] = json!(true);
    let run = sync(&files, &allow, &catalog, Some(&r1.last_state()));
    assert!(run.output.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains("allow_state_behind_slot"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn issue9_a_state_message_as_state_file_is_unwrapped() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE e (id int PRIMARY KEY); INSERT INTO e VALUES (1);")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_envelope", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-e", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    assert_eq!(ids(&r1, "public-e"), [1]);
    // `tail -1` of the tap's output: the whole STATE message.
    let envelope: Value = serde_json::from_str(r1.lines.last().unwrap()).unwrap();
    assert_eq!(envelope["type"], "STATE");
    db.execute_batch("INSERT INTO e VALUES (2);").await;
    let r2 = sync(&files, &cfg, &catalog, Some(&envelope));
    assert!(r2.output.status.success(), "{}", r2.stderr);
    assert_eq!(ids(&r2, "public-e"), [2], "no new initial copy");
    assert!(r2.last_state().get("value").is_none());
    assert!(r2.last_state()["bookmarks"]["public-e"]["lsn"].is_u64());
}

#[tokio::test]
async fn issue9_a_slot_name_over_63_bytes_names_the_setting() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE n (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let long = "s".repeat(64);
    let cfg = log_config(&db, &long, json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-n", "LOG_BASED", None)]);
    let run = sync(&files, &cfg, &catalog, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr
            .contains(&format!("`replication_slot` \"{long}\" is 64 bytes long")),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn issue9_databases_in_the_order_a_b_a_are_streamed_once_each() {
    let a = cluster().create_database().await;
    let b = cluster().create_database().await;
    a.execute_batch("CREATE TABLE t1 (id int PRIMARY KEY); CREATE TABLE t2 (id int PRIMARY KEY);")
        .await;
    b.execute_batch("CREATE TABLE u1 (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg_a = config(&a, json!({"create_replication_slot": true}));
    let cfg_b = config(&b, json!({"create_replication_slot": true}));
    let from_a = select(
        &discover(&files, &cfg_a),
        &[
            ("public-t1", "LOG_BASED", None),
            ("public-t2", "LOG_BASED", None),
        ],
    );
    let from_b = select(
        &discover(&files, &cfg_b),
        &[("public-u1", "LOG_BASED", None)],
    );
    let catalog =
        json!({"streams": [from_a["streams"][0], from_b["streams"][0], from_a["streams"][1]]});
    let run = sync(&files, &cfg_a, &catalog, None);
    assert!(run.output.status.success(), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("streaming from slot").count(),
        2,
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn issue9_a_slot_that_lost_its_wal_is_an_error_with_the_remedy() {
    let custom = ClusterBuilder::new()
        .setting("max_slot_wal_keep_size", "1MB")
        .start();
    let db = custom.create_database().await;
    db.execute_batch("CREATE TABLE l (id int PRIMARY KEY, v text);")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_lost", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-l", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    assert!(r1.output.status.success(), "{}", r1.stderr);
    for _ in 0..4 {
        db.execute_batch(
            "INSERT INTO l SELECT g, repeat('x', 100) FROM generate_series((SELECT count(*) FROM l) + 1, (SELECT count(*) FROM l) + 2000) g;
             SELECT pg_switch_wal();",
        )
        .await;
    }
    db.execute_batch("CHECKPOINT;").await;
    let status = db
        .query_json("SELECT wal_status FROM pg_replication_slots WHERE slot_name = 's_lost'")
        .await;
    assert_eq!(status[0]["wal_status"], "lost", "the test's setup");
    let run = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr
            .contains("replication slot \"s_lost\" has lost WAL it needed")
            && run
                .stderr
                .contains("SELECT pg_drop_replication_slot('s_lost');")
            && run.stderr.contains("remove the `lsn` bookmarks"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn issue9_a_transaction_open_across_a_keepalive_bookmark_arrives_next_run() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE o (id int PRIMARY KEY); CREATE TABLE busy (x int);")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_open", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-o", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    let open = db.client().await;
    open.batch_execute("BEGIN; INSERT INTO o VALUES (1);")
        .await
        .unwrap();
    db.execute_batch("INSERT INTO busy SELECT generate_series(1, 100);")
        .await;
    let r2 = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    assert!(r2.output.status.success(), "{}", r2.stderr);
    assert!(ids(&r2, "public-o").is_empty());
    let lsn = |r: &Run| {
        r.last_state()["bookmarks"]["public-o"]["lsn"]
            .as_u64()
            .unwrap()
    };
    assert!(
        lsn(&r2) > lsn(&r1),
        "the idle keepalive moved the bookmark past the open insert"
    );
    open.batch_execute("COMMIT").await.unwrap();
    let r3 = sync(&files, &cfg, &catalog, Some(&r2.last_state()));
    assert!(r3.output.status.success(), "{}", r3.stderr);
    assert_eq!(ids(&r3, "public-o"), [1]);
}

#[tokio::test]
async fn issue9_a_key_change_streamed_before_it_is_visible_keeps_its_toasted_column() {
    // wal2json sends a transaction once its commit record is decoded; a
    // commit waiting for a standby is not yet visible to other sessions.
    let custom = ClusterBuilder::new()
        .setting("synchronous_standby_names", "never_connects")
        .setting("synchronous_commit", "local")
        .start();
    let db = custom.create_database().await;
    db.execute_batch(
        "CREATE TABLE k (id int PRIMARY KEY, big text);
         ALTER TABLE k ALTER COLUMN big SET STORAGE EXTERNAL;
         INSERT INTO k VALUES (1, repeat('x', 5000));",
    )
    .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_invisible", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-k", "LOG_BASED", None)]);
    let first = sync(&files, &cfg, &catalog, None);
    assert!(first.output.status.success(), "{}", first.stderr);

    let held = db.client().await;
    let update = tokio::spawn(async move {
        held.batch_execute("SET synchronous_commit = on; UPDATE k SET id = 10 WHERE id = 1")
            .await
            .unwrap();
    });
    wait_for(
        &db,
        "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
        "the key change to wait for the standby",
    )
    .await;
    // Released once the tap has ended, or has the change and waits until
    // it is visible.
    let second = run_while_held(
        &custom,
        &db,
        sync_command(&files, &cfg, &catalog, Some(&first.last_state())),
        "SELECT 1 FROM pg_stat_activity WHERE query LIKE '%txid_visible_in_snapshot%' \
         AND pid <> pg_backend_pid()",
        update,
    )
    .await;
    assert!(second.output.status.success(), "{}", second.stderr);
    let records: Vec<Value> = second
        .of_type("RECORD")
        .into_iter()
        .map(|m| {
            let mut r = m["record"].clone();
            let o = r.as_object_mut().unwrap();
            o.remove("_sdc_lsn");
            if o["_sdc_deleted_at"].is_string() {
                o.insert("_sdc_deleted_at".into(), json!("<t>"));
            }
            r
        })
        .collect();
    assert_eq!(
        records,
        [
            json!({"id": 1, "_sdc_deleted_at": "<t>"}),
            json!({"id": 10, "big": "x".repeat(5000), "_sdc_deleted_at": null}),
        ]
    );
}

#[tokio::test]
async fn issue9_a_slot_close_to_losing_its_wal_is_a_warning_with_the_figures() {
    let custom = ClusterBuilder::new()
        .setting("max_slot_wal_keep_size", "20MB")
        .start();
    let db = custom.create_database().await;
    db.execute_batch("CREATE TABLE s (id int PRIMARY KEY); CREATE TABLE filler (v text);")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_close", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-s", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    assert!(r1.output.status.success(), "{}", r1.stderr);
    // WAL the slot must keep, until less than a fifth of the allowance is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let safe = db
            .query_json(
                "SELECT safe_wal_size FROM pg_replication_slots WHERE slot_name = 's_close'",
            )
            .await;
        if safe[0]["safe_wal_size"]
            .as_i64()
            .is_some_and(|s| s < 4 << 20)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slot kept its margin: {safe:?}"
        );
        db.execute_batch(
            "INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 1000);",
        )
        .await;
    }
    let run = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    assert!(run.output.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.lines().any(|l| l.contains("WARN")
            && l.contains("replication slot \"s_close\" can fall behind only ")
            && l.contains(
                "MB more before the server drops its WAL (max_slot_wal_keep_size 20 MB)"
            )),
        "{}",
        run.stderr
    );
}

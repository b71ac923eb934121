//! LOG_BASED against a real server with wal2json: the exact records of each
//! kind of change, consecutive runs that neither repeat nor skip, the
//! slot's confirmed position, stopping on an idle database, and the
//! prerequisite errors.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use pg_testkit::{cluster, ClusterBuilder, TestDb};
use serde_json::{json, Value};

use crate::support::{
    config, discover, log_config, select, sync, sync_command, sync_read_late, sync_until_killed,
    Files, Run,
};

/// Records of `run` without the fields that change from run to run.
fn records(run: &Run) -> Vec<Value> {
    run.of_type("RECORD")
        .into_iter()
        .map(|m| {
            let mut r = m["record"].clone();
            let o = r.as_object_mut().unwrap();
            if o.get("_sdc_deleted_at").is_some_and(|d| !d.is_null()) {
                o.insert("_sdc_deleted_at".into(), json!("<commit time>"));
            }
            o.remove("_sdc_lsn");
            r
        })
        .collect()
}

/// A JSON number with exactly these digits.
fn num(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

async fn confirmed_flush(db: &TestDb, slot: &str) -> u64 {
    let rows = db
        .query_json(&format!(
            "SELECT (confirmed_flush_lsn - '0/0')::text AS lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
        .await;
    rows[0]["lsn"].as_str().unwrap().parse().unwrap()
}

/// A database with `tables` (SQL), one LOG_BASED stream of
/// `public.<table>` on slot `slot` (config `extra`), and its first run
/// done (the initial copy): what a test then changes and streams.
struct Streamed {
    db: TestDb,
    files: Files,
    cfg: Value,
    catalog: Value,
    /// The first run's last state.
    state: Value,
}

async fn streamed(tables: &str, table: &str, slot: &str, extra: Value) -> Streamed {
    let db = cluster().create_database().await;
    db.execute_batch(tables).await;
    let files = Files::new();
    let cfg = log_config(&db, slot, extra);
    let stream = format!("public-{table}");
    let catalog = select(&discover(&files, &cfg), &[(&stream, "LOG_BASED", None)]);
    let first = sync(&files, &cfg, &catalog, None);
    assert!(first.output.status.success(), "{}", first.stderr);
    Streamed {
        state: first.last_state(),
        db,
        files,
        cfg,
        catalog,
    }
}

#[tokio::test]
async fn every_kind_of_change_gives_its_exact_record() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE t (id int PRIMARY KEY, n numeric, ts timestamptz, big text, tags int[]);
         ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
         INSERT INTO t VALUES (1, 1.50, '2024-01-01 00:00:00+00', repeat('x', 5000), '{1,2}');",
    )
    .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_changes", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-t", "LOG_BASED", None)]);
    let first = sync(&files, &cfg, &catalog, None);
    assert!(first.output.status.success(), "{}", first.stderr);
    let big = "x".repeat(5000);
    assert_eq!(
        records(&first),
        [
            json!({"id": 1, "n": num("1.50"), "ts": "2024-01-01T00:00:00+00:00", "big": big, "tags": [1, 2]})
        ],
        "the initial copy"
    );
    let state = first.last_state();
    assert_eq!(
        state["bookmarks"]["public-t"]["last_replication_method"],
        "LOG_BASED"
    );
    assert!(state["bookmarks"]["public-t"]["lsn"].as_u64().unwrap() > 0);

    db.execute_batch(
        "INSERT INTO t VALUES (2, 123456789012345678901234567890.123456789, '2024-02-29 10:11:12.5+05:30', 'b', NULL);
         UPDATE t SET n = 9.99 WHERE id = 1;
         UPDATE t SET id = 3 WHERE id = 2;
         DELETE FROM t WHERE id = 3;
         TRUNCATE t;
         INSERT INTO t VALUES (4, 'NaN', 'infinity', '', '{}');",
    )
    .await;
    let second = sync(&files, &cfg, &catalog, Some(&state));
    assert!(second.output.status.success(), "{}", second.stderr);
    assert_eq!(
        records(&second),
        [
            json!({"id": 2, "n": num("123456789012345678901234567890.123456789"),
                   "ts": "2024-02-29T04:41:12.5+00:00", "big": "b", "tags": null, "_sdc_deleted_at": null}),
            // The unchanged TOASTed column is absent, not null.
            json!({"id": 1, "n": num("9.99"), "ts": "2024-01-01T00:00:00+00:00", "tags": [1, 2], "_sdc_deleted_at": null}),
            // A key change: the old key deleted, the new row inserted.
            json!({"id": 2, "_sdc_deleted_at": "<commit time>"}),
            json!({"id": 3, "n": num("123456789012345678901234567890.123456789"),
                   "ts": "2024-02-29T04:41:12.5+00:00", "big": "b", "tags": null, "_sdc_deleted_at": null}),
            json!({"id": 3, "_sdc_deleted_at": "<commit time>"}),
            // wal2json 2.5 writes NaN as null (see the README).
            json!({"id": 4, "n": null, "ts": "infinity", "big": "", "tags": [], "_sdc_deleted_at": null}),
        ]
    );
    // Exact digits on the wire, not just after parsing.
    assert!(second
        .lines
        .iter()
        .any(|l| l.contains(r#""n":123456789012345678901234567890.123456789,"#)));
    let m = second.messages();
    let schema = m.iter().find(|x| x["type"] == "SCHEMA").unwrap();
    assert_eq!(schema["bookmark_properties"], json!(["lsn"]));
    assert_eq!(
        schema["schema"]["properties"]["_sdc_lsn"]["type"],
        json!(["null", "integer"])
    );
    assert_eq!(
        schema["schema"]["properties"]["_sdc_deleted_at"]["format"],
        "date-time"
    );
    // TRUNCATE: a new version, activated, carried by the records after it.
    let activate = m
        .iter()
        .position(|x| x["type"] == "ACTIVATE_VERSION")
        .expect("ACTIVATE_VERSION for TRUNCATE");
    let new_version = m[activate]["version"].clone();
    assert!(new_version.as_i64() > state["bookmarks"]["public-t"]["version"].as_i64());
    assert_eq!(
        m.iter().rev().find(|x| x["type"] == "RECORD").unwrap()["version"],
        new_version
    );
    assert_eq!(
        second.last_state()["bookmarks"]["public-t"]["version"],
        new_version
    );
    // _sdc_deleted_at is the commit time (of the server), and _sdc_lsn increases.
    let lsns: Vec<u64> = m
        .iter()
        .filter(|x| x["type"] == "RECORD")
        .map(|x| x["record"]["_sdc_lsn"].as_u64().unwrap())
        .collect();
    assert!(lsns.windows(2).all(|w| w[0] <= w[1]), "{lsns:?}");
    let deleted = m
        .iter()
        .find(|x| x["type"] == "RECORD" && !x["record"]["_sdc_deleted_at"].is_null())
        .unwrap();
    let at = deleted["record"]["_sdc_deleted_at"].as_str().unwrap();
    let now_row = db
        .query_json("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS d")
        .await;
    assert!(
        at.starts_with(now_row[0]["d"].as_str().unwrap()) && at.ends_with("+00:00"),
        "{at}"
    );
}

#[tokio::test]
async fn consecutive_runs_neither_repeat_nor_skip_and_confirm_only_the_started_state() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE c (id int PRIMARY KEY, v text); INSERT INTO c VALUES (1, 'a');")
        .await;
    let files = Files::new();
    let slot = "s_runs";
    let cfg = log_config(&db, slot, json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-c", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    let s1 = r1.last_state();
    db.execute_batch("INSERT INTO c VALUES (2, 'b'); INSERT INTO c VALUES (3, 'c');")
        .await;
    let r2 = sync(&files, &cfg, &catalog, Some(&s1));
    let ids2: Vec<i64> = records(&r2)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids2, [2, 3]);
    let s2 = r2.last_state();
    let lsn1 = s1["bookmarks"]["public-c"]["lsn"].as_u64().unwrap();
    let lsn2 = s2["bookmarks"]["public-c"]["lsn"].as_u64().unwrap();
    assert!(lsn2 > lsn1);
    assert_eq!(
        confirmed_flush(&db, slot).await,
        lsn1,
        "run 2 confirms what run 2 started with"
    );

    db.execute_batch("UPDATE c SET v = 'B' WHERE id = 2;").await;
    let r3 = sync(&files, &cfg, &catalog, Some(&s2));
    assert_eq!(
        records(&r3),
        [json!({"id": 2, "v": "B", "_sdc_deleted_at": null})]
    );
    assert_eq!(confirmed_flush(&db, slot).await, lsn2);

    // Nothing changed: nothing sent, and the bookmark still moves with the WAL.
    db.execute_batch("CREATE TABLE unrelated (x int); INSERT INTO unrelated VALUES (1);")
        .await;
    let s3 = r3.last_state();
    let r4 = sync(&files, &cfg, &catalog, Some(&s3));
    assert!(records(&r4).is_empty());
    assert!(
        r4.last_state()["bookmarks"]["public-c"]["lsn"].as_u64()
            > s3["bookmarks"]["public-c"]["lsn"].as_u64(),
        "unrelated WAL moves the bookmark, so the slot does not pin it"
    );
}

/// Every message of `run` but STATEs, without `time_extracted`.
fn data_messages(run: &Run) -> Vec<Value> {
    run.messages()
        .into_iter()
        .filter(|m| m["type"] != "STATE")
        .map(|mut m| {
            m.as_object_mut().unwrap().remove("time_extracted");
            m
        })
        .collect()
}

/// A bounded run whose backlog is within `logical_peek_max_wal_mb` reads
/// it with `pg_logical_slot_peek_changes`; with 0, or a bigger backlog, it
/// streams with the replication protocol. Either way the same messages.
#[tokio::test]
async fn the_sql_function_and_the_replication_protocol_give_the_same_messages() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE r (id int PRIMARY KEY, v text, n numeric, at timestamptz, j jsonb, big text);
         ALTER TABLE r ALTER COLUMN big SET STORAGE EXTERNAL;
         INSERT INTO r SELECT i, 'v' || i, i / 7.0, '2024-01-01'::timestamptz + i * interval '1 s',
             jsonb_build_object('i', i), repeat('b', 3000) FROM generate_series(1, 100) i;",
    )
    .await;
    let files = Files::new();
    let slot = "s_route";
    let with = |limit: u64| log_config(&db, slot, json!({ "logical_peek_max_wal_mb": limit }));
    let catalog = select(
        &discover(&files, &with(256)),
        &[("public-r", "LOG_BASED", None)],
    );
    let first = sync(&files, &with(256), &catalog, None);
    assert!(first.output.status.success(), "{}", first.stderr);
    let state = first.last_state();
    // About 2 MB of WAL; a key change whose TOASTed column must be read.
    db.execute_batch(
        "INSERT INTO r SELECT i, repeat('w', 300), i, now(), '[1, \"a\"]', NULL FROM generate_series(101, 5100) i;
         BEGIN; UPDATE r SET id = 10005 WHERE id = 5; UPDATE r SET v = 'six' WHERE id = 6;
         DELETE FROM r WHERE id = 7; COMMIT;",
    )
    .await;

    let function = sync(&files, &with(256), &catalog, Some(&state));
    let replication = sync(&files, &with(0), &catalog, Some(&state));
    let bigger = sync(&files, &with(1), &catalog, Some(&state));
    for run in [&function, &replication, &bigger] {
        assert!(run.output.status.success(), "{}", run.stderr);
    }
    let peeked = |run: &Run| run.stderr.contains("with pg_logical_slot_peek_changes");
    assert!(peeked(&function), "{}", function.stderr);
    assert!(!peeked(&replication), "{}", replication.stderr);
    assert!(!peeked(&bigger), "{}", bigger.stderr);
    assert!(
        bigger
            .stderr
            .contains("of WAL to read, more than logical_peek_max_wal_mb: streaming it"),
        "{}",
        bigger.stderr
    );

    let got = data_messages(&function);
    assert_eq!(got, data_messages(&replication));
    assert_eq!(got, data_messages(&bigger));
    let recs = records(&function);
    assert_eq!(recs.len(), 5000 + 2 + 1 + 1);
    assert_eq!(
        recs[5000..],
        [
            json!({"id": 5, "_sdc_deleted_at": "<commit time>"}),
            json!({"id": 10005, "v": "v5", "n": num("0.71428571428571428571"),
                   "at": "2024-01-01T00:00:05+00:00", "j": {"i": 5},
                   "big": "b".repeat(3000), "_sdc_deleted_at": null}),
            // The unchanged TOASTed column is not in the change: absent.
            json!({"id": 6, "v": "six", "n": num("0.85714285714285714286"),
                   "at": "2024-01-01T00:00:06+00:00", "j": {"i": 6}, "_sdc_deleted_at": null}),
            json!({"id": 7, "_sdc_deleted_at": "<commit time>"}),
        ]
    );
    // Each run confirmed only the state it started with.
    assert_eq!(
        confirmed_flush(&db, slot).await,
        state["bookmarks"]["public-r"]["lsn"].as_u64().unwrap()
    );
}

/// A run killed while the server decodes its backlog for
/// `pg_logical_slot_peek_changes` lets go of the slot within about a
/// second (`client_connection_check_interval`), not once the server has
/// decoded everything, so the next run does not find the slot busy.
#[tokio::test]
async fn a_run_killed_while_the_server_decodes_frees_the_slot_at_once() {
    let slot = "s_orphan";
    let s = streamed(
        "CREATE TABLE o (id int PRIMARY KEY, v int)",
        "o",
        slot,
        json!({"logical_peek_max_wal_mb": 4096}),
    )
    .await;
    let db = &s.db;
    // Several seconds of decoding.
    db.execute_batch("INSERT INTO o SELECT i, i FROM generate_series(1, 1500000) i")
        .await;
    let mut child = sync_command(&s.files, &s.cfg, &s.catalog, Some(&s.state))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("with pg_logical_slot_peek_changes") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the run ended");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let active = || async {
        db.query_json(&format!(
            "SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
        .await[0]["active"]
            .as_bool()
            .unwrap()
    };
    assert!(active().await, "the server is still decoding");
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    while active().await {
        assert!(
            killed.elapsed() < Duration::from_millis(2500),
            "the slot is still held {:?} after the kill",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("slot free {:?} after the kill", killed.elapsed());
}

/// The function failing for lack of a resource before the first change
/// (here a `temp_file_limit` set by the DBA) is not the end of the run: it
/// streams the same changes with the replication protocol, and says so.
#[tokio::test]
async fn a_resource_limit_on_the_function_falls_back_to_the_replication_protocol() {
    let s = streamed(
        "CREATE TABLE f (id int PRIMARY KEY, v text)",
        "f",
        "s_fallback",
        json!({"logical_peek_max_wal_mb": 256}),
    )
    .await;
    // More output than work_mem (4 MB): the function's rows spill to a
    // temporary file.
    s.db.execute_batch(&format!(
        "INSERT INTO f SELECT i, repeat('x', 200) FROM generate_series(1, 30000) i;
         ALTER DATABASE \"{}\" SET temp_file_limit = '64kB';",
        s.db.name()
    ))
    .await;
    let run = sync(&s.files, &s.cfg, &s.catalog, Some(&s.state));
    assert!(run.output.status.success(), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("pg_logical_slot_peek_changes failed before the first change")
            && run.stderr.contains("temp_file_limit")
            && run
                .stderr
                .contains("streaming with the replication protocol instead"),
        "{}",
        run.stderr
    );
    let ids: Vec<i64> = records(&run)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=30000).collect::<Vec<i64>>());
}

/// The seconds the server spends decoding a backlog for
/// `pg_logical_slot_peek_changes`, silent on the connection, are not taken
/// for a stall (`stall_timeout_seconds` 1: the watch finds the session
/// working); and `max_run_seconds` stops the run at its first check once
/// the changes arrive, with a state for what it wrote.
#[tokio::test]
async fn a_long_silent_decode_is_not_a_stall_and_max_run_seconds_still_stops() {
    let s = streamed(
        "CREATE TABLE q (id int PRIMARY KEY, v int)",
        "q",
        "s_silent",
        json!({"logical_peek_max_wal_mb": 4096, "stall_timeout_seconds": 1, "max_run_seconds": 1}),
    )
    .await;
    s.db.execute_batch("INSERT INTO q SELECT i, i FROM generate_series(1, 1500000) i")
        .await;
    let started = Instant::now();
    let run = sync(&s.files, &s.cfg, &s.catalog, Some(&s.state));
    assert!(run.output.status.success(), "{}", run.stderr);
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the decoding took {:?}: too short to show anything",
        started.elapsed()
    );
    assert!(
        run.stderr.contains("with pg_logical_slot_peek_changes"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("max_run_seconds reached; stopping"),
        "{}",
        run.stderr
    );
    let n = records(&run).len();
    assert!((1..1_500_000).contains(&n), "{n} records");
    // The transaction was not finished: the state still says where it starts.
    assert_eq!(run.last_state()["bookmarks"], s.state["bookmarks"]);
}

#[tokio::test]
async fn an_idle_database_ends_within_the_idle_timeout() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE i (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg = log_config(
        &db,
        "s_idle",
        json!({"break_at_end_lsn": false, "logical_poll_total_seconds": 2}),
    );
    let catalog = select(&discover(&files, &cfg), &[("public-i", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    let started = Instant::now();
    let r2 = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    let took = started.elapsed();
    assert!(r2.output.status.success(), "{}", r2.stderr);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        r2.stderr
            .contains("no change for logical_poll_total_seconds"),
        "{}",
        r2.stderr
    );
}

#[tokio::test]
async fn partitions_and_keyless_tables_with_replica_identity_full() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE p (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
         CREATE TABLE p_eu PARTITION OF p FOR VALUES IN ('eu');
         CREATE TABLE p_us PARTITION OF p FOR VALUES IN ('us');
         CREATE TABLE nk (a int, b text);
         ALTER TABLE nk REPLICA IDENTITY FULL;",
    )
    .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_part", json!({}));
    let catalog = select(
        &discover(&files, &cfg),
        &[
            ("public-p", "LOG_BASED", None),
            ("public-nk", "LOG_BASED", None),
        ],
    );
    let r1 = sync(&files, &cfg, &catalog, None);
    assert!(r1.output.status.success(), "{}", r1.stderr);
    db.execute_batch(
        "INSERT INTO p VALUES (1, 'eu', 1), (2, 'us', 2); UPDATE p SET v = 20 WHERE id = 2;
         INSERT INTO nk VALUES (1, 'x'); DELETE FROM nk WHERE a = 1;",
    )
    .await;
    let r2 = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    assert!(r2.output.status.success(), "{}", r2.stderr);
    let got: Vec<(String, Value)> = r2
        .of_type("RECORD")
        .into_iter()
        .map(|m| {
            let mut r = m["record"].clone();
            r.as_object_mut().unwrap().remove("_sdc_lsn");
            if !r["_sdc_deleted_at"].is_null() {
                r["_sdc_deleted_at"] = json!("<t>");
            }
            (m["stream"].as_str().unwrap().to_string(), r)
        })
        .collect();
    assert_eq!(
        got,
        [
            ("public-p".to_string(), json!({"id": 1, "region": "eu", "v": 1, "_sdc_deleted_at": null})),
            ("public-p".to_string(), json!({"id": 2, "region": "us", "v": 2, "_sdc_deleted_at": null})),
            ("public-p".to_string(), json!({"id": 2, "region": "us", "v": 20, "_sdc_deleted_at": null})),
            ("public-nk".to_string(), json!({"a": 1, "b": "x", "_sdc_deleted_at": null})),
            ("public-nk".to_string(), json!({"a": 1, "b": "x", "_sdc_deleted_at": "<t>"})),
        ],
        "partition changes come under the parent's stream; a REPLICA IDENTITY FULL delete carries the old row"
    );
}

#[tokio::test]
async fn full_table_and_log_based_give_the_same_json() {
    let db = cluster().create_database().await;
    let columns = "id int PRIMARY KEY, i8 bigint, n numeric(40,10), f float8, b bool, t text, c char(3), u uuid,
        j json, jb jsonb, by bytea, d date, ts timestamp, tz timestamptz, tm time, ttz timetz, iv interval,
        a int[], ta text[], r int4range, ip inet";
    let row = "1, 9223372036854775807, 123456789012345678901234567890.0123456789, 0.1, true, E'q\"\\\\\\n\\t', 'ab',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{\"a\": [1, 2.50]}', '{\"k\": 1.10}', '\\x00ff', '0044-03-15 BC',
        '10000-01-01 00:00:00', '2024-02-29 10:11:12.123456+05:30', '24:00:00', '10:11:12.345+03',
        '1 year 2 mons', '{{1,2},{3,NULL}}', '{\"a b\",NULL,\"\"}', '[1,5)', '10.0.0.1/8'";
    db.execute_batch(
        &"CREATE TABLE src (COLS); CREATE TABLE copy_src (COLS); INSERT INTO copy_src VALUES (ROW);"
            .replace("COLS", columns)
            .replace("ROW", row),
    )
    .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_same", json!({}));
    let catalog = discover(&files, &cfg);
    let full = sync(
        &files,
        &cfg,
        &select(&catalog, &[("public-copy_src", "FULL_TABLE", None)]),
        None,
    );
    let log_catalog = select(&catalog, &[("public-src", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &log_catalog, None);
    db.execute_batch(&format!("INSERT INTO src VALUES ({row});"))
        .await;
    let r2 = sync(&files, &cfg, &log_catalog, Some(&r1.last_state()));
    let full_record = full.raw_records().remove(0);
    let log_record = r2.raw_records().remove(0);
    let cut = log_record.find(r#","_sdc_lsn":"#).unwrap();
    assert_eq!(format!("{}}}", &log_record[..cut]), full_record);
}

#[tokio::test]
async fn a_killed_run_resumes_from_its_last_state_and_loses_nothing() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE k (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_kill", json!({"state_interval_rows": 50}));
    let catalog = select(&discover(&files, &cfg), &[("public-k", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    db.execute_batch(
        "DO $$ BEGIN FOR i IN 1..1000 LOOP INSERT INTO k VALUES (i); COMMIT; END LOOP; END $$;",
    )
    .await;
    let mut states = 0;
    let lines = sync_until_killed(
        sync_command(&files, &cfg, &catalog, Some(&r1.last_state())),
        |m| {
            if m["type"] == "STATE" {
                states += 1;
            }
            states == 3
        },
    );
    let first: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let state = first.last().unwrap()["value"].clone();
    let ids = |m: &[Value]| -> Vec<i64> {
        m.iter()
            .filter(|x| x["type"] == "RECORD")
            .map(|x| x["record"]["id"].as_i64().unwrap())
            .collect()
    };
    let done = ids(&first);
    assert!(done.len() >= 100 && done.len() < 1000, "{}", done.len());
    let second = sync(&files, &cfg, &catalog, Some(&state));
    assert!(second.output.status.success(), "{}", second.stderr);
    let rest = ids(&second.messages());
    let covered_by_state: BTreeSet<i64> = first
        .iter()
        .filter(|x| {
            x["type"] == "RECORD"
                && x["record"]["_sdc_lsn"].as_u64()
                    <= state["bookmarks"]["public-k"]["lsn"].as_u64()
        })
        .map(|x| x["record"]["id"].as_i64().unwrap())
        .collect();
    assert!(
        rest.iter().all(|id| !covered_by_state.contains(id)),
        "nothing the state covers is repeated"
    );
    let all: BTreeSet<i64> = done.into_iter().chain(rest).collect();
    assert_eq!(all, (1..=1000).collect(), "nothing is lost");
}

#[tokio::test]
async fn prerequisites_are_checked_and_explained() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE nokey (a int); CREATE TABLE ok (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    // The slot is missing: the exact statement to run.
    let cfg = config(&db, json!({"replication_slot": "missing_slot"}));
    let catalog = discover(&files, &cfg);
    let ok = select(&catalog, &[("public-ok", "LOG_BASED", None)]);
    let run = sync(&files, &cfg, &ok, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr
            .contains("replication slot \"missing_slot\" does not exist")
            && run
                .stderr
                .contains("SELECT pg_create_logical_replication_slot('missing_slot', 'wal2json');"),
        "{}",
        run.stderr
    );
    // Default slot names, as the peers: macrometa_<db> first.
    let cfg = config(&db, json!({}));
    let run = sync(&files, &cfg, &ok, None);
    assert!(
        run.stderr.contains(&format!("\"macrometa_{}\"", db.name())),
        "{}",
        run.stderr
    );
    // A slot of another plugin.
    db.execute_batch("SELECT pg_create_logical_replication_slot('other_plugin', 'test_decoding');")
        .await;
    let cfg = config(&db, json!({"replication_slot": "other_plugin"}));
    let run = sync(&files, &cfg, &ok, None);
    assert!(
        run.stderr
            .contains("uses the plugin \"test_decoding\", not wal2json"),
        "{}",
        run.stderr
    );
    // A table whose updates and deletes cannot be captured.
    let cfg = config(
        &db,
        json!({"replication_slot": "s_pre", "create_replication_slot": true}),
    );
    let nokey = select(&catalog, &[("public-nokey", "LOG_BASED", None)]);
    let run = sync(&files, &cfg, &nokey, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr
            .contains("has neither a primary key nor REPLICA IDENTITY FULL"),
        "{}",
        run.stderr
    );
    let mut allow = cfg.clone();
    allow["allow_tables_without_identity"] = json!(true);
    let run = sync(&files, &allow, &nokey, None);
    assert!(run.output.status.success(), "{}", run.stderr);
    assert!(run.stderr.contains("inserts only"), "{}", run.stderr);
}

#[tokio::test]
async fn wal_level_not_logical_is_explained() {
    let custom = ClusterBuilder::new()
        .setting("wal_level", "replica")
        .start();
    let client = custom.client().await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .await
        .unwrap();
    let files = Files::new();
    let cfg = json!({"host": custom.host(), "port": custom.port(), "user": custom.user(),
        "password": custom.password(), "dbname": "postgres"});
    let catalog = select(&discover(&files, &cfg), &[("public-t", "LOG_BASED", None)]);
    let run = sync(&files, &cfg, &catalog, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr.contains(
            "wal_level is \"replica\": LOG_BASED needs `wal_level = logical` in postgresql.conf"
        ),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn a_column_added_while_streaming_gets_a_schema_first() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE g (id int PRIMARY KEY, a text);")
        .await;
    let files = Files::new();
    let cfg = log_config(
        &db,
        "s_grow",
        json!({"break_at_end_lsn": false, "logical_poll_total_seconds": 20}),
    );
    let catalog = select(&discover(&files, &cfg), &[("public-g", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    let mut child = sync_command(&files, &cfg, &catalog, Some(&r1.last_state()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for the streaming SCHEMA, then change the table under the running tap.
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["type"], "SCHEMA");
    assert!(first["schema"]["properties"].get("extra").is_none());
    db.execute_batch("INSERT INTO g VALUES (1, 'before');")
        .await;
    db.execute_batch(
        "ALTER TABLE g ADD COLUMN extra numeric(5,2); INSERT INTO g VALUES (2, 'after', 1.25);",
    )
    .await;
    let mut seen = Vec::new();
    for line in lines {
        let m: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let done = m["type"] == "RECORD" && m["record"]["id"] == 2;
        seen.push(m);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kinds: Vec<(String, Value)> = seen
        .iter()
        .filter(|m| m["type"] != "STATE")
        .map(|m| {
            (
                m["type"].as_str().unwrap().to_string(),
                m["record"]["id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("RECORD".to_string(), json!(1)),
            ("SCHEMA".to_string(), Value::Null),
            ("RECORD".to_string(), json!(2)),
        ]
    );
    let schema = seen.iter().find(|m| m["type"] == "SCHEMA").unwrap();
    assert_eq!(
        schema["schema"]["properties"]["extra"],
        json!({"type": ["null", "number"], "x-sql-datatype": "numeric(5,2)"})
    );
    let last = seen.last().unwrap();
    assert_eq!(last["record"]["extra"], num("1.25"));
}

#[tokio::test]
async fn a_column_added_between_runs_is_streamed() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE h (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_between", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-h", "LOG_BASED", None)]);
    let r1 = sync(&files, &cfg, &catalog, None);
    db.execute_batch("ALTER TABLE h ADD COLUMN note text; INSERT INTO h VALUES (1, 'n');")
        .await;
    let r2 = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    assert!(r2.output.status.success(), "{}", r2.stderr);
    assert_eq!(
        records(&r2),
        [json!({"id": 1, "note": "n", "_sdc_deleted_at": null})]
    );
    assert!(r2.of_type("SCHEMA")[0]["schema"]["properties"]
        .get("note")
        .is_some());
}

#[tokio::test]
async fn a_slot_active_in_another_session_is_explained() {
    use std::process::Stdio;

    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE a (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_active", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-a", "LOG_BASED", None)]);
    let first = sync(&files, &cfg, &catalog, None);
    // A long-running tap holds the slot...
    let holder_files = Files::new();
    let long = log_config(
        &db,
        "s_active",
        json!({"break_at_end_lsn": false, "logical_poll_total_seconds": 30}),
    );
    let mut holder = sync_command(&holder_files, &long, &catalog, Some(&first.last_state()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let active = db
            .query_json("SELECT active FROM pg_replication_slots WHERE slot_name = 's_active'")
            .await;
        if active[0]["active"] == json!(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first tap never took the slot"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // ...so a second one is told why it cannot run.
    let second = sync(&files, &cfg, &catalog, Some(&first.last_state()));
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(second.output.status.code(), Some(1));
    assert!(
        second
            .stderr
            .contains("replication slot \"s_active\" is active in another session (pid"),
        "{}",
        second.stderr
    );
}

#[tokio::test]
async fn a_bookmark_ahead_of_the_servers_wal_is_refused() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE f (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg = log_config(&db, "s_future", json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-f", "LOG_BASED", None)]);
    let state = json!({"bookmarks": {"public-f": {"last_replication_method": "LOG_BASED",
        "lsn": 0xFFFF_0000_0000u64, "version": 1}}});
    let run = sync(&files, &cfg, &catalog, Some(&state));
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr
            .contains("stream public-f: the state's lsn FFFF/0 is ahead of this server's WAL"),
        "{}",
        run.stderr
    );
    assert!(run.of_type("RECORD").is_empty());
}

/// A target that stops reading for longer than `wal_sender_timeout` (a
/// big commit can take minutes) costs the stream nothing: the tap's
/// runtime thread never blocks on stdout (a thread of its own writes it),
/// so the walsender keeps getting status updates, and every change comes
/// out once the target reads again.
#[tokio::test]
async fn a_target_that_stops_reading_past_wal_sender_timeout_loses_nothing() {
    let s = streamed(
        "CREATE TABLE t (id int PRIMARY KEY, pad text)",
        "t",
        "s_slow_target",
        // In ms: the tap sets it on its walsender session.
        json!({"wal_sender_timeout": 2000}),
    )
    .await;
    // About 30 MB of records: far more than the pipe, the tap's buffers
    // and the sockets hold, so the server ends up blocked sending.
    let rows = 80_000;
    s.db.execute_batch(&format!(
        "INSERT INTO t SELECT i, repeat('p', 300) FROM generate_series(1, {rows}) i"
    ))
    .await;

    let cmd = sync_command(&s.files, &s.cfg, &s.catalog, Some(&s.state));
    // Three timeouts without reading a byte.
    let run = sync_read_late(cmd, Duration::from_secs(6)).await;
    assert!(run.output.status.success(), "{}", run.stderr);
    let ids: Vec<i64> = run
        .of_type("RECORD")
        .iter()
        .map(|m| m["record"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, (1..=rows).collect::<Vec<i64>>());
}

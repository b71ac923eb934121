//! INCREMENTAL: inclusive bookmarks, `limit` never stuck on a repeated key,
//! resuming after a kill, a changed key resetting the bookmark.

use std::collections::BTreeSet;

use pg_testkit::cluster;
use serde_json::{json, Value};

use crate::support::{config, discover, select, sync, sync_command, sync_until_killed, Files};

fn ids(m: &[Value]) -> Vec<i64> {
    m.iter()
        .filter(|x| x["type"] == "RECORD")
        .map(|x| x["record"]["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn bookmark_is_inclusive_and_typed() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE items (id int PRIMARY KEY, updated_at timestamp, name text);
         INSERT INTO items VALUES (1, '2024-01-01', 'a'), (2, '2024-01-02', 'b'),
           (3, '2024-01-03', 'c'), (4, NULL, 'd');",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-items", "INCREMENTAL", Some("updated_at"))],
    );
    let run = sync(&files, &cfg, &catalog, None);
    assert!(run.output.status.success(), "{}", run.stderr);
    let m = run.messages();
    assert_eq!(
        ids(&m),
        [1, 2, 3, 4],
        "NULL keys sort last, sent when there is no bookmark"
    );
    assert_eq!(
        run.of_type("SCHEMA")[0]["bookmark_properties"],
        json!(["updated_at"])
    );
    let state = run.last_state();
    let b = &state["bookmarks"]["public-items"];
    assert_eq!(b["last_replication_method"], "INCREMENTAL");
    assert_eq!(b["replication_key"], "updated_at");
    assert_eq!(b["replication_key_value"], "2024-01-03T00:00:00+00:00");
    let version = b["version"].clone();

    db.execute_batch("INSERT INTO items VALUES (5, '2024-01-03', 'e'), (6, '2024-01-04', 'f'), (7, '2023-12-31', 'old');")
        .await;
    let run2 = sync(&files, &cfg, &catalog, Some(&state));
    let m2 = run2.messages();
    let mut got = ids(&m2);
    got[..2].sort();
    assert_eq!(
        got,
        [3, 5, 6],
        "rows equal to the bookmark come again; older rows do not"
    );
    let b2 = &run2.last_state()["bookmarks"]["public-items"];
    assert_eq!(b2["replication_key_value"], "2024-01-04T00:00:00+00:00");
    assert_eq!(b2["version"], version);
    assert_eq!(
        m2.iter()
            .filter(|x| x["type"] == "ACTIVATE_VERSION")
            .count(),
        1
    );
}

#[tokio::test]
async fn limit_finishes_the_last_key_value_and_never_gets_stuck() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE l (id int PRIMARY KEY, k int);
         INSERT INTO l SELECT i, 1 FROM generate_series(1, 10) i;
         INSERT INTO l VALUES (11, 2), (12, 3), (13, 4), (14, 5), (15, 6);",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({"limit": 3}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-l", "INCREMENTAL", Some("k"))],
    );
    let keys = |run: &crate::support::Run| -> Vec<i64> {
        run.messages()
            .iter()
            .filter(|x| x["type"] == "RECORD")
            .map(|x| x["record"]["k"].as_i64().unwrap())
            .collect()
    };
    let r1 = sync(&files, &cfg, &catalog, None);
    assert_eq!(
        keys(&r1),
        [1; 10],
        "the first key value is finished though it has 10 rows"
    );
    let r2 = sync(&files, &cfg, &catalog, Some(&r1.last_state()));
    let mut expected = vec![1; 10];
    expected.extend([2, 3, 4]);
    assert_eq!(
        keys(&r2),
        expected,
        "past the repeated value: the next 3 values"
    );
    let r3 = sync(&files, &cfg, &catalog, Some(&r2.last_state()));
    assert_eq!(keys(&r3), [4, 5, 6]);
    assert_eq!(
        r3.last_state()["bookmarks"]["public-l"]["replication_key_value"],
        6
    );
}

#[tokio::test]
async fn a_killed_run_resumes_from_its_last_state() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE r (id int PRIMARY KEY, seq numeric(20,5));
         INSERT INTO r SELECT i, i * 1.5 FROM generate_series(1, 3000) i;",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({"state_interval_rows": 250}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-r", "INCREMENTAL", Some("seq"))],
    );
    let mut states = 0;
    let lines = sync_until_killed(sync_command(&files, &cfg, &catalog, None), |m| {
        if m["type"] == "STATE"
            && m["value"]["bookmarks"]["public-r"]
                .get("replication_key_value")
                .is_some()
        {
            states += 1;
        }
        states == 3
    });
    let first: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let state = first.last().unwrap()["value"].clone();
    assert_eq!(
        state["bookmarks"]["public-r"]["replication_key_value"].to_string(),
        "1125.00000"
    );
    let second = sync(&files, &cfg, &catalog, Some(&state));
    assert!(second.output.status.success(), "{}", second.stderr);
    let second_ids = ids(&second.messages());
    assert_eq!(
        second_ids[0], 750,
        "starts at the bookmarked value, inclusive"
    );
    let all: BTreeSet<i64> = ids(&first).into_iter().chain(second_ids).collect();
    assert_eq!(all, (1..=3000).collect());
}

#[tokio::test]
async fn a_changed_replication_key_starts_over() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE c (id int PRIMARY KEY, a int, b int); INSERT INTO c VALUES (1, 10, 1), (2, 20, 2);")
        .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let state = json!({"bookmarks": {"public-c": {"last_replication_method": "INCREMENTAL",
        "replication_key": "a", "replication_key_value": 20}}});
    let by_b = select(
        &discover(&files, &cfg),
        &[("public-c", "INCREMENTAL", Some("b"))],
    );
    let run = sync(&files, &cfg, &by_b, Some(&state));
    assert_eq!(ids(&run.messages()), [1, 2]);
    assert_eq!(
        run.last_state()["bookmarks"]["public-c"]["replication_key"],
        "b"
    );
    assert_eq!(
        run.last_state()["bookmarks"]["public-c"]["replication_key_value"],
        2
    );
    // And from FULL_TABLE to INCREMENTAL.
    let state =
        json!({"bookmarks": {"public-c": {"last_replication_method": "FULL_TABLE", "version": 5}}});
    let run = sync(&files, &cfg, &by_b, Some(&state));
    assert_eq!(ids(&run.messages()), [1, 2]);
    assert_ne!(run.last_state()["bookmarks"]["public-c"]["version"], 5);
}

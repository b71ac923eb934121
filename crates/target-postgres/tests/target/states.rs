//! When states are printed: after commit, newest, deduplicated, trailing
//! states kept, nothing after an error, quiet streams flushed by time.

use std::io::{BufRead as _, Write as _};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;

use crate::*;

#[tokio::test]
async fn states_follow_their_commits_newest_and_once() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        id_name_schema(),
        state(json!({"s": 0})),
        record("public-t", json!({"id": 1, "name": "a"})),
        state(json!({"s": 1})),
        record("public-t", json!({"id": 2, "name": "b"})),
        state(json!({"s": 2})),
        state(json!({"s": 2})),
        record("public-t", json!({"id": 3, "name": "c"})),
        state(json!({"s": 3})),
        state(json!({"s": 4})),
    ]);
    let run = run(&db, json!({"batch_size_rows": 2}), &input).success();
    // s0: nothing before it. s1 waits for the batch {1,2}; s2 has nothing
    // open; its duplicate is not repeated; s3 is superseded by s4, the
    // trailing state, printed after the final flush.
    assert_eq!(run.stdout, "{\"s\":0}\n{\"s\":1}\n{\"s\":2}\n{\"s\":4}\n");
}

#[tokio::test]
async fn a_state_waits_for_every_stream_before_it() {
    let db = pg_testkit::cluster().create_database().await;
    let b = schema("public-b", json!({"id": {"type": "integer"}}), &["id"]);
    let input = lines(&[
        id_name_schema(),
        b,
        record("public-t", json!({"id": 1, "name": "a"})),
        record("public-b", json!({"id": 1})),
        state(json!({"s": 1})),
        record("public-t", json!({"id": 2, "name": "b"})),
        // public-t's batch is full and flushed here, public-b's is not:
        // s1 must not be printed yet, so a failure now prints nothing.
        record("public-b", json!({"id": "x"})),
    ]);
    let err = run(&db, json!({"batch_size_rows": 2}), &input);
    assert_eq!(err.stdout, "");
    let msg = err.failure();
    assert!(msg.contains("stream public-b, line 7, column id"), "{msg}");
    assert!(
        msg.contains("invalid input syntax for type bigint: \"x\""),
        "{msg}"
    );
    assert_eq!(
        db.query_json("SELECT id FROM tgt.t ORDER BY id").await,
        vec![json!({"id": 1}), json!({"id": 2})]
    );
    assert!(db.query_json("SELECT id FROM tgt.b").await.is_empty());
}

#[tokio::test]
async fn after_an_error_nothing_more_is_printed_and_the_batch_is_rolled_back() {
    let db = pg_testkit::cluster().create_database().await;
    let s = schema(
        "public-p",
        json!({"id": {"type": "integer"}, "price": {"type": "number"}}),
        &["id"],
    );
    let input = lines(&[
        s,
        record("public-p", json!({"id": 1, "price": 1.5})),
        record("public-p", json!({"id": 2, "price": 2})),
        state(json!({"s": 1})),
        record("public-p", json!({"id": 3, "price": 3})),
        record("public-p", json!({"id": 4, "price": "abc"})),
        state(json!({"s": 2})),
    ]);
    let r = run(&db, json!({"batch_size_rows": 2}), &input);
    assert_eq!(r.stdout, "{\"s\":1}\n");
    let msg = r.failure();
    assert_eq!(
        msg,
        "CRITICAL stream public-p, line 6, column price: invalid input syntax for type numeric: \"abc\""
    );
    assert_eq!(
        db.query_json("SELECT id, price FROM tgt.p ORDER BY id")
            .await,
        vec![json!({"id": 1, "price": 1.5}), json!({"id": 2, "price": 2})]
    );
}

#[tokio::test]
async fn a_quiet_stream_is_flushed_and_its_state_printed_by_the_interval() {
    let db = pg_testkit::cluster().create_database().await;
    let cfg = config(&db, json!({"batch_flush_interval": 1}));
    let mut child = target_command(cfg.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            lines(&[
                id_name_schema(),
                record("public-t", json!({"id": 1, "name": "a"})),
                state(json!({"s": 1})),
            ])
            .as_bytes(),
        )
        .unwrap();
    stdin.flush().unwrap();
    // The input stays open: only the timer can flush.
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a state within 20 s");
    assert_eq!(line, "{\"s\":1}");
    assert_eq!(
        db.query_json("SELECT * FROM tgt.t").await,
        vec![json!({"id": 1, "name": "a"})]
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

//! The programs' normal logs never contain the words "error" or
//! "exception": `meltano config test` on a loader fails when any output line
//! does (and log watchers alert on them). A successful tap | target run of
//! every replication method, at the default level. (Names from the user's
//! data, a table called `errors`, are logged as they are: not ours to hide.)

use e2e::{discover, pipe, select, write_json, Pipeline};
use pg_testkit::cluster;
use serde_json::json;

fn assert_no_alarm_words(run: &Pipeline) {
    for (who, text) in [("tap", &run.tap_stderr), ("target", &run.target_stderr)] {
        assert!(!text.trim().is_empty(), "{who} logged nothing");
        for line in text.lines() {
            let lower = line.to_lowercase();
            assert!(
                !lower.contains("error") && !lower.contains("exception"),
                "{who}'s log of a successful run has an alarm word:\n{line}"
            );
        }
    }
}

#[tokio::test]
async fn successful_runs_log_no_error_or_exception() {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    source
        .execute_batch(
            "CREATE TABLE orders (id int PRIMARY KEY, note text, updated_at timestamptz NOT NULL);
             INSERT INTO orders SELECT i, 'x', now() FROM generate_series(1, 100) i;
             CREATE TABLE full_t (id int PRIMARY KEY, v float8);
             INSERT INTO full_t SELECT i, i FROM generate_series(1, 100) i;
             CREATE TABLE logged (id int PRIMARY KEY, v text);
             INSERT INTO logged SELECT i, 'v' FROM generate_series(1, 100) i;",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut tap = source.conn_config();
    tap["replication_slot"] = json!(format!("logs_{}", source.name()).to_lowercase());
    tap["create_replication_slot"] = json!(true);
    let tap_cfg = write_json(dir.path(), "tap.json", &tap);
    let mut t = target.conn_config();
    t["default_target_schema"] = json!("copy");
    t["hard_delete"] = json!(true);
    let target_cfg = write_json(dir.path(), "target.json", &t);
    let catalog = write_json(
        dir.path(),
        "catalog.json",
        &select(
            &discover(&tap_cfg),
            &[
                ("public-orders", "INCREMENTAL", Some("updated_at")),
                ("public-full_t", "FULL_TABLE", None),
                ("public-logged", "LOG_BASED", None),
            ],
        ),
    );
    let first = pipe(&[&tap_cfg, &catalog], &[&target_cfg]);
    first.assert_success();
    assert_no_alarm_words(&first);

    // A second run from the state, with changes for the log to stream.
    source
        .execute_batch(
            "UPDATE logged SET v = 'w' WHERE id = 1; DELETE FROM logged WHERE id = 2;
             INSERT INTO orders VALUES (101, 'y', now());",
        )
        .await;
    let state = write_json(dir.path(), "state.json", &first.last_state());
    let second = pipe(&[&tap_cfg, &catalog, &state], &[&target_cfg]);
    second.assert_success();
    assert_no_alarm_words(&second);

    source
        .execute_batch(&format!(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{}'",
            tap["replication_slot"].as_str().unwrap()
        ))
        .await;
}

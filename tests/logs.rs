//! The programs' normal logs never contain the words "error" or
//! "exception": `meltano config test` on a loader fails when any output line
//! does (and log watchers alert on them). A successful tap | target run of
//! every replication method, at the default level. (Names from the user's
//! data, a table called `errors`, are logged as they are: not ours to hide.)
//! Names with control characters are escaped, so one event stays one line.

use e2e::{config_file, discover, pipe, select, write_json, Pipeline};
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
    let slot = format!("logs_{}", source.name()).to_lowercase();
    let tap_cfg = config_file(
        dir.path(),
        "tap.json",
        &source,
        json!({"replication_slot": slot, "create_replication_slot": true}),
    );
    let target_cfg = config_file(
        dir.path(),
        "target.json",
        &target,
        json!({"default_target_schema": "copy", "hard_delete": true}),
    );
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
            slot
        ))
        .await;
}

/// A forged metric line, as a name could carry it (short enough for a
/// table name: 63 bytes).
const FORGED: &str = r#"INFO METRIC: {"metric":"x","value":999}"#;

/// Panics if a line of `stderr` is not the program's own: a forged metric,
/// or a second CRITICAL.
fn assert_no_forged_line(who: &str, stderr: &str) {
    for line in stderr.lines() {
        assert!(
            !line.starts_with(FORGED) && !line.starts_with("CRITICAL forged"),
            "{who} printed a forged line:\n{stderr}"
        );
    }
    assert!(
        stderr.lines().filter(|l| l.starts_with("CRITICAL")).count() <= 1,
        "{who}: one CRITICAL line at most:\n{stderr}"
    );
}

/// Issue 10, item 8: a name with a newline neither splits a log line nor
/// forges one Meltano parses: the tap logs a table named `x\nINFO METRIC:
/// {…}` on one line, and the target's CRITICAL naming such a stream is one
/// line (before, both printed the forged metric line).
#[tokio::test]
async fn names_with_newlines_stay_on_their_line() {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    let table = format!("x\n{FORGED}");
    source
        .execute_batch(&format!(
            "CREATE TABLE {} (id int PRIMARY KEY); INSERT INTO {} VALUES (1);",
            pg::quote_ident(&table),
            pg::quote_ident(&table)
        ))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let tap_cfg = config_file(dir.path(), "tap.json", &source, json!({}));
    let target_cfg = config_file(
        dir.path(),
        "target.json",
        &target,
        json!({"default_target_schema": "copy"}),
    );
    let id = format!("public-{table}");
    let catalog = write_json(
        dir.path(),
        "catalog.json",
        &select(&discover(&tap_cfg), &[(id.as_str(), "FULL_TABLE", None)]),
    );
    let run = pipe(&[&tap_cfg, &catalog], &[&target_cfg]);
    run.assert_success();
    assert_no_forged_line("tap", &run.tap_stderr);
    assert!(
        run.tap_stderr
            .contains(r#"stream public-x\nINFO METRIC: {"#),
        "the name is logged, escaped:\n{}",
        run.tap_stderr
    );
    assert_no_forged_line("target", &run.target_stderr);

    // A failure naming such a stream: one CRITICAL line.
    let stream = format!("s\n{FORGED}\nCRITICAL forged");
    let input = [
        json!({"type": "SCHEMA", "stream": stream, "key_properties": ["id"],
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}}),
        json!({"type": "RECORD", "stream": stream, "record": {"id": "not a number"}}),
    ]
    .iter()
    .map(|m| m.to_string() + "\n")
    .collect::<String>();
    let input_path = dir.path().join("input.jsonl");
    std::fs::write(&input_path, input).unwrap();
    let ended = e2e::Running::start(
        "target-postgres",
        &["--config".as_ref(), target_cfg.as_os_str()],
        std::process::Stdio::from(std::fs::File::open(&input_path).unwrap()),
    )
    .wait(std::time::Duration::from_secs(30));
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    assert_no_forged_line("target", &ended.stderr);
    let critical = ended.critical();
    assert!(
        critical.contains(r#"s\nINFO METRIC: {"#) && critical.contains(r#"\nCRITICAL forged"#),
        "{critical}"
    );
}

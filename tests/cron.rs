//! `examples/cron/sync.sh` run as cron runs it: a first run whose target is
//! SIGKILLed right after it printed its first committed state, then a rerun
//! that starts from the state file the script kept and ends with the target
//! tables equal to the source.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use e2e::{assert_same_rows, bin, config_file, discover, select, workspace_root, write_json};
use pg_testkit::cluster;
use serde_json::{json, Value};

/// A target command that runs the real target and SIGKILLs it as soon as it
/// printed `KILL_AFTER_STATES` states (passed on first, as the real target's
/// would be): the target dies in the middle of the input.
const KILLER: &str = r#"#!/usr/bin/env bash
set -u
fifo=$(mktemp -u) && mkfifo "$fifo"
"$REAL_TARGET" "$@" <&0 >"$fifo" &
pid=$!
exec 3<"$fifo" 0</dev/null
rm -f "$fifo"
n=0
while [[ $n -lt $KILL_AFTER_STATES ]] && IFS= read -r line <&3; do
  printf '%s\n' "$line"
  n=$((n + 1))
done
kill -9 "$pid"
wait "$pid"
"#;

fn sync_sh(dir: &Path, target_cmd: &Path) -> Output {
    Command::new("bash")
        .arg(workspace_root().join("examples/cron/sync.sh"))
        .env("SYNC_DIR", dir)
        .env("TAP_POSTGRES", bin("tap-postgres"))
        .env("TARGET_POSTGRES", target_cmd)
        .env("REAL_TARGET", bin("target-postgres"))
        .env("KILL_AFTER_STATES", "2")
        .env_remove("LOG_LEVEL")
        .stdin(Stdio::null())
        .output()
        .expect("bash runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn state_file(dir: &Path) -> Value {
    let text = std::fs::read_to_string(dir.join("state.json")).expect("state.json exists");
    assert_eq!(text.lines().count(), 1, "one state line: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("state.json is not JSON ({e}): {text}"))
}

#[tokio::test]
async fn sync_sh_keeps_the_committed_state_when_the_target_dies_and_resumes_from_it() {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    source
        .execute_batch(
            "CREATE TABLE big (id int PRIMARY KEY, payload text);
             INSERT INTO big SELECT i, repeat(md5(i::text), 4) FROM generate_series(1, 60000) i;
             CREATE TABLE orders (id int PRIMARY KEY, amount numeric(12,2), updated_at timestamptz NOT NULL);
             INSERT INTO orders SELECT i, i * 1.25, '2024-01-01'::timestamptz + i * interval '1 minute'
               FROM generate_series(1, 500) i;",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let tap_cfg = config_file(
        dir.path(),
        "tap.json",
        &source,
        json!({"state_interval_rows": 1000}),
    );
    config_file(
        dir.path(),
        "target.json",
        &target,
        json!({"default_target_schema": "copy", "batch_size_rows": 1000}),
    );
    write_json(
        dir.path(),
        "catalog.json",
        &select(
            &discover(&tap_cfg),
            &[
                ("public-big", "FULL_TABLE", None),
                ("public-orders", "INCREMENTAL", Some("updated_at")),
            ],
        ),
    );
    let killer = dir.path().join("killer.sh");
    std::fs::write(&killer, KILLER).unwrap();
    std::fs::set_permissions(&killer, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // Run 1: the target is killed after its second state.
    let first = sync_sh(dir.path(), &killer);
    assert!(
        !first.status.success(),
        "sync.sh must fail when the target dies: {}",
        stderr(&first)
    );
    assert!(
        stderr(&first).contains("target-postgres failed (exit 137"),
        "{}",
        stderr(&first)
    );
    assert!(
        stderr(&first).contains("broken pipe"),
        "the tap notices the dead target: {}",
        stderr(&first)
    );
    let kept = state_file(dir.path());
    let big = &kept["bookmarks"]["public-big"];
    let last_pk = big["last_pk_fetched"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("a mid-copy FULL_TABLE state: {kept}"));
    assert!(last_pk < 60000, "the copy was interrupted: {kept}");
    // What the kept state covers is committed.
    let loaded = target
        .query_json(&format!(
            "SELECT count(*) AS n FROM copy.big WHERE id <= {last_pk}"
        ))
        .await;
    assert_eq!(loaded[0]["n"], json!(last_pk), "{kept}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state.json."))
        .filter(|n| n != "state.json.lock")
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Changes between the runs, then run 2 with the real target.
    source
        .execute_batch(
            "UPDATE orders SET amount = 0, updated_at = '2025-01-01' WHERE id = 7;
             INSERT INTO orders VALUES (501, 9.99, '2025-01-02');
             UPDATE big SET payload = 'changed' WHERE id = 59999;",
        )
        .await;
    let second = sync_sh(dir.path(), &bin("target-postgres"));
    assert!(
        second.status.success(),
        "the rerun succeeds: {}",
        stderr(&second)
    );
    assert!(
        stderr(&second).contains("starting from"),
        "{}",
        stderr(&second)
    );
    let last = state_file(dir.path());
    assert_eq!(last["currently_syncing"], Value::Null, "{last}");
    assert!(
        last["bookmarks"]["public-big"]
            .get("last_pk_fetched")
            .is_none()
            || last["bookmarks"]["public-big"]["last_pk_fetched"].is_null(),
        "the copy finished: {last}"
    );
    assert_eq!(
        last["bookmarks"]["public-orders"]["replication_key_value"],
        json!("2025-01-02T00:00:00+00:00"),
        "{last}"
    );
    assert_same_rows(
        &source,
        "SELECT * FROM big ORDER BY id",
        &target,
        "SELECT * FROM copy.big ORDER BY id",
    )
    .await;
    assert_same_rows(
        &source,
        "SELECT * FROM orders ORDER BY id",
        &target,
        "SELECT * FROM copy.orders ORDER BY id",
    )
    .await;
}

#[test]
fn sync_sh_is_strict_bash() {
    let text = std::fs::read_to_string(workspace_root().join("examples/cron/sync.sh")).unwrap();
    assert!(text.contains("set -euo pipefail"));
    assert!(text.contains("PIPESTATUS"));
    let check = Command::new("bash")
        .arg("-n")
        .arg(workspace_root().join("examples/cron/sync.sh"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
}

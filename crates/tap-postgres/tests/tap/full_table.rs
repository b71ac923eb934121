//! FULL_TABLE: versions and ACTIVATE_VERSION, resuming after a kill,
//! composite and text keys, tables without a key, peer state files,
//! `currently_syncing`.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::Duration;

use pg_testkit::cluster;
use serde_json::{json, Value};

use crate::support::{
    config, discover, select, sync, sync_command, sync_read_late, sync_until_killed, Files,
};

fn ids(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .filter(|m| m["type"] == "RECORD")
        .map(|m| m["record"]["id"].as_i64().unwrap())
        .collect()
}

fn parse(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn first_run_message_order_and_versions() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a'), (2, 'b');",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let catalog = select(&discover(&files, &cfg), &[("public-t", "FULL_TABLE", None)]);
    let run = sync(&files, &cfg, &catalog, None);
    assert!(run.output.status.success(), "{}", run.stderr);
    let m = run.messages();
    let types: Vec<&str> = m.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "STATE",
            "SCHEMA",
            "ACTIVATE_VERSION",
            "RECORD",
            "RECORD",
            "ACTIVATE_VERSION",
            "STATE",
            "STATE"
        ]
    );
    let version = m[2]["version"].as_i64().unwrap();
    assert_eq!(m[0]["value"]["currently_syncing"], "public-t");
    assert_eq!(m[3]["version"], version);
    assert!(m[3]["time_extracted"].as_str().unwrap().ends_with('Z'));
    assert_eq!(
        run.last_state(),
        json!({"currently_syncing": null, "bookmarks": {"public-t": {"last_replication_method": "FULL_TABLE", "version": version}}})
    );

    // A later run: a new version, no ACTIVATE_VERSION before the records.
    let run2 = sync(&files, &cfg, &catalog, Some(&run.last_state()));
    let m2 = run2.messages();
    let types: Vec<&str> = m2.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "STATE",
            "SCHEMA",
            "RECORD",
            "RECORD",
            "ACTIVATE_VERSION",
            "STATE",
            "STATE"
        ]
    );
    assert!(m2[4]["version"].as_i64().unwrap() > version);
}

#[tokio::test]
async fn a_killed_copy_resumes_after_the_last_key_and_loses_nothing() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE big (id int PRIMARY KEY, v text);
         INSERT INTO big SELECT i, md5(i::text) FROM generate_series(1, 5000) i;",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({"state_interval_rows": 500, "itersize": 1200}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-big", "FULL_TABLE", None)],
    );

    let first = parse(&sync_until_killed(
        sync_command(&files, &cfg, &catalog, None),
        |m| {
            m["type"] == "STATE"
                && m["value"]["bookmarks"]["public-big"]["last_pk_fetched"]["id"].as_i64()
                    >= Some(2000)
        },
    ));
    let state = first.last().unwrap()["value"].clone();
    let bookmark = &state["bookmarks"]["public-big"];
    assert_eq!(bookmark["last_pk_fetched"], json!({"id": 2000}));
    assert_eq!(state["currently_syncing"], "public-big");
    let version = bookmark["version"].as_i64().unwrap();
    let first_ids = ids(&first);
    assert_eq!(first_ids, (1..=2000).collect::<Vec<_>>());

    let second = sync(&files, &cfg, &catalog, Some(&state));
    assert!(second.output.status.success(), "{}", second.stderr);
    let m = second.messages();
    let second_ids = ids(&m);
    assert_eq!(
        second_ids,
        (2001..=5000).collect::<Vec<_>>(),
        "resumes right after the bookmarked key"
    );
    assert!(
        m.iter()
            .filter(|x| x["type"] == "RECORD")
            .all(|x| x["version"] == version),
        "same version"
    );
    let activates: Vec<&Value> = m
        .iter()
        .filter(|x| x["type"] == "ACTIVATE_VERSION")
        .collect();
    assert_eq!(
        activates.len(),
        1,
        "only the closing ACTIVATE_VERSION when resuming"
    );
    assert_eq!(activates[0]["version"], version);
    assert_eq!(
        second.last_state(),
        json!({"currently_syncing": null, "bookmarks": {"public-big": {"last_replication_method": "FULL_TABLE", "version": version}}})
    );
    let all: BTreeSet<i64> = first_ids.into_iter().chain(second_ids).collect();
    assert_eq!(all.len(), 5000);
    assert!(
        second.stderr.contains("resuming after key [2000]"),
        "{}",
        second.stderr
    );
}

#[tokio::test]
async fn composite_text_keys_resume_exactly() {
    let db = cluster().create_database().await;
    db.execute_batch(
        r#"CREATE TABLE k ("Region" text, id int, v int, PRIMARY KEY ("Region", id));
           INSERT INTO k VALUES ('a b', 1, 1), ('a b', 2, 2), ('O''Brien', 1, 3), ('O''Brien', 2, 4),
                                ('x"y', 1, 5), ('x"y', 2, 6), ('zz', 1, 7);"#,
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({"state_interval_rows": 2, "itersize": 3}));
    let catalog = select(&discover(&files, &cfg), &[("public-k", "FULL_TABLE", None)]);
    let mut states = 0;
    let first = parse(&sync_until_killed(
        sync_command(&files, &cfg, &catalog, None),
        |m| {
            if m["type"] == "STATE"
                && m["value"]["bookmarks"]["public-k"]
                    .get("last_pk_fetched")
                    .is_some()
            {
                states += 1;
            }
            states == 2
        },
    ));
    let state = first.last().unwrap()["value"].clone();
    let bookmark = state["bookmarks"]["public-k"]["last_pk_fetched"].clone();
    let vs = |m: &[Value]| -> Vec<i64> {
        m.iter()
            .filter(|x| x["type"] == "RECORD")
            .map(|x| x["record"]["v"].as_i64().unwrap())
            .collect()
    };
    let done = vs(&first);
    assert_eq!(done.len(), 4);
    let rest = sync(&files, &cfg, &catalog, Some(&state));
    assert!(rest.output.status.success(), "{}", rest.stderr);
    let mut all = done.clone();
    all.extend(vs(&rest.messages()));
    all.sort();
    assert_eq!(all, [1, 2, 3, 4, 5, 6, 7], "bookmark was {bookmark}");
}

#[tokio::test]
async fn a_table_without_key_restarts_and_says_so() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE nokey (v int); INSERT INTO nokey VALUES (1), (2), (2);")
        .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-nokey", "FULL_TABLE", None)],
    );
    let run = sync(&files, &cfg, &catalog, None);
    assert!(run.output.status.success(), "{}", run.stderr);
    assert_eq!(
        run.raw_records(),
        [r#"{"v":1}"#, r#"{"v":2}"#, r#"{"v":2}"#]
    );
    assert_eq!(run.of_type("SCHEMA")[0]["key_properties"], json!([]));
    assert!(
        run.stderr.contains("restarts from the beginning"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn pipelinewise_state_and_currently_syncing_are_honoured() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a VALUES (1);
         CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b VALUES (2);",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let catalog = select(
        &discover(&files, &cfg),
        &[
            ("public-a", "FULL_TABLE", None),
            ("public-b", "FULL_TABLE", None),
        ],
    );
    // Captured from pipelinewise-tap-postgres: b was being copied when it stopped.
    let pw_state = json!({"currently_syncing": "public-b", "bookmarks": {
        "public-a": {"last_replication_method": "FULL_TABLE", "version": 1795458828761i64, "xmin": null},
        "public-b": {"last_replication_method": "FULL_TABLE", "version": 1795458828999i64, "xmin": 1032}}});
    let run = sync(&files, &cfg, &catalog, Some(&pw_state));
    assert!(run.output.status.success(), "{}", run.stderr);
    let m = run.messages();
    let records: Vec<&str> = m
        .iter()
        .filter(|x| x["type"] == "RECORD")
        .map(|x| x["stream"].as_str().unwrap())
        .collect();
    assert_eq!(
        records,
        ["public-b", "public-a"],
        "the interrupted stream goes first"
    );
    let last = run.last_state();
    assert_eq!(last["currently_syncing"], Value::Null);
    let a = &last["bookmarks"]["public-a"];
    let keys: Vec<&String> = a.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["last_replication_method", "version", "xmin"],
        "peer keys kept in place"
    );
    assert_eq!(a["xmin"], Value::Null);
    assert_eq!(
        last["bookmarks"]["public-b"]["xmin"],
        Value::Null,
        "the copy is complete"
    );
    assert!(m.iter().filter(|x| x["type"] == "ACTIVATE_VERSION").count() == 2);
}

/// Runs `cmd` to completion with stdout discarded and returns its peak RSS
/// in KiB: the last `VmHWM` of `/proc/<pid>/status` (the high-water mark of
/// the program's own memory, which only grows), read every 10 ms.
///
/// Not `wait4`'s `ru_maxrss`: the kernel folds into it the peak of the
/// memory image the child had before `exec`, which after a vfork-style
/// spawn is this test process's, so it measures the test binary.
fn peak_rss_kib(mut cmd: std::process::Command) -> u64 {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak = peak.max(kib);
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the tap failed");
            return peak;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[tokio::test]
async fn memory_stays_flat_whatever_the_table_size() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE small (id int PRIMARY KEY, v text, n numeric);
         INSERT INTO small SELECT i, md5(i::text), i / 3.0 FROM generate_series(1, 100000) i;
         CREATE TABLE large (id int PRIMARY KEY, v text, n numeric);
         INSERT INTO large SELECT i, md5(i::text), i / 3.0 FROM generate_series(1, 1000000) i;",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let catalog = discover(&files, &cfg);
    let small = peak_rss_kib(sync_command(
        &files,
        &cfg,
        &select(&catalog, &[("public-small", "FULL_TABLE", None)]),
        None,
    ));
    let large = peak_rss_kib(sync_command(
        &files,
        &cfg,
        &select(&catalog, &[("public-large", "FULL_TABLE", None)]),
        None,
    ));
    eprintln!("peak RSS: 100k rows {small} KiB, 1M rows {large} KiB");
    assert!(
        (large as f64) <= 1.5 * small as f64,
        "peak RSS grew with the table: 100k rows {small} KiB, 1M rows {large} KiB"
    );
}

#[tokio::test]
async fn progress_lines_report_rows_rate_and_share() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE prog (id int PRIMARY KEY, v text);
         INSERT INTO prog SELECT i, md5(i::text) FROM generate_series(1, 300000) i;
         ANALYZE prog;",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({"progress_interval_seconds": 1}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-prog", "FULL_TABLE", None)],
    );
    // However fast the copy, the run lasts longer than the interval: the
    // table is locked until the tap's COPY has waited 1.5 s for it.
    let holder = db.client().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE prog IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let child = sync_command(&files, &cfg, &catalog, None)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    pg_testkit::wait_until("the tap's COPY to wait for the lock", Duration::from_secs(30), || async {
        !db.query_json(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()",
        )
        .await
        .is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    holder.batch_execute("COMMIT").await.unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("stream public-prog: ") && l.contains(" rows/s, "))
        .unwrap_or_else(|| panic!("no progress line in {stderr}"));
    assert!(line.contains("% of about 300000"), "{line}");
    // And none when turned off.
    let quiet = config(&db, json!({"progress_interval_seconds": 0}));
    let run = sync(&files, &quiet, &catalog, None);
    assert!(!run.stderr.contains(" rows/s"), "{}", run.stderr);
}

#[tokio::test]
async fn a_terminal_gets_a_live_progress_bar() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE bar (id int PRIMARY KEY, v text);
         INSERT INTO bar SELECT i, md5(i::text) FROM generate_series(1, 200000) i;
         ANALYZE bar;",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({"progress_interval_seconds": 1}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-bar", "FULL_TABLE", None)],
    );
    let cmd = sync_command(&files, &cfg, &catalog, None);
    let mut shell = format!("{:?}", cmd.get_program());
    for a in cmd.get_args() {
        shell.push(' ');
        shell.push_str(&format!("{a:?}"));
    }
    let out_file = files.write("out.jsonl", &json!(null));
    shell.push_str(&format!(" > {out_file:?}"));
    // `script` gives the tap a pseudo-terminal for stderr, as a person's shell would.
    let out = std::process::Command::new("script")
        .args(["-qefc", &shell, "/dev/null"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("public-bar (rows) ["), "{screen}");
    assert!(
        !screen.contains(" rows/s, "),
        "no log lines while the bar is shown: {screen}"
    );
    let written = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(
        written
            .lines()
            .filter(|l| l.starts_with(r#"{"type":"RECORD""#))
            .count(),
        200000
    );
}

/// Issue 10, item 4: with hundreds of streams, STATE bytes stay linear: the
/// per-stream states are checkpoints, written only when the output since
/// the last STATE outweighs it. Before, each of ~2 states per stream
/// carried every bookmark (≈ 9 MB of states for 300 tables of 5 rows).
/// The last state still holds every stream's bookmark.
#[tokio::test]
async fn state_bytes_stay_linear_in_the_number_of_streams() {
    const TABLES: usize = 300;
    let db = cluster().create_database().await;
    db.execute_batch(&format!(
        "DO $$ BEGIN FOR i IN 1..{TABLES} LOOP
           EXECUTE format('CREATE TABLE t%s (id int PRIMARY KEY, v text)', i);
           EXECUTE format('INSERT INTO t%s SELECT g, md5(g::text) FROM generate_series(1, 5) g', i);
         END LOOP; END $$;"
    ))
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let ids: Vec<String> = (1..=TABLES).map(|i| format!("public-t{i}")).collect();
    let streams: Vec<(&str, &str, Option<&str>)> = ids
        .iter()
        .map(|id| (id.as_str(), "FULL_TABLE", None))
        .collect();
    let catalog = select(&discover(&files, &cfg), &streams);
    let run = sync(&files, &cfg, &catalog, None);
    assert!(run.output.status.success(), "{}", run.stderr);

    let (mut state_bytes, mut other_bytes, mut states) = (0, 0, 0);
    for line in &run.lines {
        if line.starts_with(r#"{"type":"STATE""#) {
            state_bytes += line.len() + 1;
            states += 1;
        } else {
            other_bytes += line.len() + 1;
        }
    }
    let last = run.lines.last().unwrap().len() + 1;
    assert!(
        state_bytes <= other_bytes + 2 * last,
        "{state_bytes} bytes in {states} states for {other_bytes} other bytes"
    );
    assert!(states < TABLES / 4, "{states} states");
    assert_eq!(run.of_type("RECORD").len(), TABLES * 5);
    let state = run.last_state();
    assert_eq!(state["currently_syncing"], Value::Null);
    let bookmarks = state["bookmarks"].as_object().unwrap();
    assert_eq!(bookmarks.len(), TABLES);
    assert!(bookmarks
        .values()
        .all(|b| b["version"].is_i64() && b.get("last_pk_fetched").is_none()));
}

/// A target that stops reading (a long commit) is not a stalled server:
/// with `stall_timeout_seconds` 1 and nothing read for 4 s, the copy
/// waits and then completes, every row once.
#[tokio::test]
async fn a_target_that_stops_reading_is_not_taken_for_a_stall() {
    let db = cluster().create_database().await;
    let rows = 150_000;
    db.execute_batch(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, pad text);
         INSERT INTO t SELECT i, repeat('p', 120) FROM generate_series(1, {rows}) i"
    ))
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({"stall_timeout_seconds": 1}));
    let catalog = select(&discover(&files, &cfg), &[("public-t", "FULL_TABLE", None)]);
    let cmd = sync_command(&files, &cfg, &catalog, None);
    let run = sync_read_late(cmd, Duration::from_secs(4)).await;
    assert!(run.output.status.success(), "{}", run.stderr);
    assert_eq!(ids(&run.messages()), (1..=rows).collect::<Vec<i64>>());
}

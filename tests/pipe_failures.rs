//! Failures across the `tap | target` pipe, with the real binaries: a target
//! that dies makes the tap fail (broken pipe, non-zero exit); a tap that
//! fails or is killed leaves the target printing no state past what it
//! committed; a network path that stalls (pg_testkit::StallProxy) ends the
//! tap's reads and the target's load in bounded time with one CRITICAL line.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use e2e::{bin, config_file, discover, pipe, select, write_json};
use pg_testkit::{cluster, TestDb};
use serde_json::{json, Value};

const ROWS: i64 = 40_000;

/// A source with `big` (ids 1..=ROWS) and its tap/target configs and
/// catalog in `dir`: `[tap config, catalog]`, `[target config]`.
async fn setup(
    source: &TestDb,
    target: &TestDb,
    dir: &Path,
    tap_extra: Value,
) -> (Vec<std::path::PathBuf>, std::path::PathBuf) {
    source
        .execute_batch(&format!(
            "CREATE TABLE big (id int PRIMARY KEY, payload text, score float8);
             INSERT INTO big SELECT i, repeat(md5(i::text), 4), i / 7.0 FROM generate_series(1, {ROWS}) i;"
        ))
        .await;
    let mut tap = json!({"state_interval_rows": 1000});
    for (k, v) in tap_extra.as_object().unwrap() {
        tap[k] = v.clone();
    }
    let tap_cfg = config_file(dir, "tap.json", source, tap);
    let target_cfg = config_file(
        dir,
        "target.json",
        target,
        json!({"default_target_schema": "copy", "batch_size_rows": 1000}),
    );
    let catalog = write_json(
        dir,
        "catalog.json",
        &select(&discover(&tap_cfg), &[("public-big", "FULL_TABLE", None)]),
    );
    (vec![tap_cfg, catalog], target_cfg)
}

/// Panics unless every state the target printed covers only committed
/// rows: all of `big`'s ids up to its `last_pk_fetched` are in the target.
async fn assert_states_committed(target: &TestDb, states: &[String]) {
    let loaded = target
        .query_json("SELECT count(*) AS n, coalesce(max(id), 0) AS max FROM copy.big")
        .await;
    let (n, max) = (
        loaded[0]["n"].as_i64().unwrap(),
        loaded[0]["max"].as_i64().unwrap(),
    );
    assert_eq!(n, max, "the target holds a prefix of the ids");
    for s in states {
        let state: Value = serde_json::from_str(s).expect("a state is JSON");
        let bookmark = &state["bookmarks"]["public-big"];
        if let Some(pk) = bookmark["last_pk_fetched"]["id"].as_i64() {
            assert!(pk <= max, "state {s} is past the committed id {max}");
        } else if state["currently_syncing"].is_null() && bookmark.get("version").is_some() {
            assert_eq!(max, ROWS, "a finished state {s} with only {max} rows");
        }
    }
}

fn read_all(mut r: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

fn spawn_tap(args: &[std::path::PathBuf]) -> Child {
    Command::new(bin("tap-postgres"))
        .arg("--config")
        .arg(&args[0])
        .arg("--catalog")
        .arg(&args[1])
        .env_remove("LOG_LEVEL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tap starts")
}

#[tokio::test]
async fn a_target_that_fails_mid_input_makes_the_tap_fail_with_broken_pipe() {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (tap_args, target_cfg) = setup(&source, &target, dir.path(), json!({})).await;
    // The target's table refuses ids past 5000: its sixth batch fails.
    target
        .execute_batch(
            "CREATE SCHEMA copy;
             CREATE TABLE copy.big (id int PRIMARY KEY CHECK (id <= 5000), payload text, score float8);",
        )
        .await;
    let run = pipe(
        &[&tap_args[0], &tap_args[1]],
        std::slice::from_ref(&target_cfg.as_path()),
    );
    assert_eq!(
        run.target.code(),
        Some(1),
        "target fails: {}",
        run.target_stderr
    );
    assert!(
        run.target_stderr.contains("CRITICAL") && run.target_stderr.contains("check constraint"),
        "{}",
        run.target_stderr
    );
    assert!(!run.tap.success(), "the tap must fail: {}", run.tap_stderr);
    assert!(
        run.tap_stderr.contains("broken pipe"),
        "the tap names the broken pipe: {}",
        run.tap_stderr
    );
    assert!(
        !run.states.is_empty(),
        "batches before the bad one committed"
    );
    assert_states_committed(&target, &run.states).await;
    let n = target
        .query_json("SELECT count(*) AS n FROM copy.big")
        .await;
    assert_eq!(n[0]["n"], json!(5000));
}

#[tokio::test]
async fn a_tap_that_fails_mid_stream_leaves_only_committed_states() {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    // A NaN at id 25000 with `special_numbers: error` fails the tap there.
    let (tap_args, target_cfg) = setup(
        &source,
        &target,
        dir.path(),
        json!({"special_numbers": "error"}),
    )
    .await;
    source
        .execute_batch("UPDATE big SET score = 'NaN' WHERE id = 25000")
        .await;
    let run = pipe(
        &[&tap_args[0], &tap_args[1]],
        std::slice::from_ref(&target_cfg.as_path()),
    );
    assert_eq!(run.tap.code(), Some(1), "tap fails: {}", run.tap_stderr);
    assert!(
        run.tap_stderr.contains("score"),
        "the error names the column: {}",
        run.tap_stderr
    );
    assert!(!run.states.is_empty(), "states before the failure");
    let last = run.last_state();
    let pk = last["bookmarks"]["public-big"]["last_pk_fetched"]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("the last state is mid-copy: {last}"));
    assert!(pk < 25000, "{last}");
    assert_states_committed(&target, &run.states).await;
}

#[tokio::test]
async fn a_killed_tap_leaves_only_committed_states() {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let (tap_args, target_cfg) = setup(&source, &target, dir.path(), json!({})).await;
    let mut tap = spawn_tap(&tap_args);
    let mut tap_out = tap.stdout.take().unwrap();
    let tap_err = read_all(tap.stderr.take().unwrap());
    let mut target_proc = Command::new(bin("target-postgres"))
        .arg("--config")
        .arg(&target_cfg)
        .env_remove("LOG_LEVEL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("target starts");
    let states = read_all(target_proc.stdout.take().unwrap());
    let target_err = read_all(target_proc.stderr.take().unwrap());
    // Forward about 2 MB of the tap's output, ending in the middle of a
    // line, then SIGKILL the tap: the target sees a truncated last line.
    let mut target_in = target_proc.stdin.take().unwrap();
    let mut sent = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while sent < 2_000_000 {
        let n = tap_out.read(&mut buf).unwrap();
        assert!(n > 0, "the tap ended early: {}", tap_err.join().unwrap());
        let take = if sent + n >= 2_000_000 {
            // Cut inside a line.
            buf[..n]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(n / 2, |p| p + 10)
                .min(n)
        } else {
            n
        };
        std::io::Write::write_all(&mut target_in, &buf[..take]).unwrap();
        sent += n;
    }
    tap.kill().unwrap();
    let tap_status = tap.wait().unwrap();
    drop(tap_out);
    drop(target_in);
    let target_status = target_proc.wait().unwrap();
    let states: Vec<String> = states.join().unwrap().lines().map(String::from).collect();
    let target_err = target_err.join().unwrap();
    assert!(!tap_status.success());
    assert!(!states.is_empty(), "some batches committed: {target_err}");
    assert!(
        !target_status.success(),
        "a truncated last line is an error: {target_err}"
    );
    assert_states_committed(&target, &states).await;
    let last: Value = serde_json::from_str(states.last().unwrap()).unwrap();
    assert!(
        last["bookmarks"]["public-big"]["last_pk_fetched"]["id"]
            .as_i64()
            .is_some_and(|pk| pk < ROWS),
        "{last}"
    );
}

// Issue 10, item 1: a path that stops delivering without closing (the
// proxy keeps every socket open and acknowledges) ends each program within a
// bounded time with a CRITICAL line saying the connection stalled and that
// a rerun resumes. Before the fix each of these waited forever.

/// Connection settings through `proxy` that notice a stall within seconds.
fn through(proxy: &pg_testkit::StallProxy, db: &TestDb, stall_seconds: u64) -> Value {
    let mut v = db.conn_config();
    v["host"] = json!("127.0.0.1");
    v["port"] = json!(proxy.port());
    v["sslmode"] = json!("disable");
    v["connect_timeout"] = json!(3);
    v["stall_timeout_seconds"] = json!(stall_seconds);
    v["keepalives_idle"] = json!(1);
    v["keepalives_interval"] = json!(1);
    v["keepalives_count"] = json!(2);
    v["tcp_user_timeout"] = json!(2000);
    v
}

/// Panics unless the program failed, saying the connection stalled.
fn assert_stalled(ended: &e2e::Ended) {
    assert_eq!(ended.status.code(), Some(1), "{}", ended.stderr);
    let critical = ended.critical();
    assert!(
        critical.contains(" stalled: nothing arrived for ")
            && critical.contains("a rerun resumes from the last state"),
        "{critical}"
    );
}

/// A source with table `t` (50 rows), a temp dir, the catalog of
/// `public-t` with `method` (discovered directly), and a proxy to the
/// source.
async fn stall_source(
    method: &str,
) -> (
    TestDb,
    tempfile::TempDir,
    std::path::PathBuf,
    pg_testkit::StallProxy,
) {
    let source = cluster().create_database().await;
    source
        .execute_batch(
            "CREATE TABLE t (id int PRIMARY KEY, v text);
             INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 50) i;",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let direct = config_file(dir.path(), "direct.json", &source, json!({}));
    let catalog = write_json(
        dir.path(),
        "catalog.json",
        &select(&discover(&direct), &[("public-t", method, None)]),
    );
    let proxy = pg_testkit::StallProxy::start(source.host(), source.port());
    (source, dir, catalog, proxy)
}

/// `tap-postgres --config <cfg> --catalog <catalog>`, running.
fn start_tap(cfg: &Path, catalog: &Path) -> e2e::Running {
    e2e::Running::start(
        "tap-postgres",
        &[
            "--config".as_ref(),
            cfg.as_os_str(),
            "--catalog".as_ref(),
            catalog.as_os_str(),
        ],
        Stdio::null(),
    )
}

/// Waits until a session of `application` waits for a lock.
async fn wait_for_lock_wait(db: &TestDb, application: &str) {
    let sql = format!(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = '{application}' \
         AND wait_event_type = 'Lock'"
    );
    e2e::wait_until(
        &format!("{application} to wait for the lock"),
        std::time::Duration::from_secs(30),
        || async { db.query_json(&sql).await[0]["n"] == json!(1) },
    )
    .await;
}

#[tokio::test]
async fn a_stalled_full_table_read_fails_in_bounded_time() {
    let (source, dir, catalog, proxy) = stall_source("FULL_TABLE").await;
    let cfg = write_json(dir.path(), "tap.json", &through(&proxy, &source, 1));
    // The read waits on a lock (a busy server: not a stall), then the path
    // stalls and the answer never arrives.
    let locker = source.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let tap = start_tap(&cfg, &catalog);
    wait_for_lock_wait(&source, "tap-postgres").await;
    proxy.stall();
    locker.batch_execute("COMMIT").await.unwrap();
    let ended = tap.wait(std::time::Duration::from_secs(20));
    assert_stalled(&ended);
    assert!(
        ended
            .stderr
            .contains("CRITICAL stream public-t: the connection to 127.0.0.1:"),
        "{}",
        ended.stderr
    );
}

#[tokio::test]
async fn a_stalled_log_based_stream_fails_in_bounded_time_even_when_stopping() {
    let (source, dir, catalog, proxy) = stall_source("LOG_BASED").await;
    // The stream goes quiet for logical_poll_total_seconds (2 s) and stops
    // first; the stop itself then meets the stalled path.
    let mut cfg = through(&proxy, &source, 4);
    cfg["replication_slot"] = json!(format!("stall_{}", source.name()).to_lowercase());
    cfg["create_replication_slot"] = json!(true);
    cfg["break_at_end_lsn"] = json!(false);
    cfg["logical_poll_total_seconds"] = json!(2);
    let cfg = write_json(dir.path(), "tap.json", &cfg);
    let tap = start_tap(&cfg, &catalog);
    e2e::wait_until(
        "the tap to stream",
        std::time::Duration::from_secs(30),
        || async { tap.stderr_so_far().contains("streaming from slot") },
    )
    .await;
    proxy.stall();
    let started = std::time::Instant::now();
    let ended = tap.wait(std::time::Duration::from_secs(30));
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_stalled(&ended);
    assert!(
        ended
            .stdout
            .lines()
            .any(|l| l.contains(r#""type":"STATE""#)),
        "the states before the stall were written: {}",
        ended.stdout
    );
}

#[tokio::test]
async fn a_stalled_target_load_fails_in_bounded_time_and_prints_no_state() {
    let target = cluster().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let input = |ids: std::ops::RangeInclusive<i32>, state: i32| {
        let mut lines = vec![
            json!({"type": "SCHEMA", "stream": "t", "key_properties": ["id"],
            "schema": {"type": "object", "properties": {"id": {"type": "integer"}}}})
            .to_string(),
        ];
        for id in ids {
            lines.push(json!({"type": "RECORD", "stream": "t", "record": {"id": id}}).to_string());
        }
        lines.push(json!({"type": "STATE", "value": {"n": state}}).to_string());
        let path = dir.path().join(format!("input-{state}.jsonl"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    };
    let mut direct = target.conn_config();
    direct["default_target_schema"] = json!("copy");
    let direct = write_json(dir.path(), "direct.json", &direct);
    // The first run makes the table.
    let first = e2e::Running::start(
        "target-postgres",
        &["--config".as_ref(), direct.as_os_str()],
        Stdio::from(std::fs::File::open(input(1..=3, 1)).unwrap()),
    )
    .wait(std::time::Duration::from_secs(30));
    assert!(first.status.success(), "{}", first.stderr);

    let proxy = pg_testkit::StallProxy::start(target.host(), target.port());
    let mut cfg = through(&proxy, &target, 1);
    cfg["default_target_schema"] = json!("copy");
    let cfg = write_json(dir.path(), "target.json", &cfg);
    let locker = target.client().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE copy.t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let run = e2e::Running::start(
        "target-postgres",
        &["--config".as_ref(), cfg.as_os_str()],
        Stdio::from(std::fs::File::open(input(4..=9, 2)).unwrap()),
    );
    wait_for_lock_wait(&target, "target-postgres").await;
    proxy.stall();
    locker.batch_execute("COMMIT").await.unwrap();
    let ended = run.wait(std::time::Duration::from_secs(20));
    assert_stalled(&ended);
    assert_eq!(ended.stdout, "", "no state past what was committed");
}

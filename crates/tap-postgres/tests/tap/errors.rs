//! Failures: each names the stream (and column or key), exits non-zero,
//! and writes nothing for the stream at fault.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use pg_testkit::cluster;
use serde_json::json;

use crate::support::{config, discover, select, sync, sync_command, Files};

#[tokio::test]
async fn replication_key_that_is_not_a_column_fails_before_any_output() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE t (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-t", "INCREMENTAL", Some("nope"))],
    );
    let run = sync(&files, &cfg, &catalog, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(run.lines.is_empty(), "{:?}", run.lines);
    assert_eq!(
        run.stderr.lines().last().unwrap(),
        r#"CRITICAL stream public-t: replication key "nope" is not a column of public.t"#
    );
}

#[tokio::test]
async fn no_replication_method_is_a_clear_error() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE t (id int PRIMARY KEY);")
        .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let mut catalog = select(&discover(&files, &cfg), &[("public-t", "FULL_TABLE", None)]);
    catalog["streams"][0]["metadata"][0]["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("replication-method");
    let run = sync(&files, &cfg, &catalog, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr
            .contains("CRITICAL stream public-t: no replication method: set `replication-method`"),
        "{}",
        run.stderr
    );
    // Meltano's top-level key works too.
    catalog["streams"][0]["replication_method"] = json!("FULL_TABLE");
    assert!(sync(&files, &cfg, &catalog, None).output.status.success());
}

#[tokio::test]
async fn dropped_table_is_skipped_dropped_or_retyped_column_fails() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE gone (id int PRIMARY KEY); CREATE TABLE stays (id int PRIMARY KEY, c text);
         INSERT INTO stays VALUES (1, 'x');",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let catalog = select(
        &discover(&files, &cfg),
        &[
            ("public-gone", "FULL_TABLE", None),
            ("public-stays", "FULL_TABLE", None),
        ],
    );
    db.execute_batch("DROP TABLE gone;").await;
    let run = sync(&files, &cfg, &catalog, None);
    assert!(run.output.status.success(), "{}", run.stderr);
    assert!(
        run.stderr.contains(r#"stream public-gone: table "public"."gone" no longer exists; skipped, the other streams go on"#),
        "{}",
        run.stderr
    );
    assert_eq!(run.raw_records(), [r#"{"id":1,"c":"x"}"#]);

    let catalog = select(
        &discover(&files, &cfg),
        &[("public-stays", "FULL_TABLE", None)],
    );
    db.execute_batch("ALTER TABLE stays ALTER COLUMN c TYPE int USING 0;")
        .await;
    let run = sync(&files, &cfg, &catalog, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr.contains(r#"CRITICAL stream public-stays: column "c" was text at discovery and is integer now; run discovery again"#),
        "{}",
        run.stderr
    );
    assert!(run.lines.is_empty());
    db.execute_batch("ALTER TABLE stays DROP COLUMN c;").await;
    let run = sync(&files, &cfg, &catalog, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr.contains(
            r#"CRITICAL stream public-stays: column "c" is selected but no longer exists"#
        ),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn permission_denied_names_the_stream() {
    let db = cluster().create_database().await;
    let role = format!("r_{}", db.name());
    db.execute_batch(&format!(
        "CREATE TABLE t (id int PRIMARY KEY); CREATE ROLE {role} LOGIN; GRANT SELECT ON t TO {role};"
    ))
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({"user": role}));
    let catalog = select(&discover(&files, &cfg), &[("public-t", "FULL_TABLE", None)]);
    db.execute_batch(&format!("REVOKE SELECT ON t FROM {role};"))
        .await;
    let run = sync(&files, &cfg, &catalog, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr.contains(r#"CRITICAL stream public-t: permission denied: the user may not SELECT from "public"."t""#),
        "{}",
        run.stderr
    );
    db.execute_batch(&format!("DROP OWNED BY {role}; DROP ROLE {role};"))
        .await;
}

#[tokio::test]
async fn a_closed_stdout_is_a_failure_not_a_success() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE many (id int PRIMARY KEY, v text);
         INSERT INTO many SELECT i, repeat('x', 100) FROM generate_series(1, 100000) i;",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-many", "FULL_TABLE", None)],
    );
    let mut child = sync_command(&files, &cfg, &catalog, None)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The "target" reads one line and dies.
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with(r#"{"type":"STATE""#));
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stdout closed: the downstream target exited (broken pipe)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_lost_connection_names_the_stream() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE lost (id int PRIMARY KEY, v text);
         INSERT INTO lost SELECT i, repeat('x', 200) FROM generate_series(1, 200000) i;",
    )
    .await;
    let files = Files::new();
    let cfg = config(&db, json!({"application_name": "tap-under-test"}));
    let catalog = select(
        &discover(&files, &cfg),
        &[("public-lost", "FULL_TABLE", None)],
    );
    let mut child = sync_command(&files, &cfg, &catalog, None)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    // Read until records flow, then stop reading: the tap blocks mid-copy.
    let mut line = String::new();
    while !line.contains(r#""type":"RECORD""#) {
        line.clear();
        out.read_line(&mut line).unwrap();
    }
    db.execute_batch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'tap-under-test'",
    )
    .await;
    // Drain stdout so the tap can notice.
    std::io::copy(&mut out, &mut std::io::sink()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let critical = stderr
        .lines()
        .find(|l| l.starts_with("CRITICAL"))
        .unwrap_or_default();
    assert!(
        critical.starts_with("CRITICAL stream public-lost: "),
        "{stderr}"
    );
    assert!(
        critical.contains("the connection to the server was lost ("),
        "{critical}"
    );
    assert!(
        critical.ends_with("a rerun from the last state resumes"),
        "{critical}"
    );
}

#[tokio::test]
async fn reads_go_to_the_secondary_with_use_secondary() {
    let db = cluster().create_database().await;
    db.execute_batch("CREATE TABLE r (id int PRIMARY KEY); INSERT INTO r VALUES (1), (2);")
        .await;
    let files = Files::new();
    // The "primary" is unreachable; every FULL_TABLE read must use the secondary.
    let cfg = config(
        &db,
        json!({"use_secondary": "true", "secondary_host": db.host(), "secondary_port": db.port(),
               "host": "127.0.0.1", "port": 1, "connect_timeout": 3}),
    );
    let catalog = select(&discover(&files, &cfg), &[("public-r", "FULL_TABLE", None)]);
    let run = sync(&files, &cfg, &catalog, None);
    assert!(run.output.status.success(), "{}", run.stderr);
    assert_eq!(run.raw_records(), [r#"{"id":1}"#, r#"{"id":2}"#]);
    // Without it, the unreachable primary is a clear error.
    let mut direct = cfg.clone();
    direct["use_secondary"] = json!(false);
    let run = sync(&files, &direct, &catalog, None);
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr
            .contains("CRITICAL cannot connect to 127.0.0.1:1/"),
        "{}",
        run.stderr
    );
}

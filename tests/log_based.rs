//! LOG_BASED through both programs (issue #9): a key change keeps its
//! unchanged TOASTed column, and a key-less REPLICA IDENTITY FULL table with
//! identical rows ends with the source's multiset of rows.

use std::path::{Path, PathBuf};

use e2e::{config_file, discover, pipe, rows, select, write_json, Pipeline};
use pg_testkit::{cluster, TestDb};
use serde_json::{json, Value};

/// A tap and target config pair for LOG_BASED streams of `source` into
/// schema `copy` of `target`.
struct Setup {
    dir: tempfile::TempDir,
    tap: PathBuf,
    target: PathBuf,
    catalog: PathBuf,
}

impl Setup {
    fn new(source: &TestDb, target: &TestDb, streams: &[&str], target_extra: Value) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let slot = format!("e2e_{}", source.name()).to_lowercase();
        let tap = config_file(
            dir.path(),
            "tap.json",
            source,
            json!({"replication_slot": slot, "create_replication_slot": true}),
        );
        let mut extra = json!({"default_target_schema": "copy"});
        for (k, v) in target_extra.as_object().unwrap() {
            extra[k] = v.clone();
        }
        let target = config_file(dir.path(), "target.json", target, extra);
        let wanted: Vec<(&str, &str, Option<&str>)> =
            streams.iter().map(|s| (*s, "LOG_BASED", None)).collect();
        let catalog = write_json(
            dir.path(),
            "catalog.json",
            &select(&discover(&tap), &wanted),
        );
        Setup {
            dir,
            tap,
            target,
            catalog,
        }
    }

    /// One `tap | target` run from `state`; returns the run.
    fn run(&self, state: Option<&Value>) -> Pipeline {
        let state_path = state.map(|s| write_json(self.dir.path(), "state.json", s));
        let mut tap_args: Vec<&Path> = vec![&self.tap, &self.catalog];
        if let Some(p) = &state_path {
            tap_args.push(p);
        }
        let run = pipe(&tap_args, &[&self.target]);
        run.assert_success();
        run
    }
}

#[tokio::test]
async fn issue9_a_key_change_keeps_an_unchanged_toasted_column() {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    source
        .execute_batch(
            "CREATE TABLE t (id int PRIMARY KEY, note text, big text);
             ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
             INSERT INTO t SELECT i, 'n', repeat(md5(i::text), 160) FROM generate_series(1, 3) i;",
        )
        .await;
    let setup = Setup::new(
        &source,
        &target,
        &["public-t"],
        json!({"hard_delete": true}),
    );
    let first = setup.run(None);
    source
        .execute_batch(
            "UPDATE t SET id = 10 WHERE id = 1;
             UPDATE t SET id = 20, note = 'm' WHERE id = 2;
             UPDATE t SET id = 30 WHERE id = 3; UPDATE t SET big = 'later' WHERE id = 30;",
        )
        .await;
    setup.run(Some(&first.last_state()));
    let select = "SELECT id, note, big, md5(big) FROM TABLE ORDER BY id";
    let want = rows(&source, &select.replace("TABLE", "t")).await;
    assert_eq!(want.len(), 3);
    assert!(want[0].starts_with("(10,n,") && want[0].len() > 5000);
    assert_eq!(
        rows(&target, &select.replace("TABLE", "copy.t")).await,
        want
    );
}

#[tokio::test]
async fn issue9_keyless_tables_keep_the_multiset_of_rows() {
    let source = cluster().create_database().await;
    let hard = cluster().create_database().await;
    let soft = cluster().create_database().await;
    source
        .execute_batch(
            "CREATE TABLE k (a int, b text, big text);
             ALTER TABLE k REPLICA IDENTITY FULL;
             ALTER TABLE k ALTER COLUMN big SET STORAGE EXTERNAL;
             INSERT INTO k VALUES (1, 'x', NULL), (1, 'x', NULL), (1, 'x', NULL), (2, NULL, repeat('b', 3000));",
        )
        .await;
    let hard_setup = Setup::new(
        &source,
        &hard,
        &["public-k"],
        json!({"hard_delete": true, "primary_key_required": false}),
    );
    let soft_setup = Setup::new(
        &source,
        &soft,
        &["public-k"],
        json!({"primary_key_required": false}),
    );
    let (h1, s1) = (hard_setup.run(None), soft_setup.run(None));
    // Both share the slot: run them one after the other from their states.
    source
        .execute_batch(
            "UPDATE k SET b = 'y' WHERE ctid = (SELECT ctid FROM k WHERE a = 1 LIMIT 1);
             DELETE FROM k WHERE ctid = (SELECT ctid FROM k WHERE a = 1 AND b = 'x' LIMIT 1);
             INSERT INTO k VALUES (1, 'x', NULL), (3, 'z', NULL);
             UPDATE k SET a = 4 WHERE a = 2;
             DELETE FROM k WHERE a = 3;
             INSERT INTO k VALUES (NULL, NULL, NULL), (NULL, NULL, NULL);
             DELETE FROM k WHERE ctid = (SELECT ctid FROM k WHERE a IS NULL LIMIT 1);",
        )
        .await;
    hard_setup.run(Some(&h1.last_state()));
    soft_setup.run(Some(&s1.last_state()));
    let select = "SELECT a, b, md5(big) FROM TABLE ORDER BY a, b, big";
    let want = rows(&source, &select.replace("TABLE", "k")).await;
    assert_eq!(want.len(), 5, "{want:?}");
    assert_eq!(rows(&hard, &select.replace("TABLE", "copy.k")).await, want);
    let live = "SELECT a, b, md5(big) FROM copy.k WHERE _sdc_deleted_at IS NULL ORDER BY a, b, big";
    assert_eq!(rows(&soft, live).await, want);
}

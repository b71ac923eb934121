//! tap-postgres | target-postgres, the real binaries piped together, and the
//! target tables compared with the source row by row (each row's text form,
//! so every value must come back exactly).

use e2e::{assert_same_rows, discover, pipe, select, write_json};
use pg_testkit::{cluster, TestDb};
use serde_json::{json, Value};

const SOURCE: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE TABLE everything (
  id int PRIMARY KEY, small smallint, big bigint, num numeric(40,10), anynum numeric, real4 real, dbl float8,
  flag bool, txt text, vc varchar(8), ch char(4), u uuid, j json, jb jsonb, bin bytea,
  d date, ts timestamp, tz timestamptz, tm time, ttz timetz, iv interval, m mood, ip inet, cash money,
  bits bit(3), r int4range, ints int[], texts text[], updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO everything VALUES
 (1, -32768, 9223372036854775807, 123456789012345678901234567890.0123456789, 'NaN', 'Infinity', 0.1,
  true, E'tab\there\nnew line \\ "q" é ☃ \u0001', 'abc', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2.50]}', '{"k": 1.10}', '\x00ff', '0044-03-15 BC', 'infinity', '2024-02-29 10:11:12.123456+05:30',
  '24:00:00', '10:11:12.345+03', '1 year 2 mons', 'happy', '10.0.0.1/8', 12.34, B'101', '[1,5)',
  '{{1,2},{3,NULL}}', '{"a b",NULL,""}', '2024-01-01'),
 (2, NULL, NULL, NULL, '-Infinity', '-0', 1e300, false, '', '', '', NULL, 'null', '"str"', '\x', '10000-01-01',
  '-infinity', '-infinity', '00:00:00', '00:00:00-08:00', '-1 days', NULL, NULL, NULL, NULL, 'empty', '{}', NULL,
  '2024-01-02'),
 (3, 0, -9223372036854775808, -0.0000000001, 1.1000, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '2024-02-29', '2024-02-29 23:59:59.999999', '0001-01-01 00:00:00+00 BC', '23:59:59.999999',
  '23:59:59.999999+14:59', NULL, 'sad', NULL, NULL, NULL, NULL, NULL, NULL, '2024-01-03');
CREATE TABLE events (id int, region text, payload jsonb, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE events_eu PARTITION OF events FOR VALUES IN ('eu');
CREATE TABLE events_us PARTITION OF events FOR VALUES IN ('us');
INSERT INTO events SELECT i, CASE WHEN i % 2 = 0 THEN 'eu' ELSE 'us' END, jsonb_build_object('n', i)
  FROM generate_series(1, 500) i;
"#;

const COLUMNS: &str = "id, small, big, num, anynum, real4, dbl, flag, txt, vc, ch, u, j, jb, bin, d, ts, tz, tm, ttz, \
                       iv, m::text, ip, cash, bits, r, ints, texts, updated_at";

async fn assert_same(source: &TestDb, target: &TestDb) {
    assert_same_rows(
        source,
        &format!("SELECT {COLUMNS} FROM everything ORDER BY id"),
        target,
        &format!("SELECT {COLUMNS} FROM src.everything ORDER BY id"),
    )
    .await;
    assert_same_rows(
        source,
        "SELECT id, region, payload FROM events ORDER BY id, region",
        target,
        "SELECT id, region, payload FROM src.events ORDER BY id, region",
    )
    .await;
}

#[tokio::test]
async fn full_table_and_incremental_come_back_exactly() {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    source.execute_batch(SOURCE).await;
    let dir = tempfile::tempdir().unwrap();
    let tap_cfg = write_json(dir.path(), "tap.json", &source.conn_config());
    let mut t = target.conn_config();
    t["default_target_schema"] = json!("src");
    let target_cfg = write_json(dir.path(), "target.json", &t);
    let catalog = select(
        &discover(&tap_cfg),
        &[
            ("public-everything", "INCREMENTAL", Some("updated_at")),
            ("public-events", "FULL_TABLE", None),
        ],
    );
    let cat = write_json(dir.path(), "catalog.json", &catalog);

    let first = pipe(&[&tap_cfg, &cat], &[&target_cfg]);
    first.assert_success();
    assert_same(&source, &target).await;

    // Changes, then a run from the state the target printed.
    source
        .execute_batch(
            "UPDATE everything SET txt = 'changed', updated_at = '2024-02-01' WHERE id = 2;
             INSERT INTO everything (id, num, updated_at) VALUES (4, 4.4, '2024-02-02');
             INSERT INTO events VALUES (1000, 'eu', '{}');",
        )
        .await;
    let state = write_json(dir.path(), "state.json", &first.last_state());
    let second = pipe(&[&tap_cfg, &cat, &state], &[&target_cfg]);
    second.assert_success();
    assert_same(&source, &target).await;
    assert_eq!(second.last_state()["currently_syncing"], Value::Null);
}

#[tokio::test]
async fn log_based_initial_copy_and_changes_come_back_exactly() {
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    source.execute_batch(SOURCE).await;
    source
        .execute_batch(
            "ALTER TABLE everything ALTER COLUMN txt SET STORAGE EXTERNAL;
             UPDATE everything SET txt = repeat('long ', 2000) WHERE id = 3;
             -- Row 2 is streamed again below (its key changes): wal2json 2.5 writes
             -- -Infinity as null (README, LOG_BASED), so give it a finite value.
             UPDATE everything SET anynum = 2.5 WHERE id = 2;",
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = source.conn_config();
    s["replication_slot"] = json!("e2e_slot");
    s["create_replication_slot"] = json!(true);
    let tap_cfg = write_json(dir.path(), "tap.json", &s);
    let mut t = target.conn_config();
    t["default_target_schema"] = json!("src");
    t["hard_delete"] = json!(true);
    let target_cfg = write_json(dir.path(), "target.json", &t);
    let catalog = select(
        &discover(&tap_cfg),
        &[
            ("public-everything", "LOG_BASED", None),
            ("public-events", "LOG_BASED", None),
        ],
    );
    let cat = write_json(dir.path(), "catalog.json", &catalog);

    let first = pipe(&[&tap_cfg, &cat], &[&target_cfg]);
    first.assert_success();
    assert_same(&source, &target).await;

    source
        .execute_batch(
            "UPDATE everything SET flag = NOT flag WHERE id = 3;          -- txt is TOASTed and unchanged
             UPDATE everything SET id = 30 WHERE id = 2;                 -- a key change
             DELETE FROM everything WHERE id = 1;
             INSERT INTO everything (id, num, txt) VALUES (5, 5.5, 'five');
             UPDATE everything SET jb = 'null' WHERE id = 3;            -- JSON null, not SQL NULL
             DELETE FROM events WHERE id < 100;
             UPDATE events SET payload = '{\"changed\": true}' WHERE id = 200;
             INSERT INTO events VALUES (1001, 'us', '[]');",
        )
        .await;
    let state = write_json(dir.path(), "state.json", &first.last_state());
    let second = pipe(&[&tap_cfg, &cat, &state], &[&target_cfg]);
    second.assert_success();
    assert_same(&source, &target).await;

    // A third run with nothing new changes nothing and loses nothing.
    let state = write_json(dir.path(), "state.json", &second.last_state());
    let third = pipe(&[&tap_cfg, &cat, &state], &[&target_cfg]);
    third.assert_success();
    assert_same(&source, &target).await;
}

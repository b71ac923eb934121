//! Metadata columns, hard and soft deletes, ACTIVATE_VERSION, overwrite.

use serde_json::{json, Value};

use crate::*;

fn log_schema() -> Value {
    // As the pipelinewise tap writes it for LOG_BASED: the metadata
    // columns are properties too.
    schema(
        "public-l",
        json!({"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
               "big": {"type": ["null", "string"]},
               "_sdc_deleted_at": {"type": ["null", "string"], "format": "date-time"},
               "_sdc_lsn": {"type": ["null", "string"]}}),
        &["id"],
    )
}

fn rec(r: Value, version: i64) -> Value {
    json!({"type": "RECORD", "stream": "public-l", "record": r, "version": version,
           "time_extracted": "2024-05-01T00:00:00.000000Z"})
}

const DEL: &str = "2024-05-02T10:00:00+00:00";

#[tokio::test]
async fn metadata_columns_are_filled() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        log_schema(),
        rec(json!({"id": 1, "name": "a", "_sdc_lsn": "330573960"}), 7),
    ]);
    run(&db, json!({"add_metadata_columns": true}), &input).success();
    let rows = db
        .query_json(
            "SELECT id, name, big, _sdc_extracted_at AT TIME ZONE 'UTC' AS ex, \
             _sdc_received_at > now() - interval '1 hour' AS recv, \
             _sdc_batched_at > now() - interval '1 hour' AS bat, \
             _sdc_deleted_at, _sdc_lsn, _sdc_table_version FROM tgt.l",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "name": "a", "big": null, "ex": "2024-05-01T00:00:00",
                    "recv": true, "bat": true, "_sdc_deleted_at": null,
                    "_sdc_lsn": 330573960, "_sdc_table_version": 7})
        ]
    );
    let types = db
        .query_json(
            "SELECT column_name AS c, data_type AS ty FROM information_schema.columns \
             WHERE table_schema = 'tgt' AND column_name LIKE '\\_sdc%' ORDER BY ordinal_position",
        )
        .await;
    assert_eq!(
        types,
        vec![
            json!({"c": "_sdc_extracted_at", "ty": "timestamp with time zone"}),
            json!({"c": "_sdc_received_at", "ty": "timestamp with time zone"}),
            json!({"c": "_sdc_batched_at", "ty": "timestamp with time zone"}),
            json!({"c": "_sdc_deleted_at", "ty": "timestamp with time zone"}),
            json!({"c": "_sdc_lsn", "ty": "bigint"}),
            json!({"c": "_sdc_table_version", "ty": "bigint"}),
        ]
    );
}

async fn load_then_delete(hard: bool) -> pg_testkit::TestDb {
    let db = pg_testkit::cluster().create_database().await;
    let cfg = json!({"add_metadata_columns": true, "hard_delete": hard});
    let first = lines(&[
        log_schema(),
        rec(json!({"id": 1, "name": "a", "big": "B1"}), 1),
        rec(json!({"id": 2, "name": "b", "big": "B2"}), 1),
        rec(json!({"id": 3, "name": "c", "big": "B3"}), 1),
        rec(json!({"id": 4, "name": "d", "big": "B4"}), 1),
    ]);
    run(&db, cfg.clone(), &first).success();
    let second = lines(&[
        log_schema(),
        // 1: deleted (the delete record carries only the key).
        rec(
            json!({"id": 1, "_sdc_deleted_at": DEL, "_sdc_lsn": "10"}),
            1,
        ),
        // 2: deleted, then inserted again in the same batch.
        rec(
            json!({"id": 2, "_sdc_deleted_at": DEL, "_sdc_lsn": "11"}),
            1,
        ),
        rec(
            json!({"id": 2, "name": "b2", "_sdc_deleted_at": null, "_sdc_lsn": "12"}),
            1,
        ),
        // 5: inserted, then deleted in the same batch.
        rec(
            json!({"id": 5, "name": "e", "big": "B5", "_sdc_lsn": "13"}),
            1,
        ),
        rec(
            json!({"id": 5, "_sdc_deleted_at": DEL, "_sdc_lsn": "14"}),
            1,
        ),
        // 3: updated without `big` (unchanged TOAST).
        rec(json!({"id": 3, "name": "c2", "_sdc_lsn": "15"}), 1),
    ]);
    run(&db, cfg, &second).success();
    db
}

#[tokio::test]
async fn hard_delete_removes_rows_and_a_reinsert_in_the_batch_wins() {
    let db = load_then_delete(true).await;
    assert_eq!(
        db.query_json("SELECT id, name, big, _sdc_deleted_at, _sdc_lsn FROM tgt.l ORDER BY id")
            .await,
        vec![
            // Re-created from the records after its delete: `big` was not
            // in them, so it is NULL as for a fresh insert.
            json!({"id": 2, "name": "b2", "big": null, "_sdc_deleted_at": null, "_sdc_lsn": 12}),
            json!({"id": 3, "name": "c2", "big": "B3", "_sdc_deleted_at": null, "_sdc_lsn": 15}),
            json!({"id": 4, "name": "d", "big": "B4", "_sdc_deleted_at": null, "_sdc_lsn": null}),
        ]
    );
}

#[tokio::test]
async fn soft_delete_marks_rows_and_keeps_their_columns() {
    let db = load_then_delete(false).await;
    let deleted = "2024-05-02T10:00:00+00:00";
    assert_eq!(
        db.query_json(
            "SELECT id, name, big, to_char(_sdc_deleted_at AT TIME ZONE 'UTC', \
             'YYYY-MM-DD\"T\"HH24:MI:SS\"+00:00\"') AS del, _sdc_lsn FROM tgt.l ORDER BY id"
        )
        .await,
        vec![
            json!({"id": 1, "name": "a", "big": "B1", "del": deleted, "_sdc_lsn": 10}),
            json!({"id": 2, "name": "b2", "big": "B2", "del": null, "_sdc_lsn": 12}),
            json!({"id": 3, "name": "c2", "big": "B3", "del": null, "_sdc_lsn": 15}),
            json!({"id": 4, "name": "d", "big": "B4", "del": null, "_sdc_lsn": null}),
            json!({"id": 5, "name": "e", "big": "B5", "del": deleted, "_sdc_lsn": 14}),
        ]
    );
}

fn full_table_run(version: i64, ids: &[i64]) -> String {
    let mut m = vec![
        log_schema(),
        json!({"type": "ACTIVATE_VERSION", "stream": "public-l", "version": version}),
    ];
    for &id in ids {
        m.push(rec(
            json!({"id": id, "name": format!("v{version}")}),
            version,
        ));
    }
    m.push(json!({"type": "ACTIVATE_VERSION", "stream": "public-l", "version": version}));
    m.push(state(json!({"version": version})));
    lines(&m)
}

#[tokio::test]
async fn activate_version_deletes_or_marks_older_rows() {
    for hard in [true, false] {
        let db = pg_testkit::cluster().create_database().await;
        let cfg = json!({"add_metadata_columns": true, "hard_delete": hard});
        run(&db, cfg.clone(), &full_table_run(100, &[1, 2, 3])).success();
        let r = run(&db, cfg, &full_table_run(200, &[1, 3])).success();
        assert_eq!(r.stdout, "{\"version\":200}\n");
        let rows = db
            .query_json(
                "SELECT id, name, _sdc_table_version AS v, _sdc_deleted_at IS NOT NULL AS del \
                 FROM tgt.l ORDER BY id",
            )
            .await;
        let mut expected = vec![
            json!({"id": 1, "name": "v200", "v": 200, "del": false}),
            json!({"id": 3, "name": "v200", "v": 200, "del": false}),
        ];
        if !hard {
            expected.insert(1, json!({"id": 2, "name": "v100", "v": 100, "del": true}));
        }
        assert_eq!(rows, expected, "hard_delete {hard}");
    }
}

#[tokio::test]
async fn overwrite_replaces_the_table_content() {
    let db = pg_testkit::cluster().create_database().await;
    let run1 = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "a"})),
        record("public-t", json!({"id": 2, "name": "b"})),
        state(json!({"s": 1})),
    ]);
    run(&db, json!({}), &run1).success();
    let run2 = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 2, "name": "B"})),
        state(json!({"s": 2})),
        record("public-t", json!({"id": 3, "name": "C"})),
        record("public-t", json!({"id": 3, "name": "C2"})),
        state(json!({"s": 3})),
    ]);
    let r = run(
        &db,
        json!({"load_method": "overwrite", "batch_size_rows": 1}),
        &run2,
    )
    .success();
    // States are held back until the table is replaced.
    assert_eq!(r.stdout, "{\"s\":3}\n");
    assert_eq!(
        db.query_json("SELECT * FROM tgt.t ORDER BY id").await,
        vec![
            json!({"id": 2, "name": "B"}),
            json!({"id": 3, "name": "C2"})
        ]
    );
    assert_eq!(
        db.query_json("SELECT count(*) AS n FROM pg_tables WHERE tablename LIKE '%sdc_overwrite'")
            .await,
        vec![json!({"n": 0})]
    );
}

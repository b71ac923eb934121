//! Direct load (issue #12): batches COPYed straight into a table that was
//! empty when the load began, and the staging path taking over whenever
//! the direct one would not give the merge's result.

use serde_json::{json, Value};

use crate::*;

const STRAIGHT: &str = "(straight, no staging)";

fn typed_schema() -> Value {
    schema(
        "public-d",
        json!({"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
               "n": {"type": ["null", "number"], "x-sql-datatype": "numeric(12,2)"},
               "at": {"type": ["null", "string"], "format": "date-time"},
               "tags": {"type": ["null", "array"], "items": {"type": "string"}, "x-sql-datatype": "text[]"}}),
        &["id"],
    )
}

fn rec(r: Value) -> Value {
    record("public-d", r)
}

fn straight_batches(run: &Run) -> usize {
    run.stderr.lines().filter(|l| l.contains(STRAIGHT)).count()
}

const ROWS: &str =
    "SELECT id, name, n::text, (at AT TIME ZONE 'UTC')::text AS at, tags FROM tgt.d ORDER BY id";

#[tokio::test]
async fn a_new_table_is_loaded_straight_with_exact_values() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        typed_schema(),
        rec(
            json!({"id": 1, "name": "tab\there \"q\" \\ é", "n": 12.5, "at": "2024-02-29T10:11:12.123456+05:30", "tags": ["a", "b c", "NULL"]}),
        ),
        rec(json!({"id": 2, "name": null, "n": null, "at": null, "tags": null})),
        rec(
            json!({"id": 3, "name": "", "n": -0.01, "at": "0044-03-15T00:00:00+00:00 BC", "tags": []}),
        ),
        state(json!({"done": 1})),
    ]);
    let run = run(&db, json!({}), &input).success();
    assert_eq!(straight_batches(&run), 1, "{}", run.stderr);
    assert_eq!(
        db.query_json(ROWS).await,
        vec![
            json!({"id": 1, "name": "tab\there \"q\" \\ é", "n": "12.50", "at": "2024-02-29 04:41:12.123456", "tags": ["a", "b c", "NULL"]}),
            json!({"id": 2, "name": null, "n": null, "at": null, "tags": null}),
            json!({"id": 3, "name": "", "n": "-0.01", "at": "0044-03-15 00:00:00 BC", "tags": []}),
        ]
    );
    assert_eq!(run.stdout, "{\"done\":1}\n");
}

#[tokio::test]
async fn repeated_keys_in_a_batch_on_a_new_table_are_deduplicated() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "first"})),
        record("public-t", json!({"id": 2, "name": "two"})),
        record("public-t", json!({"id": 1, "name": "last"})),
    ]);
    let run = run(&db, json!({}), &input).success();
    assert_eq!(straight_batches(&run), 0, "{}", run.stderr);
    assert_eq!(
        db.query_json("SELECT * FROM tgt.t ORDER BY id").await,
        vec![
            json!({"id": 1, "name": "last"}),
            json!({"id": 2, "name": "two"})
        ]
    );
}

#[tokio::test]
async fn later_batches_with_loaded_keys_and_absent_columns_are_merged() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        typed_schema(),
        // Batch 1 (2 rows): straight in.
        rec(json!({"id": 1, "name": "a", "n": 1, "at": null, "tags": ["x"]})),
        rec(json!({"id": 2, "name": "b", "n": 2, "at": null, "tags": null})),
        // Batch 2: key 1 exists now (the unique key refuses the COPY):
        // merged, last wins.
        rec(json!({"id": 1, "name": "a2", "n": 10, "at": null, "tags": ["y"]})),
        rec(json!({"id": 3, "name": "c", "n": 3, "at": null, "tags": null})),
        // Batch 3: records lacking columns: merged, absent columns keep
        // their values.
        rec(json!({"id": 2, "name": "b2"})),
        rec(json!({"id": 4, "name": "d"})),
    ]);
    let run = run(&db, json!({"batch_size_rows": 2}), &input).success();
    assert_eq!(straight_batches(&run), 1, "{}", run.stderr);
    assert_eq!(
        db.query_json("SELECT id, name, n::text, tags FROM tgt.d ORDER BY id")
            .await,
        vec![
            json!({"id": 1, "name": "a2", "n": "10.00", "tags": ["y"]}),
            json!({"id": 2, "name": "b2", "n": "2.00", "tags": null}),
            json!({"id": 3, "name": "c", "n": "3.00", "tags": null}),
            json!({"id": 4, "name": "d", "n": null, "tags": null}),
        ]
    );
}

#[tokio::test]
async fn hard_delete_on_a_new_table_is_honoured() {
    let db = pg_testkit::cluster().create_database().await;
    let del = "2024-05-02T10:00:00+00:00";
    let s = schema(
        "public-h",
        json!({"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
               "_sdc_deleted_at": {"type": ["null", "string"], "format": "date-time"}}),
        &["id"],
    );
    let input = lines(&[
        s,
        record(
            "public-h",
            json!({"id": 1, "name": "a", "_sdc_deleted_at": null}),
        ),
        record(
            "public-h",
            json!({"id": 2, "name": "b", "_sdc_deleted_at": null}),
        ),
        record(
            "public-h",
            json!({"id": 1, "name": "a", "_sdc_deleted_at": del}),
        ),
    ]);
    let run = run(&db, json!({"hard_delete": true}), &input).success();
    assert_eq!(straight_batches(&run), 0, "{}", run.stderr);
    assert_eq!(
        db.query_json("SELECT id, name, _sdc_deleted_at FROM tgt.h ORDER BY id")
            .await,
        vec![json!({"id": 2, "name": "b", "_sdc_deleted_at": null})]
    );
}

#[tokio::test]
async fn a_table_with_rows_is_never_loaded_straight() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "one"})),
    ]);
    assert_eq!(straight_batches(&run(&db, json!({}), &input).success()), 1);
    let replay = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 2, "name": "two"})),
        record("public-t", json!({"id": 1, "name": "uno"})),
    ]);
    let run = run(&db, json!({}), &replay).success();
    assert_eq!(straight_batches(&run), 0, "{}", run.stderr);
    assert_eq!(
        db.query_json("SELECT * FROM tgt.t ORDER BY id").await,
        vec![
            json!({"id": 1, "name": "uno"}),
            json!({"id": 2, "name": "two"})
        ]
    );
}

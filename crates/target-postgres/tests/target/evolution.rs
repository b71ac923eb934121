//! Schema evolution: new columns, widened types, incompatible changes,
//! removed properties, key changes.

use serde_json::json;

use crate::*;

async fn column_types(db: &pg_testkit::TestDb) -> Vec<String> {
    db.query_json(
        "SELECT attname AS c, format_type(atttypid, atttypmod) AS ty FROM pg_attribute \
         WHERE attrelid = 'tgt.e'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
    )
    .await
    .iter()
    .map(|r| {
        let c = r["c"].as_str().unwrap();
        // Renamed columns carry the time; keep only the shape.
        let c = match c.find("_20") {
            Some(i) => format!("{}_<time>", &c[..i]),
            None => c.to_owned(),
        };
        format!("{c} {}", r["ty"].as_str().unwrap())
    })
    .collect()
}

#[tokio::test]
async fn columns_are_added_widened_or_kept_aside() {
    let db = pg_testkit::cluster().create_database().await;
    let v1 = lines(&[
        schema(
            "public-e",
            json!({"id": {"type": "integer"},
                   "qty": {"type": "integer", "x-sql-datatype": "integer"},
                   "code": {"type": "string", "x-sql-datatype": "character varying(5)"},
                   "flag": {"type": "boolean"},
                   "gone": {"type": "string"}}),
            &["id"],
        ),
        record(
            "public-e",
            json!({"id": 1, "qty": 5, "code": "abc", "flag": true, "gone": "g"}),
        ),
    ]);
    run(&db, json!({}), &v1).success();
    let v2 = lines(&[
        schema(
            "public-e",
            json!({"id": {"type": "integer"},
                   "qty": {"type": "number"},
                   "code": {"type": "string"},
                   "flag": {"type": "string", "format": "date-time"},
                   "extra": {"type": "string"}}),
            &["id"],
        ),
        record(
            "public-e",
            json!({"id": 2, "qty": 2.5, "code": "longer code", "flag": "2024-01-01T00:00:00Z", "extra": "x"}),
        ),
    ]);
    let r = run(&db, json!({}), &v2).success();
    assert!(
        r.stderr
            .contains("column \"flag\" changes type from boolean to timestamp with time zone"),
        "{}",
        r.stderr
    );
    assert_eq!(
        column_types(&db).await,
        [
            "id bigint",
            "qty numeric",
            "code text",
            "flag_<time> boolean",
            "gone text",
            "flag timestamp with time zone",
            "extra text"
        ]
    );
    let rows = db.query_json("SELECT * FROM tgt.e ORDER BY id").await;
    let rows: Vec<Vec<serde_json::Value>> = rows
        .into_iter()
        .map(|r| r.as_object().unwrap().values().cloned().collect())
        .collect();
    assert_eq!(
        rows,
        vec![
            vec![
                json!(1),
                json!(5),
                json!("abc"),
                json!(true),
                json!("g"),
                json!(null),
                json!(null)
            ],
            vec![
                json!(2),
                json!(2.5),
                json!("longer code"),
                json!(null),
                json!(null),
                json!("2024-01-01T00:00:00+00:00"),
                json!("x")
            ],
        ]
    );
}

#[tokio::test]
async fn an_existing_wider_column_is_kept() {
    let db = pg_testkit::cluster().create_database().await;
    db.execute_batch("CREATE SCHEMA tgt; CREATE TABLE tgt.e (id bigint PRIMARY KEY, qty text)")
        .await;
    let input = lines(&[
        schema(
            "public-e",
            json!({"id": {"type": "integer"}, "qty": {"type": "integer"}}),
            &["id"],
        ),
        record("public-e", json!({"id": 1, "qty": 7})),
    ]);
    run(&db, json!({}), &input).success();
    assert_eq!(column_types(&db).await, ["id bigint", "qty text"]);
    assert_eq!(
        db.query_json("SELECT * FROM tgt.e").await,
        vec![json!({"id": 1, "qty": "7"})]
    );
}

#[tokio::test]
async fn a_key_change_on_an_existing_table_is_an_error() {
    let db = pg_testkit::cluster().create_database().await;
    let s = |keys: &[&str]| {
        schema(
            "public-e",
            json!({"id": {"type": "integer"}, "k2": {"type": "integer"}}),
            keys,
        )
    };
    run(&db, json!({}), &lines(&[s(&["id"])])).success();
    let msg = run(&db, json!({}), &lines(&[s(&["id", "k2"])])).failure();
    assert!(
        msg.contains("stream public-e, line 1")
            && msg.contains(
                "has primary key [\"id\"] but the stream's key_properties are [\"id\", \"k2\"]"
            ),
        "{msg}"
    );
}

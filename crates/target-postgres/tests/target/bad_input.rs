//! Bad input: each case names the line, the stream and what is wrong, and
//! prints no state past it.

use serde_json::json;

use crate::*;

async fn fails_with(extra: serde_json::Value, input: &str, expected: &[&str]) {
    let db = pg_testkit::cluster().create_database().await;
    let msg = run(&db, extra, input).failure();
    for e in expected {
        assert!(msg.contains(e), "{e:?} not in {msg:?}");
    }
}

#[tokio::test]
async fn invalid_json_names_the_line() {
    let input = format!("{}\n\n{{\"type\": \"RECORD\", nope}}\n", id_name_schema());
    fails_with(json!({}), &input, &["line 3", "invalid JSON"]).await;
}

#[tokio::test]
async fn a_record_before_its_schema() {
    let input = lines(&[record("public-t", json!({"id": 1}))]);
    fails_with(
        json!({}),
        &input,
        &["line 1", "RECORD for stream public-t before any SCHEMA"],
    )
    .await;
}

#[tokio::test]
async fn a_schema_without_key_properties() {
    let input = lines(&[
        id_name_schema(),
        json!({"type": "SCHEMA", "stream": "public-u", "schema": {"properties": {}}}),
    ]);
    fails_with(
        json!({}),
        &input,
        &[
            "stream public-u, line 2",
            "no key_properties",
            "primary_key_required",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_key_property_missing_from_a_record() {
    let input = lines(&[id_name_schema(), record("public-t", json!({"name": "x"}))]);
    fails_with(
        json!({}),
        &input,
        &["stream public-t, line 2", "key property \"id\" is missing"],
    )
    .await;
}

#[tokio::test]
async fn an_unknown_message_type_is_a_warning() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        id_name_schema(),
        json!({"type": "BATCH", "stream": "public-t"}),
        record("public-t", json!({"id": 1, "name": "a"})),
    ]);
    let r = run(&db, json!({}), &input).success();
    assert!(
        r.stderr
            .contains("line 2: ignoring a message of unknown type \"BATCH\""),
        "{}",
        r.stderr
    );
    assert_eq!(
        db.query_json("SELECT id FROM tgt.t").await,
        vec![json!({"id": 1})]
    );
}

#[tokio::test]
async fn a_truncated_last_line() {
    let db = pg_testkit::cluster().create_database().await;
    let mut input = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "a"})),
        state(json!({"s": 1})),
    ]);
    input.push_str(r#"{"type":"RECORD","stream":"public-t","record":{"id":2,"na"#);
    let r = run(&db, json!({}), &input);
    assert_eq!(r.stdout, "");
    let msg = r.failure();
    assert!(msg.contains("line 4") && msg.contains("truncated"), "{msg}");
    assert_eq!(
        db.query_json("SELECT count(*) AS n FROM tgt.t").await,
        vec![json!({"n": 0})]
    );
}

#[tokio::test]
async fn a_value_that_cannot_be_cast_names_column_and_value() {
    let input = lines(&[
        schema(
            "public-d",
            json!({"id": {"type": "integer"}, "day": {"type": "string", "format": "date"}}),
            &["id"],
        ),
        record("public-d", json!({"id": 1, "day": "2024-01-01"})),
        record("public-d", json!({"id": 2, "day": "2024-02-30"})),
    ]);
    fails_with(
        json!({}),
        &input,
        &["stream public-d, line 3, column day", "2024-02-30"],
    )
    .await;
}

#[tokio::test]
async fn a_schema_violation_with_validate_records() {
    let input = lines(&[
        schema(
            "public-v",
            json!({"id": {"type": "integer"}, "qty": {"type": "integer", "minimum": 0}}),
            &["id"],
        ),
        record("public-v", json!({"id": 1, "qty": 1})),
        record("public-v", json!({"id": 2, "qty": -1})),
    ]);
    fails_with(
        json!({"validate_records": true}),
        &input,
        &[
            "stream public-v, line 3, column qty",
            "does not match the schema",
            "-1",
        ],
    )
    .await;
    // Without validation the same input loads.
    let db = pg_testkit::cluster().create_database().await;
    run(&db, json!({}), &input).success();
}

//! Issue #10: hostile or unusual input — values that try to break out of
//! the COPY text, schemas the target cannot load, strings JSON allows but
//! PostgreSQL cannot store, very wide tables, thousands of streams, large
//! states. Each case asserts the exact rows and states.

use serde_json::json;

use crate::*;

const T: &str = "2024-05-01T00:00:00Z";

/// `time_extracted` goes into `_sdc_extracted_at`. A tab in it used to
/// shift the columns and a newline start a new COPY line, so one RECORD
/// could delete key 1 (with hard_delete) and insert key 9 — rows that are
/// not in the input.
#[tokio::test]
async fn time_extracted_cannot_inject_copy_lines() {
    let db = pg_testkit::cluster().create_database().await;
    let cfg = json!({"add_metadata_columns": true, "hard_delete": true});
    let first = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "a"})),
        record("public-t", json!({"id": 3, "name": "c"})),
    ]);
    run(&db, cfg.clone(), &first).success();
    // Staging line: seq, present, id, name, extracted, received, batched,
    // deleted_at, lsn, table_version.
    let crafted = format!(
        "{T}\t{T}\t{T}\t\\N\t\\N\t\\N\n1\t\\N\t1\t\\N\t{T}\t{T}\t{T}\t{T}\t\\N\t\\N\n2\t\\N\t9\tforged\t{T}"
    );
    let second = lines(&[
        id_name_schema(),
        state(json!({"s": 1})),
        json!({"type": "RECORD", "stream": "public-t", "record": {"id": 5, "name": "e"},
               "time_extracted": crafted}),
        state(json!({"s": 2})),
    ]);
    let r = run(&db, cfg.clone(), &second);
    assert_eq!(r.stdout, "{\"s\":1}\n", "no state past the bad line");
    let msg = r.failure();
    assert!(
        msg.contains("stream public-t, line 3") && msg.contains("time_extracted"),
        "{msg}"
    );
    assert_eq!(
        db.query_json("SELECT id, name FROM tgt.t ORDER BY id")
            .await,
        vec![json!({"id": 1, "name": "a"}), json!({"id": 3, "name": "c"})]
    );
    // A valid one with an offset is stored as the instant it names.
    let third = lines(&[
        id_name_schema(),
        json!({"type": "RECORD", "stream": "public-t", "record": {"id": 5, "name": "e"},
               "time_extracted": "2024-05-01T02:00:00.5+02:00"}),
    ]);
    run(&db, cfg, &third).success();
    assert_eq!(
        db.query_json(
            "SELECT id, name, to_char(_sdc_extracted_at AT TIME ZONE 'UTC', \
             'YYYY-MM-DD HH24:MI:SS.MS') AS ex FROM tgt.t ORDER BY id"
        )
        .await,
        vec![
            json!({"id": 1, "name": "a", "ex": null}),
            json!({"id": 3, "name": "c", "ex": null}),
            json!({"id": 5, "name": "e", "ex": "2024-05-01 00:00:00.500"}),
        ]
    );
}

/// A SCHEMA without `properties` used to create a zero-column table; its
/// first RECORD then failed with the server's `syntax error at or near
/// ")"`, naming no line.
#[tokio::test]
async fn a_schema_without_properties_is_rejected_at_its_line() {
    let db = pg_testkit::cluster().create_database().await;
    for (schema, expected) in [
        (json!({"type": "object"}), "has no \"properties\" object"),
        (
            json!({"type": "object", "properties": []}),
            "has no \"properties\" object",
        ),
        (
            json!({"type": "object", "properties": {}}),
            "defines no columns",
        ),
    ] {
        let input = lines(&[
            state(json!({"s": 0})),
            json!({"type": "SCHEMA", "stream": "public-u", "schema": schema, "key_properties": []}),
            record("public-u", json!({"id": 1})),
        ]);
        let r = run(&db, json!({"primary_key_required": false}), &input);
        assert_eq!(r.stdout, "{\"s\":0}\n");
        let msg = r.failure();
        assert!(
            msg.contains("stream public-u, line 2") && msg.contains(expected),
            "{msg}"
        );
    }
    assert_eq!(
        db.query_json("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'tgt'")
            .await,
        vec![json!({"n": 0})]
    );
}

/// A lone surrogate (`"a\ud800b"`) is not a Unicode character, so no
/// PostgreSQL text can hold it. It used to become U+FFFD silently with
/// `validate_records: false` and an error without a column with `true`.
/// Now both fail naming line and column; a valid pair loads exactly, and a
/// property the schema does not have is ignored in both modes.
#[tokio::test]
async fn lone_surrogates_fail_naming_line_and_column_whatever_validate_records() {
    let schema = schema(
        "public-s",
        json!({"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
               "doc": {"type": ["null", "object"]},
               "tags": {"type": ["null", "array"], "items": {"type": "string"}}}),
        &["id"],
    )
    .to_string();
    let rec = |body: &str| format!(r#"{{"type":"RECORD","stream":"public-s","record":{body}}}"#);
    let good = [
        rec(
            r#"{"id":1,"name":"a\ud83d\ude00b","doc":{"k":"\ud83d\ude00"},"tags":["\ud83d\ude00"]}"#,
        ),
        rec(r#"{"id":2,"name":"x","other":"a\ud800b"}"#),
    ];
    for validate in [false, true] {
        let cfg = json!({"validate_records": validate, "batch_size_rows": 2});
        let db = pg_testkit::cluster().create_database().await;
        for (body, column) in [
            (r#"{"id":3,"name":"a\ud800b"}"#, "name"),
            (r#"{"id":3,"name":"a\udc00b"}"#, "name"),
            (r#"{"id":3,"name":"a\ud800\u0041"}"#, "name"),
            (r#"{"id":3,"doc":{"k":"\ud800"}}"#, "doc"),
            (r#"{"id":3,"tags":["\udfff"]}"#, "tags"),
        ] {
            let input = format!(
                "{schema}\n{}\n{}\n{{\"type\":\"STATE\",\"value\":1}}\n{}\n{{\"type\":\"STATE\",\"value\":2}}\n",
                good[0],
                good[1],
                rec(body)
            );
            let r = run(&db, cfg.clone(), &input);
            assert_eq!(r.stdout, "1\n", "validate {validate}, {body}");
            let msg = r.failure();
            assert!(
                msg.contains(&format!("stream public-s, line 5, column {column}"))
                    && msg.contains("lone surrogate"),
                "validate {validate}, {body}: {msg}"
            );
            assert_eq!(
                db.query_json("SELECT id, name, doc, tags FROM tgt.s ORDER BY id")
                    .await,
                vec![
                    json!({"id": 1, "name": "a😀b", "doc": {"k": "😀"}, "tags": ["😀"]}),
                    json!({"id": 2, "name": "x", "doc": null, "tags": null}),
                ],
                "validate {validate}"
            );
        }
    }
}

//! Core loading: tables, types, exact values, upsert and append.

use serde_json::json;

use crate::*;

#[tokio::test]
async fn loads_records_and_prints_the_final_state() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "one"})),
        record("public-t", json!({"id": 2, "name": "two"})),
        state(json!({"bookmarks": {"public-t": {"lsn": 10}}})),
    ]);
    let run = run(&db, json!({}), &input).success();
    assert_eq!(run.stdout, "{\"bookmarks\":{\"public-t\":{\"lsn\":10}}}\n");
    assert_eq!(
        db.query_json("SELECT * FROM tgt.t ORDER BY id").await,
        vec![
            json!({"id": 1, "name": "one"}),
            json!({"id": 2, "name": "two"})
        ]
    );
    let types = db
        .query_json(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE table_schema = 'tgt' AND table_name = 't' ORDER BY ordinal_position",
        )
        .await;
    assert_eq!(
        types,
        vec![
            json!({"column_name": "id", "data_type": "bigint"}),
            json!({"column_name": "name", "data_type": "text"})
        ]
    );
}

#[tokio::test]
async fn values_arrive_exactly() {
    let db = pg_testkit::cluster().create_database().await;
    let props = json!({
        "id": {"type": "integer"},
        "tx": {"type": ["null", "string"]},
        "n": {"type": ["null", "number"]},
        "money": {"type": ["null", "number"], "x-sql-datatype": "numeric(12,2)"},
        "ts": {"type": ["null", "string"], "format": "date-time"},
        "d": {"type": ["null", "string"], "format": "date"},
        "tm": {"type": ["null", "string"], "format": "time"},
        "j": {},
        "ok": {"type": ["null", "boolean"]},
        "arr": {"type": ["null", "array"], "items": {"type": "integer"}, "x-sql-datatype": "integer[]"},
        "tarr": {"type": ["null", "array"], "items": {"type": "string"}, "x-sql-datatype": "text[]"},
        "jarr": {"type": ["null", "array"]},
        "hex": {"type": ["null", "string"], "contentEncoding": "base16", "x-sql-datatype": "bytea"},
        "b64": {"type": ["null", "string"], "contentEncoding": "base64", "x-sql-datatype": "bytea"},
        "mood": {"type": ["null", "string"], "x-sql-datatype": "mood_enum_not_here"},
        "iv": {"type": ["null", "string"], "x-sql-datatype": "interval"}
    });
    // Raw lines, so that the exact digits and escapes are what is sent.
    let input = format!(
        "{}\n{}\n{}\n",
        schema("public-v", props, &["id"]),
        r#"{"type":"RECORD","stream":"public-v","record":{"id":1,"tx":"a\nb\tc\\d\"e\u00e9😀 \r end","n":12345678901234567890.123456789012345,"money":12.50,"ts":"2024-02-29T10:11:12.123456+03:00","d":"2024-02-29","tm":"23:59:59.999999","j":{"k":[1,"x\\y",null],"z":1.10},"ok":false,"arr":[1,null,3],"tarr":["a,b","","NULL","q\"\\"],"jarr":[1,[2]],"hex":"00ff","b64":"AP8=","mood":"happy","iv":"1 day 02:03:04"}}"#,
        r#"{"type":"RECORD","stream":"public-v","record":{"id":2,"tx":"","n":-0.0000001,"money":null,"ts":null,"d":null,"tm":null,"j":"str","ok":true,"arr":[],"tarr":null,"jarr":null,"hex":null,"b64":null,"mood":null,"iv":null}}"#,
    );
    run(&db, json!({}), &input).success();
    let rows = db
        .query_json(
            "SELECT id, tx, n::text AS n, money::text AS money, ts AT TIME ZONE 'UTC' AS ts_utc, \
             d, tm, j, ok, arr, tarr, jarr, hex, b64, mood, iv::text AS iv FROM tgt.v ORDER BY id",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "tx": "a\nb\tc\\d\"eé😀 \r end", "n": "12345678901234567890.123456789012345",
                   "money": "12.50", "ts_utc": "2024-02-29T07:11:12.123456", "d": "2024-02-29",
                   "tm": "23:59:59.999999", "j": serde_json::from_str::<serde_json::Value>(r#"{"k": [1, "x\\y", null], "z": 1.10}"#).unwrap(), "ok": false,
                   "arr": [1, null, 3], "tarr": ["a,b", "", "NULL", "q\"\\"], "jarr": [1, [2]],
                   "hex": "\\x00ff", "b64": "\\x00ff", "mood": "happy", "iv": "1 day 02:03:04"}),
            json!({"id": 2, "tx": "", "n": "-0.0000001", "money": null, "ts_utc": null, "d": null,
                   "tm": null, "j": "str", "ok": true, "arr": [], "tarr": null, "jarr": null,
                   "hex": null, "b64": null, "mood": null, "iv": null}),
        ]
    );
    let types = db
        .query_json(
            "SELECT column_name AS c, format_type(atttypid, atttypmod) AS ty \
             FROM information_schema.columns JOIN pg_attribute \
             ON attrelid = 'tgt.v'::regclass AND attname = column_name \
             WHERE table_schema = 'tgt' AND table_name = 'v' ORDER BY ordinal_position",
        )
        .await;
    let types: Vec<String> = types
        .iter()
        .map(|r| format!("{} {}", r["c"].as_str().unwrap(), r["ty"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            "id bigint",
            "tx text",
            "n numeric",
            "money numeric(12,2)",
            "ts timestamp with time zone",
            "d date",
            "tm time without time zone",
            "j jsonb",
            "ok boolean",
            "arr integer[]",
            "tarr text[]",
            "jarr jsonb",
            "hex bytea",
            "b64 bytea",
            "mood text",
            "iv interval"
        ]
    );
}

#[tokio::test]
async fn upsert_keeps_the_last_record_of_each_key() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "a"})),
        record("public-t", json!({"id": 2, "name": "b"})),
        record("public-t", json!({"id": 1, "name": "c"})),
    ]);
    run(&db, json!({}), &input).success();
    // Again, across batches of 2, over the existing rows.
    let input = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 2, "name": "d"})),
        record("public-t", json!({"id": 3, "name": "e"})),
        record("public-t", json!({"id": 2, "name": "f"})),
    ]);
    run(&db, json!({"batch_size_rows": 2}), &input).success();
    assert_eq!(
        db.query_json("SELECT * FROM tgt.t ORDER BY id").await,
        vec![
            json!({"id": 1, "name": "c"}),
            json!({"id": 2, "name": "f"}),
            json!({"id": 3, "name": "e"})
        ]
    );
}

#[tokio::test]
async fn an_absent_column_keeps_its_value_and_null_writes_null() {
    let db = pg_testkit::cluster().create_database().await;
    let s = schema(
        "public-t",
        json!({"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
               "big": {"type": ["null", "string"]}}),
        &["id"],
    );
    let first = lines(&[
        s.clone(),
        record(
            "public-t",
            json!({"id": 1, "name": "a", "big": "x".repeat(5000)}),
        ),
        record("public-t", json!({"id": 2, "name": "b", "big": "keep"})),
        record("public-t", json!({"id": 3, "name": "c", "big": "gone"})),
    ]);
    run(&db, json!({}), &first).success();
    // LOG_BASED-style updates: `big` absent (unchanged TOAST), or null.
    let second = lines(&[
        s,
        record("public-t", json!({"id": 1, "name": "A"})),
        record("public-t", json!({"id": 2, "big": "new"})),
        record("public-t", json!({"id": 2, "name": "B"})),
        record("public-t", json!({"id": 3, "name": "C", "big": null})),
        record("public-t", json!({"id": 4, "name": "D"})),
    ]);
    run(&db, json!({}), &second).success();
    assert_eq!(
        db.query_json("SELECT id, name, length(big) AS len, CASE WHEN id > 1 THEN big END AS big FROM tgt.t ORDER BY id")
            .await,
        vec![
            json!({"id": 1, "name": "A", "len": 5000, "big": null}),
            json!({"id": 2, "name": "B", "len": 3, "big": "new"}),
            json!({"id": 3, "name": "C", "len": null, "big": null}),
            json!({"id": 4, "name": "D", "len": null, "big": null}),
        ]
    );
}

#[tokio::test]
async fn keyless_streams_and_append_only_append() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        schema("public-log", json!({"msg": {"type": "string"}}), &[]),
        record("public-log", json!({"msg": "x"})),
        record("public-log", json!({"msg": "x"})),
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "a"})),
        record("public-t", json!({"id": 1, "name": "b"})),
    ]);
    let err = run(&db, json!({}), &input).failure();
    assert!(
        err.contains("line 1") && err.contains("primary_key_required"),
        "{err}"
    );
    db.execute_batch("CREATE SCHEMA tgt; CREATE TABLE tgt.t (id bigint, name text)")
        .await;
    run(
        &db,
        json!({"primary_key_required": false, "load_method": "append-only"}),
        &input,
    )
    .success();
    assert_eq!(
        db.query_json("SELECT * FROM tgt.log").await,
        vec![json!({"msg": "x"}), json!({"msg": "x"})]
    );
    assert_eq!(
        db.query_json("SELECT * FROM tgt.t ORDER BY name").await,
        vec![json!({"id": 1, "name": "a"}), json!({"id": 1, "name": "b"})]
    );
}

#[tokio::test]
async fn names_are_kept_and_mapped() {
    let db = pg_testkit::cluster().create_database().await;
    let long = "c".repeat(70);
    let input = lines(&[
        schema(
            "Sales-Order Items",
            json!({"ID": {"type": "integer"}, "select": {"type": "string"},
                   "a \"q\"": {"type": "string"}, long.clone(): {"type": "string"}}),
            &["ID"],
        ),
        record(
            "Sales-Order Items",
            json!({"ID": 1, "select": "s", "a \"q\"": "q", long.clone(): "l"}),
        ),
    ]);
    run(
        &db,
        json!({"schema_mapping": {"Sales": {"target_schema": "Mapped Schema"}}}),
        &input,
    )
    .success();
    let rows = db
        .query_json(r#"SELECT * FROM "Mapped Schema"."Order Items""#)
        .await;
    let short = format!("{}_", "c".repeat(54));
    let row = rows[0].as_object().unwrap();
    assert_eq!(row["ID"], json!(1));
    assert_eq!(row["select"], json!("s"));
    assert_eq!(row["a \"q\""], json!("q"));
    let (name, value) = row.iter().next_back().unwrap();
    assert!(name.starts_with(&short) && name.len() == 63, "{name}");
    assert_eq!(value, &json!("l"));
}

#[tokio::test]
async fn target_table_receives_every_stream() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        schema(
            "public-a",
            json!({"id": {"type": "integer"}, "x": {"type": "string"}}),
            &["id"],
        ),
        schema(
            "other-b",
            json!({"id": {"type": "integer"}, "y": {"type": "string"}}),
            &["id"],
        ),
        record("public-a", json!({"id": 1, "x": "a"})),
        record("other-b", json!({"id": 2, "y": "b"})),
    ]);
    run(&db, json!({"target_table": "all_in_one"}), &input).success();
    assert_eq!(
        db.query_json("SELECT * FROM tgt.all_in_one ORDER BY id")
            .await,
        vec![
            json!({"id": 1, "x": "a", "y": null}),
            json!({"id": 2, "x": null, "y": "b"})
        ]
    );
}

#[tokio::test]
async fn reads_input_file_and_a_file_on_stdin() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        id_name_schema(),
        record("public-t", json!({"id": 1, "name": "one"})),
        state(json!({"s": 1})),
    ]);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, input.as_bytes()).unwrap();
    let cfg = config(&db, json!({}));
    for use_stdin in [false, true] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_target-postgres"));
        cmd.arg("--config").arg(cfg.path());
        if use_stdin {
            cmd.stdin(std::fs::File::open(file.path()).unwrap());
        } else {
            cmd.arg("--input")
                .arg(file.path())
                .stdin(std::process::Stdio::null());
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "{\"s\":1}\n");
    }
    assert_eq!(
        db.query_json("SELECT * FROM tgt.t").await,
        vec![json!({"id": 1, "name": "one"})]
    );
}

#[tokio::test]
async fn nul_characters_fail_or_are_replaced() {
    let db = pg_testkit::cluster().create_database().await;
    let input = format!(
        "{}\n{}\n",
        schema(
            "public-t",
            json!({"id": {"type": "integer"}, "name": {"type": "string"}, "j": {}}),
            &["id"]
        ),
        r#"{"type":"RECORD","stream":"public-t","record":{"id":1,"name":"a\u0000b","j":{"k":"\u0000"}}}"#
    );
    let err = run(&db, json!({}), &input).failure();
    assert!(
        err.contains("stream public-t, line 2, column name") && err.contains("NUL"),
        "{err}"
    );
    let run = run(&db, json!({"nul_characters": "replace"}), &input).success();
    assert!(run.stderr.contains("replaced 1 NUL"), "{}", run.stderr);
    assert_eq!(
        db.query_json("SELECT * FROM tgt.t").await,
        vec![json!({"id": 1, "name": "a\u{fffd}b", "j": {"k": "\u{fffd}"}})]
    );
}

/// Issue 11: the unions other taps write for optional fields land natively
/// typed (MeltanoLabs' own `test_anyof` stream among them), and a property
/// carrying JSON text in strings (`contentMediaType: application/json`, our
/// tap's form after a JSON `null`) keeps JSON null apart from SQL NULL.
#[tokio::test]
async fn unions_unwrap_and_json_text_keeps_json_null() {
    let db = pg_testkit::cluster().create_database().await;
    let props = json!({
        "id": {"type": "integer"},
        "ts": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]},
        "s": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "i": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "n": {"oneOf": [{"type": "integer"}, {"type": "number"}, {"type": "null"}]},
        "d": {"anyOf": [{"type": ["string", "null"], "format": "date"}]},
        "mixed": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "j": {"type": ["null", "string"], "contentMediaType": "application/json", "x-sql-datatype": "jsonb"}
    });
    let input = format!(
        "{}\n{}\n{}\n",
        schema("public-u", props, &["id"]),
        r#"{"type":"RECORD","stream":"public-u","record":{"id":1,"ts":"2024-02-29T10:11:12.5+00:00","s":"x","i":9223372036854775807,"n":1.10,"d":"2024-02-29","mixed":"a","j":"null"}}"#,
        r#"{"type":"RECORD","stream":"public-u","record":{"id":2,"ts":null,"s":null,"i":null,"n":3,"d":null,"mixed":5,"j":"{\"a\": [1, \"x\"]}"}}"#,
    );
    run(&db, json!({}), &input).success();
    let types = db
        .query_json(
            "SELECT attname AS c, format_type(atttypid, atttypmod) AS ty FROM pg_attribute \
             WHERE attrelid = 'tgt.u'::regclass AND attnum > 0 ORDER BY attnum",
        )
        .await;
    let types: Vec<String> = types
        .iter()
        .map(|r| format!("{} {}", r["c"].as_str().unwrap(), r["ty"].as_str().unwrap()))
        .collect();
    assert_eq!(
        types,
        [
            "id bigint",
            "ts timestamp with time zone",
            "s text",
            "i bigint",
            "n numeric",
            "d date",
            "mixed jsonb",
            "j jsonb"
        ]
    );
    let rows = db
        .query_json(
            "SELECT id, ts AT TIME ZONE 'UTC' AS ts, s, i::text AS i, n::text AS n, d, mixed, \
             j::text AS j, j IS NULL AS j_sql_null FROM tgt.u ORDER BY id",
        )
        .await;
    assert_eq!(
        rows,
        vec![
            json!({"id": 1, "ts": "2024-02-29T10:11:12.5", "s": "x", "i": "9223372036854775807",
                   "n": "1.10", "d": "2024-02-29", "mixed": "a", "j": "null", "j_sql_null": false}),
            json!({"id": 2, "ts": null, "s": null, "i": null, "n": "3", "d": null, "mixed": 5,
                   "j": "{\"a\": [1, \"x\"]}", "j_sql_null": false}),
        ]
    );
}

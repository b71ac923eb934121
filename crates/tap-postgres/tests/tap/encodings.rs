//! Every type of the encodings table, with its edge values, through a real
//! FULL_TABLE run: the exact text of the RECORD and SCHEMA lines.

use pg_testkit::cluster;
use serde_json::json;

use crate::support::{config, discover, select, sync, Files};

pub const TABLE: &str = r#"
CREATE EXTENSION hstore;
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN positive AS numeric(10,2) CHECK (VALUE > 0);
CREATE TABLE t (
  id int PRIMARY KEY,
  c_small smallint, c_big bigint, c_num numeric(12,2), c_numx numeric,
  c_real real, c_double double precision, c_bool boolean,
  c_text text, c_vc varchar(5), c_ch char(4), c_uuid uuid,
  c_json json, c_jsonb jsonb, c_hstore hstore, c_bytea bytea,
  c_date date, c_ts timestamp, c_tstz timestamptz, c_time time, c_timetz timetz,
  c_interval interval, c_mood mood, c_dom positive, c_inet inet, c_money money,
  c_bit bit(3), c_varbit varbit, c_point point, c_range int4range, c_xml xml, c_tsv tsvector,
  c_ints int[], c_texts text[], c_nums numeric[], c_tstzs timestamptz[], c_jsonbs jsonb[]
);
INSERT INTO t VALUES
 (1, -32768, 9223372036854775807, 1234567890.12, 123456789012345678901234567890.123456789012,
  1.5, 0.1, true,
  E'tab\there\nnewline "quote" back\\slash \u00e9\u0001', 'abc', 'ab', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, 2.50], "b": "x"}', '{"k": 1.10}', 'a=>1, "b c"=>NULL', '\x00ff10',
  '2024-02-29', '2024-02-29 10:11:12.123456', '2024-02-29 10:11:12.5+05:30', '24:00:00', '10:11:12.345+03',
  '1 year 2 mons 3 days 04:05:06.5', 'happy', 5.5, '192.168.0.1/24', 12.34,
  B'101', B'1', '(1.5,2)', '[1,5)', '<a>x</a>', 'fat cat',
  '{{1,2},{3,NULL}}', '{"a b",NULL,"","NULL","q\"x"}', '{1.10,NaN}', '{"2024-01-01 00:00:00+00",infinity}',
  ARRAY['{"a":1}'::jsonb, NULL]),
 (2, NULL, NULL, NULL, 'NaN', 'Infinity', '-Infinity', false,
  '', '', '', NULL, 'null', '"str"', '', '\x',
  '0044-03-15 BC', 'infinity', '-infinity', '00:00:00', '00:00:00-08:00',
  '-1 days', NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'empty', NULL, NULL,
  '{}', NULL, NULL, NULL, NULL),
 (3, 0, -9223372036854775808, -0.01, '-Infinity', '-0', 1e300, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '10000-01-01', '10000-01-01 00:00:00', '0001-01-01 00:00:00+00 BC', '23:59:59.999999', '23:59:59.999999+14:59',
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  '[0:1]={7,8}', NULL, NULL, NULL, NULL);
"#;

#[tokio::test]
async fn every_type_gives_its_exact_json() {
    let db = cluster().create_database().await;
    db.execute_batch(TABLE).await;
    let files = Files::new();
    let cfg = config(&db, json!({}));
    let catalog = discover(&files, &cfg);
    let run = sync(
        &files,
        &cfg,
        &select(&catalog, &[("public-t", "FULL_TABLE", None)]),
        None,
    );
    assert!(run.output.status.success(), "{}", run.stderr);
    let expected = [
        concat!(
            r#"{"id":1,"c_small":-32768,"c_big":9223372036854775807,"c_num":1234567890.12,"#,
            r#""c_numx":123456789012345678901234567890.123456789012,"c_real":1.5,"c_double":0.1,"c_bool":true,"#,
            r#""c_text":"tab\there\nnewline \"quote\" back\\slash é\u0001","c_vc":"abc","c_ch":"ab  ","#,
            r#""c_uuid":"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11","c_json":{"a": [1, 2.50], "b": "x"},"#,
            r#""c_jsonb":{"k": 1.10},"c_hstore":{"a":"1","b c":null},"c_bytea":"00ff10","#,
            r#""c_date":"2024-02-29","c_ts":"2024-02-29T10:11:12.123456+00:00","#,
            r#""c_tstz":"2024-02-29T04:41:12.5+00:00","c_time":"24:00:00","c_timetz":"10:11:12.345+03:00","#,
            r#""c_interval":"1 year 2 mons 3 days 04:05:06.5","c_mood":"happy","c_dom":5.50,"#,
            r#""c_inet":"192.168.0.1/24","c_money":"$12.34","c_bit":"101","c_varbit":"1","c_point":"(1.5,2)","#,
            r#""c_range":"[1,5)","c_xml":"<a>x</a>","c_tsv":"'cat' 'fat'","c_ints":[[1,2],[3,null]],"#,
            r#""c_texts":["a b",null,"","NULL","q\"x"],"c_nums":[1.10,"NaN"],"#,
            r#""c_tstzs":["2024-01-01T00:00:00+00:00","infinity"],"c_jsonbs":[{"a": 1},null]}"#
        ),
        concat!(
            r#"{"id":2,"c_small":null,"c_big":null,"c_num":null,"c_numx":"NaN","c_real":"Infinity","#,
            r#""c_double":"-Infinity","c_bool":false,"c_text":"","c_vc":"","c_ch":"    ","c_uuid":null,"#,
            r#""c_json":"null","c_jsonb":"str","c_hstore":{},"c_bytea":"","c_date":"0044-03-15 BC","#,
            r#""c_ts":"infinity","c_tstz":"-infinity","c_time":"00:00:00","c_timetz":"00:00:00-08:00","#,
            r#""c_interval":"-1 days","c_mood":null,"c_dom":null,"c_inet":null,"c_money":null,"c_bit":null,"#,
            r#""c_varbit":null,"c_point":null,"c_range":"empty","c_xml":null,"c_tsv":null,"c_ints":[],"#,
            r#""c_texts":null,"c_nums":null,"c_tstzs":null,"c_jsonbs":null}"#
        ),
        concat!(
            r#"{"id":3,"c_small":0,"c_big":-9223372036854775808,"c_num":-0.01,"c_numx":"-Infinity","#,
            r#""c_real":-0.0,"c_double":1e+300,"c_bool":null,"c_text":null,"c_vc":null,"c_ch":null,"#,
            r#""c_uuid":null,"c_json":null,"c_jsonb":null,"c_hstore":null,"c_bytea":null,"#,
            r#""c_date":"10000-01-01","c_ts":"10000-01-01T00:00:00+00:00","#,
            r#""c_tstz":"0001-01-01T00:00:00+00:00 BC","c_time":"23:59:59.999999","#,
            r#""c_timetz":"23:59:59.999999+14:59","c_interval":null,"c_mood":null,"c_dom":null,"#,
            r#""c_inet":null,"c_money":null,"c_bit":null,"c_varbit":null,"c_point":null,"c_range":null,"#,
            r#""c_xml":null,"c_tsv":null,"c_ints":[7,8],"c_texts":null,"c_nums":null,"c_tstzs":null,"c_jsonbs":null}"#
        ),
    ];
    assert_eq!(run.raw_records(), expected);
    assert!(!run.stderr.contains("JSON literal null"), "{}", run.stderr);

    // Narrow first; widened just before the first record that needs it.
    let kinds: Vec<String> = run
        .messages()
        .iter()
        .map(|m| m["type"].as_str().unwrap().to_string())
        .filter(|t| t == "SCHEMA" || t == "RECORD")
        .collect();
    assert_eq!(
        kinds,
        ["SCHEMA", "SCHEMA", "RECORD", "SCHEMA", "RECORD", "RECORD"]
    );
    let schemas = run.of_type("SCHEMA");
    let widened = &schemas[2]["schema"]["properties"];
    let wide = [
        (
            "c_numx",
            json!({"type": ["null", "number", "string"], "x-sql-datatype": "numeric"}),
        ),
        (
            "c_json",
            json!({"type": ["null", "string"], "contentMediaType": "application/json", "x-sql-datatype": "json"}),
        ),
        (
            "c_date",
            json!({"type": ["null", "string"], "x-sql-datatype": "date"}),
        ),
        (
            "c_ints",
            json!({"type": ["null", "array"], "items": {"type": ["null", "integer", "array"], "minimum": -2147483648i64, "maximum": 2147483647, "items": {}}, "x-sql-datatype": "integer[]"}),
        ),
        (
            "c_tstzs",
            json!({"type": ["null", "array"], "items": {"type": ["null", "string"]}, "x-sql-datatype": "timestamp with time zone[]"}),
        ),
        // Nothing needed more: still narrow.
        (
            "c_num",
            json!({"type": ["null", "number"], "x-sql-datatype": "numeric(12,2)"}),
        ),
    ];
    for (name, expected) in wide {
        assert_eq!(widened[name], expected, "widened {name}");
    }

    let schema = &schemas[0];
    assert_eq!(schema["key_properties"], json!(["id"]));
    let props = &schema["schema"]["properties"];
    let cases = [
        (
            "id",
            json!({"type": ["integer"], "minimum": -2147483648i64, "maximum": 2147483647, "x-sql-datatype": "integer"}),
        ),
        (
            "c_small",
            json!({"type": ["null", "integer"], "minimum": -32768, "maximum": 32767, "x-sql-datatype": "smallint"}),
        ),
        (
            "c_num",
            json!({"type": ["null", "number"], "x-sql-datatype": "numeric(12,2)"}),
        ),
        (
            "c_vc",
            json!({"type": ["null", "string"], "maxLength": 5, "x-sql-datatype": "character varying(5)"}),
        ),
        (
            "c_ch",
            json!({"type": ["null", "string"], "maxLength": 4, "x-sql-datatype": "character(4)"}),
        ),
        (
            "c_uuid",
            json!({"type": ["null", "string"], "format": "uuid", "x-sql-datatype": "uuid"}),
        ),
        (
            "c_jsonb",
            json!({"type": ["null", "object", "array", "string", "number", "boolean"], "items": {}, "x-sql-datatype": "jsonb"}),
        ),
        (
            "c_hstore",
            json!({"type": ["null", "object"], "additionalProperties": {"type": ["null", "string"]}, "x-sql-datatype": "hstore"}),
        ),
        (
            "c_bytea",
            json!({"type": ["null", "string"], "contentEncoding": "base16", "x-sql-datatype": "bytea"}),
        ),
        (
            "c_date",
            json!({"type": ["null", "string"], "format": "date", "x-sql-datatype": "date"}),
        ),
        (
            "c_tstz",
            json!({"type": ["null", "string"], "format": "date-time", "x-sql-datatype": "timestamp with time zone"}),
        ),
        (
            "c_timetz",
            json!({"type": ["null", "string"], "x-sql-datatype": "time with time zone"}),
        ),
        (
            "c_interval",
            json!({"type": ["null", "string"], "x-sql-datatype": "interval"}),
        ),
        (
            "c_mood",
            json!({"type": ["null", "string"], "x-sql-datatype": "mood"}),
        ),
        (
            "c_dom",
            json!({"type": ["null", "number"], "x-sql-datatype": "numeric(10,2)"}),
        ),
        (
            "c_ints",
            json!({"type": ["null", "array"], "items": {"type": ["null", "integer"], "minimum": -2147483648i64, "maximum": 2147483647}, "x-sql-datatype": "integer[]"}),
        ),
        (
            "c_tstzs",
            json!({"type": ["null", "array"], "items": {"type": ["null", "string"], "format": "date-time"}, "x-sql-datatype": "timestamp with time zone[]"}),
        ),
        (
            "c_time",
            json!({"type": ["null", "string"], "x-sql-datatype": "time without time zone"}),
        ),
    ];
    for (name, expected) in cases {
        assert_eq!(props[name], expected, "{name}");
    }
}

#[tokio::test]
async fn value_policies_null_error_base64_and_decimal_strings() {
    let db = cluster().create_database().await;
    db.execute_batch(
        "CREATE TABLE p (id int PRIMARY KEY, f float8, n numeric, d date, b bytea);
         INSERT INTO p VALUES (1, 'NaN', 'Infinity', 'infinity', '\\x00ff'), (2, 2.5, 3.50, '2024-01-01', NULL);",
    )
    .await;
    let files = Files::new();
    let opts = json!({"special_numbers": "null", "out_of_range_dates": "null",
        "bytea_encoding": "base64", "decimal_as_string": "true"});
    let cfg = config(&db, opts);
    let catalog = discover(&files, &cfg);
    let run = sync(
        &files,
        &cfg,
        &select(&catalog, &[("public-p", "FULL_TABLE", None)]),
        None,
    );
    assert!(run.output.status.success(), "{}", run.stderr);
    assert_eq!(
        run.raw_records(),
        [
            r#"{"id":1,"f":null,"n":null,"d":null,"b":"AP8="}"#,
            r#"{"id":2,"f":2.5,"n":"3.50","d":"2024-01-01","b":null}"#
        ]
    );
    assert!(
        run.stderr
            .contains("stream public-p: 2 NaN/Infinity values written as null"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("stream public-p: 1 out-of-range dates written as null"),
        "{}",
        run.stderr
    );
    let props = &run.of_type("SCHEMA")[0]["schema"]["properties"];
    assert_eq!(props["f"]["type"], json!(["null", "number"]));
    assert_eq!(
        props["n"],
        json!({"type": ["null", "string"], "format": "x-singer.decimal", "x-sql-datatype": "numeric"})
    );
    assert_eq!(props["b"]["contentEncoding"], "base64");

    let cfg = config(&db, json!({"out_of_range_dates": "error"}));
    let run = sync(
        &files,
        &cfg,
        &select(&catalog, &[("public-p", "FULL_TABLE", None)]),
        None,
    );
    assert_eq!(run.output.status.code(), Some(1));
    assert!(
        run.stderr.contains(
            r#"stream public-p: column "d": "infinity" is outside RFC 3339 (out_of_range_dates: error)"#
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.raw_records().is_empty(),
        "nothing of the failing row is written"
    );
}

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

/// The widest table PostgreSQL allows (1,600 columns) loads on every path:
/// complete records (fast merge), records lacking columns (slow merge,
/// which used to need three target-list entries per column, past the
/// 1,664 limit from 555 columns), and a rerun of the same batch. The
/// staging table used to add two columns, so 1,599 could never load.
#[tokio::test]
async fn a_1600_column_table_loads_on_every_path_and_reruns() {
    let db = pg_testkit::cluster().create_database().await;
    let mut props = serde_json::Map::new();
    props.insert("id".into(), json!({"type": "integer"}));
    for i in 1..1600 {
        props.insert(format!("p{i}"), json!({"type": ["null", "string"]}));
    }
    let full = |id: i64, tag: &str| {
        let mut r = serde_json::Map::new();
        r.insert("id".into(), json!(id));
        for i in 1..1600 {
            // Short values: a row of 1,600 columns must fit in a page.
            r.insert(format!("p{i}"), json!(format!("{tag}{}", i % 10)));
        }
        record("public-w", serde_json::Value::Object(r))
    };
    let schema = schema("public-w", serde_json::Value::Object(props), &["id"]);
    let complete = lines(&[schema.clone(), full(1, "a"), full(2, "a"), state(json!(1))]);
    let partial = lines(&[
        schema,
        full(3, "c"),
        record("public-w", json!({"id": 1, "p1": "b", "p1599": null})),
        record("public-w", json!({"id": 4, "p2": "new"})),
        record("public-w", json!({"id": 1, "p3": "b3"})),
        state(json!(2)),
    ]);
    let check = || async {
        db.query_json(
            "SELECT id, p1, p2, p3, p1598, p1599, \
             (SELECT count(*) FROM jsonb_each(to_jsonb(w)) WHERE value <> 'null') AS non_null \
             FROM tgt.w ORDER BY id",
        )
        .await
    };
    assert_eq!(run(&db, json!({}), &complete).success().stdout, "1\n");
    for _ in 0..2 {
        assert_eq!(run(&db, json!({}), &partial).success().stdout, "2\n");
        assert_eq!(
            check().await,
            vec![
                json!({"id": 1, "p1": "b", "p2": "a2", "p3": "b3", "p1598": "a8",
                       "p1599": null, "non_null": 1599}),
                json!({"id": 2, "p1": "a1", "p2": "a2", "p3": "a3", "p1598": "a8",
                       "p1599": "a9", "non_null": 1600}),
                json!({"id": 3, "p1": "c1", "p2": "c2", "p3": "c3", "p1598": "c8",
                       "p1599": "c9", "non_null": 1600}),
                json!({"id": 4, "p1": null, "p2": "new", "p3": null, "p1598": null,
                       "p1599": null, "non_null": 2}),
            ]
        );
    }
}

/// The slow merge (some record lacks a column) keeps array columns whole:
/// the newest value that is present wins, also a 2-D array or a NULL.
#[tokio::test]
async fn the_slow_merge_keeps_array_columns_exact() {
    let db = pg_testkit::cluster().create_database().await;
    let input = lines(&[
        schema(
            "public-a",
            json!({"id": {"type": "integer"}, "name": {"type": ["null", "string"]},
                   "arr": {"type": ["null", "array"], "items": {"type": "integer"},
                           "x-sql-datatype": "integer[]"}}),
            &["id"],
        ),
        record(
            "public-a",
            json!({"id": 1, "name": "a", "arr": [[1, 2], [3, 4]]}),
        ),
        record("public-a", json!({"id": 1, "name": "b"})),
        record("public-a", json!({"id": 2, "arr": [5]})),
        record("public-a", json!({"id": 2, "arr": null, "name": "c"})),
    ]);
    run(&db, json!({}), &input).success();
    assert_eq!(
        db.query_json("SELECT id, name, arr::text AS arr FROM tgt.a ORDER BY id")
            .await,
        vec![
            json!({"id": 1, "name": "b", "arr": "{{1,2},{3,4}}"}),
            json!({"id": 2, "name": "c", "arr": null}),
        ]
    );
}

/// Thousands of streams used to slow down quadratically: each stream kept
/// an `ON COMMIT DELETE ROWS` temp staging table for the whole run, and
/// every commit truncated all of them. Now a staging table lives only in
/// its batch's transaction. Checked structurally while the target is still
/// running (its input open): after 200 streams' batches are committed and
/// their states printed, no temp table of this database is alive, and each
/// stream took one load.
#[tokio::test]
async fn hundreds_of_streams_leave_no_staging_tables_alive() {
    use std::io::{BufRead as _, Write as _};
    use std::process::Stdio;
    const STREAMS: usize = 200;
    let db = pg_testkit::cluster().create_database().await;
    let cfg = config(&db, json!({"batch_size_rows": 3}));
    let mut child = target_command(cfg.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut m = Vec::new();
    for s in 0..STREAMS {
        let stream = format!("public-t{s}");
        m.push(schema(
            &stream,
            json!({"id": {"type": "integer"}, "v": {"type": "string"}}),
            &["id"],
        ));
        for id in 0..3 {
            m.push(record(&stream, json!({"id": id, "v": format!("{s}-{id}")})));
        }
        m.push(state(json!({"done": s})));
    }
    let mut stderr = child.stderr.take().unwrap();
    let logs = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
        s
    });
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines(&m).as_bytes()).unwrap();
    stdin.flush().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut states = 0;
    let mut line = String::new();
    while out.read_line(&mut line).unwrap() > 0 {
        assert_eq!(line.trim_end(), json!({"done": states}).to_string());
        states += 1;
        line.clear();
        if states == STREAMS {
            break;
        }
    }
    assert_eq!(states, STREAMS);
    // Still running, every batch committed.
    assert_eq!(
        db.query_json(
            "SELECT count(*) AS n FROM pg_class WHERE relpersistence = 't' AND relkind = 'r'"
        )
        .await,
        vec![json!({"n": 0})]
    );
    drop(stdin);
    let stderr = logs.join().unwrap();
    assert!(child.wait().unwrap().success(), "{stderr}");
    assert_eq!(
        stderr.matches(": loaded 3 record(s) of lines").count(),
        STREAMS
    );
    assert_eq!(
        db.query_json(
            "SELECT count(*) AS tables, sum((xpath('/row/n/text()', query_to_xml(\
             format('SELECT count(*) AS n FROM tgt.%I', tablename), false, true, '')))[1]\
             ::text::int) AS rows FROM pg_tables WHERE schemaname = 'tgt'"
        )
        .await,
        vec![json!({"tables": STREAMS, "rows": STREAMS * 3})]
    );
}

/// Runs the target on `input` (with `batch_flush_interval: 1` and the
/// input left open) until it prints a state with `"n": last`, reads its
/// peak RSS (VmHWM, KiB) while it is still running, then ends the input.
/// Returns the states' `n` and the peak.
fn run_measured(
    db: &pg_testkit::TestDb,
    mut extra: serde_json::Value,
    input: String,
    last: i64,
) -> (Vec<i64>, u64) {
    use std::io::{BufRead as _, Write as _};
    use std::process::Stdio;
    extra["batch_flush_interval"] = json!(1);
    let cfg = config(db, extra);
    let mut child = target_command(cfg.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).unwrap();
        stdin
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            let _ = tx.send(v["n"].as_i64().unwrap());
        }
    });
    let mut printed = Vec::new();
    while printed.last() != Some(&last) {
        let n = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the last state within 60 s");
        printed.push(n);
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix(" kB"))
        .unwrap()
        .parse()
        .unwrap();
    drop(writer.join().unwrap());
    assert!(child.wait().unwrap().success());
    (printed, peak)
}

/// Waiting states used to be bounded only by count (4,096): with 150 kB
/// states that was 610 MiB behind one open batch. Now a state replaces a
/// waiting one that needs the same batches, and waiting states count in
/// `max_buffer_bytes` (superseded ones are shed first). 201 states of
/// 200 kB (40 MB) pass through in bounded memory, the states printed are
/// in order and end with the last one, and every row is loaded.
#[tokio::test]
async fn big_waiting_states_are_bounded_by_max_buffer_bytes() {
    let streams = ["public-a", "public-b", "public-c"];
    let mut m: Vec<serde_json::Value> = streams
        .iter()
        .map(|s| schema(s, json!({"id": {"type": "integer"}}), &["id"]))
        .collect();
    let pad = "x".repeat(200_000);
    for i in 0..201 {
        m.push(record(streams[i % 3], json!({"id": i})));
        m.push(state(json!({"n": i, "pad": pad})));
    }
    let input = lines(&m);
    for extra in [
        json!({}),
        json!({"max_buffer_bytes": 1_000_000, "batch_size_rows": 7}),
    ] {
        let db = pg_testkit::cluster().create_database().await;
        let (printed, peak_kib) = run_measured(&db, extra.clone(), input.clone(), 200);
        assert!(
            printed.windows(2).all(|w| w[0] < w[1]),
            "{extra}: {printed:?}"
        );
        assert_eq!(printed.last(), Some(&200), "{extra}");
        assert!(peak_kib < 40 * 1024, "{extra}: peak RSS {peak_kib} KiB");
        let counts = db
            .query_json(
                "SELECT (SELECT count(*) FROM tgt.a) AS a, (SELECT count(*) FROM tgt.b) AS b, \
                 (SELECT count(*) FROM tgt.c) AS c",
            )
            .await;
        assert_eq!(counts, vec![json!({"a": 67, "b": 67, "c": 67})], "{extra}");
    }
}

use serde_json::json;
use singer::{ErrorKind, Message, MessageRef, MessageType, RecordMessage, TimeExtracted};

fn record(line: &str) -> singer::RecordRef<'_> {
    match MessageRef::parse(line).unwrap() {
        MessageRef::Record(r) => r,
        other => panic!("not a record: {other:?}"),
    }
}

#[test]
fn type_is_case_insensitive() {
    for t in ["RECORD", "record", "Record", "rEcOrD"] {
        let line = format!(r#"{{"type":"{t}","stream":"s","record":{{"a":1}}}}"#);
        let m = MessageRef::parse(&line).unwrap();
        assert_eq!(m.message_type(), Some(MessageType::Record), "{t}");
    }
    let m = MessageRef::parse(r#"{"type":"activate_version","stream":"s","version":3}"#).unwrap();
    assert_eq!(m.message_type(), Some(MessageType::ActivateVersion));
}

#[test]
fn unknown_type_is_reported_not_an_error() {
    let m = MessageRef::parse(r#"{"type":"BATCH","stream":"s","encoding":{"format":"jsonl"}}"#)
        .unwrap();
    match m {
        MessageRef::Unknown { type_name } => assert_eq!(type_name, "BATCH"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        Message::parse(r#"{"type":"Batch"}"#).unwrap(),
        Message::Unknown {
            type_name: "Batch".into()
        }
    );
}

#[test]
fn record_is_borrowed_raw_and_exact() {
    let line = r#"{"stream":"public-t","record": {"n":12345678901234567890.000001,"s":"x"} ,"type":"RECORD","version":1795458828761,"time_extracted":"2026-11-23T18:33:48.761494Z","extra":[1]}"#;
    let r = record(line);
    assert!(matches!(r.stream, std::borrow::Cow::Borrowed("public-t")));
    assert_eq!(
        r.record.get(),
        r#"{"n":12345678901234567890.000001,"s":"x"}"#
    );
    assert_eq!(r.version, Some(1795458828761));
    assert_eq!(
        r.time_extracted_utc().unwrap().unwrap().to_rfc3339(),
        "2026-11-23T18:33:48.761494+00:00"
    );
}

#[test]
fn record_stream_with_escapes_is_unescaped() {
    let r = record(r#"{"type":"RECORD","stream":"a\"b\u00e9","record":{}}"#);
    assert_eq!(r.stream, "a\"b\u{e9}");
    assert_eq!(r.version, None);
    assert!(r.time_extracted.is_none());
}

#[test]
fn null_optional_fields_are_absent() {
    let r = record(
        r#"{"type":"RECORD","stream":"s","record":{},"version":null,"time_extracted":null}"#,
    );
    assert_eq!(r.version, None);
    assert!(r.time_extracted.is_none());
}

#[test]
fn field_errors_name_the_field() {
    let cases = [
        (
            r#"{"stream":"s"}"#,
            ErrorKind::MissingField,
            r#"message is missing field "type""#,
        ),
        (
            r#"{"type":1}"#,
            ErrorKind::WrongType,
            r#"field "type" must be a string"#,
        ),
        (
            r#"{"type":"RECORD","record":{}}"#,
            ErrorKind::MissingField,
            r#"RECORD is missing field "stream""#,
        ),
        (
            r#"{"type":"record","stream":"s"}"#,
            ErrorKind::MissingField,
            r#"RECORD is missing field "record""#,
        ),
        (
            r#"{"type":"RECORD","stream":7,"record":{}}"#,
            ErrorKind::WrongType,
            r#"field "stream" must be a string"#,
        ),
        (
            r#"{"type":"RECORD","stream":"s","record":[1]}"#,
            ErrorKind::WrongType,
            r#"field "record" must be a JSON object"#,
        ),
        (
            r#"{"type":"RECORD","stream":"s","record":{},"version":1.5}"#,
            ErrorKind::WrongType,
            r#"field "version" must be an integer"#,
        ),
        (
            r#"{"type":"RECORD","stream":"s","stream":"t","record":{}}"#,
            ErrorKind::InvalidValue,
            r#"RECORD has field "stream" more than once"#,
        ),
        (
            r#"{"type":"STATE"}"#,
            ErrorKind::MissingField,
            r#"STATE is missing field "value""#,
        ),
        (
            r#"{"type":"SCHEMA","stream":"s","schema":{},"key_properties":"id"}"#,
            ErrorKind::WrongType,
            r#"field "key_properties" must be an array of strings"#,
        ),
        (
            r#"{"type":"SCHEMA","stream":"s","schema":{},"bookmark_properties":[1]}"#,
            ErrorKind::WrongType,
            r#"field "bookmark_properties" must be a string or an array of strings"#,
        ),
        (
            r#"{"type":"SCHEMA","stream":"s","schema":"x"}"#,
            ErrorKind::WrongType,
            r#"field "schema" must be a JSON object"#,
        ),
        (
            r#"{"type":"SCHEMA","stream":"s"}"#,
            ErrorKind::MissingField,
            r#"SCHEMA is missing field "schema""#,
        ),
        (
            r#"{"type":"ACTIVATE_VERSION","stream":"s"}"#,
            ErrorKind::MissingField,
            r#"ACTIVATE_VERSION is missing field "version""#,
        ),
        (
            r#"{"type":"ACTIVATE_VERSION","stream":"s","version":null}"#,
            ErrorKind::WrongType,
            r#"field "version" must be an integer"#,
        ),
        (
            r#"[1,2]"#,
            ErrorKind::WrongType,
            "not a Singer message: invalid type: sequence, expected a JSON object",
        ),
        (
            r#"{"type":"RECORD",}"#,
            ErrorKind::InvalidJson,
            "invalid JSON at column 18: trailing comma",
        ),
        (
            r#"{"type":"STATE","value":1} x"#,
            ErrorKind::InvalidJson,
            "invalid JSON at column 28: trailing characters",
        ),
    ];
    for (line, kind, message) in cases {
        let err = MessageRef::parse(line).unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            (kind, message),
            "{line}"
        );
    }
}

#[test]
fn schema_bookmark_properties_coercion() {
    let m = Message::parse(
        r#"{"type":"SCHEMA","stream":"s","schema":{"type":"object","properties":{"n":{"maximum":1e+308}}},"key_properties":["id"],"bookmark_properties":"updated_at"}"#,
    )
    .unwrap();
    let Message::Schema(s) = m else { panic!() };
    assert_eq!(s.key_properties, Some(vec!["id".to_string()]));
    assert_eq!(s.bookmark_properties, vec!["updated_at".to_string()]);
    assert_eq!(
        s.schema.to_string(),
        r#"{"type":"object","properties":{"n":{"maximum":1e+308}}}"#
    );
    let Message::Schema(s) =
        Message::parse(r#"{"type":"SCHEMA","stream":"s","schema":{},"bookmark_properties":null}"#)
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(s.key_properties, None);
    assert!(s.bookmark_properties.is_empty());
}

#[test]
fn state_value_is_raw_and_exact() {
    let line = r#"{"type":"STATE","value":{"b":{"x":1.10},"a":null}}"#;
    match MessageRef::parse(line).unwrap() {
        MessageRef::State(s) => assert_eq!(s.value.get(), r#"{"b":{"x":1.10},"a":null}"#),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_time_extracted_is_reported_on_use() {
    let r = record(
        r#"{"type":"RECORD","stream":"s","record":{},"time_extracted":"2024-01-01T00:00:00"}"#,
    );
    let err = r.time_extracted_utc().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidValue);
    assert!(
        err.to_string()
            .starts_with(r#"field "time_extracted" must be an RFC 3339 date-time with an offset, not "2024-01-01T00:00:00""#),
        "{err}"
    );
}

#[test]
fn owned_messages_encode_upper_case_in_fixed_order() {
    let lines = [
        r#"{"type":"SCHEMA","stream":"s","schema":{"type":"object"},"key_properties":[],"bookmark_properties":["lsn"]}"#,
        r#"{"type":"RECORD","stream":"s","record":{"id":1,"v":0.10},"version":5,"time_extracted":"2026-11-23T18:33:48.761494Z"}"#,
        r#"{"type":"STATE","value":{"bookmarks":{}}}"#,
        r#"{"type":"ACTIVATE_VERSION","stream":"s","version":5}"#,
    ];
    for line in lines {
        assert_eq!(Message::parse(line).unwrap().to_json(), line);
    }
    // Input type case and field order do not matter for the output.
    let m = Message::parse(
        r#"{"time_extracted":"2026-11-23T19:33:48.761494+01:00","record":{"id":1},"stream":"s","type":"record"}"#,
    )
    .unwrap();
    assert_eq!(
        m.to_json(),
        r#"{"type":"RECORD","stream":"s","record":{"id":1},"time_extracted":"2026-11-23T18:33:48.761494Z"}"#
    );
    let built = Message::Record(RecordMessage {
        stream: "s".into(),
        record: json!({"b": 2, "a": 1}),
        version: None,
        time_extracted: None,
    });
    assert_eq!(
        built.to_json(),
        r#"{"type":"RECORD","stream":"s","record":{"b":2,"a":1}}"#
    );
}

#[test]
fn time_extracted_format() {
    use chrono::{TimeZone, Utc};
    let t = Utc.with_ymd_and_hms(2026, 11, 23, 18, 33, 48).unwrap()
        + chrono::Duration::microseconds(761494);
    assert_eq!(
        TimeExtracted::new(t).as_str(),
        "2026-11-23T18:33:48.761494Z"
    );
    let whole = Utc.with_ymd_and_hms(2024, 2, 29, 0, 0, 0).unwrap();
    assert_eq!(
        TimeExtracted::new(whole).as_str(),
        "2024-02-29T00:00:00.000000Z"
    );
}

/// Not a benchmark, a tripwire: parsing a ~300-byte RECORD envelope must
/// stay far below a microsecond in release builds (checked loosely here so
/// debug builds pass; run with `--release` to see the number).
#[test]
fn record_envelope_parse_is_fast() {
    let line = r#"{"type":"RECORD","stream":"public-t_types","record":{"c_bigint":-9223372036854775808,"c_bit":false,"c_char":"     ","c_date":"2020-02-29T00:00:00+00:00","c_double":null,"c_json":[1,2],"c_numeric":-0.01,"c_text":"","id":2,"name":"some name here"},"version":1795458828761,"time_extracted":"2026-11-23T18:33:48.761494Z"}"#;
    assert!(line.len() > 280, "{}", line.len());
    let n = 100_000;
    let start = std::time::Instant::now();
    for _ in 0..n {
        let m = MessageRef::parse(std::hint::black_box(line)).unwrap();
        std::hint::black_box(&m);
    }
    let per = start.elapsed() / n;
    eprintln!(
        "RECORD envelope parse: {per:?} per message ({} bytes)",
        line.len()
    );
    let limit = if cfg!(debug_assertions) {
        50_000
    } else {
        1_000
    };
    assert!(per.as_nanos() < limit, "{per:?}");
}

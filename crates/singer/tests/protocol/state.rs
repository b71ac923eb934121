use std::io::Write;

use serde_json::json;
use singer::{Bookmark, ErrorKind, State};

fn roundtrip(text: &str) -> State {
    let state = State::from_json(text).unwrap();
    assert_eq!(state.to_json(), text);
    // And through serde, as the target would use it.
    let via_serde: State = serde_json::from_str(text).unwrap();
    assert_eq!(serde_json::to_string(&via_serde).unwrap(), text);
    state
}

#[test]
fn pipelinewise_log_based_shape_round_trips() {
    let text = r#"{"currently_syncing":null,"bookmarks":{"public-t_log":{"last_replication_method":"LOG_BASED","lsn":330588888,"version":1795458856547,"xmin":null}}}"#;
    let state = roundtrip(text);
    assert_eq!(state.currently_syncing(), None);
    let b = state.bookmark("public-t_log").unwrap();
    assert_eq!(b.last_replication_method(), Some("LOG_BASED"));
    assert_eq!(b.lsn(), Some(330588888));
    assert_eq!(b.version(), Some(1795458856547));
    assert_eq!(b.xmin(), None);
    assert_eq!(b.replication_key(), None);
}

#[test]
fn pipelinewise_full_table_and_incremental_shapes_round_trip() {
    let state = roundtrip(
        r#"{"bookmarks":{"public-t_types":{"last_replication_method":"FULL_TABLE","version":1795458828761,"xmin":4294967295},"public-t_inc":{"last_replication_method":"INCREMENTAL","replication_key":"updated_at","version":1795458849402,"replication_key_value":"2024-01-03T00:00:00+00:00"}},"currently_syncing":"public-t_types"}"#,
    );
    assert_eq!(state.currently_syncing(), Some("public-t_types"));
    assert_eq!(
        state.bookmark("public-t_types").unwrap().xmin(),
        Some(4294967295)
    );
    let ids: Vec<_> = state.bookmarks().map(|(id, _)| id).collect();
    assert_eq!(ids, ["public-t_types", "public-t_inc"]);
}

#[test]
fn meltano_sdk_shape_round_trips_with_unknown_keys() {
    let text = r#"{"bookmarks":{"public-t":{"replication_key":"updated_at","replication_key_value":"2024-01-03T00:00:00+00:00","starting_replication_value":"2024-01-01T00:00:00+00:00","progress_markers":{"Note":"Progress is not resumable if interrupted.","replication_key":"updated_at","replication_key_value":"2024-01-02"},"partitions":[]}}}"#;
    let mut state = roundtrip(text);
    let b = state.bookmark("public-t").unwrap();
    assert_eq!(b.replication_key(), Some("updated_at"));
    assert_eq!(
        b.replication_key_value(),
        Some(&json!("2024-01-03T00:00:00+00:00"))
    );
    assert_eq!(b.get("partitions"), Some(&json!([])));
    // Updating one key keeps every other key where it was, and adds no
    // `currently_syncing` the SDK never wrote.
    state
        .bookmark_mut("public-t")
        .set_replication_key_value(json!("2024-02-01T00:00:00+00:00"));
    assert_eq!(
        state.to_json(),
        text.replace("2024-01-03T00:00:00+00:00", "2024-02-01T00:00:00+00:00")
    );
}

#[test]
fn numbers_stay_exact() {
    let text = r#"{"bookmarks":{"public-t":{"replication_key":"n","replication_key_value":12345678901234567890.000001,"other":1.0,"tiny":1e-400,"neg":-0.0}},"x":[1.10,2e+5,1e-05]}"#;
    let state = roundtrip(text);
    assert_eq!(
        state
            .bookmark("public-t")
            .unwrap()
            .replication_key_value()
            .unwrap()
            .to_string(),
        "12345678901234567890.000001"
    );
    assert_eq!(state.get("x").unwrap().to_string(), "[1.10,2e+5,1e-05]");
}

/// serde_json spells an exponent `e+N` / `e-N` (as Python's `json` writes
/// floats); digits are never changed.
#[test]
fn exponent_spelling_is_normalized() {
    let state = State::from_json(r#"{"x":[2e5,3E7,1.50e-07]}"#).unwrap();
    assert_eq!(state.to_json(), r#"{"x":[2e+5,3e+7,1.50e-07]}"#);
}

#[test]
fn lsn_as_string_is_read_and_kept_until_set() {
    let text = r#"{"bookmarks":{"public-a":{"lsn":"0/16B3748"},"public-b":{"lsn":"330588888"}}}"#;
    let mut state = roundtrip(text);
    assert_eq!(state.bookmark("public-a").unwrap().lsn(), Some(0x16B3748));
    assert_eq!(state.bookmark("public-b").unwrap().lsn(), Some(330588888));
    state.bookmark_mut("public-a").set_lsn(0x16B3750);
    assert_eq!(
        state.to_json(),
        r#"{"bookmarks":{"public-a":{"lsn":23803728},"public-b":{"lsn":"330588888"}}}"#
    );
}

#[test]
fn setters_build_the_pipelinewise_shape() {
    let mut state = State::new();
    assert_eq!(state.to_json(), "{}");
    let b = state.bookmark_mut("public-t_types");
    b.set_last_replication_method("FULL_TABLE");
    b.set_version(1795458828761);
    state.set_currently_syncing(Some("public-t_types"));
    assert_eq!(
        state.to_json(),
        r#"{"bookmarks":{"public-t_types":{"last_replication_method":"FULL_TABLE","version":1795458828761}},"currently_syncing":"public-t_types"}"#
    );
    state.bookmark_mut("public-t_types").set_xmin(Some(1032));
    state.bookmark_mut("public-t_types").set_xmin(None);
    state.set_currently_syncing(None);
    assert_eq!(
        state.to_json(),
        r#"{"bookmarks":{"public-t_types":{"last_replication_method":"FULL_TABLE","version":1795458828761,"xmin":null}},"currently_syncing":null}"#
    );
    let mut other = Bookmark::new();
    other.set_lsn(1);
    state.set_bookmark("public-z", other);
    assert!(state.remove_bookmark("public-t_types").is_some());
    assert_eq!(
        state.to_json(),
        r#"{"bookmarks":{"public-z":{"lsn":1}},"currently_syncing":null}"#
    );
}

#[test]
fn bookmark_set_checks_known_keys() {
    let mut b = Bookmark::new();
    b.set("starting_replication_value", json!("x")).unwrap();
    let err = b.set("version", json!("soon")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongType);
    assert_eq!(
        err.to_string(),
        r#"field "version" must be an integer, not "soon""#
    );
    assert_eq!(b.remove("starting_replication_value"), Some(json!("x")));
}

#[test]
fn meltano_wrapped_state_is_unwrapped() {
    let state =
        State::from_json(r#"{"singer_state":{"bookmarks":{"public-t":{"lsn":5}}}}"#).unwrap();
    assert_eq!(state.to_json(), r#"{"bookmarks":{"public-t":{"lsn":5}}}"#);
}

#[test]
fn wrong_types_are_reported_with_the_bookmark() {
    let cases = [
        (r#"[]"#, "the state must be a JSON object"),
        (
            r#"{"bookmarks":[]}"#,
            r#"field "bookmarks" must be a JSON object"#,
        ),
        (
            r#"{"currently_syncing":5}"#,
            r#"field "currently_syncing" must be a string or null"#,
        ),
        (
            r#"{"bookmarks":{"public-t":1}}"#,
            r#"bookmark "public-t": a bookmark must be a JSON object"#,
        ),
        (
            r#"{"bookmarks":{"public-t":{"version":"1"}}}"#,
            r#"bookmark "public-t": field "version" must be an integer, not "1""#,
        ),
        (
            r#"{"bookmarks":{"public-t":{"xmin":-1}}}"#,
            r#"bookmark "public-t": field "xmin" must be a non-negative integer or null, not -1"#,
        ),
        (
            r#"{"bookmarks":{"public-t":{"lsn":"0/XYZ"}}}"#,
            r#"bookmark "public-t": field "lsn" must be a non-negative integer, a string like "0/16B3748", or a decimal string, not "0/XYZ""#,
        ),
    ];
    for (text, message) in cases {
        let err = State::from_json(text).unwrap_err();
        assert_eq!(err.to_string(), message, "{text}");
    }
}

#[test]
fn from_path_empty_and_errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("singer-state-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p
    };
    assert!(State::from_path(write("empty.json", ""))
        .unwrap()
        .is_empty());
    assert!(State::from_path(write("blank.json", " \n"))
        .unwrap()
        .is_empty());
    assert!(State::from_path(write("obj.json", "{}\n"))
        .unwrap()
        .is_empty());

    let bad = write("bad.json", "{\n  \"bookmarks\": {,}\n}\n");
    let err = State::from_path(&bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidJson);
    assert_eq!(
        err.to_string(),
        format!(
            "{}: invalid JSON at line 2, column 17: key must be a string",
            bad.display()
        )
    );

    let typed = write("typed.json", r#"{"bookmarks":{"public-t":{"lsn":true}}}"#);
    let err = State::from_path(&typed).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!(
            "{}: bookmark \"public-t\": field \"lsn\" must be",
            typed.display()
        )),
        "{err}"
    );

    let missing = dir.join("missing.json");
    let err = State::from_path(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    assert!(
        err.to_string()
            .starts_with(&format!("{}: cannot read the file: ", missing.display())),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

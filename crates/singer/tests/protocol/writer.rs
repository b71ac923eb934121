use std::io::Write;

use chrono::{TimeZone, Utc};
use serde_json::json;
use singer::{ErrorKind, Message, MessageWriter, State, TimeExtracted};

fn time() -> TimeExtracted {
    TimeExtracted::new(
        Utc.with_ymd_and_hms(2026, 11, 23, 18, 33, 48).unwrap()
            + chrono::Duration::microseconds(761494),
    )
}

#[test]
fn writes_exact_bytes() {
    let mut w = MessageWriter::new(Vec::new());
    let schema = json!({"type": "object", "properties": {"id": {"type": ["integer"], "maximum": 2147483647}}});
    w.write_schema("public-t", &schema, &["id"], &[] as &[&str])
        .unwrap();
    let state = State::from_json(r#"{"bookmarks":{"public-t":{"last_replication_method":"FULL_TABLE","version":1795458828761}},"currently_syncing":"public-t"}"#).unwrap();
    w.write_state(&state).unwrap();
    w.write_activate_version("public-t", 1795458828761).unwrap();
    w.write_record_raw(
        "public-t",
        br#"{"id":1,"n":12.50}"#,
        Some(1795458828761),
        Some(&time()),
    )
    .unwrap();
    w.write_record_raw("a\"b\\c\n\u{1}é", br#"{"id":2}"#, None, None)
        .unwrap();
    let record: serde_json::Value =
        serde_json::from_str(r#"{"id":3,"big":12345678901234567890.5}"#).unwrap();
    w.write_record("public-t", &record, Some(1), None).unwrap();
    w.write_message(&Message::parse(r#"{"type":"state","value":{"x":null}}"#).unwrap())
        .unwrap();
    let out = String::from_utf8(w.finish().unwrap()).unwrap();
    let expected = [
        r#"{"type":"SCHEMA","stream":"public-t","schema":{"type":"object","properties":{"id":{"type":["integer"],"maximum":2147483647}}},"key_properties":["id"],"bookmark_properties":[]}"#,
        r#"{"type":"STATE","value":{"bookmarks":{"public-t":{"last_replication_method":"FULL_TABLE","version":1795458828761}},"currently_syncing":"public-t"}}"#,
        r#"{"type":"ACTIVATE_VERSION","stream":"public-t","version":1795458828761}"#,
        r#"{"type":"RECORD","stream":"public-t","record":{"id":1,"n":12.50},"version":1795458828761,"time_extracted":"2026-11-23T18:33:48.761494Z"}"#,
        r#"{"type":"RECORD","stream":"a\"b\\c\n\u0001é","record":{"id":2}}"#,
        r#"{"type":"RECORD","stream":"public-t","record":{"id":3,"big":12345678901234567890.5},"version":1}"#,
        r#"{"type":"STATE","value":{"x":null}}"#,
    ];
    assert_eq!(out, expected.map(|l| format!("{l}\n")).concat());
}

/// Records stay buffered until a STATE; the STATE flushes them all.
#[test]
fn state_flushes_records_before_it() {
    #[derive(Default)]
    struct Spy {
        written: Vec<u8>,
        flushes: usize,
    }
    impl Write for Spy {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.flushes += 1;
            Ok(())
        }
    }
    let mut w = MessageWriter::new(Spy::default());
    w.write_record_raw("s", b"{}", None, None).unwrap();
    assert!(w.get_ref().written.is_empty());
    w.write_state(&json!({})).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&w.get_ref().written),
        "{\"type\":\"RECORD\",\"stream\":\"s\",\"record\":{}}\n{\"type\":\"STATE\",\"value\":{}}\n"
    );
    assert_eq!(w.get_ref().flushes, 1);
    w.write_record_raw("s", b"{}", None, None).unwrap();
    let spy = w.finish().unwrap();
    assert_eq!(spy.written.iter().filter(|&&b| b == b'\n').count(), 3);
}

fn assert_broken_pipe(err: singer::Error) {
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
    assert_eq!(
        err.to_string(),
        "stdout closed: the downstream target exited (broken pipe); stopping"
    );
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(std::io::ErrorKind::BrokenPipe)
    );
}

/// A real pipe whose reader has exited: the write fails with EPIPE and the
/// writer says so, instead of panicking or succeeding silently.
#[test]
fn closed_pipe_to_exited_child_is_broken_pipe() {
    let mut child = std::process::Command::new("true")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn `true`");
    let stdin = child.stdin.take().unwrap();
    child.wait().unwrap();
    let mut w = MessageWriter::with_capacity(64, stdin);
    let mut result = Ok(());
    for _ in 0..100 {
        result = w.write_record_raw("s", br#"{"id":1}"#, None, None);
        if result.is_err() {
            break;
        }
    }
    let err = result.err().or_else(|| w.finish().err()).expect("an error");
    assert_broken_pipe(err);
}

#[test]
fn closed_socket_is_broken_pipe_at_state_flush() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(b);
    let mut w = MessageWriter::new(a);
    w.write_record_raw("s", b"{}", None, None).unwrap(); // buffered
    assert_broken_pipe(w.write_state(&json!({"bookmarks": {}})).unwrap_err());
}

#[test]
fn finish_reports_broken_pipe() {
    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(b);
    let mut w = MessageWriter::new(a);
    w.write_activate_version("s", 1).unwrap();
    assert_broken_pipe(w.finish().unwrap_err());
}

/// Issue 10, item 4: a checkpoint STATE is written only once the output
/// since the last STATE is at least as long as it, so STATE bytes stay
/// below the other bytes however many streams share the state.
#[test]
fn checkpoint_states_never_outweigh_the_records() {
    let mut w = MessageWriter::new(Vec::new());
    let mut bookmarks = serde_json::Map::new();
    let mut written = 0;
    for i in 0..300 {
        let stream = format!("public-t{i}");
        w.write_record_raw(&stream, br#"{"id":1}"#, None, None)
            .unwrap();
        bookmarks.insert(stream, json!({"version": 1795458828761u64 + i}));
        let state = json!({ "bookmarks": bookmarks });
        if w.write_state_checkpoint(&state).unwrap() {
            written += 1;
        }
    }
    w.write_state(&json!({ "bookmarks": bookmarks })).unwrap();
    let out = String::from_utf8(w.finish().unwrap()).unwrap();
    let (mut state_bytes, mut other_bytes, mut last_state) = (0, 0, 0);
    for line in out.lines() {
        if line.starts_with(r#"{"type":"STATE""#) {
            state_bytes += line.len() + 1;
            last_state = line.len() + 1;
        } else {
            other_bytes += line.len() + 1;
        }
    }
    assert_eq!(
        out.lines().filter(|l| l.contains("STATE")).count(),
        written + 1
    );
    assert!(written >= 5, "states still come: {written}");
    assert!(
        state_bytes <= other_bytes + 2 * last_state,
        "{state_bytes} state bytes for {other_bytes} other bytes"
    );
    // The first checkpoint is always written.
    let mut w = MessageWriter::new(Vec::new());
    assert!(w.write_state_checkpoint(&json!({})).unwrap());
}

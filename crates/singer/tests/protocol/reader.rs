use singer::{ErrorKind, MessageReader, MessageRef};

/// (line number, summary) of each message read.
type Seen = Vec<(u64, String)>;

/// Reads every line; returns (line number, summary) for messages and the
/// error text for failures, stopping at the first error.
fn read_all(input: &[u8]) -> (Seen, Option<(ErrorKind, String)>) {
    let mut reader = MessageReader::new(input);
    let mut seen = Vec::new();
    loop {
        match reader.next_line() {
            Ok(None) => return (seen, None),
            Ok(Some(line)) => {
                let summary = match &line.message {
                    MessageRef::Record(r) => format!("RECORD {} {}", r.stream, r.record.get()),
                    MessageRef::State(s) => format!("STATE {}", s.value.get()),
                    MessageRef::Schema(s) => format!("SCHEMA {}", s.stream),
                    MessageRef::ActivateVersion(a) => {
                        format!("ACTIVATE_VERSION {} {}", a.stream, a.version)
                    }
                    MessageRef::Unknown { type_name } => format!("UNKNOWN {type_name}"),
                };
                seen.push((line.number, summary));
            }
            Err(e) => return (seen, Some((e.kind(), e.to_string()))),
        }
    }
}

fn error_of(input: &[u8]) -> (ErrorKind, String) {
    read_all(input).1.expect("an error")
}

#[test]
fn reads_lines_with_numbers_skipping_blanks() {
    let input = b"{\"type\":\"SCHEMA\",\"stream\":\"s\",\"schema\":{},\"key_properties\":[]}\n\
\n   \t\r\n\
{\"type\":\"record\",\"stream\":\"s\",\"record\":{\"a\":1.50}}\r\n\
{\"type\":\"BATCH\"}\n\
{\"type\":\"STATE\",\"value\":{\"x\":1}}";
    let (seen, err) = read_all(input);
    assert_eq!(err, None);
    assert_eq!(
        seen,
        vec![
            (1, "SCHEMA s".to_string()),
            (4, r#"RECORD s {"a":1.50}"#.to_string()),
            (5, "UNKNOWN BATCH".to_string()),
            (6, r#"STATE {"x":1}"#.to_string()),
        ]
    );
}

#[test]
fn line_text_is_without_line_ending() {
    let mut reader = MessageReader::new(&b"{\"type\":\"STATE\",\"value\":1}\r\n"[..]);
    let line = reader.next_line().unwrap().unwrap();
    assert_eq!(line.text, r#"{"type":"STATE","value":1}"#);
    assert!(reader.next_line().unwrap().is_none());
    assert_eq!(reader.line_number(), 1);
}

#[test]
fn invalid_json_names_line_and_column() {
    let input = b"{\"type\":\"STATE\",\"value\":1}\n\n{\"type\":\"RECORD\" \"stream\":\"s\"}\n";
    assert_eq!(
        error_of(input),
        (
            ErrorKind::InvalidJson,
            "line 3: invalid JSON at column 18: expected `,` or `}`".to_string()
        )
    );
}

#[test]
fn invalid_utf8_names_line_and_byte() {
    let input = b"{\"type\":\"STATE\",\"value\":1}\n{\"type\":\"RECORD\",\"stream\":\"\xff\"}\n";
    assert_eq!(
        error_of(input),
        (
            ErrorKind::InvalidUtf8,
            "line 2: invalid UTF-8 at byte 28".to_string()
        )
    );
}

#[test]
fn missing_field_names_line() {
    let input = b"\n\n{\"type\":\"RECORD\",\"record\":{}}\n";
    assert_eq!(
        error_of(input),
        (
            ErrorKind::MissingField,
            r#"line 3: RECORD is missing field "stream""#.to_string()
        )
    );
}

#[test]
fn wrong_type_names_line() {
    let input = b"{\"type\":\"STATE\",\"value\":1}\n{\"type\":\"STATE\",\"value\":2}\n{\"type\":\"STATE\",\"value\":3}\n{\"type\":\"SCHEMA\",\"stream\":\"s\",\"schema\":{},\"key_properties\":[1]}\n";
    let (seen, err) = read_all(input);
    assert_eq!(seen.len(), 3);
    assert_eq!(
        err,
        Some((
            ErrorKind::WrongType,
            r#"line 4: field "key_properties" must be an array of strings"#.to_string()
        ))
    );
}

#[test]
fn truncated_last_line_says_so() {
    let input = b"{\"type\":\"STATE\",\"value\":1}\n{\"type\":\"RECORD\",\"stream\":\"s\",\"record\":{\"a\":\"hal";
    assert_eq!(
        error_of(input),
        (
            ErrorKind::Truncated,
            "line 2: invalid JSON at column 48: EOF while parsing a string; this last line has \
             no trailing newline, so the input looks truncated (did the tap stop mid-write?)"
                .to_string()
        )
    );
}

#[test]
fn unterminated_line_that_is_invalid_mid_input_is_plain_invalid_json() {
    // The same bytes with a newline: not truncated, just invalid.
    let input = b"{\"type\":\"RECORD\",\"stream\":\"s\",\"record\":{\"a\":\"hal\n";
    assert_eq!(error_of(input).0, ErrorKind::InvalidJson);
}

#[test]
fn valid_last_line_without_newline_is_accepted() {
    let (seen, err) = read_all(b"{\"type\":\"ACTIVATE_VERSION\",\"stream\":\"s\",\"version\":7}");
    assert_eq!(err, None);
    assert_eq!(seen, vec![(1, "ACTIVATE_VERSION s 7".to_string())]);
}

#[test]
fn parse_errors_leave_the_reader_at_the_next_line() {
    let input = b"{oops}\n{\"type\":\"STATE\",\"value\":1}\n";
    let mut reader = MessageReader::new(&input[..]);
    let err = reader.next_line().unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1: invalid JSON at column 2: key must be a string"
    );
    let line = reader.next_line().unwrap().unwrap();
    assert_eq!(line.number, 2);
}

#[test]
fn line_length_limit() {
    let ok = b"{\"type\":\"STATE\",\"value\":1}\n"; // 26 bytes + newline
    let mut reader = MessageReader::new(&ok[..]).with_max_line_bytes(26);
    assert!(reader.next_line().unwrap().is_some());
    let mut reader = MessageReader::new(&ok[..]).with_max_line_bytes(25);
    let err = reader.next_line().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LineTooLong);
    assert_eq!(err.to_string(), "line 1: longer than the limit of 25 bytes");
    // Unterminated last line at exactly the limit is fine.
    let mut reader = MessageReader::new(&ok[..26]).with_max_line_bytes(26);
    assert!(reader.next_line().unwrap().is_some());
}

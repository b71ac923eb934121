//! Integration tests of the `target-postgres` binary against a real
//! PostgreSQL server (pg-testkit): each test gets its own database, pipes
//! Singer messages into the real binary and compares the exact rows loaded
//! and the exact state lines printed.

mod bad_input;
mod deletes;
mod direct;
mod evolution;
mod fuzz;
mod hostile;
mod kill;
mod load;
mod options;
mod states;

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The state lines, parsed.
    pub fn states(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("a state line is JSON"))
            .collect()
    }

    /// Asserts success and returns self.
    #[track_caller]
    pub fn success(self) -> Run {
        assert!(self.ok, "target failed:\n{}", self.stderr);
        self
    }

    /// Asserts failure and returns the CRITICAL line.
    #[track_caller]
    pub fn failure(self) -> String {
        assert!(!self.ok, "target should have failed:\n{}", self.stderr);
        self.stderr
            .lines()
            .find(|l| l.starts_with("CRITICAL"))
            .unwrap_or_else(|| panic!("no CRITICAL line in:\n{}", self.stderr))
            .to_owned()
    }
}

/// A target config for `db` with `extra` keys.
pub fn config(db: &pg_testkit::TestDb, extra: Value) -> tempfile::NamedTempFile {
    let mut c = db.conn_config();
    let obj = c.as_object_mut().unwrap();
    obj.insert("default_target_schema".into(), json!("tgt"));
    for (k, v) in extra.as_object().unwrap() {
        obj.insert(k.clone(), v.clone());
    }
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(c.to_string().as_bytes()).unwrap();
    f
}

/// The target with config file `cfg`, stdin and stdout piped (stderr as
/// the caller sets it).
pub fn target_command(cfg: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_target-postgres"));
    c.arg("--config")
        .arg(cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    c
}

/// Writes `input` to `child`'s stdin on a thread, then closes it (EOF). A
/// write that fails because the target has died is not an error here: the
/// tests check what it printed and loaded.
pub fn feed(child: &mut std::process::Child, input: String) -> std::thread::JoinHandle<()> {
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    })
}

/// Runs the target on `input` with `db`'s config plus `extra`.
pub fn run(db: &pg_testkit::TestDb, extra: Value, input: &str) -> Run {
    let cfg = config(db, extra);
    let mut child = target_command(cfg.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = feed(&mut child, input.to_owned());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Lines of JSON messages.
pub fn lines(messages: &[Value]) -> String {
    let mut s = String::new();
    for m in messages {
        s.push_str(&m.to_string());
        s.push('\n');
    }
    s
}

pub fn schema(stream: &str, properties: Value, keys: &[&str]) -> Value {
    json!({"type": "SCHEMA", "stream": stream,
           "schema": {"type": "object", "properties": properties},
           "key_properties": keys})
}

pub fn record(stream: &str, record: Value) -> Value {
    json!({"type": "RECORD", "stream": stream, "record": record})
}

pub fn state(value: Value) -> Value {
    json!({"type": "STATE", "value": value})
}

/// The usual two-column stream `public-t` (id bigint key, name text).
pub fn id_name_schema() -> Value {
    schema(
        "public-t",
        json!({"id": {"type": "integer"}, "name": {"type": ["null", "string"]}}),
        &["id"],
    )
}

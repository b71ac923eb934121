//! Running the real `tap-postgres` binary on a test database.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use pg_testkit::TestDb;
use serde_json::{json, Value};

/// Config, catalog and state files for one test.
pub struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn write(&self, name: &str, value: &Value) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, serde_json::to_string_pretty(value).unwrap()).unwrap();
        p
    }
}

/// The test database's connection keys plus `extra`. With
/// `TAP_TEST_LOG_ROUTE=replication` (`make test` runs the LOG_BASED tests
/// once more so), LOG_BASED always streams with the replication protocol
/// (`logical_peek_max_wal_mb` 0); otherwise the tap chooses, and the small
/// backlogs of the tests are read with `pg_logical_slot_peek_changes`.
pub fn config(db: &TestDb, extra: Value) -> Value {
    let mut c = db.conn_config();
    if std::env::var("TAP_TEST_LOG_ROUTE").as_deref() == Ok("replication") {
        c["logical_peek_max_wal_mb"] = json!(0);
    }
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// A LOG_BASED config: slot `slot` (created if missing), a 10 s poll, then
/// `extra`.
pub fn log_config(db: &TestDb, slot: &str, extra: Value) -> Value {
    let mut c = config(
        db,
        json!({"replication_slot": slot, "create_replication_slot": true, "logical_poll_total_seconds": 10}),
    );
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

pub fn tap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tap-postgres"));
    c.env_remove("LOG_LEVEL").stdin(Stdio::null());
    c
}

/// `tap-postgres --discover`; the parsed catalog.
pub fn discover(files: &Files, config: &Value) -> Value {
    let cfg = files.write("config.json", config);
    let out = tap()
        .arg("--config")
        .arg(&cfg)
        .arg("--discover")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Marks `stream` selected with `method` (and `key` for INCREMENTAL) and
/// drops the other streams.
pub fn select(catalog: &Value, streams: &[(&str, &str, Option<&str>)]) -> Value {
    let mut out = Vec::new();
    for (id, method, key) in streams {
        let mut s = catalog["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["tap_stream_id"] == *id)
            .unwrap_or_else(|| panic!("no stream {id}"))
            .clone();
        let md = s["metadata"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|m| m["breadcrumb"] == json!([]))
            .unwrap();
        md["metadata"]["selected"] = json!(true);
        md["metadata"]["replication-method"] = json!(method);
        if let Some(k) = key {
            md["metadata"]["replication-key"] = json!(k);
        }
        out.push(s);
    }
    json!({ "streams": out })
}

/// A finished run: its messages (raw lines and parsed), stderr, status.
pub struct Run {
    pub lines: Vec<String>,
    pub stderr: String,
    pub output: Output,
}

impl Run {
    pub fn of(output: Output) -> Run {
        let stdout = String::from_utf8(output.stdout.clone()).unwrap();
        Run {
            lines: stdout.lines().map(str::to_string).collect(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output,
        }
    }

    pub fn messages(&self) -> Vec<Value> {
        self.lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    pub fn of_type(&self, t: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["type"] == t)
            .collect()
    }

    /// The raw `record` text of each RECORD line, exactly as written.
    pub fn raw_records(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter(|l| l.starts_with(r#"{"type":"RECORD""#))
            .map(|l| {
                let start = l.find(r#","record":"#).unwrap() + 10;
                let end = l.rfind(r#","version":"#).unwrap();
                l[start..end].to_string()
            })
            .collect()
    }

    pub fn last_state(&self) -> Value {
        self.of_type("STATE").last().expect("a STATE")["value"].clone()
    }
}

pub fn sync(files: &Files, config: &Value, catalog: &Value, state: Option<&Value>) -> Run {
    let mut cmd = sync_command(files, config, catalog, state);
    Run::of(cmd.output().unwrap())
}

/// Runs `cmd` with nobody reading its stdout for `pause` (a target busy
/// committing), then reads everything.
pub async fn sync_read_late(mut cmd: Command, pause: std::time::Duration) -> Run {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(pause).await;
    Run::of(child.wait_with_output().unwrap())
}

pub fn sync_command(
    files: &Files,
    config: &Value,
    catalog: &Value,
    state: Option<&Value>,
) -> Command {
    let mut cmd = tap();
    cmd.arg("--config")
        .arg(files.write("config.json", config))
        .arg("--catalog")
        .arg(files.write("catalog.json", catalog));
    if let Some(s) = state {
        cmd.arg("--state").arg(files.write("state.json", s));
    }
    cmd
}

/// Starts a sync, reads its stdout until `stop` says so, then kills it
/// (SIGKILL) and returns the lines read.
pub fn sync_until_killed(mut cmd: Command, mut stop: impl FnMut(&Value) -> bool) -> Vec<String> {
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let reader = BufReader::new(child.stdout.take().unwrap());
    for line in reader.lines() {
        let line = line.unwrap();
        let msg: Value = serde_json::from_str(&line).unwrap();
        lines.push(line);
        if stop(&msg) {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    lines
}

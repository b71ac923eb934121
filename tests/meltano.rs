//! `examples/meltano/meltano.yml`: its settings lists match the programs'
//! `--about --format json` (regenerate with `UPDATE_MELTANO_YML=1`), and the
//! file as it is runs under a real Meltano: installed from PyPI into
//! `target/meltano-venv` (kept, so later runs reuse it), `meltano run
//! tap-postgres target-postgres` twice on an INCREMENTAL and a LOG_BASED
//! stream, the second run starting from the state Meltano stored.
//!
//! When the package index cannot be reached the Meltano run is skipped with
//! a loud `SKIPPED` line; any other install failure fails the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use e2e::{assert_same_rows, bin, workspace_root};
use pg_testkit::{cluster, TestDb};
use serde_json::Value;

/// What `pip install` installs (the version the reference notes used).
const MELTANO: &str = "meltano>=4.4,<5";

fn yml_path() -> PathBuf {
    workspace_root().join("examples/meltano/meltano.yml")
}

fn about(program: &str) -> Value {
    let out = Command::new(bin(program))
        .args(["--about", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Meltano's `kind` for a JSON Schema property.
fn kind(prop: &Value) -> &'static str {
    let types: Vec<&str> = match &prop["type"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    if prop.get("enum").is_some() {
        "options"
    } else if types.contains(&"boolean") {
        "boolean"
    } else if types.contains(&"integer") {
        "integer"
    } else if types.contains(&"array") {
        "array"
    } else if types.contains(&"object") {
        "object"
    } else {
        "string"
    }
}

/// The `settings:` entries of `program`, one flow mapping a line (values
/// JSON-quoted, which YAML reads as double-quoted scalars).
fn settings_block(program: &str) -> String {
    let about = about(program);
    let mut out = String::new();
    for (name, prop) in about["settings"]["properties"].as_object().unwrap() {
        let kind = kind(prop);
        let mut line = format!("    - {{name: {name}, kind: {kind}");
        if kind == "options" {
            let options: Vec<String> = prop["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| format!("{{label: {v}, value: {v}}}"))
                .collect();
            line += &format!(", options: [{}]", options.join(", "));
        }
        if prop["x-sensitive"] == Value::Bool(true) {
            line += ", sensitive: true";
        }
        if let Some(d) = prop["description"].as_str() {
            line += &format!(", description: {}", serde_json::to_string(d).unwrap());
        }
        line += "}\n";
        out += &line;
    }
    out
}

#[test]
fn meltano_yml_declares_every_setting_and_capability() {
    let mut text = std::fs::read_to_string(yml_path()).unwrap();
    let mut stale = Vec::new();
    for program in ["tap-postgres", "target-postgres"] {
        let begin = format!("    # BEGIN {program} settings\n");
        let end = format!("    # END {program} settings\n");
        let from = text.find(&begin).expect("BEGIN marker") + begin.len();
        let to = text.find(&end).expect("END marker");
        let want = settings_block(program);
        if text[from..to] != want {
            stale.push(program);
            text.replace_range(from..to, &want);
        }
        // Capabilities: the line after `executable: <program>`.
        let exe = text
            .find(&format!("    executable: {program}\n"))
            .expect("executable line");
        let line = text[exe..].lines().nth(1).unwrap();
        let listed: Vec<&str> = line
            .trim()
            .strip_prefix("capabilities: [")
            .and_then(|l| l.strip_suffix(']'))
            .unwrap_or_else(|| panic!("capabilities after the executable: {line}"))
            .split(", ")
            .collect();
        let declared: Vec<&str> = about(program)["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string().leak() as &str)
            .collect();
        assert_eq!(listed, declared, "{program}: capabilities");
    }
    if !stale.is_empty() {
        if std::env::var_os("UPDATE_MELTANO_YML").is_some() {
            std::fs::write(yml_path(), &text).unwrap();
        } else {
            panic!(
                "settings of {stale:?} in examples/meltano/meltano.yml differ from --about: \
                 run `UPDATE_MELTANO_YML=1 cargo test -p e2e --test meltano`"
            );
        }
    }
}

/// Meltano in `target/meltano-venv`, installed when missing. `None` (after a
/// loud SKIPPED line) when the package index is unreachable.
fn meltano() -> Option<PathBuf> {
    e2e::python_venv(
        "meltano-venv",
        Path::new("python3"),
        &[MELTANO],
        "the Meltano end-to-end run",
    )
    .map(|bin| bin.join("meltano"))
}

fn texts(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `meltano <args>` in `project` with both programs on PATH and the
/// connection settings of `source`/`target` in the environment.
fn run_meltano(
    meltano: &Path,
    project: &Path,
    source: &TestDb,
    target: &TestDb,
    slot: &str,
    args: &[&str],
) -> Output {
    let bins = bin("tap-postgres").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bins.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(meltano);
    cmd.args(args)
        .current_dir(project)
        .env("PATH", path)
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env_remove("LOG_LEVEL")
        .env_remove("LOG_FORMAT")
        .env("TAP_POSTGRES_REPLICATION_SLOT", slot)
        .stdin(Stdio::null());
    for (prefix, db) in [("TAP_POSTGRES", source), ("TARGET_POSTGRES", target)] {
        cmd.env(format!("{prefix}_HOST"), db.host())
            .env(format!("{prefix}_PORT"), db.port().to_string())
            .env(format!("{prefix}_USER"), db.user())
            .env(format!("{prefix}_PASSWORD"), db.password())
            .env(format!("{prefix}_DBNAME"), db.name());
    }
    let started = Instant::now();
    let out = cmd.output().expect("meltano runs");
    eprintln!(
        "meltano {}: {:.1}s",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    out
}

fn stored_state(meltano: &Path, project: &Path, s: &TestDb, t: &TestDb, slot: &str) -> Value {
    let out = run_meltano(
        meltano,
        project,
        s,
        t,
        slot,
        &["state", "get", "dev:tap-postgres-to-target-postgres"],
    );
    assert!(out.status.success(), "meltano state get: {}", texts(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text.trim();
    let state: Value = serde_json::from_str(json)
        .unwrap_or_else(|e| panic!("meltano state get is not JSON ({e}): {}", texts(&out)));
    state["singer_state"].clone()
}

async fn assert_target_equals_source(source: &TestDb, target: &TestDb) {
    assert_same_rows(
        source,
        "SELECT id, customer, amount, updated_at FROM orders ORDER BY id",
        target,
        "SELECT id, customer, amount, updated_at FROM shop.orders ORDER BY id",
    )
    .await;
    assert_same_rows(
        source,
        "SELECT id, kind, payload FROM events ORDER BY id",
        target,
        "SELECT id, kind, payload FROM shop.events ORDER BY id",
    )
    .await;
}

/// Rows of `table` in the target written since `since` (`_sdc_batched_at`).
async fn written_since(target: &TestDb, table: &str, since: &str) -> i64 {
    target
        .query_json(&format!(
            "SELECT count(*) AS n FROM shop.{table} WHERE _sdc_batched_at >= '{since}'"
        ))
        .await[0]["n"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn meltano_runs_the_example_project_twice_from_its_stored_state() {
    let Some(meltano) = meltano() else { return };
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    source
        .execute_batch(
            "CREATE TABLE orders (id int PRIMARY KEY, customer text, amount numeric(12,2),
                                  updated_at timestamptz NOT NULL);
             INSERT INTO orders SELECT i, 'customer ' || (i % 37), i * 1.5,
                                       '2024-01-01'::timestamptz + i * interval '1 minute'
               FROM generate_series(1, 500) i;
             CREATE TABLE events (id bigint PRIMARY KEY, kind text, payload jsonb);
             INSERT INTO events SELECT i, 'view', jsonb_build_object('n', i, 'tags', jsonb_build_array('a', i))
               FROM generate_series(1, 300) i;
             CREATE TABLE not_selected (id int PRIMARY KEY);",
        )
        .await;
    let project = tempfile::tempdir().unwrap();
    std::fs::copy(yml_path(), project.path().join("meltano.yml")).unwrap();
    // Slots are per cluster: one per test database.
    let slot = format!("meltano_{}", source.name()).to_lowercase();
    let run = |args: &'static [&'static str]| {
        run_meltano(&meltano, project.path(), &source, &target, &slot, args)
    };

    let first = run(&["run", "tap-postgres", "target-postgres"]);
    assert!(first.status.success(), "first run: {}", texts(&first));
    assert_target_equals_source(&source, &target).await;
    let exists = target
        .query_json("SELECT to_regclass('shop.not_selected') IS NOT NULL AS e")
        .await;
    assert_eq!(exists[0]["e"], Value::Bool(false), "only selected streams");
    let state1 = stored_state(&meltano, project.path(), &source, &target, &slot);
    assert_eq!(
        state1["bookmarks"]["public-orders"]["replication_key_value"], "2024-01-01T08:20:00+00:00",
        "{state1}"
    );
    let lsn1 = state1["bookmarks"]["public-events"]["lsn"]
        .as_u64()
        .unwrap_or_else(|| panic!("a LOG_BASED lsn bookmark: {state1}"));

    source
        .execute_batch(
            "UPDATE orders SET amount = 0, updated_at = '2025-01-01' WHERE id IN (3, 4);
             INSERT INTO orders VALUES (501, 'new', 9.99, '2025-01-02');
             INSERT INTO events VALUES (301, 'click', '{}'), (302, 'click', '[]');
             UPDATE events SET kind = 'changed' WHERE id = 10;
             DELETE FROM events WHERE id = 20;",
        )
        .await;
    let since = target
        .query_json("SELECT clock_timestamp()::text AS since")
        .await[0]["since"]
        .as_str()
        .unwrap()
        .to_string();
    let second = run(&["run", "tap-postgres", "target-postgres"]);
    assert!(second.status.success(), "second run: {}", texts(&second));
    assert_target_equals_source(&source, &target).await;
    // Started from the stored state: INCREMENTAL sent the rows at or past
    // the bookmark (id 500, equal to it, and the three changed), LOG_BASED
    // only the changes (no second initial copy).
    assert_eq!(written_since(&target, "orders", &since).await, 4);
    assert_eq!(written_since(&target, "events", &since).await, 3);
    let state2 = stored_state(&meltano, project.path(), &source, &target, &slot);
    assert_eq!(
        state2["bookmarks"]["public-orders"]["replication_key_value"], "2025-01-02T00:00:00+00:00",
        "{state2}"
    );
    assert!(
        state2["bookmarks"]["public-events"]["lsn"]
            .as_u64()
            .unwrap()
            > lsn1,
        "{state2}"
    );
    // Leave no slot behind on the shared cluster.
    source
        .execute_batch(&format!(
            "SELECT pg_drop_replication_slot('{slot}') FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ))
        .await;
}

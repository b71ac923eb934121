//! The interop matrix (issue 11): our tap, default config, into every
//! common PostgreSQL target and Singer validator, and other taps into our
//! target — with the real packages from PyPI, in virtualenvs built here
//! (concurrently, once per test binary, reused from `target/` later).
//!
//! The source is a table of common types (`common`) and one of the values
//! the narrow JSON types cannot carry (`special`: NaN, ±Infinity, `-0`,
//! `infinity`/BC/year > 9999 dates, `24:00:00`, a JSON `null`, a
//! two-dimensional array). Each cell asserts the column types and the
//! rows, each source value cast to the target column's type and compared as
//! text: exact, as far as the target's own type mapping allows.
//!
//! - Validators (singer-python `parse_message` + `Transformer`, the Meltano
//!   SDK's record validation with format checks, singer-tools'
//!   `singer-check-tap`) accept both tables.
//! - Targets (MeltanoLabs, pipelinewise, Macrometa) load `common` with the
//!   column types their own family's tap gets (the baseline, run in the
//!   same cell), never worse; the differences are listed with their
//!   reason. For `special` they either load the values exactly or fail
//!   loudly: never a silent null or clamp.
//! - Other taps (MeltanoLabs, Macrometa, pipelinewise) load into our target
//!   natively typed and exact.
//!
//! In CI (`CI=true`) an unreachable package index fails these tests.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use e2e::{bin, discover, pyenv_python, python_venv, select, write_json};
use pg_testkit::{cluster, TestDb};
use serde_json::{json, Value};

const TABLES: &str = r#"
CREATE TABLE common (
  id int PRIMARY KEY, i2 smallint, i8 bigint, num numeric(12,2), f8 float8, b bool, t text, vc varchar(10),
  u uuid, j jsonb, d date, ts timestamp, tz timestamptz, tm time, tags text[], ints int[]);
INSERT INTO common VALUES
 (1, 7, 9007199254740993, 12.50, 0.1, true, E'a "q" \\ é\n', 'x', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  '{"a": [1, "x"]}', '2024-02-29', '2024-02-29 10:11:12.5', '2024-02-29 10:11:12.5+00', '10:11:12', '{a,"b c"}', '{1,2}'),
 (2, -32768, -1, -0.01, 1e300, false, '', '', NULL, '[]', '0001-01-01', '1999-12-31 23:59:59.999999',
  '1970-01-01 00:00:00+00', '23:59:59.999999', '{}', '{}'),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
CREATE TABLE special (
  id int PRIMARY KEY, f8 float8, num numeric, j jsonb, d date, ts timestamp, tz timestamptz, tm time, ints int[]);
INSERT INTO special VALUES
 (1, 1.5, 1.5, '{"a": 1}', '2024-01-01', '2024-01-01 00:00:00', '2024-01-01 00:00:00+00', '10:00:00', '{1,2}'),
 (2, '-0', 'NaN', 'null', 'infinity', '-infinity', 'infinity', '24:00:00', '{{1,2},{3,4}}'),
 (3, 'Infinity', '-Infinity', NULL, '0044-03-15 BC', '10000-01-01 00:00:00', '0001-01-01 00:00:00+00 BC', '00:00:00', NULL),
 (4, 'NaN', 2.5, '"s"', '2024-01-02', NULL, NULL, NULL, '{}');
"#;

/// The source columns of each table, in order.
const COMMON: &[&str] = &[
    "id", "i2", "i8", "num", "f8", "b", "t", "vc", "u", "j", "d", "ts", "tz", "tm", "tags", "ints",
];
const SPECIAL: &[&str] = &["id", "f8", "num", "j", "d", "ts", "tz", "tm", "ints"];

// ---------------------------------------------------------------- venvs

/// The bin directories of the virtualenvs (None: index unreachable, skipped
/// loudly outside CI).
struct Venvs {
    meltano_target: Option<PathBuf>,
    meltano_tap: Option<PathBuf>,
    macrometa: Option<PathBuf>,
    pipelinewise: Option<PathBuf>,
    singer: Option<PathBuf>,
}

/// Builds every venv at once (each pip in its own thread), the first time
/// a test of this binary asks; the others wait for it.
fn venvs() -> &'static Venvs {
    static VENVS: OnceLock<Venvs> = OnceLock::new();
    VENVS.get_or_init(|| {
        std::thread::scope(|s| {
            let build = |name: &'static str, minor: u32, packages: &'static [&'static str]| {
                s.spawn(move || python_venv(name, &pyenv_python(minor), packages, name))
            };
            // The latest MeltanoLabs target and tap pin different singer-sdk
            // versions: one venv each. jsonschema's format extras make the
            // SDK's validator check date, date-time and time formats.
            let mt = build(
                "interop-meltano-target",
                12,
                &[
                    "meltanolabs-target-postgres==0.8.1",
                    "jsonschema[format-nongpl]",
                ],
            );
            let mp = build(
                "interop-meltano-tap",
                12,
                &["meltanolabs-tap-postgres==0.10.0"],
            );
            let mc = build(
                "interop-macrometa",
                10,
                &[
                    "macrometa-target-postgres==1.0.0",
                    "macrometa-source-postgres==1.0.0",
                ],
            );
            // The same venv (name, interpreter, packages) as pipelinewise.rs.
            let pw = build(
                "pipelinewise-venv",
                9,
                &[
                    "pipelinewise-tap-postgres==2.1.0",
                    "pipelinewise-target-postgres==2.1.2",
                ],
            );
            let sg = build(
                "interop-singer",
                9,
                &["singer-python==6.8.0", "singer-tools==0.4.1"],
            );
            Venvs {
                meltano_target: mt.join().unwrap(),
                meltano_tap: mp.join().unwrap(),
                macrometa: mc.join().unwrap(),
                pipelinewise: pw.join().unwrap(),
                singer: sg.join().unwrap(),
            }
        })
    })
}

// ---------------------------------------------------------------- running

fn texts(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `cmd` with `input` on its stdin (a pipe: Macrometa's target reads
/// only pipes), killed after `limit`.
fn run_with_input(mut cmd: Command, input: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("LOG_LEVEL")
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = wait_bounded(child, limit);
    feeder.join().unwrap();
    out
}

/// Waits for `child` to exit, at most `limit` (then kills it and panics).
fn wait_bounded(child: Child, limit: Duration) -> Output {
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("process {id} did not finish within {limit:?}");
        }
    }
}

fn command(program: PathBuf, args: &[(&str, &Path)]) -> Command {
    let mut c = Command::new(program);
    for (flag, path) in args {
        c.arg(flag).arg(path);
    }
    c.env_remove("LOG_LEVEL");
    c
}

/// Our tap's output (default config, FULL_TABLE) for `streams` of `source`.
fn our_tap(dir: &Path, source: &TestDb, streams: &[&str]) -> Vec<u8> {
    let cfg = write_json(dir, "our-tap.json", &source.conn_config());
    let selected: Vec<(&str, &str, Option<&str>)> =
        streams.iter().map(|s| (*s, "FULL_TABLE", None)).collect();
    let catalog = write_json(dir, "our-catalog.json", &select(&discover(&cfg), &selected));
    let out = command(
        bin("tap-postgres"),
        &[("--config", &cfg), ("--catalog", &catalog)],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(out.status.success(), "our tap: {}", texts(&out));
    out.stdout
}

/// The lines of `messages` that belong to `stream` (and STATE lines).
fn only_stream(messages: &[u8], stream: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in messages.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let m: Value = serde_json::from_slice(line).unwrap();
        if m["stream"] == stream || m["type"] == "STATE" {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out
}

fn with(base: Value, extra: Value) -> Value {
    let mut base = base;
    for (k, v) in extra.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

// ---------------------------------------------------------------- comparing

/// Column name → type (`format_type`) of `schema.table`, in column order,
/// without the targets' `_sdc_*` columns.
async fn column_types(db: &TestDb, schema: &str, table: &str) -> Vec<(String, String)> {
    db.query_json(&format!(
        "SELECT attname AS c, format_type(atttypid, atttypmod) AS ty FROM pg_attribute \
         WHERE attrelid = to_regclass('{schema}.{table}') AND attnum > 0 AND NOT attisdropped \
           AND attname NOT LIKE '\\_sdc\\_%' ORDER BY attnum"
    ))
    .await
    .into_iter()
    .map(|r| {
        (
            r["c"].as_str().unwrap().to_string(),
            r["ty"].as_str().unwrap().to_string(),
        )
    })
    .collect()
}

/// The type of each of `columns` in the target, in `columns`' order.
async fn types_of(
    db: &TestDb,
    schema: &str,
    table: &str,
    columns: &[&str],
) -> Vec<(String, String)> {
    let all = column_types(db, schema, table).await;
    assert!(!all.is_empty(), "{schema}.{table} does not exist");
    columns
        .iter()
        .map(|c| {
            let t = all
                .iter()
                .find(|(n, _)| n == c)
                .unwrap_or_else(|| panic!("{schema}.{table} has no column {c}: {all:?}"));
            t.clone()
        })
        .collect()
}

/// A source column's value as the target type would hold it, as text.
fn source_expr(column: &str, target_type: &str) -> String {
    let c = format!("\"{column}\"");
    match target_type {
        "jsonb" | "json" => format!("to_jsonb({c})::text"),
        "timestamp without time zone" => {
            format!("CASE WHEN pg_typeof({c}) = 'timestamptz'::regtype THEN ({c}::timestamptz AT TIME ZONE 'UTC')::text ELSE {c}::text::timestamp::text END")
        }
        t => format!("({c})::{t}::text"),
    }
}

/// Every row of `source_table` (ordered by id), each column cast to the
/// target's type, against the target's rows as text; `except` lists
/// (column, id, reason) cells a target's own behaviour changes.
async fn assert_rows(
    source: &TestDb,
    source_table: &str,
    target: &TestDb,
    target_table: &str,
    types: &[(String, String)],
    except: &[(&str, i64, &str)],
) -> usize {
    let src: Vec<String> = types.iter().map(|(c, t)| source_expr(c, t)).collect();
    let tgt: Vec<String> = types
        .iter()
        .map(|(c, t)| {
            if t == "jsonb" || t == "json" {
                format!("(\"{c}\")::jsonb::text")
            } else {
                format!("(\"{c}\")::text")
            }
        })
        .collect();
    let q = |cols: &[String], table: &str| {
        format!(
            "SELECT id::int8 AS id, to_json(ARRAY[{}]) AS r FROM {table} ORDER BY id",
            cols.join(", ")
        )
    };
    let s = source.query_json(&q(&src, source_table)).await;
    let t = target.query_json(&q(&tgt, target_table)).await;
    let ids = |rows: &[Value]| {
        rows.iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&t), ids(&s), "{target_table}: rows");
    let mut differ = Vec::new();
    for (sr, tr) in s.iter().zip(&t) {
        let id = sr["id"].as_i64().unwrap();
        for (i, (c, _)) in types.iter().enumerate() {
            let (a, b) = (&sr["r"][i], &tr["r"][i]);
            let excused = except.iter().any(|(ec, eid, _)| ec == c && *eid == id);
            if a != b && !excused {
                differ.push(format!("id {id}, {c}: source {a} target {b}"));
            } else if a == b && excused {
                differ.push(format!(
                    "id {id}, {c}: listed as a known difference but equal"
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{target_table}:\n{}", differ.join("\n"));
    t.len()
}

/// `baseline` with the types of `better`'s columns replaced.
fn improved(baseline: &[(String, String)], better: &[(&str, &str)]) -> Vec<(String, String)> {
    baseline
        .iter()
        .map(|(c, t)| {
            let t = better
                .iter()
                .find(|(b, _)| b == c)
                .map_or(t.as_str(), |(_, bt)| bt);
            (c.clone(), t.to_string())
        })
        .collect()
}

/// The column types of `tgt.common` in `ours`, asserted to be the
/// target's `baseline` (from its own family's tap) with `better` in place.
async fn types_against_baseline(
    ours: &TestDb,
    baseline: &[(String, String)],
    better: &[(&str, &str)],
    what: &str,
) -> Vec<(String, String)> {
    let types = types_of(ours, "tgt", "common", COMMON).await;
    eprintln!(
        "{what} baseline {:?}\nours {:?}",
        pairs(baseline),
        pairs(&types)
    );
    assert_eq!(
        pairs(&types),
        pairs(&improved(baseline, better)),
        "{what}: ours vs the baseline"
    );
    types
}

fn pairs(v: &[(String, String)]) -> Vec<String> {
    v.iter().map(|(c, t)| format!("{c} {t}")).collect()
}

// ---------------------------------------------------------------- cells

/// The source database with both tables.
async fn source_db() -> TestDb {
    let db = cluster().create_database().await;
    db.execute_batch(TABLES).await;
    db
}

#[tokio::test]
async fn our_tap_output_passes_singer_python_the_sdk_and_singer_check_tap() {
    let v = venvs();
    let (Some(singer), Some(sdk)) = (&v.singer, &v.meltano_target) else {
        return;
    };
    let source = source_db().await;
    let dir = tempfile::tempdir().unwrap();
    let messages = our_tap(dir.path(), &source, &["public-common", "public-special"]);
    let records = messages
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(br#"{"type":"RECORD""#))
        .count();
    assert_eq!(records, 7);

    let transform = r#"
import sys, singer
from singer import Transformer
schemas, n = {}, 0
with Transformer() as tr:
    for line in sys.stdin:
        m = singer.parse_message(line)
        if isinstance(m, singer.SchemaMessage):
            schemas[m.stream] = m.schema
        elif isinstance(m, singer.RecordMessage):
            tr.transform(m.record, schemas[m.stream])
            n += 1
print(n)
"#;
    let mut c = Command::new(singer.join("python"));
    c.arg("-c").arg(transform);
    let out = run_with_input(c, &messages, Duration::from_secs(60));
    assert!(out.status.success(), "singer-python: {}", texts(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");

    let validate = r#"
import decimal, json, sys
from singer_sdk.sinks.core import JSONSchemaValidator
validators, n = {}, 0
for line in sys.stdin:
    m = json.loads(line, parse_float=decimal.Decimal)
    if m["type"] == "SCHEMA":
        validators[m["stream"]] = JSONSchemaValidator(m["schema"], validate_formats=True)
        checks = validators[m["stream"]].validator.format_checker.checkers
        assert {"date", "date-time", "time"} <= set(checks), sorted(checks)
    elif m["type"] == "RECORD":
        validators[m["stream"]].validate(m["record"])
        n += 1
print(n)
"#;
    let mut c = Command::new(sdk.join("python"));
    c.arg("-c").arg(validate);
    let out = run_with_input(c, &messages, Duration::from_secs(60));
    assert!(out.status.success(), "SDK validation: {}", texts(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");

    let out = run_with_input(
        Command::new(singer.join("singer-check-tap")),
        &messages,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "singer-check-tap: {}", texts(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("public-special"),
        "{}",
        texts(&out)
    );
}

#[tokio::test]
async fn our_tap_into_our_target_is_exact() {
    let source = source_db().await;
    let target = cluster().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let messages = our_tap(dir.path(), &source, &["public-common", "public-special"]);
    let cfg = write_json(
        dir.path(),
        "target.json",
        &with(
            target.conn_config(),
            json!({"default_target_schema": "tgt"}),
        ),
    );
    let out = run_with_input(
        command(bin("target-postgres"), &[("--config", &cfg)]),
        &messages,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{}", texts(&out));
    for (table, columns) in [("common", COMMON), ("special", SPECIAL)] {
        let types = types_of(&target, "tgt", table, columns).await;
        let source_types = types_of(&source, "public", table, columns).await;
        assert_eq!(
            pairs(&types),
            pairs(&source_types),
            "{table}: the source's types"
        );
        assert_rows(
            &source,
            table,
            &target,
            &format!("tgt.{table}"),
            &types,
            &[],
        )
        .await;
    }
}

/// MeltanoLabs target-postgres: its own tap's `common` (the baseline) and
/// ours land with the same types, better for integers and uuid, text for
/// `tm` (their tap writes `format: time`, ours cannot: README); values
/// exact but where the target's mapping changes them. Our `special` makes
/// it stop loudly at the widened SCHEMA (it cannot alter a column).
#[tokio::test]
async fn meltanolabs_target_loads_our_tap_as_well_as_its_own() {
    let v = venvs();
    let (Some(mt), Some(mp)) = (&v.meltano_target, &v.meltano_tap) else {
        return;
    };
    let source = source_db().await;
    let dir = tempfile::tempdir().unwrap();
    let target_cfg = |db: &TestDb, name: &str| {
        let mut c = db.conn_config();
        c["database"] = c["dbname"].clone();
        write_json(
            dir.path(),
            name,
            &with(c, json!({"default_target_schema": "tgt"})),
        )
    };

    // Baseline: MeltanoLabs tap → MeltanoLabs target.
    let base = cluster().create_database().await;
    let messages = meltanolabs_tap(mp, dir.path(), &source, "public-common");
    let out = run_with_input(
        command(
            mt.join("target-postgres"),
            &[("--config", &target_cfg(&base, "b.json"))],
        ),
        &messages,
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "baseline: {}", texts(&out));
    let baseline = types_of(&base, "tgt", "common", COMMON).await;

    let ours = cluster().create_database().await;
    let messages = our_tap(dir.path(), &source, &["public-common", "public-special"]);
    let out = run_with_input(
        command(
            mt.join("target-postgres"),
            &[("--config", &target_cfg(&ours, "o.json"))],
        ),
        &messages,
        Duration::from_secs(120),
    );
    // `special`'s widened SCHEMA (num: number → number|string) stops it.
    assert!(!out.status.success(), "{}", texts(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Could not convert column 'tgt.special.num'"),
        "{}",
        texts(&out)
    );
    let types = types_of(&ours, "tgt", "common", COMMON).await;
    // Better than the baseline: our integer bounds give the narrow integer
    // types, `format: uuid` gives uuid. Elsewhere the same.
    let better = [
        ("id", "integer"),
        ("i2", "smallint"),
        ("u", "uuid"),
        // The one column worse than the baseline, by choice (README): no
        // `format: time` satisfies both RFC 3339 validators and
        // singer-check-tap, so time is a plain string.
        ("tm", "text"),
    ];
    assert_eq!(
        pairs(&types),
        pairs(&improved(&baseline, &better)),
        "ours vs the baseline"
    );
    // The target's limits: a SQL NULL json becomes JSON null.
    let except = [("j", 3, "SQL NULL jsonb stored as JSON null by the target")];
    assert_rows(&source, "common", &ours, "tgt.common", &types, &except).await;
    assert_rows(&source, "common", &base, "tgt.common", &baseline, &except).await;
    // It stopped before loading any of `special`: nothing silently changed.
    let special = column_types(&ours, "tgt", "special").await;
    if !special.is_empty() {
        let n = ours
            .query_json("SELECT count(*) AS n FROM tgt.special")
            .await;
        assert_eq!(n[0]["n"], 0, "special rows before the failure");
    }
}

fn meltanolabs_tap(venv: &Path, dir: &Path, source: &TestDb, stream: &str) -> Vec<u8> {
    let mut c = source.conn_config();
    c["database"] = c["dbname"].clone();
    c["filter_schemas"] = json!(["public"]);
    let cfg = write_json(dir, "meltano-tap.json", &c);
    other_tap(
        &venv.join("tap-postgres"),
        &cfg,
        dir,
        stream,
        "MeltanoLabs tap",
    )
}

/// Another tap (`program`, config file `cfg`): `--discover`, `stream`
/// selected FULL_TABLE, then the sync; its stdout. `what` names it in
/// failures.
fn other_tap(program: &Path, cfg: &Path, dir: &Path, stream: &str, what: &str) -> Vec<u8> {
    let out = command(program.to_path_buf(), &[("--config", cfg)])
        .arg("--discover")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{what} --discover: {}", texts(&out));
    let catalog: Value = serde_json::from_slice(&out.stdout).unwrap();
    let catalog = write_json(
        dir,
        "other-catalog.json",
        &select(&catalog, &[(stream, "FULL_TABLE", None)]),
    );
    let out = command(
        program.to_path_buf(),
        &[("--config", cfg), ("--catalog", &catalog)],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(out.status.success(), "{what}: {}", texts(&out));
    out.stdout
}

/// `special` in another target: every value it loaded reads back as the
/// source value (the target's text cast to the source type; jsonb compared
/// as jsonb), and a target that did not load everything failed loudly
/// (non-zero exit). A target that met a widened SCHEMA by renaming the old
/// column (`<col>_<timestamp>`, the pipelinewise way) and adding a new one
/// has each value in one of them.
async fn special_exact_or_loud(source: &TestDb, target: &TestDb, out: &Output, what: &str) {
    let all = column_types(target, "tgt", "special").await;
    if out.status.success() {
        assert!(
            !all.is_empty(),
            "{what}: succeeded without loading special: {}",
            texts(out)
        );
    } else {
        assert!(!out.stderr.is_empty(), "{what}: failed silently");
    }
    if all.is_empty() {
        return;
    }
    let source_types = types_of(source, "public", "special", SPECIAL).await;
    let mut src = Vec::new();
    let mut tgt = Vec::new();
    for (c, st) in &source_types {
        let mine: Vec<&(String, String)> = all
            .iter()
            .filter(|(n, _)| n == c || n.starts_with(&format!("{c}_2")))
            .collect();
        assert!(
            !mine.is_empty(),
            "{what}: special has no column {c}: {all:?}"
        );
        let texts: Vec<String> = mine.iter().map(|(n, _)| format!("\"{n}\"::text")).collect();
        let value = format!("COALESCE({})", texts.join(", "));
        if mine.iter().any(|(_, t)| t == "jsonb") && !st.starts_with("json") {
            src.push(format!("to_jsonb(\"{c}\")::text"));
            tgt.push(format!("({value})::jsonb::text"));
        } else {
            src.push(format!("\"{c}\"::text"));
            tgt.push(format!("({value})::{st}::text"));
        }
    }
    let q = |cols: &[String], table: &str| {
        format!(
            "SELECT id::int8 AS id, to_json(ARRAY[{}]) AS r FROM {table} ORDER BY id",
            cols.join(", ")
        )
    };
    let t = target.query_json(&q(&tgt, "tgt.special")).await;
    let s = source.query_json(&q(&src, "special")).await;
    let mut differ = Vec::new();
    for tr in &t {
        let sr = s
            .iter()
            .find(|r| r["id"] == tr["id"])
            .expect("a source row");
        for (i, (c, _)) in source_types.iter().enumerate() {
            if sr["r"][i] != tr["r"][i] {
                differ.push(format!(
                    "id {}, {c}: source {} target {}",
                    tr["id"], sr["r"][i], tr["r"][i]
                ));
            }
        }
    }
    assert!(differ.is_empty(), "{what}: special:\n{}", differ.join("\n"));
    if out.status.success() {
        assert_eq!(t.len(), 4, "{what}: special rows");
    }
    eprintln!(
        "{what}: special: {} rows exact, columns {:?}",
        t.len(),
        pairs(&all)
    );
}

/// The pipelinewise tap (and the Macrometa source, its fork) writes a NULL
/// array as `[]` (row 3 of `common`).
const PW_TAP_NULL_ARRAYS: &[(&str, i64, &str)] = &[
    ("tags", 3, "the pipelinewise tap writes a NULL array as []"),
    ("ints", 3, "the pipelinewise tap writes a NULL array as []"),
];

/// Where our tap's `common` lands differently from the pipelinewise family's
/// own tap in the pipelinewise and Macrometa targets (same mapping code).
const PW_MAPPING: [(&str, &str); 2] = [
    // The targets' mapping: `format: date` → varchar whatever the tap (the
    // family's taps send dates as `date-time`, so timestamps).
    ("d", "character varying"),
    // Ours by choice (README): time has no `format: time`.
    ("tm", "character varying"),
];

/// pipelinewise-target-postgres 2.1.2 (whichever tap): a newline in text
/// arrives as the two characters `\n`, and `''` becomes NULL (its CSV
/// load).
const PW_TARGET: &[(&str, i64, &str)] = &[
    ("t", 1, "the pipelinewise target writes a newline as \\n"),
    ("t", 2, "the pipelinewise target loads '' as NULL"),
    ("vc", 2, "the pipelinewise target loads '' as NULL"),
];

fn pipelinewise_tap(venv: &Path, dir: &Path, source: &TestDb, stream: &str) -> Vec<u8> {
    let mut c = source.conn_config();
    c["port"] = json!(source.port().to_string());
    c["filter_schemas"] = json!("public");
    let cfg = write_json(dir, "pw-tap.json", &c);
    other_tap(
        &venv.join("tap-postgres"),
        &cfg,
        dir,
        stream,
        "pipelinewise tap",
    )
}

fn pipelinewise_target(venv: &Path, dir: &Path, target: &TestDb, messages: &[u8]) -> Output {
    let mut c = target.conn_config();
    c["port"] = json!(target.port().to_string());
    c["default_target_schema"] = json!("tgt");
    let cfg = write_json(dir, &format!("pw-{}.json", target.name()), &c);
    run_with_input(
        command(venv.join("target-postgres"), &[("--config", &cfg)]),
        messages,
        Duration::from_secs(120),
    )
}

/// pipelinewise-target-postgres 2.1.2: its own tap (the baseline) and ours
/// land `common` with the same types (it types every number double
/// precision and dates varchar whatever the tap sends), better for arrays
/// (`items` typed: its tap sends none).
#[tokio::test]
async fn pipelinewise_target_loads_our_tap_as_well_as_its_own() {
    let Some(pw) = &venvs().pipelinewise else {
        return;
    };
    let source = source_db().await;
    let dir = tempfile::tempdir().unwrap();
    let base = cluster().create_database().await;
    let messages = pipelinewise_tap(pw, dir.path(), &source, "public-common");
    let out = pipelinewise_target(pw, dir.path(), &base, &messages);
    assert!(out.status.success(), "baseline: {}", texts(&out));
    let baseline = types_of(&base, "tgt", "common", COMMON).await;

    let ours = cluster().create_database().await;
    let messages = our_tap(dir.path(), &source, &["public-common"]);
    let out = pipelinewise_target(pw, dir.path(), &ours, &messages);
    assert!(out.status.success(), "ours: {}", texts(&out));
    let types = types_against_baseline(&ours, &baseline, &PW_MAPPING, "pipelinewise").await;
    assert_rows(&source, "common", &ours, "tgt.common", &types, PW_TARGET).await;
    let mut both: Vec<_> = PW_TARGET
        .iter()
        .chain(PW_TAP_NULL_ARRAYS)
        .copied()
        .collect();
    both.push((
        "j",
        3,
        "with its own tap's schema, the target stores a NULL json as JSON null",
    ));
    assert_rows(&source, "common", &base, "tgt.common", &baseline, &both).await;

    let special = cluster().create_database().await;
    let messages = our_tap(dir.path(), &source, &["public-special"]);
    let out = pipelinewise_target(pw, dir.path(), &special, &messages);
    special_exact_or_loud(&source, &special, &out, "pipelinewise target").await;
}

/// Macrometa's programs bind fixed metrics ports (8000, 8001): one at a time.
static MACROMETA: Mutex<()> = Mutex::new(());

fn macrometa_source(venv: &Path, dir: &Path, source: &TestDb, table: &str) -> Vec<u8> {
    let mut c = source.conn_config();
    c["filter_schemas"] = json!("public");
    c["filter_table"] = json!(table);
    c["replication_method"] = json!("FULL_TABLE");
    let cfg = write_json(dir, "macrometa-source.json", &c);
    let _port = MACROMETA.lock().unwrap_or_else(|e| e.into_inner());
    other_tap(
        &venv.join("macrometa-source-postgres"),
        &cfg,
        dir,
        &format!("public-{table}"),
        "Macrometa source",
    )
}

/// macrometa-target-postgres into `target_table` = `table`.
///
/// Holds the MACROMETA lock across awaits on purpose: each test has its own
/// runtime on its own thread, and the lock is there to make the other tests
/// wait. It never exits
/// on its own (a service that flushes on a timer): wait, bounded, until
/// `table` holds `rows` rows or the target exited; then stop it.
#[allow(clippy::await_holding_lock)]
async fn macrometa_target(
    venv: &Path,
    dir: &Path,
    target: &TestDb,
    messages: &[u8],
    table: &str,
    rows: i64,
) -> Output {
    let mut c = target.conn_config();
    c["default_target_schema"] = json!("tgt");
    c["target_table"] = json!(table);
    c["batch_flush_interval"] = json!(1);
    c["batch_flush_min_time_gap"] = json!(0);
    let cfg = write_json(
        dir,
        &format!("macrometa-{}-{table}.json", target.name()),
        &c,
    );
    let _port = MACROMETA.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = command(
        venv.join("macrometa-target-postgres"),
        &[("--config", &cfg)],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = messages.to_vec();
    // The pipe stays open until the end: closing it does not end this target.
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
        stdin
    });
    let count = format!(
        "SELECT CASE WHEN to_regclass('tgt.{table}') IS NULL THEN -1 \
         ELSE (xpath('/row/n/text()', query_to_xml('SELECT count(*) AS n FROM tgt.{table}', false, true, '')))[1]::text::int8 END AS n"
    );
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        if matches!(child.try_wait(), Ok(Some(_))) {
            break;
        }
        if target.query_json(&count).await[0]["n"].as_i64() == Some(rows) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    drop(feeder.join());
    child.wait_with_output().unwrap()
}

/// macrometa-target-postgres 1.0.0: its own source (the baseline) and our
/// tap land `common` with the same types (numbers double precision, dates
/// varchar, arrays jsonb: its mapping), values exact as those types hold
/// them; `special` loads exactly (NaN, infinity dates as varchar text).
#[tokio::test]
async fn macrometa_target_loads_our_tap_as_well_as_its_own_source() {
    let Some(mc) = &venvs().macrometa else {
        return;
    };
    let source = source_db().await;
    let dir = tempfile::tempdir().unwrap();
    let base = cluster().create_database().await;
    let messages = macrometa_source(mc, dir.path(), &source, "common");
    let out = macrometa_target(mc, dir.path(), &base, &messages, "common", 3).await;
    assert!(
        !column_types(&base, "tgt", "common").await.is_empty(),
        "baseline: {}",
        texts(&out)
    );
    let baseline = types_of(&base, "tgt", "common", COMMON).await;

    let ours = cluster().create_database().await;
    let messages = our_tap(dir.path(), &source, &["public-common", "public-special"]);
    let out = macrometa_target(
        mc,
        dir.path(),
        &ours,
        &only_stream(&messages, "public-common"),
        "common",
        3,
    )
    .await;
    assert!(
        !column_types(&ours, "tgt", "common").await.is_empty(),
        "ours: {}",
        texts(&out)
    );
    let types = types_against_baseline(&ours, &baseline, &PW_MAPPING, "macrometa").await;
    // A pipelinewise fork: the same load limits.
    assert_rows(&source, "common", &ours, "tgt.common", &types, PW_TARGET).await;
    let mut both: Vec<_> = PW_TARGET
        .iter()
        .chain(PW_TAP_NULL_ARRAYS)
        .copied()
        .collect();
    both.push((
        "j",
        3,
        "with its source's schema, the target stores a NULL json as JSON null",
    ));
    assert_rows(&source, "common", &base, "tgt.common", &baseline, &both).await;

    let mut out = macrometa_target(
        mc,
        dir.path(),
        &ours,
        &only_stream(&messages, "public-special"),
        "special",
        4,
    )
    .await;
    // Stopped by us once every row was in: that is its success.
    if ours
        .query_json("SELECT count(*) AS n FROM tgt.special")
        .await[0]["n"]
        == 4
    {
        out.status = std::process::ExitStatus::default();
    }
    special_exact_or_loud(&source, &ours, &out, "Macrometa target").await;
}

/// Other taps → our target: `common` lands natively typed and exact.
async fn other_tap_into_ours(
    messages: &[u8],
    source: &TestDb,
    what: &str,
    except: &[(&str, i64, &str)],
) {
    let target = cluster().create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_json(
        dir.path(),
        "target.json",
        &with(
            target.conn_config(),
            json!({"default_target_schema": "tgt", "primary_key_required": false}),
        ),
    );
    let out = run_with_input(
        command(bin("target-postgres"), &[("--config", &cfg)]),
        messages,
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{what} → our target: {}", texts(&out));
    let types = types_of(&target, "tgt", "common", COMMON).await;
    eprintln!("{what} → our target: {:?}", pairs(&types));
    assert_rows(source, "common", &target, "tgt.common", &types, except).await;
    // Natural types: nothing a tap typed lands as jsonb but json itself.
    for (c, t) in &types {
        assert!(
            t != "jsonb" || c == "j" || c == "tags" || c == "ints",
            "{what}: {c} is {t}"
        );
    }
}

#[tokio::test]
async fn other_taps_load_into_our_target_natively() {
    let v = venvs();
    let source = source_db().await;
    let dir = tempfile::tempdir().unwrap();
    if let Some(mp) = &v.meltano_tap {
        let m = meltanolabs_tap(mp, dir.path(), &source, "public-common");
        other_tap_into_ours(&m, &source, "MeltanoLabs tap", &[]).await;
    }
    if let Some(pw) = &v.pipelinewise {
        let m = pipelinewise_tap(pw, dir.path(), &source, "public-common");
        other_tap_into_ours(&m, &source, "pipelinewise tap", PW_TAP_NULL_ARRAYS).await;
    }
    if let Some(mc) = &v.macrometa {
        let m = macrometa_source(mc, dir.path(), &source, "common");
        other_tap_into_ours(&m, &source, "Macrometa source", PW_TAP_NULL_ARRAYS).await;
    }
}

//! The command line of both binaries, run for real: `--about`, `--version`,
//! config validation errors and warnings, exit codes.

use std::io::Write;

use e2e::{run, texts};
use serde_json::Value;

const PROGRAMS: [&str; 2] = ["tap-postgres", "target-postgres"];

#[test]
fn about_json_is_meltano_shaped_with_every_setting() {
    for (name, settings) in [
        ("tap-postgres", tap_postgres::settings()),
        ("target-postgres", target_postgres::settings()),
    ] {
        let out = run(name, &["--about", "--format", "json"]);
        assert!(out.status.success(), "{name}: {:?}", out);
        let about: Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        assert_eq!(about["name"], name);
        assert_eq!(about["version"], env!("CARGO_PKG_VERSION"));
        assert!(about["description"].as_str().unwrap().len() > 20);
        let caps: Vec<&str> = about["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(caps.contains(&"about"), "{name}: {caps:?}");
        assert!(caps.contains(&"activate-version"), "{name}: {caps:?}");
        let props = about["settings"]["properties"].as_object().unwrap();
        let keys: Vec<&String> = props.keys().collect();
        let expected: Vec<&String> = settings.properties().keys().collect();
        assert_eq!(keys, expected, "{name}");
        for key in [
            "host", "port", "user", "password", "dbname", "sslmode", "ssl",
        ] {
            assert!(props.contains_key(key), "{name} lacks {key}");
        }
    }
    let out = run("tap-postgres", &["--about", "--format", "json"]);
    let about: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "filter_schemas",
        "default_replication_method",
        "replication_slot",
        "itersize",
        "use_secondary",
        "tap_id",
    ] {
        assert!(about["settings"]["properties"].get(key).is_some(), "{key}");
    }
    let out = run("target-postgres", &["--about", "--format", "json"]);
    let about: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "default_target_schema",
        "schema_mapping",
        "batch_size_rows",
        "hard_delete",
        "target_table",
    ] {
        assert!(about["settings"]["properties"].get(key).is_some(), "{key}");
    }
}

#[test]
fn about_markdown_and_text() {
    for name in PROGRAMS {
        let (md, _) = texts(&run(name, &["--about", "--format", "markdown"]));
        assert!(md.starts_with(&format!("# `{name}`\n")), "{md}");
        assert!(md.contains("| `host` | string | yes |  |"), "{md}");
        let (text, _) = texts(&run(name, &["--about"]));
        assert!(text.starts_with(&format!("Name: {name}\n")), "{text}");
    }
}

#[test]
fn version() {
    for name in PROGRAMS {
        let out = run(name, &["--version"]);
        assert!(out.status.success());
        assert_eq!(
            texts(&out).0,
            format!("{name} {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn config_errors_name_file_and_key_and_exit_1() {
    for name in PROGRAMS {
        let f = config_file(r#"{"host": "h", "dbname": "d", "port": "x5432"}"#);
        let path = f.path().to_str().unwrap();
        let out = run(name, &["--config", path]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let (stdout, stderr) = texts(&out);
        assert_eq!(stdout, "", "{name}: stdout must stay clean");
        assert!(
            stderr.contains(&format!("CRITICAL {path}: missing required key `user`")),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{path}: key `port`: ")),
            "{name}: {stderr}"
        );

        let out = run(name, &["--config", "/nonexistent/c.json"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            texts(&out)
                .1
                .starts_with("CRITICAL /nonexistent/c.json: cannot read config: "),
            "{name}: {}",
            texts(&out).1
        );

        let f = config_file("{\"host\": \"h\",\n \"user\": }");
        let path = f.path().to_str().unwrap();
        let out = run(name, &["--config", path]);
        assert_eq!(
            texts(&out).1,
            format!("CRITICAL {path}: line 2, column 10: invalid JSON: expected value\n"),
            "{name}"
        );

        // The connection keys are checked before anything else happens.
        let f = config_file(r#"{"host": "h", "user": "u"}"#);
        let path = f.path().to_str().unwrap();
        let out = run(name, &["--config", path]);
        assert_eq!(
            texts(&out).1,
            format!("CRITICAL {path}: `dbname` is required (or `database`)\n"),
            "{name}"
        );
    }
}

#[test]
fn unknown_keys_warn_on_stderr() {
    for name in PROGRAMS {
        let f = config_file(r#"{"host": "h", "user": "u", "dbname": "d", "hots": "x"}"#);
        let path = f.path().to_str().unwrap();
        let out = run(name, &["--config", path]);
        let (stdout, stderr) = texts(&out);
        assert_eq!(stdout, "");
        assert!(
            stderr.contains(&format!(
                "{path}: unknown key `hots` is ignored (did you mean `host`?)"
            )),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("WARN"), "{name}: {stderr}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = run("tap-postgres", &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(
        "tap-postgres",
        &["--config", "c", "--catalog", "a", "--properties", "b"],
    );
    assert_eq!(out.status.code(), Some(2));
}

/// Issue 10, item 5: a numeric `user` and `password` (templating turns
/// `"123456"` into a number) are taken as their digits by both programs,
/// and a password the schema refuses is never echoed (before: `key
/// "password": 98765432109876 is not of type "string"`).
#[tokio::test]
async fn numeric_user_and_password_work_and_are_never_echoed() {
    let db = pg_testkit::cluster().create_database().await;
    db.execute_batch(
        "DO $$ BEGIN CREATE ROLE \"12345\" LOGIN SUPERUSER PASSWORD '98765432109876';
         EXCEPTION WHEN duplicate_object THEN NULL; END $$;",
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = db.conn_config();
    cfg["user"] = serde_json::json!(12345);
    cfg["password"] = serde_json::json!(98765432109876u64);
    let path = e2e::write_json(dir.path(), "numeric.json", &cfg);
    let out = run(
        "tap-postgres",
        &["--config", path.to_str().unwrap(), "--discover"],
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\"streams\""), "{stdout}");
    let input = dir.path().join("empty.jsonl");
    std::fs::write(&input, "").unwrap();
    let out = std::process::Command::new(e2e::bin("target-postgres"))
        .args(["--config", path.to_str().unwrap()])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", texts(&out).1);

    cfg["password"] = serde_json::json!([98765432109876u64]);
    let path = e2e::write_json(dir.path(), "bad.json", &cfg);
    for program in PROGRAMS {
        let out = run(program, &["--config", path.to_str().unwrap()]);
        let (_, stderr) = texts(&out);
        assert_eq!(out.status.code(), Some(1), "{program}: {stderr}");
        assert!(
            stderr.contains("key `password`: the value breaks the schema's `type` rule")
                && !stderr.contains("98765432109876"),
            "{program}: {stderr}"
        );
    }
}

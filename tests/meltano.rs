//! Installing and running the programs the way Meltano users do, with a
//! real Meltano from PyPI:
//!
//! - the pip wheels ([`e2e::wheels`]: maturin from PyPI packs the binaries
//!   the tests run) install into a fresh virtualenv with no package index
//!   and put working `tap-postgres` and `target-postgres` executables on its
//!   PATH that need no system library beyond libc;
//! - `examples/meltano/meltano.yml` as it is, in a copy of the checkout's
//!   layout (the wheels in `dist/` two levels up): `meltano install`
//!   installs both programs through `pip_url`, then `meltano run
//!   tap-postgres target-postgres` twice on an INCREMENTAL and a LOG_BASED
//!   stream, the second run starting from the state Meltano stored;
//! - `meltano add … --from-ref examples/meltano/hub/<program>.yml` in an
//!   empty project adds and installs each program (pip/uv find the wheels
//!   through `PIP_FIND_LINKS`/`UV_FIND_LINKS`), and a run with the
//!   definitions' settings loads a table.
//!
//! No test puts `target/` on PATH: Meltano runs the programs it installed.
//! Meltano goes into `target/meltano-venv` (kept, so later runs reuse it).
//! An unreachable package index skips these tests with a loud SKIPPED line,
//! except in CI (`CI=true`), where it fails them; any other install failure
//! fails them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use e2e::{assert_same_rows, wheel_of, wheels, workspace_root, Unreachable};
use pg_testkit::{cluster, TestDb};
use serde_json::Value;

/// What `pip install` installs (the version the reference notes used).
const MELTANO: &str = "meltano>=4.4,<5";

const PROGRAMS: [&str; 2] = ["tap-postgres", "target-postgres"];

/// Meltano in `target/meltano-venv`, installed once per process. `None`
/// (after a loud SKIPPED line) when the package index is unreachable.
fn meltano() -> Option<PathBuf> {
    static MELTANO_BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    MELTANO_BIN
        .get_or_init(|| {
            e2e::python_venv(
                "meltano-venv",
                Path::new("python3"),
                &[MELTANO],
                "the Meltano end-to-end tests",
            )
            .map(|bin| bin.join("meltano"))
        })
        .clone()
}

/// The wheel distribution of a program (`tap-postgres-rs`).
fn distribution(program: &str) -> String {
    let about = match program {
        "tap-postgres" => tap_postgres::ABOUT,
        _ => target_postgres::ABOUT,
    };
    plugin::meltano::distribution(&about)
}

fn texts(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// This process's PATH without any directory that holds one of the
/// programs: what runs must be what was installed.
fn path_without_programs() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| PROGRAMS.iter().all(|p| !d.join(p).exists()))
        .collect();
    std::env::join_paths(dirs)
        .expect("PATH")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn each_wheel_installs_a_working_binary_into_a_fresh_venv() {
    let Some(wheels) = wheels() else { return };
    for program in PROGRAMS {
        let wheel = wheel_of(&wheels, &distribution(program));
        let venv = tempfile::tempdir().unwrap();
        let out = Command::new("python3")
            .args(["-m", "venv"])
            .arg(venv.path())
            .env_remove("PYENV_VERSION")
            .output()
            .unwrap();
        assert!(out.status.success(), "python3 -m venv: {}", texts(&out));
        // --no-index: the wheel alone, nothing fetched, nothing compiled.
        let out = Command::new(venv.path().join("bin/pip"))
            .args(["install", "--no-index", "--disable-pip-version-check"])
            .arg(&wheel)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pip install {}: {}",
            wheel.display(),
            texts(&out)
        );
        let bin = venv.path().join("bin");
        let path = format!("{}:{}", bin.display(), path_without_programs());
        let out = Command::new(program)
            .arg("--version")
            .env("PATH", &path)
            .output()
            .unwrap_or_else(|e| panic!("{program} on the venv's PATH: {e}"));
        assert!(out.status.success(), "{program} --version: {}", texts(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{program} {}\n", env!("CARGO_PKG_VERSION"))
        );
        let out = Command::new(program)
            .args(["--about", "--format", "json"])
            .env("PATH", &path)
            .output()
            .unwrap();
        let about: Value = serde_json::from_slice(&out.stdout).expect("--about is JSON");
        assert_eq!(about["name"], program);
        // Only the C library's own parts: TLS is rustls, nothing else is
        // linked, so the wheel runs on any Linux with a recent enough libc.
        let out = Command::new("ldd").arg(bin.join(program)).output().unwrap();
        assert!(out.status.success(), "ldd: {}", texts(&out));
        let libs: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(|l| l.rsplit('/').next().unwrap().to_string())
            .collect();
        for lib in &libs {
            assert!(
                ["linux-vdso.so.1", "libgcc_s.so.1", "libm.so.6", "libc.so.6"]
                    .contains(&lib.as_str())
                    || lib.starts_with("ld-linux"),
                "{program} links {lib}: {libs:?}"
            );
        }
    }
}

/// In CI an unreachable package index fails the tests that need it (a
/// skipped test there would pass unnoticed); elsewhere they skip.
#[test]
fn an_unreachable_package_index_fails_in_ci() {
    let dir = tempfile::tempdir().unwrap();
    let failed = std::panic::catch_unwind(|| {
        e2e::python_venv_in(
            dir.path(),
            Path::new("python3"),
            &[MELTANO],
            "the unreachable-index test",
            Unreachable::Fail,
            // Port 9 (discard) on the loopback: the connection is refused.
            Some("http://127.0.0.1:9/simple"),
        )
    });
    let message = failed.expect_err("in CI an unreachable index fails");
    let message = message
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("the package index is unreachable")
            && message.contains("in CI (CI=true) that is a failure, not a skip"),
        "{message}"
    );
}

/// `meltano <args>` in `project`, without the programs on PATH and with
/// the connection settings of `source`/`target` in the environment.
fn meltano_cmd(meltano: &Path, project: &Path, source: &TestDb, target: &TestDb) -> Command {
    let mut cmd = Command::new(meltano);
    cmd.current_dir(project)
        .env("PATH", path_without_programs())
        .env("MELTANO_SEND_ANONYMOUS_USAGE_STATS", "false")
        .env_remove("LOG_LEVEL")
        .env_remove("LOG_FORMAT")
        .stdin(Stdio::null());
    for (prefix, db) in [("TAP_POSTGRES", source), ("TARGET_POSTGRES", target)] {
        cmd.env(format!("{prefix}_HOST"), db.host())
            .env(format!("{prefix}_PORT"), db.port().to_string())
            .env(format!("{prefix}_USER"), db.user())
            .env(format!("{prefix}_PASSWORD"), db.password())
            .env(format!("{prefix}_DBNAME"), db.name());
    }
    cmd
}

/// Runs `cmd` with `args`, timed; panics with its output unless it succeeds.
fn run_ok(mut cmd: Command, args: &[&str]) -> Output {
    let started = Instant::now();
    let out = cmd.args(args).output().expect("meltano runs");
    eprintln!(
        "meltano {}: {:.1}s",
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success(),
        "meltano {}: {}",
        args.join(" "),
        texts(&out)
    );
    out
}

/// `dir/name` as a hard link to `file` (a copy across file systems).
fn link(file: &Path, dir: &Path) {
    let to = dir.join(file.file_name().unwrap());
    if std::fs::hard_link(file, &to).is_err() {
        std::fs::copy(file, &to).unwrap();
    }
}

fn stored_state(cmd: Command) -> Value {
    let out = run_ok(
        cmd,
        &["state", "get", "dev:tap-postgres-to-target-postgres"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let state: Value = serde_json::from_str(text.trim())
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
async fn meltano_installs_the_example_project_from_the_wheels_and_runs_it_twice_from_its_stored_state(
) {
    let Some(meltano) = meltano() else { return };
    let Some(wheels) = wheels() else { return };
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
    // The checkout's layout: dist/ with the wheels, examples/meltano/ with
    // meltano.yml as it is.
    let checkout = tempfile::tempdir().unwrap();
    let dist = checkout.path().join("dist");
    let project = checkout.path().join("examples/meltano");
    std::fs::create_dir_all(&dist).unwrap();
    std::fs::create_dir_all(&project).unwrap();
    for program in PROGRAMS {
        link(&wheel_of(&wheels, &distribution(program)), &dist);
    }
    std::fs::copy(
        workspace_root().join("examples/meltano/meltano.yml"),
        project.join("meltano.yml"),
    )
    .unwrap();
    // Slots are per cluster: one per test database.
    let slot = format!("meltano_{}", source.name()).to_lowercase();
    let cmd = || {
        let mut c = meltano_cmd(&meltano, &project, &source, &target);
        c.env("TAP_POSTGRES_REPLICATION_SLOT", &slot);
        c
    };

    run_ok(cmd(), &["install"]);
    for (kind, program) in [
        ("extractors", "tap-postgres"),
        ("loaders", "target-postgres"),
    ] {
        let exe = project.join(format!(".meltano/{kind}/{program}/venv/bin/{program}"));
        assert!(exe.exists(), "meltano install put {}", exe.display());
    }

    run_ok(cmd(), &["run", "tap-postgres", "target-postgres"]);
    assert_target_equals_source(&source, &target).await;
    let exists = target
        .query_json("SELECT to_regclass('shop.not_selected') IS NOT NULL AS e")
        .await;
    assert_eq!(exists[0]["e"], Value::Bool(false), "only selected streams");
    let state1 = stored_state(cmd());
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
    run_ok(cmd(), &["run", "tap-postgres", "target-postgres"]);
    assert_target_equals_source(&source, &target).await;
    // Started from the stored state: INCREMENTAL sent the rows at or past
    // the bookmark (id 500, equal to it, and the three changed), LOG_BASED
    // only the changes (no second initial copy).
    assert_eq!(written_since(&target, "orders", &since).await, 4);
    assert_eq!(written_since(&target, "events", &since).await, 3);
    let state2 = stored_state(cmd());
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

#[tokio::test]
async fn meltano_adds_both_programs_from_the_generated_hub_definitions() {
    let Some(meltano) = meltano() else { return };
    let Some(wheels) = wheels() else { return };
    let source = cluster().create_database().await;
    let target = cluster().create_database().await;
    source
        .execute_batch(
            "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(10,2), tags text[]);
             INSERT INTO items VALUES (1, 'one', 1.10, '{a,b}'), (2, '', NULL, '{}'), (3, 'three', 'NaN', NULL);",
        )
        .await;
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("meltano.yml"),
        "default_environment: dev\nproject_id: from-ref-test\nsend_anonymous_usage_stats: false\n\
         environments:\n- name: dev\n",
    )
    .unwrap();
    let cmd = || {
        let mut c = meltano_cmd(&meltano, project.path(), &source, &target);
        // Until the wheels are on PyPI: where pip (and uv, Meltano's default
        // installer) find them.
        c.env("PIP_FIND_LINKS", &wheels)
            .env("UV_FIND_LINKS", &wheels)
            .env("TAP_POSTGRES_DEFAULT_REPLICATION_METHOD", "FULL_TABLE")
            .env("TARGET_POSTGRES_DEFAULT_TARGET_SCHEMA", "shop");
        c
    };
    let hub = workspace_root().join("examples/meltano/hub");
    for (plugin_type, program) in [("extractor", "tap-postgres"), ("loader", "target-postgres")] {
        let definition = hub.join(format!("{program}.yml"));
        run_ok(
            cmd(),
            &[
                "add",
                plugin_type,
                program,
                "--from-ref",
                definition.to_str().unwrap(),
            ],
        );
    }
    let yml = std::fs::read_to_string(project.path().join("meltano.yml")).unwrap();
    for program in PROGRAMS {
        assert!(
            yml.contains(&format!("pip_url: {}\n", distribution(program))),
            "{yml}"
        );
    }
    assert!(yml.contains("variant: singer-postgres-rs\n"), "{yml}");

    // The definition's defaults reach the program as set values, except
    // sslmode's, which would override `ssl`.
    let out = run_ok(cmd(), &["config", "print", "tap-postgres"]);
    let config: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("meltano config is not JSON ({e}): {}", texts(&out)));
    assert_eq!(config["special_numbers"], "string", "{config}");
    assert_eq!(config["itersize"], 20000, "{config}");
    assert!(config.get("sslmode").is_none(), "{config}");

    // Meltano selects every stream by default.
    run_ok(cmd(), &["run", "tap-postgres", "target-postgres"]);
    assert_same_rows(
        &source,
        "SELECT id, name, price, tags FROM items ORDER BY id",
        &target,
        "SELECT id, name, price, tags FROM shop.items ORDER BY id",
    )
    .await;
}

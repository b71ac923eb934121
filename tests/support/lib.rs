//! Support for the end-to-end tests: finding the real binaries and running
//! them with captured output.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The path of a workspace binary (`tap-postgres`, `target-postgres`) in the
/// same profile directory as the running test (`target/debug`).
///
/// # Panics
/// If it was not built: `make test` builds every binary before the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --workspace --bins` (make test does)",
        path.display()
    );
    path
}

/// Runs a workspace binary with `args`, no stdin, and returns its output.
pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .stdin(Stdio::null())
        .env_remove("LOG_LEVEL")
        .env_remove("LOG_FORMAT")
        .output()
        .expect("binary runs")
}

/// stdout and stderr as text, for assertions.
pub fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// What a `tap | target` pipeline did.
#[derive(Debug)]
pub struct Pipeline {
    /// The tap's exit status.
    pub tap: std::process::ExitStatus,
    /// The target's exit status.
    pub target: std::process::ExitStatus,
    /// The target's stdout: one state per line.
    pub states: Vec<String>,
    /// The tap's stderr.
    pub tap_stderr: String,
    /// The target's stderr.
    pub target_stderr: String,
}

impl Pipeline {
    /// Panics with both stderrs unless both sides exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.tap.success() && self.target.success(),
            "tap: {}\n{}\ntarget: {}\n{}",
            self.tap,
            self.tap_stderr,
            self.target,
            self.target_stderr
        );
    }

    /// The last state the target printed, parsed.
    pub fn last_state(&self) -> serde_json::Value {
        serde_json::from_str(self.states.last().expect("a state")).expect("state is JSON")
    }
}

/// Runs `tap-postgres <tap_args> | target-postgres <target_args>` for real.
pub fn pipe(tap_args: &[&Path], target_args: &[&Path]) -> Pipeline {
    let mut tap = Command::new(bin("tap-postgres"));
    for (i, p) in tap_args.iter().enumerate() {
        tap.arg(["--config", "--catalog", "--state"][i]).arg(p);
    }
    let mut tap = tap
        .env_remove("LOG_LEVEL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tap starts");
    // The Command holds the pipe's read end until it is dropped: drop it
    // right after the spawn, or the tap never sees a broken pipe.
    let target = Command::new(bin("target-postgres"))
        .arg("--config")
        .arg(target_args[0])
        .env_remove("LOG_LEVEL")
        .stdin(Stdio::from(tap.stdout.take().expect("tap stdout")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("target starts");
    let tap_err = tap.stderr.take().expect("tap stderr");
    let tap_stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut std::io::BufReader::new(tap_err), &mut s);
        s
    });
    let target_out = target.wait_with_output().expect("target runs");
    let tap_status = tap.wait().expect("tap runs");
    Pipeline {
        tap: tap_status,
        target: target_out.status,
        states: String::from_utf8_lossy(&target_out.stdout)
            .lines()
            .map(str::to_string)
            .collect(),
        tap_stderr: tap_stderr.join().unwrap_or_default(),
        target_stderr: String::from_utf8_lossy(&target_out.stderr).into_owned(),
    }
}

/// Writes `value` as JSON into `dir/name` and returns the path.
pub fn write_json(dir: &Path, name: &str, value: &serde_json::Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(value).expect("JSON")).expect("write");
    p
}

/// Writes `dir/name`: the connection settings of `db` with the keys of
/// `extra` added (or replaced) — the config file of a tap or a target.
pub fn config_file(
    dir: &Path,
    name: &str,
    db: &pg_testkit::TestDb,
    extra: serde_json::Value,
) -> PathBuf {
    let mut config = db.conn_config();
    for (k, v) in extra.as_object().expect("extra settings are an object") {
        config[k] = v.clone();
    }
    write_json(dir, name, &config)
}

/// Runs `tap-postgres --config <tap_config> --discover` and returns the
/// catalog.
///
/// # Panics
/// If discovery fails (with its stderr).
pub fn discover(tap_config: &Path) -> serde_json::Value {
    discover_with(&bin("tap-postgres"), tap_config)
}

/// Runs `<tap> --config <tap_config> --discover` (any Singer tap: ours or
/// a peer's) and returns the catalog.
///
/// # Panics
/// If discovery fails (with its stderr).
pub fn discover_with(tap: &Path, tap_config: &Path) -> serde_json::Value {
    let out = Command::new(tap)
        .arg("--config")
        .arg(tap_config)
        .arg("--discover")
        .env_remove("LOG_LEVEL")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", tap.display()));
    assert!(
        out.status.success(),
        "discovery failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the catalog is JSON")
}

/// A catalog of `streams` (tap stream id, replication method, replication
/// key) taken from `catalog`, each selected with its method and key in the
/// stream metadata.
///
/// # Panics
/// If a stream is not in `catalog`.
pub fn select(
    catalog: &serde_json::Value,
    streams: &[(&str, &str, Option<&str>)],
) -> serde_json::Value {
    let mut out = Vec::new();
    for (id, method, key) in streams {
        let mut s = catalog["streams"]
            .as_array()
            .expect("streams")
            .iter()
            .find(|s| s["tap_stream_id"] == *id)
            .unwrap_or_else(|| panic!("{id} is not in the catalog"))
            .clone();
        let md = s["metadata"]
            .as_array_mut()
            .expect("metadata")
            .iter_mut()
            .find(|m| m["breadcrumb"].as_array().is_some_and(Vec::is_empty))
            .expect("stream metadata");
        let md = &mut md["metadata"];
        md["selected"] = serde_json::json!(true);
        md["replication-method"] = serde_json::json!(method);
        if let Some(k) = key {
            md["replication-key"] = serde_json::json!(k);
        }
        out.push(s);
    }
    serde_json::json!({ "streams": out })
}

/// Each row's text form (`t::text`), in the order of `select`, on `db`.
pub async fn rows(db: &pg_testkit::TestDb, select: &str) -> Vec<String> {
    db.query_json(&format!("SELECT t::text AS row FROM ({select}) t"))
        .await
        .into_iter()
        .map(|r| r["row"].as_str().expect("text").to_string())
        .collect()
}

/// Panics with the query and the first differing row unless `select` gives
/// the same rows on `target` as `source_select` on `source`.
pub async fn assert_same_rows(
    source: &pg_testkit::TestDb,
    source_select: &str,
    target: &pg_testkit::TestDb,
    target_select: &str,
) {
    let s = rows(source, source_select).await;
    let t = rows(target, target_select).await;
    if let Some((i, (a, b))) = t.iter().zip(&s).enumerate().find(|(_, (a, b))| a != b) {
        panic!("{target_select}: row {i} differs:\n target {a}\n source {b}");
    }
    assert_eq!(
        t.len(),
        s.len(),
        "{target_select}: {} rows in the target, {} in the source",
        t.len(),
        s.len()
    );
}

/// The workspace's root directory (`examples/`, `schemas/`, `target/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// A Python virtualenv `target/<name>` made with `python` and holding
/// `packages` from PyPI, installed on first use and reused after (a marker
/// file records what was installed). Returns its `bin` directory.
///
/// `None`, after a loud `*** SKIPPED` line naming `what`, only when the
/// package index is unreachable and the run is not in CI; in CI
/// (`CI=true`), and on any other install failure, it panics.
pub fn python_venv(name: &str, python: &Path, packages: &[&str], what: &str) -> Option<PathBuf> {
    let on_unreachable = if in_ci() {
        Unreachable::Fail
    } else {
        Unreachable::Skip
    };
    python_venv_in(
        &workspace_root().join("target").join(name),
        python,
        packages,
        what,
        on_unreachable,
        None,
    )
}

/// What [`python_venv_in`] does when the package index cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Return `None` after a loud SKIPPED line (a developer's machine).
    Skip,
    /// Panic (CI, where a skipped test would pass unnoticed).
    Fail,
}

/// [`python_venv`] in the directory `venv`, from the package index
/// `index_url` (pip's default when `None`), with an explicit policy for an
/// unreachable index.
pub fn python_venv_in(
    venv: &Path,
    python: &Path,
    packages: &[&str],
    what: &str,
    on_unreachable: Unreachable,
    index_url: Option<&str>,
) -> Option<PathBuf> {
    let marker = venv.join(".installed");
    let want = packages.join(" ");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == want) {
        eprintln!("{what}: reusing {}", venv.display());
        return Some(venv.join("bin"));
    }
    let started = std::time::Instant::now();
    let _ = std::fs::remove_dir_all(venv);
    let out = Command::new(python)
        .args(["-m", "venv"])
        .arg(venv)
        .env_remove("PYENV_VERSION")
        .output()
        .unwrap_or_else(|e| panic!("{} -m venv: {e}", python.display()));
    let text = |o: &Output| {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(
        out.status.success(),
        "{} -m venv: {}",
        python.display(),
        text(&out)
    );
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args([
        "install",
        "--disable-pip-version-check",
        "--timeout",
        "30",
        "--retries",
        "2",
    ]);
    if let Some(url) = index_url {
        pip.args(["--index-url", url]);
    }
    let out = pip.args(packages).output().expect("pip runs");
    if !out.status.success() {
        let t = text(&out);
        let unreachable = [
            "Failed to establish a new connection",
            "NewConnectionError",
            "Temporary failure in name resolution",
            "Network is unreachable",
            "ConnectTimeoutError",
            "Read timed out",
            "ProxyError",
        ]
        .iter()
        .any(|s| t.contains(s));
        if unreachable && on_unreachable == Unreachable::Fail {
            panic!("{what}: the package index is unreachable, so `pip install {want}` failed, and in CI (CI=true) that is a failure, not a skip:\n{t}");
        }
        if unreachable {
            eprintln!("\n*** SKIPPED: {what}: the package index is unreachable, so `pip install {want}` failed:\n{t}\n");
            return None;
        }
        panic!("pip install {want} failed (the index was reachable):\n{t}");
    }
    std::fs::write(&marker, &want).expect("write the marker");
    eprintln!(
        "{what}: installed {want} into {} in {:.1}s",
        venv.display(),
        started.elapsed().as_secs_f64()
    );
    Some(venv.join("bin"))
}

/// The newest pyenv interpreter `python3.<minor>` (`$(pyenv root)/versions/3.<minor>.*`),
/// or `python3.<minor>` on PATH.
pub fn pyenv_python(minor: u32) -> PathBuf {
    let prefix = format!("3.{minor}.");
    let root = Command::new("pyenv")
        .arg("root")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path().join("bin/python3"))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .unwrap_or_else(|| PathBuf::from(format!("python3.{minor}")))
}

/// Whether this is a CI run (`CI=true` or `CI=1`, as CI services set it):
/// there, a test that cannot reach what it needs fails instead of skipping.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// What `pip install` installs to build wheels (the Makefile's `wheels`
/// uses the same).
pub const MATURIN: &str = "maturin>=1.7,<2";

/// The programs' pip wheels (`tap_postgres_rs-….whl`,
/// `target_postgres_rs-….whl`), built by maturin from PyPI (in
/// `target/maturin-venv`) with the profile of the running test, so the
/// binaries already built for the tests are packed as they are, not
/// compiled again (as long as each program built alone resolves the same
/// crate features as the workspace does; otherwise maturin recompiles a
/// few crates, which costs time, not correctness). Built once per test
/// process into
/// `target/<profile>-wheels/`; returns that directory.
///
/// `None` after a loud SKIPPED line when the package index is unreachable
/// outside CI (see [`python_venv`]); panics when maturin fails.
pub fn wheels() -> Option<PathBuf> {
    static WHEELS: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    WHEELS.get_or_init(build_wheels).clone()
}

fn build_wheels() -> Option<PathBuf> {
    let maturin = python_venv(
        "maturin-venv",
        Path::new("python3"),
        &[MATURIN],
        "building the pip wheels",
    )?
    .join("maturin");
    // target/debug → the `dev` profile, target/release → `release`.
    let bins = bin("tap-postgres")
        .parent()
        .expect("target/<profile>")
        .to_path_buf();
    let profile = match bins.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => panic!("{}: no profile directory", bins.display()),
    };
    let out_dir = bins.with_file_name(format!(
        "{}-wheels",
        bins.file_name().unwrap().to_string_lossy()
    ));
    let _ = std::fs::remove_dir_all(&out_dir);
    for program in ["tap-postgres", "target-postgres"] {
        let started = std::time::Instant::now();
        let manifest = workspace_root()
            .join("crates")
            .join(program)
            .join("Cargo.toml");
        let mut cmd = Command::new(&maturin);
        // What cargo set for this test process describes the test, not the
        // build: a build script that reads it (ring's reads
        // CARGO_MANIFEST_DIR) would make its crate stale and recompile.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref())
            {
                cmd.env_remove(name.as_ref());
            }
        }
        let out = cmd
            .args(["build", "--locked", "--profile", &profile])
            // Uncompressed: a debug binary is large and these wheels only
            // travel to the next directory.
            .args(["--compression-method", "stored", "--manifest-path"])
            .arg(&manifest)
            .arg("--out")
            .arg(&out_dir)
            .stdin(Stdio::null())
            .output()
            .expect("maturin runs");
        assert!(
            out.status.success(),
            "maturin build {}: {}\n{}",
            manifest.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "built the {program} wheel ({profile} profile) in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    Some(out_dir)
}

/// The one wheel of `distribution` (e.g. `tap-postgres-rs`) in `dir`.
///
/// # Panics
/// Unless there is exactly one.
pub fn wheel_of(dir: &Path, distribution: &str) -> PathBuf {
    let prefix = format!("{}-", distribution.replace('-', "_"));
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {prefix}*.whl in {}: {found:?}",
        dir.display()
    );
    found.into_iter().next().unwrap()
}

/// The one way the end-to-end tests wait for a condition.
pub use pg_testkit::wait_until;

/// A running program whose stdout and stderr are being collected.
pub struct Running {
    child: std::process::Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
    /// stderr as it arrives, line by line.
    stderr_now: std::sync::Arc<std::sync::Mutex<String>>,
}

/// How a [`Running`] program ended.
#[derive(Debug)]
pub struct Ended {
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
}

impl Ended {
    /// The one `CRITICAL …` line of a failed run.
    ///
    /// # Panics
    /// Unless there is exactly one (with stderr).
    pub fn critical(&self) -> &str {
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("CRITICAL "))
            .collect();
        assert_eq!(lines.len(), 1, "one CRITICAL line:\n{}", self.stderr);
        lines[0]
    }
}

impl Running {
    /// Starts workspace binary `name` with `args` and `stdin`.
    pub fn start(name: &str, args: &[&std::ffi::OsStr], stdin: Stdio) -> Running {
        let mut child = Command::new(bin(name))
            .args(args)
            .env_remove("LOG_LEVEL")
            .env_remove("LOG_FORMAT")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the program starts");
        let collect =
            |r: Box<dyn std::io::Read + Send>,
             now: Option<std::sync::Arc<std::sync::Mutex<String>>>| {
                std::thread::spawn(move || {
                    let mut all = String::new();
                    let mut reader = std::io::BufReader::new(r);
                    let mut line = Vec::new();
                    while std::io::BufRead::read_until(&mut reader, b'\n', &mut line)
                        .is_ok_and(|n| n > 0)
                    {
                        let text = String::from_utf8_lossy(&line);
                        all.push_str(&text);
                        if let Some(now) = &now {
                            now.lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push_str(&text);
                        }
                        line.clear();
                    }
                    all
                })
            };
        let stderr_now = std::sync::Arc::default();
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")), None);
        let stderr = collect(
            Box::new(child.stderr.take().expect("stderr")),
            Some(std::sync::Arc::clone(&stderr_now)),
        );
        Running {
            child,
            stdout,
            stderr,
            stderr_now,
        }
    }

    /// What it has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr_now
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for the end, at most `limit` (then kills it and panics).
    pub fn wait(mut self, limit: std::time::Duration) -> Ended {
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "still running after {limit:?}; stderr:\n{}",
                    self.stderr.join().unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        Ended {
            status,
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
        }
    }
}

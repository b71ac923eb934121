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
    let mut target = Command::new(bin("target-postgres"));
    target.arg("--config").arg(target_args[0]);
    let target = target
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

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

//! Finding the PostgreSQL installation and the OS user that runs it.
//!
//! Owns: where `initdb`/`postgres` live, whether wal2json is installed for
//! that same server, and which uid/gid the server runs as. It knows nothing
//! about clusters or databases.
//!
//! Invariant: the bin directory is looked up as `scripts/pg-env.sh` does
//! (`$PGTEST_BINDIR`, then `pg_config --bindir` if it holds `initdb`, then
//! the highest `/usr/lib/postgresql/<major>/bin`), so the tests and `make
//! demo` use the same server. The result is computed once per process.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A usable PostgreSQL installation.
#[derive(Debug)]
pub(crate) struct Install {
    /// Directory holding `initdb` and `postgres`.
    pub(crate) bindir: PathBuf,
    /// uid/gid to run the server as when we are root (initdb refuses root).
    pub(crate) run_as: Option<(u32, u32)>,
}

/// The installation, found once per process; `Err` explains what to do.
pub(crate) fn get() -> Result<&'static Install, String> {
    static INSTALL: OnceLock<Result<Install, String>> = OnceLock::new();
    INSTALL.get_or_init(find).as_ref().map_err(Clone::clone)
}

fn find() -> Result<Install, String> {
    let bindir = bindir().ok_or_else(|| {
        "PostgreSQL server binaries (initdb) not found: looked at $PGTEST_BINDIR, \
         `pg_config --bindir` and /usr/lib/postgresql/*/bin; run `make setup`"
            .to_string()
    })?;
    let major = major_version(&bindir);
    let candidates = wal2json_candidates(&bindir);
    if !candidates.iter().any(|p| p.is_file()) {
        let looked: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "wal2json.so not found for the PostgreSQL {major} server in {} (looked at {}); \
             run `make setup` (installs postgresql-{major}-wal2json)",
            bindir.display(),
            looked.join(", ")
        ));
    }
    // SAFETY: geteuid has no preconditions.
    let run_as = if unsafe { libc::geteuid() } == 0 {
        Some(postgres_user()?)
    } else {
        None
    };
    Ok(Install { bindir, run_as })
}

fn bindir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PGTEST_BINDIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").is_file().then_some(dir);
    }
    if let Some(dir) = command_line("pg_config", &["--bindir"]).map(PathBuf::from) {
        if dir.join("initdb").is_file() {
            return Some(dir);
        }
    }
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten() {
        let Some(major) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path().join("bin");
        if dir.join("initdb").is_file() && best.as_ref().is_none_or(|(m, _)| major > *m) {
            best = Some((major, dir));
        }
    }
    best.map(|(_, dir)| dir)
}

/// `15` from "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"; "<major>" if unknown.
fn major_version(bindir: &Path) -> String {
    command_line(bindir.join("postgres"), &["--version"])
        .and_then(|v| {
            let version = v.split(") ").nth(1)?;
            let major: String = version.chars().take_while(char::is_ascii_digit).collect();
            (!major.is_empty()).then_some(major)
        })
        .unwrap_or_else(|| "<major>".to_string())
}

fn wal2json_candidates(bindir: &Path) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    let pg_config = bindir.join("pg_config");
    if pg_config.is_file() {
        if let Some(lib) = command_line(pg_config, &["--pkglibdir"]) {
            candidates.push(PathBuf::from(lib).join("wal2json.so"));
        }
    }
    if let Some(parent) = bindir.parent() {
        candidates.push(parent.join("lib").join("wal2json.so"));
    }
    candidates
}

/// First line of a command's stdout, if it ran and succeeded.
fn command_line(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .to_string();
    (!line.is_empty()).then_some(line)
}

fn postgres_user() -> Result<(u32, u32), String> {
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: a zeroed passwd is a valid out-parameter; buf outlives the call
    // and `result` points into `pw` or is null.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 16 * 1024];
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwnam_r(
            name.as_ptr(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        );
        if rc != 0 || result.is_null() {
            return Err(
                "running as root needs the `postgres` OS user (initdb refuses to run \
                        as root); run `make setup` or `useradd --system postgres`"
                    .to_string(),
            );
        }
        Ok((pw.pw_uid, pw.pw_gid))
    }
}

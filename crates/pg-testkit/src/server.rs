//! A local PostgreSQL server process: initdb, start, stop, and cleanup that
//! also happens when the test process ends in any way.
//!
//! Owns: the run directory (`<base>/pg-testkit-<pid>-<random>/`, holding
//! `data/`, the unix socket and `log`), the `postgres` child process, and the
//! process-wide list of live servers. It knows nothing about databases.
//!
//! The base is `$PGTEST_TMPDIR` if set, else `/dev/shm` if it is writable
//! with at least 2 GiB free, else the temp dir. tmpfs matters: on the
//! development VM's ext4 disk `CREATE DATABASE` takes ~350 ms (it creates
//! ~300 files, and each `open(O_CREAT)` costs ~0.3 ms there) against ~30 ms
//! on tmpfs. The price is RAM: ~40 MB per cluster plus what tests write.
//!
//! # Cleanup
//!
//! A server must never outlive the test process that started it, and its run
//! directory must go too. Four mechanisms, each covering what the previous
//! cannot:
//!
//! 1. **Drop.** [`LocalServer`]'s `Drop` stops the server (SIGQUIT: immediate
//!    shutdown, the postmaster kills its backends and exits) and removes the
//!    run directory. Covers custom clusters, which tests own as locals, also
//!    when the test panics (unwinding drops them).
//! 2. **atexit.** The shared cluster lives in a `static`, which is never
//!    dropped. Every live server is in [`LIVE`]; a `libc::atexit` handler
//!    stops them all and removes their directories. The test harness ends the
//!    process through `exit()` both when all tests pass and when some failed
//!    or panicked, so this covers the normal end of every test binary.
//! 3. **Parent-death signal.** `postgres` is started directly (no `pg_ctl`, so
//!    there is no daemonising) by a dedicated thread that then blocks in
//!    `wait()` for as long as the server runs. The child sets
//!    `PR_SET_PDEATHSIG = SIGQUIT` in `pre_exec`, which std runs after
//!    `setuid` (a uid change would clear the setting). The kernel sends the
//!    signal when the *thread* that forked dies; that thread lives exactly as
//!    long as the server, so the signal arrives only when the process dies
//!    abruptly (SIGKILL, abort, `panic = "abort"`), where no atexit runs.
//!    The child refuses to start if its parent already died before `prctl`.
//! 4. **Sweep.** The abrupt case leaves the run directory. Every server start
//!    first removes `pg-testkit-<pid>-*` directories whose `<pid>` is no
//!    longer alive (stopping a postmaster still running there, if its command
//!    line names the directory).
//!
//! Invariant: a server in [`LIVE`] has a thread waiting on it; [`ServerState::stop`]
//! runs at most once and never panics.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant};

use crate::install::{self, Install};

/// Free space `/dev/shm` needs to be used as the base directory.
const SHM_MIN_FREE: u64 = 2 << 30;
/// Prefix of run directories under the base dir; the owning pid follows.
const DIR_PREFIX: &str = "pg-testkit-";
/// Password of the `postgres` superuser (trust auth ignores it by default).
pub(crate) const SUPERUSER_PASSWORD: &str = "postgres";
/// How long a server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at a free port (another process may take it before we bind).
const PORT_ATTEMPTS: usize = 5;
/// sun_path holds 108 bytes; `/.s.PGSQL.NNNNN` needs 15 of them plus a NUL.
const MAX_SOCKET_DIR_LEN: usize = 90;

/// What to put into a new cluster beyond the defaults.
#[derive(Debug, Default, Clone)]
pub(crate) struct ServerSpec {
    /// `postgresql.conf` lines `name = 'value'`, after the defaults.
    pub(crate) settings: Vec<(String, String)>,
    /// If non-empty, `pg_hba.conf` is local trust plus these lines.
    pub(crate) hba: Vec<String>,
    /// Certificate and key to copy into the data dir, with `ssl = on`.
    pub(crate) tls: Option<(PathBuf, PathBuf)>,
}

/// A running local server; dropping it stops the server and removes its dir.
#[derive(Debug)]
pub(crate) struct LocalServer {
    state: Arc<ServerState>,
    /// Unix socket directory, if the path is short enough for one.
    pub(crate) socket_dir: Option<PathBuf>,
}

#[derive(Debug)]
struct ServerState {
    root: PathBuf,
    port: u16,
    pid: libc::pid_t,
    exit: Arc<Exit>,
    stopped: AtomicBool,
}

/// The postmaster's exit status, set by the thread waiting on it.
#[derive(Debug, Default)]
struct Exit {
    status: Mutex<Option<io::Result<ExitStatus>>>,
    changed: Condvar,
}

/// Servers to stop at exit.
static LIVE: Mutex<Vec<Arc<ServerState>>> = Mutex::new(Vec::new());

impl LocalServer {
    /// initdb a new cluster per `spec` and start it on a free port.
    pub(crate) fn start(spec: &ServerSpec) -> Result<LocalServer, String> {
        let install = install::get()?;
        sweep_stale_dirs();
        register_atexit();
        let root = make_run_dir(install)?;
        match start_in(install, &root, spec) {
            Ok(server) => Ok(server),
            Err(e) => {
                let _ = fs::remove_dir_all(&root);
                Err(e)
            }
        }
    }

    /// The run directory (holds `data/`, `log` and the socket).
    pub(crate) fn root(&self) -> &Path {
        &self.state.root
    }

    /// TCP port on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.state.port
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.state.stop();
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        live.retain(|s| !Arc::ptr_eq(s, &self.state));
    }
}

impl ServerState {
    /// Stop the postmaster (immediate shutdown) and remove the run dir.
    fn stop(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        if !self.exit.is_set() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // unreaped child (the waiting thread reaps it), so it is not reused.
            unsafe { libc::kill(self.pid, libc::SIGQUIT) };
            if !self.exit.wait(Duration::from_secs(10)) {
                eprintln!(
                    "pg-testkit: postgres {} ignored SIGQUIT; killing it",
                    self.pid
                );
                // SAFETY: as above.
                unsafe { libc::kill(self.pid, libc::SIGKILL) };
                self.exit.wait(Duration::from_secs(5));
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.root) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("pg-testkit: could not remove {}: {e}", self.root.display());
            }
        }
    }
}

impl Exit {
    fn set(&self, status: io::Result<ExitStatus>) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        self.changed.notify_all();
    }

    fn is_set(&self) -> bool {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Wait until set or `timeout` passes; true if set.
    fn wait(&self, timeout: Duration) -> bool {
        let guard = self.status.lock().unwrap_or_else(|e| e.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |s| s.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.is_some()
    }

    fn describe(&self) -> String {
        match &*self.status.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(status)) => status.to_string(),
            Some(Err(e)) => format!("wait failed: {e}"),
            None => "running".to_string(),
        }
    }
}

extern "C" fn stop_all_at_exit() {
    // A panic must not unwind into C.
    let _ = std::panic::catch_unwind(|| {
        let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
        for state in live {
            state.stop();
        }
    });
}

fn register_atexit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handler is a plain extern "C" fn that never unwinds.
        if unsafe { libc::atexit(stop_all_at_exit) } != 0 {
            eprintln!(
                "pg-testkit: atexit registration failed; servers stop only by Drop/PDEATHSIG"
            );
        }
    });
}

/// Run `cmd` as the server's OS user when we are root.
fn as_server_user(cmd: &mut Command, install: &Install) {
    if let Some((uid, gid)) = install.run_as {
        cmd.uid(uid).gid(gid);
    }
}

fn chown_to_server(path: &Path, install: &Install) -> Result<(), String> {
    if let Some((uid, gid)) = install.run_as {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .map_err(|e| format!("chown {} to postgres: {e}", path.display()))?;
    }
    Ok(())
}

/// Where run directories go (see the module doc).
fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PGTEST_TMPDIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    if free_bytes(shm).is_some_and(|free| free >= SHM_MIN_FREE) {
        return shm.to_path_buf();
    }
    std::env::temp_dir()
}

/// Free bytes for unprivileged users in a writable directory.
fn free_bytes(dir: &Path) -> Option<u64> {
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: c_dir is a valid C string; a zeroed statvfs is a valid out-parameter.
    unsafe {
        if libc::access(c_dir.as_ptr(), libc::W_OK | libc::X_OK) != 0 {
            return None;
        }
        let mut st: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_dir.as_ptr(), &mut st) != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

fn make_run_dir(install: &Install) -> Result<PathBuf, String> {
    let tmp = base_dir();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(&tmp)
        .map_err(|e| format!("cannot create a directory in {}: {e}", tmp.display()))?
        .keep();
    chown_to_server(&dir, install)?;
    Ok(dir)
}

fn start_in(install: &Install, root: &Path, spec: &ServerSpec) -> Result<LocalServer, String> {
    let data = root.join("data");
    initdb(install, root, &data)?;
    let socket_dir = (root.as_os_str().len() <= MAX_SOCKET_DIR_LEN).then(|| root.to_path_buf());
    configure(install, &data, socket_dir.as_deref(), spec)?;

    let log_path = root.join("log");
    let mut last_error = String::new();
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port()?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let (pid, exit) = spawn_postmaster(install, root, &data, port, log)?;
        let state = Arc::new(ServerState {
            root: root.to_path_buf(),
            port,
            pid,
            exit,
            stopped: AtomicBool::new(false),
        });
        // Registered before waiting, so a failed start is cleaned like any other.
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(state.clone());
        let server = LocalServer {
            state,
            socket_dir: socket_dir.clone(),
        };
        match wait_ready(&server, &data) {
            Ok(()) => return Ok(server),
            Err(e) => {
                let log_tail = read_from(&log_path, log_start);
                // Keep the directory for the retry: only the process goes.
                server.state.stopped.store(true, Ordering::SeqCst);
                if !server.state.exit.is_set() {
                    // SAFETY: our unreaped child, as in `stop`.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    server.state.exit.wait(Duration::from_secs(5));
                }
                drop(server);
                last_error = format!("{e}; server log:\n{log_tail}");
                let port_taken =
                    log_tail.contains("could not bind") || log_tail.contains("already in use");
                if !port_taken {
                    break;
                }
            }
        }
    }
    Err(format!(
        "postgres did not start in {}: {last_error}",
        root.display()
    ))
}

fn initdb(install: &Install, root: &Path, data: &Path) -> Result<(), String> {
    let pwfile = root.join("pwfile");
    fs::write(&pwfile, format!("{SUPERUSER_PASSWORD}\n"))
        .map_err(|e| format!("write {}: {e}", pwfile.display()))?;
    chown_to_server(&pwfile, install)?;
    let mut cmd = Command::new(install.bindir.join("initdb"));
    cmd.arg("-D")
        .arg(data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(root)
        .stdin(Stdio::null());
    as_server_user(&mut cmd, install);
    let out = cmd
        .output()
        .map_err(|e| format!("run {}: {e}", install.bindir.join("initdb").display()))?;
    let _ = fs::remove_file(&pwfile);
    if !out.status.success() {
        return Err(format!(
            "initdb failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Quote a `postgresql.conf` value: any type accepts the quoted form.
fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn configure(
    install: &Install,
    data: &Path,
    socket_dir: Option<&Path>,
    spec: &ServerSpec,
) -> Result<(), String> {
    let socket_dir = socket_dir
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut conf = String::from("\n# pg-testkit: throwaway settings (no durability)\n");
    let defaults = [
        ("listen_addresses", "127.0.0.1"),
        ("unix_socket_directories", socket_dir.as_str()),
        ("wal_level", "logical"),
        ("max_replication_slots", "32"),
        ("max_wal_senders", "32"),
        ("max_connections", "200"),
        ("fsync", "off"),
        // synchronous_commit stays on: with fsync off a commit's WAL flush is
        // a write(2), and logical decoding only reads flushed WAL, so "off"
        // would delay every change a LOG_BASED test waits for by up to 3 x
        // wal_writer_delay.
        ("full_page_writes", "off"),
    ];
    let mut settings: Vec<(String, String)> = defaults
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some((cert, key)) = &spec.tls {
        install_tls_file(install, cert, &data.join("server.crt"), 0o644)?;
        install_tls_file(install, key, &data.join("server.key"), 0o600)?;
        for (k, v) in [
            ("ssl", "on"),
            ("ssl_cert_file", "server.crt"),
            ("ssl_key_file", "server.key"),
        ] {
            settings.push((k.to_string(), v.to_string()));
        }
    }
    settings.extend(spec.settings.iter().cloned());
    for (name, value) in &settings {
        conf.push_str(&format!("{name} = {}\n", conf_value(value)));
    }
    let conf_path = data.join("postgresql.conf");
    let mut existing =
        fs::read_to_string(&conf_path).map_err(|e| format!("read {}: {e}", conf_path.display()))?;
    existing.push_str(&conf);
    fs::write(&conf_path, existing).map_err(|e| format!("write {}: {e}", conf_path.display()))?;

    if !spec.hba.is_empty() {
        let mut hba = String::from(
            "# pg-testkit: the harness connects over the unix socket\n\
             local all all trust\n\
             local replication all trust\n\
             # from ClusterBuilder::hba\n",
        );
        for line in &spec.hba {
            hba.push_str(line);
            hba.push('\n');
        }
        let hba_path = data.join("pg_hba.conf");
        fs::write(&hba_path, hba).map_err(|e| format!("write {}: {e}", hba_path.display()))?;
    }
    Ok(())
}

/// Copy a TLS file into the data dir, owned by the server user with `mode`.
fn install_tls_file(install: &Install, from: &Path, to: &Path, mode: u32) -> Result<(), String> {
    fs::copy(from, to).map_err(|e| format!("copy {} to {}: {e}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", to.display()))?;
    chown_to_server(to, install)
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Start `postgres` from a dedicated thread that waits on it (see the module
/// doc: the thread's lifetime is what PR_SET_PDEATHSIG watches).
fn spawn_postmaster(
    install: &Install,
    root: &Path,
    data: &Path,
    port: u16,
    log: File,
) -> Result<(libc::pid_t, Arc<Exit>), String> {
    let mut cmd = Command::new(install.bindir.join("postgres"));
    cmd.arg("-D")
        .arg(data)
        .arg("-p")
        .arg(port.to_string())
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    as_server_user(&mut cmd, install);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only makes async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGQUIT as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited before the server started"));
            }
            Ok(())
        });
    }
    let exit = Arc::new(Exit::default());
    let thread_exit = exit.clone();
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name(format!("pg-testkit-postgres-{port}"))
        .spawn(move || match cmd.spawn() {
            Ok(mut child) => {
                let _ = tx.send(Ok(child.id() as libc::pid_t));
                thread_exit.set(child.wait());
            }
            Err(e) => {
                let _ = tx.send(Err(e));
            }
        })
        .map_err(|e| format!("cannot spawn the server thread: {e}"))?;
    let pid = rx
        .recv()
        .map_err(|_| "the server thread died".to_string())?
        .map_err(|e| {
            format!(
                "cannot start {}: {e}",
                install.bindir.join("postgres").display()
            )
        })?;
    Ok((pid, exit))
}

/// Poll `postmaster.pid` until its status line says "ready" (as `pg_ctl -w`
/// does), the process exits, or the timeout passes.
fn wait_ready(server: &LocalServer, data: &Path) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    let pid_file = data.join("postmaster.pid");
    loop {
        if let Ok(text) = fs::read_to_string(&pid_file) {
            let lines: Vec<&str> = text.lines().collect();
            let ours = lines
                .first()
                .and_then(|l| l.trim().parse::<libc::pid_t>().ok())
                == Some(server.state.pid);
            if ours && lines.get(7).map(|l| l.trim()) == Some("ready") {
                return Ok(());
            }
        }
        if server.state.exit.is_set() {
            return Err(format!(
                "postgres exited ({})",
                server.state.exit.describe()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!("not ready after {START_TIMEOUT:?}"));
        }
        server.state.exit.wait(Duration::from_millis(10));
    }
}

fn read_from(path: &Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        if f.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = f.read_to_string(&mut text);
        }
    }
    text
}

fn pid_alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Remove run directories of test processes that are gone (mechanism 4),
/// in every place [`base_dir`] may have chosen.
fn sweep_stale_dirs() {
    let mut bases = vec![base_dir(), PathBuf::from("/dev/shm"), std::env::temp_dir()];
    bases.sort();
    bases.dedup();
    for base in bases {
        sweep_stale_dirs_in(&base);
    }
}

fn sweep_stale_dirs_in(base: &Path) {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if owner == me || pid_alive(owner as libc::pid_t) {
            continue;
        }
        let dir = entry.path();
        stop_stray_postmaster(&dir);
        if let Err(e) = fs::remove_dir_all(&dir) {
            if e.kind() != io::ErrorKind::NotFound {
                eprintln!("pg-testkit: could not remove stale {}: {e}", dir.display());
            }
        }
    }
}

/// SIGKILL a postmaster still running in a stale dir, if its command line
/// names that dir (so a reused pid is left alone).
fn stop_stray_postmaster(dir: &Path) {
    let Ok(text) = fs::read_to_string(dir.join("data").join("postmaster.pid")) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<libc::pid_t>().ok())
    else {
        return;
    };
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let needle = dir.as_os_str().as_encoded_bytes();
    if !cmdline.windows(needle.len()).any(|w| w == needle) {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(pid) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
}

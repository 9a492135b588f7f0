//! [`PostgresServer`]: a PostgreSQL server of the test's own (Debian's `postgresql` package)
//! on a free port of 127.0.0.1, its cluster in a temporary directory removed when the test
//! ends. It can be crashed and started again on the same port and the same data (PostgreSQL
//! recovers from its WAL), or paused with real signals, for the fault tests; with
//! `pg_stat_statements` loaded, it counts the statements it ran, for the round-trip tests.
//!
//! The server trusts every local connection as user `postgres` (`-A trust`), runs without
//! fsync (`fsync=off`, `full_page_writes=off`: a killed server loses nothing that was
//! committed, a crashed machine would) and allows 200 connections. [`stop`], [`pause`] and
//! [`resume`] signal every process of the server, the postmaster and its children (backends,
//! workers), found in `/proc`: each child calls `setsid()`, so no process group holds them.
//!
//! Without PostgreSQL on the machine (the highest `/usr/lib/postgresql/<N>/bin/` with
//! `initdb`, `pg_ctl` and `postgres`, else `initdb` and `postgres` on `PATH`),
//! [`PostgresServer::start`] says `SKIPPED` and returns `None` (a failure under
//! `SESSION_E2E_REQUIRED=1`, see [`crate::required`]). Run as root, as in CI, the server and
//! `initdb` run as user `postgres` (PostgreSQL refuses root), which Debian's package creates.
//!
//! ```no_run
//! use session_harness::PostgresServer;
//!
//! let Some(mut pg) = PostgresServer::start() else { return }; // SKIPPED without PostgreSQL
//! let url = pg.url(); // postgres://postgres@127.0.0.1:PORT/postgres
//! pg.psql("create table t (n int); insert into t values (1)");
//! pg.stop(); // SIGKILL to every process of the server: a crash
//! pg.start_again(); // same port, same data, after crash recovery
//! assert_eq!(pg.psql("select n from t"), "1");
//!
//! pg.reset_statements();
//! pg.psql("select 1");
//! assert_eq!(pg.statements_calls(), 1);
//! ```
//!
//! [`stop`]: PostgresServer::stop
//! [`pause`]: PostgresServer::pause
//! [`resume`]: PostgresServer::resume

use std::{
    env, fs,
    io::Read,
    os::unix::{fs::chown, process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use tempfile::TempDir;

use nix::{
    errno::Errno,
    sys::signal::{kill, Signal},
    unistd::{Gid, Pid, Uid, User},
};

use crate::{redis::free_port, required, Process, TIMEOUT};

/// The settings of every server, on its command line (`initdb` of PostgreSQL 15 takes none).
/// `synchronous_commit` stays `on`: under `off`, a commit acknowledged a moment before a
/// [`PostgresServer::stop`] is lost (measured: even a `create table`), and with `fsync=off`
/// a synchronous commit costs a `write(2)`, no more.
const SETTINGS: &[&str] = &[
    "fsync=off",
    "full_page_writes=off",
    "shared_preload_libraries=pg_stat_statements",
    "max_connections=200",
    "log_min_messages=warning",
];

/// A running PostgreSQL server (see the module docs).
pub struct PostgresServer {
    /// The postmaster, for its pid and its log (the server logs to it). Signal the server
    /// through [`PostgresServer::pause`] and [`PostgresServer::stop`]: `process.pause()`
    /// stops the postmaster alone, and its backends go on answering their connections;
    /// `process.kill()` leaves the backends alive for a moment, holding the shared memory.
    pub process: Process,
    port: u16,
    tools: Tools,
    /// Who runs the server: `postgres` when the test runs as root, else the test's own user.
    owner: Option<(Uid, Gid)>,
    /// Killed by [`PostgresServer::stop`] and not started again: its pid may be another's.
    stopped: bool,
    /// Last, so that it is removed once every process is gone.
    dir: TempDir,
}

impl PostgresServer {
    /// Makes a cluster in a temporary directory (`initdb`), starts a server on it on a free
    /// port, waits until it accepts connections and creates the `pg_stat_statements`
    /// extension; `None` (after saying `SKIPPED`) if there is no PostgreSQL here.
    pub fn start() -> Option<Self> {
        let tools = tools_found("postgres")?;
        let owner = owner_found("postgres")?;
        let dir = temp_dir(owner);
        initdb(&tools, owner, dir.path());
        // The port is free when chosen but could be taken before the server binds it.
        let mut why = String::new();
        for _ in 0..5 {
            let port = free_port();
            match launch(&tools, owner, dir.path(), port) {
                Ok(process) => {
                    let server = Self {
                        process,
                        port,
                        tools,
                        owner,
                        stopped: false,
                        dir,
                    };
                    server.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
                    return Some(server);
                }
                Err(failure) => why = failure,
            }
        }
        panic!("postgres did not start on any of 5 free ports; the last attempt:\n{why}");
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (inside the temporary directory removed on drop).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The pids of every live process of the server: the postmaster, its backends and its
    /// background workers (empty once stopped).
    pub fn pids(&self) -> Vec<u32> {
        if self.stopped {
            return Vec::new();
        }
        let postmaster = self.process.pid();
        let mut pids = vec![postmaster];
        pids.extend(descendants(postmaster).iter().map(|p| p.pid));
        pids
    }

    /// Stops it with SIGKILL to every process of the server, as in a crash, and returns once
    /// none is left (so that the port and the shared memory are free). Whatever was committed
    /// survives (the commit is in the WAL, written to the kernel, before it is acknowledged).
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        if let Err(why) = kill_all(&mut self.process) {
            panic!("{why}");
        }
    }

    /// Stops it if it runs, then starts a server again on the same port and the same data
    /// directory, and waits until it accepts connections (after its crash recovery).
    pub fn start_again(&mut self) {
        self.stop();
        let mut why = String::new();
        for attempt in 0..3 {
            if attempt > 0 {
                thread::sleep(Duration::from_millis(200));
            }
            match launch(&self.tools, self.owner, self.dir.path(), self.port) {
                Ok(process) => {
                    self.process = process;
                    self.stopped = false;
                    return;
                }
                Err(failure) => why = failure,
            }
        }
        panic!("postgres did not start again on port {}:\n{why}", self.port);
    }

    /// SIGSTOP to every process of the server (the postmaster first, so that it forks no
    /// backend meanwhile, then its backends and workers), and returns once all are stopped:
    /// it stays alive but answers nothing, neither new connections nor queries on
    /// connections already open, until [`PostgresServer::resume`].
    pub fn pause(&self) {
        assert!(!self.stopped, "pausing a stopped {}", self.process.name());
        if let Err(why) = stop_tree(self.process.pid(), self.process.name()) {
            panic!("{why}");
        }
    }

    /// SIGCONT to every process of the server after [`PostgresServer::pause`].
    pub fn resume(&self) {
        assert!(!self.stopped, "resuming a stopped {}", self.process.name());
        let postmaster = self.process.pid();
        for process in descendants(postmaster) {
            let _ = send(process.pid, Signal::SIGCONT);
        }
        send(postmaster, Signal::SIGCONT)
            .unwrap_or_else(|err| panic!("SIGCONT to {}: {err}", self.process.name()));
    }

    /// `psql -X -At -h 127.0.0.1 -p PORT -U postgres -d postgres`, for the caller to add `-c`
    /// or to feed statements on its stdin (a connection kept open).
    pub fn psql_command(&self) -> Command {
        let mut command = Command::new(&self.tools.psql);
        command
            .args(["-X", "-At", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", "postgres"])
            .env("PGCONNECT_TIMEOUT", TIMEOUT.as_secs().to_string());
        command
    }

    /// Runs `sql` (one or several statements, in one round trip) through `psql -c` and returns
    /// its output, trimmed (`-At`: rows a line, columns joined by `|`); panics with psql's
    /// error if it fails or does not answer within [`TIMEOUT`].
    pub fn psql(&self, sql: &str) -> String {
        self.try_psql(sql)
            .unwrap_or_else(|why| panic!("psql -c {sql:?} on port {}: {why}", self.port))
    }

    /// [`PostgresServer::psql`], with `Err` (psql's error) instead of a panic.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        self.try_psql_within(sql, TIMEOUT)
    }

    /// [`PostgresServer::try_psql`] that gives up after `timeout` (psql killed), e.g. on a
    /// paused server.
    pub fn try_psql_within(&self, sql: &str, timeout: Duration) -> Result<String, String> {
        let mut command = self.psql_command();
        command
            .env(
                "PGCONNECT_TIMEOUT",
                timeout.as_secs().clamp(1, TIMEOUT.as_secs()).to_string(),
            )
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql]);
        run_within(&mut command, timeout)
    }

    /// How many statements it ran since [`PostgresServer::reset_statements`] (the sum of
    /// `calls` in `pg_stat_statements`, those that read `pg_stat_statements` left out). A
    /// client that sends one statement a round trip makes it its number of round trips.
    pub fn statements_calls(&self) -> u64 {
        let sum = self.psql(
            "select coalesce(sum(calls), 0) from pg_stat_statements \
             where query not ilike '%pg_stat_statements%'",
        );
        sum.parse()
            .unwrap_or_else(|err| panic!("the sum of calls {sum:?}: {err}"))
    }

    /// Forgets the statements counted so far (`pg_stat_statements_reset()`).
    pub fn reset_statements(&self) {
        self.psql("select pg_stat_statements_reset()");
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        // No panic in a drop (it may run while a test panics): the directory goes anyway.
        if self.stopped {
            return;
        }
        if let Err(why) = kill_all(&mut self.process) {
            eprintln!("{why}");
        }
    }
}

/// Where PostgreSQL's programs are.
struct Tools {
    initdb: PathBuf,
    postgres: PathBuf,
    psql: PathBuf,
}

/// PostgreSQL's programs: the highest `/usr/lib/postgresql/<N>/bin/` with `initdb`, `pg_ctl`
/// and `postgres` (Debian's layout), else `initdb` and `postgres` on `PATH`; says `SKIPPED`
/// for `suite` if there are none.
fn tools_found(suite: &str) -> Option<Tools> {
    let tools = debian_bin_dir()
        .map(|bin| Tools {
            initdb: bin.join("initdb"),
            postgres: bin.join("postgres"),
            psql: Some(bin.join("psql"))
                .filter(|psql| psql.is_file())
                .or_else(|| on_path("psql"))
                .unwrap_or_else(|| "psql".into()),
        })
        .or_else(|| {
            Some(Tools {
                initdb: on_path("initdb")?,
                postgres: on_path("postgres")?,
                psql: on_path("psql")?,
            })
        });
    if tools.is_none() {
        required::skip(
            suite,
            "PostgreSQL not found (apt-get install -y postgresql)",
        );
    }
    tools
}

fn debian_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|tool| bin.join(tool).is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn on_path(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Who runs `initdb` and the server: `Some(postgres)` as root (PostgreSQL refuses to run as
/// root), `None` (the test's own user) otherwise; says `SKIPPED` for `suite` as root without
/// a user `postgres`.
fn owner_found(suite: &str) -> Option<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Some(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Some(Some((user.uid, user.gid))),
        _ => {
            required::skip(
                suite,
                "PostgreSQL refuses root and there is no user postgres \
                 (apt-get install -y postgresql creates it)",
            );
            None
        }
    }
}

/// Runs `command` as `owner` (uid, gid, no supplementary groups), from `dir`.
fn run_as(command: &mut Command, owner: Option<(Uid, Gid)>, dir: &Path) {
    command.current_dir(dir);
    if let Some((uid, gid)) = owner {
        command.uid(uid.as_raw()).gid(gid.as_raw());
    }
}

/// `initdb` of a cluster in `dir/data`, trusting local connections as `postgres`.
fn initdb(tools: &Tools, owner: Option<(Uid, Gid)>, dir: &Path) {
    let mut command = Command::new(&tools.initdb);
    command
        .arg("-D")
        .arg(dir.join("data"))
        // The C locale: nothing depends on the machine's LANG and its installed locales.
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync")
        .stdin(Stdio::null());
    run_as(&mut command, owner, dir);
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts `postgres` on `dir/data` and `port`, in a process group of its own, and waits until
/// it accepts connections; `Err` with its log if it exits first (e.g. the port was taken) or
/// is not ready within [`TIMEOUT`].
fn launch(
    tools: &Tools,
    owner: Option<(Uid, Gid)>,
    dir: &Path,
    port: u16,
) -> Result<Process, String> {
    let data = dir.join("data");
    let mut command = Command::new(&tools.postgres);
    command
        .arg("-D")
        .arg(&data)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        // Its Unix socket in the test's own directory, not in /var/run/postgresql.
        .arg("-k")
        .arg(dir);
    for setting in SETTINGS {
        command.args(["-c", setting]);
    }
    // Out of the test's process group, so that a Ctrl-C reaches the test alone: the test
    // kills the server (its children, each a group of its own, notice their postmaster's
    // death by themselves).
    command.process_group(0);
    run_as(&mut command, owner, dir);
    let mut process = Process::spawn(&format!("postgres:{port}"), &mut command);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if ready(&data, process.pid()) {
            return Ok(process);
        }
        if !process.is_running() || Instant::now() >= deadline {
            let state = if process.is_running() {
                format!("not ready within {TIMEOUT:?}")
            } else {
                "exited".to_owned()
            };
            let _ = kill_all(&mut process);
            return Err(format!("{} {state}:\n{}", process.name(), process.log()));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Whether the postmaster `pid` accepts connections: its `postmaster.pid` (PostgreSQL 10 and
/// later) names it on the first line and says `ready` on the eighth. A server of another test
/// answering on the same port (the port taken between its choice and the bind) is not ours.
fn ready(data: &Path, pid: u32) -> bool {
    let Ok(lock) = fs::read_to_string(data.join("postmaster.pid")) else {
        return false;
    };
    let lines: Vec<&str> = lock.lines().map(str::trim).collect();
    lines.first() == Some(&pid.to_string().as_str()) && lines.get(7) == Some(&"ready")
}

/// A process as `/proc/<pid>/stat` tells it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Proc {
    pid: u32,
    ppid: u32,
    /// `R`, `S`, `D`, `T` (stopped), `Z` (zombie)...
    state: char,
    /// Since boot, in clock ticks: with the pid, who it is (a pid can be reused).
    start: u64,
}

fn proc_of(pid: u32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
    // stime cutime cstime priority nice threads itrealvalue starttime ...`, where comm may
    // hold spaces and parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    Some(Proc {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

fn all_procs() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| proc_of(entry.ok()?.file_name().to_str()?.parse().ok()?))
        .collect()
}

/// Whether `process` has not exited (a zombie has: it holds nothing any more).
fn alive(process: &Proc) -> bool {
    proc_of(process.pid)
        .is_some_and(|now| now.start == process.start && !matches!(now.state, 'Z' | 'X'))
}

/// The live descendants of `root`: every child of the postmaster (backends, workers) calls
/// `setsid()`, so neither a process group nor a session holds them all, only the tree does.
fn descendants(root: u32) -> Vec<Proc> {
    let procs = all_procs();
    let mut found = Vec::new();
    let mut parents = vec![root];
    while let Some(parent) = parents.pop() {
        for child in procs.iter().filter(|p| p.ppid == parent) {
            parents.push(child.pid);
            if !matches!(child.state, 'Z' | 'X') {
                found.push(*child);
            }
        }
    }
    found
}

fn send(pid: u32, signal: Signal) -> Result<(), Errno> {
    match kill(Pid::from_raw(pid as i32), signal) {
        // It exited meanwhile.
        Err(Errno::ESRCH) => Ok(()),
        other => other,
    }
}

/// Polls `done` every millisecond until it holds; `false` if [`TIMEOUT`] passes first.
fn poll(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(1));
    }
    true
}

/// SIGSTOP to the postmaster `pid`, then, once it is stopped (and so forks no more), to its
/// descendants, and returns once every one is stopped; those it stopped, or why not.
fn stop_tree(pid: u32, name: &str) -> Result<Vec<Proc>, String> {
    send(pid, Signal::SIGSTOP).map_err(|err| format!("SIGSTOP to {name}: {err}"))?;
    let postmaster_stopped =
        poll(|| proc_of(pid).is_none_or(|p| matches!(p.state, 'T' | 't' | 'Z' | 'X')));
    if !postmaster_stopped {
        return Err(format!("{name} did not stop on SIGSTOP within {TIMEOUT:?}"));
    }
    let mut stopped = Vec::new();
    let all_stopped = poll(|| {
        let running: Vec<Proc> = descendants(pid)
            .into_iter()
            .filter(|p| !matches!(p.state, 'T' | 't'))
            .collect();
        for process in &running {
            let _ = send(process.pid, Signal::SIGSTOP);
            if !stopped.contains(process) {
                stopped.push(*process);
            }
        }
        running.is_empty()
    });
    if !all_stopped {
        return Err(format!(
            "the processes of {name} did not all stop within {TIMEOUT:?}"
        ));
    }
    Ok(stopped)
}

/// SIGKILL to the postmaster and every process of the server (each child first, the
/// postmaster stopped meanwhile so that it forks none and they stay its children), the
/// postmaster reaped, and a wait until none is left: a backend still alive would keep the
/// shared memory (a new postmaster refuses to start beside it) and its connection.
fn kill_all(postmaster: &mut Process) -> Result<(), String> {
    let pid = postmaster.pid();
    let mut victims = Vec::new();
    if postmaster.is_running() {
        // Unreaped, the postmaster holds its pid: the tree found under it is the server's.
        let stopped = stop_tree(pid, postmaster.name());
        victims = descendants(pid);
        for victim in &victims {
            let _ = send(victim.pid, Signal::SIGKILL);
        }
        stopped?;
    }
    postmaster.kill();
    if poll(|| !victims.iter().any(alive)) {
        Ok(())
    } else {
        let left: Vec<u32> = victims.iter().filter(|p| alive(p)).map(|p| p.pid).collect();
        Err(format!(
            "processes of {} still alive after SIGKILL: {left:?}",
            postmaster.name()
        ))
    }
}

/// Runs `command` with its output captured and returns its stdout, trimmed; `Err` with its
/// stderr if it fails, or if it has not exited within `timeout` (then it is killed).
fn run_within(command: &mut Command, timeout: Duration) -> Result<String, String> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for psql") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(2));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) if status.success() => Ok(stdout.trim().to_owned()),
        Some(status) => Err(format!("{status}: {}", stderr.trim())),
        None => Err(format!(
            "no answer within {timeout:?} (killed) {}",
            stderr.trim()
        )),
    }
}

/// The test's own directory for a cluster and its socket (mode 700), owned by whoever runs
/// the server, removed on drop.
fn temp_dir(owner: Option<(Uid, Gid)>) -> TempDir {
    let dir = crate::redis::temp_dir("postgres");
    if let Some((uid, gid)) = owner {
        chown(dir.path(), Some(uid.as_raw()), Some(gid.as_raw()))
            .unwrap_or_else(|err| panic!("chown postgres {}: {err}", dir.path().display()));
    }
    dir
}

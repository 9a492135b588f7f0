//! [`RedisServer`]: a `redis-server` of the test's own (Debian's package) on a free port of
//! 127.0.0.1, with no persistence, stopped when the test ends. It can be stopped and started
//! again on the same port, or paused with real signals, for the fault tests.
//!
//! Without `redis-server` on the machine, [`RedisServer::start`] says `SKIPPED` and returns
//! `None` (a failure under `SESSION_E2E_REQUIRED=1`, see [`crate::required`]).
//!
//! ```no_run
//! use session_harness::RedisServer;
//!
//! let Some(mut redis) = RedisServer::start() else { return }; // SKIPPED without redis-server
//! assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
//! redis.restart(); // same port, empty
//! assert_eq!(redis.cli(&["GET", "k"]), "");
//! ```

use std::{
    net::TcpListener,
    process::{Command, Stdio},
};

use crate::{required, Process, TIMEOUT};

/// A running `redis-server` (see the module docs).
pub struct RedisServer {
    /// The process, for signals and its log.
    pub process: Process,
    port: u16,
    /// Its `--dir`: a replica keeps the RDB of its sync there (else in the test's working
    /// directory, the repository). Last: removed once the process is gone.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a `redis-server` on a free port and waits until it accepts connections; `None`
    /// (after saying `SKIPPED`) if there is no `redis-server` here.
    pub fn start() -> Option<Self> {
        if !tools_found("redis") {
            return None;
        }
        // The port is free when chosen but could be taken before redis binds it: try again.
        let dir = temp_dir("redis");
        for _ in 0..5 {
            let port = free_port();
            if let Some(process) = launch(port, &["--dir", dir_arg(&dir)]) {
                return Some(Self { process, port, dir });
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts a replica of `master` on a free port and waits until it is in sync.
    pub fn start_replica_of(master: &RedisServer) -> Self {
        let master_port = master.port.to_string();
        let dir = temp_dir("redis-replica");
        for _ in 0..5 {
            let port = free_port();
            let args = [
                "--dir",
                dir_arg(&dir),
                "--replicaof",
                "127.0.0.1",
                &master_port,
            ];
            if let Some(process) = launch(port, &args) {
                let replica = Self { process, port, dir };
                let deadline = std::time::Instant::now() + TIMEOUT;
                while !replica
                    .cli(&["INFO", "replication"])
                    .contains("master_link_status:up")
                {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the replica never synced"
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                return replica;
            }
        }
        panic!("no replica started on any of 5 free ports");
    }

    /// `redis://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops it (SIGKILL: everything in memory is lost, as in a crash).
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Stops it and starts a new, empty one on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.process = launch(self.port, &["--dir", dir_arg(&self.dir)])
            .expect("redis-server restarts on its port");
    }

    /// Runs `redis-cli` with `args` against it and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

/// Whether `redis-server` and `redis-cli` are here; says `SKIPPED` for `suite` if not.
pub(crate) fn tools_found(suite: &str) -> bool {
    let found = required::found("redis-server") && required::found("redis-cli");
    if !found {
        required::skip(
            suite,
            "redis-server not found (apt-get install -y redis-server)",
        );
    }
    found
}

/// `redis-cli -p port args...`, its output trimmed; panics if redis-cli fails.
pub fn cli(port: u16, args: &[&str]) -> String {
    try_cli(port, args).unwrap_or_else(|why| panic!("redis-cli -p {port} {args:?}: {why}"))
}

/// `redis-cli -p port args...`, its output trimmed, or why it failed (e.g. nothing listens).
pub(crate) fn try_cli(port: u16, args: &[&str]) -> Result<String, String> {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running redis-cli");
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    // redis-cli exits 0 on a refused connection but says so on stderr.
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() || stderr.contains("Could not connect") {
        return Err(format!("{output:?}"));
    }
    Ok(stdout)
}

/// Starts `redis-server` on `port` with `extra` arguments; `None` if it exits (e.g. the port
/// was taken).
pub(crate) fn launch(port: u16, extra: &[&str]) -> Option<Process> {
    let mut command = Command::new("redis-server");
    command.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    command.args(extra);
    let mut process = Process::spawn(&format!("redis-server:{port}"), &mut command);
    process
        .try_wait_for_line(TIMEOUT, |line| {
            line.contains("Ready to accept connections").then_some(())
        })
        .ok()
        .map(|()| process)
}

/// A directory of the test's own (`session-harness-<what>-…` in the system's temporary
/// directory, mode 700), removed on drop.
pub(crate) fn temp_dir(what: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .prefix(&format!("session-harness-{what}-"))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap_or_else(|err| panic!("creating a temporary directory for {what}: {err}"))
}

/// `dir` as a command-line argument.
pub(crate) fn dir_arg(dir: &tempfile::TempDir) -> &str {
    dir.path().to_str().expect("a UTF-8 temporary directory")
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

//! The cluster in the test's own directory (`initdb`) and the postmaster launched on it.

use std::{
    fs,
    os::unix::{fs::chown, process::CommandExt},
    path::Path,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use nix::unistd::{Gid, Uid};
use tempfile::TempDir;

use crate::{Process, TIMEOUT};

use super::{procs::kill_all, tools::Tools};

/// The settings of every server, on its command line (`initdb` of PostgreSQL 15 takes none).
/// `synchronous_commit` stays `on`: under `off`, a commit acknowledged a moment before a
/// [`PostgresServer::stop`](super::PostgresServer::stop) is lost (measured: even a
/// `create table`), and with `fsync=off` a synchronous commit costs a `write(2)`, no more.
const SETTINGS: &[&str] = &[
    "fsync=off",
    "full_page_writes=off",
    "shared_preload_libraries=pg_stat_statements",
    "max_connections=200",
    "log_min_messages=warning",
];

/// Runs `command` as `owner` (uid, gid, no supplementary groups), from `dir`.
fn run_as(command: &mut Command, owner: Option<(Uid, Gid)>, dir: &Path) {
    command.current_dir(dir);
    if let Some((uid, gid)) = owner {
        command.uid(uid.as_raw()).gid(gid.as_raw());
    }
}

/// `initdb` of a cluster in `dir/data`, trusting local connections as `postgres`.
pub(super) fn initdb(tools: &Tools, owner: Option<(Uid, Gid)>, dir: &Path) {
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
pub(super) fn launch(
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

/// The test's own directory for a cluster and its socket (mode 700), owned by whoever runs
/// the server, removed on drop.
pub(super) fn temp_dir(owner: Option<(Uid, Gid)>) -> TempDir {
    let dir = crate::redis::temp_dir("postgres");
    if let Some((uid, gid)) = owner {
        chown(dir.path(), Some(uid.as_raw()), Some(gid.as_raw()))
            .unwrap_or_else(|err| panic!("chown postgres {}: {err}", dir.path().display()));
    }
    dir
}

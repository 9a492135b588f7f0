//! The server's processes, the postmaster and the tree of its children found in `/proc`, and
//! the signals that stop and kill them all.

use std::{
    fs, thread,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::{Process, TIMEOUT};

use super::PostgresServer;

impl PostgresServer {
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
}

/// A process as `/proc/<pid>/stat` tells it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct Proc {
    pub(super) pid: u32,
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
pub(super) fn descendants(root: u32) -> Vec<Proc> {
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

pub(super) fn send(pid: u32, signal: Signal) -> Result<(), Errno> {
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
pub(super) fn stop_tree(pid: u32, name: &str) -> Result<Vec<Proc>, String> {
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
pub(super) fn kill_all(postmaster: &mut Process) -> Result<(), String> {
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

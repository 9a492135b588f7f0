//! The fault tests' crash (SIGKILL), start again and pause (SIGSTOP, SIGCONT), every process
//! of the server at once.

use std::{thread, time::Duration};

use nix::sys::signal::Signal;

use super::{
    cluster::launch,
    procs::{descendants, kill_all, send, stop_tree},
    PostgresServer,
};

impl PostgresServer {
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
}

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
//! One concept a module: `tools` finds PostgreSQL and the user who runs it, `cluster` makes
//! the cluster and launches the postmaster, `procs` finds and signals the server's processes,
//! `faults` crashes, restarts and pauses the server, `psql` runs statements through `psql`
//! and `statements` counts them.
//!
//! [`stop`]: PostgresServer::stop
//! [`pause`]: PostgresServer::pause
//! [`resume`]: PostgresServer::resume

mod cluster;
mod faults;
mod procs;
mod psql;
mod statements;
mod tools;

use std::path::PathBuf;

use nix::unistd::{Gid, Uid};
use tempfile::TempDir;

use crate::{redis::free_port, Process};

use self::{
    cluster::{initdb, launch, temp_dir},
    procs::kill_all,
    tools::{owner_found, tools_found, Tools},
};

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
        Self::url_at(self.port)
    }

    /// Its URL with `port` in place of its own: through a [`Relay`](crate::Relay) to it.
    pub fn url_at(port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory (inside the temporary directory removed on drop).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
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

//! The harness's PostgreSQL server works as the PostgreSQL store tests need: a server of the
//! test's own on a free port, its committed data surviving a crash (SIGKILL) and a start
//! again, a pause that stops every process of it (connections already open included), the
//! statements it ran counted, and nothing of it left once the test ends.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, ChildStdin, Stdio},
    sync::mpsc::{self, Receiver},
    thread,
    time::{Duration, Instant},
};

use nix::{errno::Errno, sys::signal, unistd::Pid};
use session_harness::{PostgresServer, TIMEOUT};

/// Whether a process with this id is alive (a zombie is not: it holds nothing any more).
fn alive(pid: u32) -> bool {
    signal::kill(Pid::from_raw(pid as i32), None) != Err(Errno::ESRCH)
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim()
                .starts_with('Z')
        })
}

/// A `psql` connection kept open: statements written to its stdin, its answers read a line
/// at a time.
struct Session {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Session {
    fn open(server: &PostgresServer) -> Self {
        let mut child = server
            .psql_command()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting psql");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
        }
    }

    fn send(&mut self, sql: &str) {
        writeln!(self.stdin, "{sql};").expect("writing to psql");
        self.stdin.flush().expect("writing to psql");
    }

    fn answer_within(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_postgres_server_of_its_own_answers_on_a_free_port() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{}/postgres", pg.port())
    );
    assert_eq!(pg.psql("select 1"), "1");
    assert_eq!(pg.psql("show fsync"), "off");
    assert_eq!(pg.psql("show max_connections"), "200");
    assert_eq!(
        pg.psql("select count(*) from pg_extension where extname = 'pg_stat_statements'"),
        "1"
    );
    let err = pg.try_psql("select * from no_such_table").unwrap_err();
    assert!(err.contains("no_such_table"), "{err}");
}

#[test]
fn committed_rows_survive_a_crash_and_a_start_again_on_the_same_port() {
    let Some(mut pg) = PostgresServer::start() else {
        return;
    };
    // Stopped right after its commit: acknowledged means in the WAL (no lost tail of commits).
    pg.psql("create table survivors (n int); insert into survivors values (1), (2), (3)");
    // A connection open when the server crashes: its backend must not outlive the crash.
    let mut session = Session::open(&pg);
    session.send("select 'open'");
    assert_eq!(session.answer_within(TIMEOUT).as_deref(), Some("open"));
    let pids = pg.pids();
    assert!(pids.len() >= 3, "postmaster, backend, workers: {pids:?}");
    let port = pg.port();

    pg.stop();
    assert!(pg.pids().is_empty());
    let still = pids.iter().filter(|&&pid| alive(pid)).collect::<Vec<_>>();
    assert!(still.is_empty(), "alive after stop(): {still:?}");
    assert!(pg
        .try_psql_within("select 1", Duration::from_secs(2))
        .is_err());

    pg.start_again();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.psql("select sum(n) from survivors"), "6");
    // And again, now that the server has been through a crash recovery.
    pg.psql("insert into survivors values (4)");
    pg.stop();
    pg.start_again();
    assert_eq!(pg.psql("select sum(n) from survivors"), "10");
}

#[test]
fn a_paused_server_answers_nothing_until_it_is_resumed() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let mut session = Session::open(&pg);
    session.send("select 'before'");
    assert_eq!(session.answer_within(TIMEOUT).as_deref(), Some("before"));

    pg.pause();
    // Neither a new connection (the postmaster is stopped) ...
    let started = Instant::now();
    let refused = pg.try_psql_within("select 1", Duration::from_secs(1));
    assert!(refused.is_err(), "a paused server answered: {refused:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // ... nor a connection already open (its backend is stopped too).
    session.send("select 'during'");
    assert_eq!(
        session.answer_within(Duration::from_secs(1)),
        None,
        "a paused server's backend answered"
    );

    pg.resume();
    assert_eq!(session.answer_within(TIMEOUT).as_deref(), Some("during"));
    assert_eq!(pg.psql("select 1"), "1");
}

#[test]
fn the_statements_it_runs_are_counted() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    pg.psql("create table counted (n int)");
    pg.reset_statements();
    assert_eq!(
        pg.statements_calls(),
        0,
        "the counting itself is not counted"
    );
    for n in 0..3 {
        pg.psql(&format!("insert into counted values ({n})"));
    }
    assert_eq!(pg.statements_calls(), 3);
    // Several statements in one round trip count one each.
    pg.psql("select 1; select 2");
    assert_eq!(pg.statements_calls(), 5);
    pg.reset_statements();
    assert_eq!(pg.statements_calls(), 0);
}

#[test]
fn dropping_the_server_kills_every_process_and_removes_its_directory() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let _session = Session::open(&pg);
    let data = pg.data_dir();
    assert!(data.join("PG_VERSION").is_file());
    let pids = pg.pids();
    pg.pause(); // even a paused server goes
    drop(pg);
    let still = pids.iter().filter(|&&pid| alive(pid)).collect::<Vec<_>>();
    assert!(still.is_empty(), "alive after drop: {still:?}");
    assert!(!data.parent().unwrap().exists(), "{}", data.display());
}

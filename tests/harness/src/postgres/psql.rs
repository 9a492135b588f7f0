//! Statements run through `psql`, each call a connection of its own, bounded in time.

use std::{
    io::Read,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::TIMEOUT;

use super::PostgresServer;

impl PostgresServer {
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

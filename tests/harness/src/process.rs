//! [`Process`]: a child process owned by a test — a demo node, a `redis-server` — killed and
//! reaped when the test ends, even on panic, with its output kept and printed only when the
//! test fails. Real signals pause, resume and kill it, for the fault tests.
//!
//! ```no_run
//! use std::process::Command;
//! use session_harness::Process;
//!
//! let mut sleeper = Process::spawn("sleeper", Command::new("sleep").arg("60"));
//! sleeper.pause();  // SIGSTOP: alive, but answers nothing
//! sleeper.resume(); // SIGCONT
//! sleeper.kill();   // SIGKILL, then reaped
//! assert!(!sleeper.is_running());
//! ```

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{self, Signal},
    unistd::Pid,
};

/// A child process that lives no longer than its guard (see the module docs).
pub struct Process {
    name: String,
    child: Child,
    output: Arc<Output>,
}

/// Every line the child printed (stdout and stderr, interleaved as read).
#[derive(Default)]
struct Output {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

impl Process {
    /// Starts `command` with its stdout and stderr captured. The child is sent SIGKILL if the
    /// thread that started it dies (Linux's parent-death signal), so it never outlives a test
    /// binary that is itself killed; start processes from the test's own thread.
    pub fn spawn(name: &str, command: &mut Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // async-signal-safe prctl(2) call.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {name} ({command:?}): {err}"));
        let output = Arc::new(Output::default());
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = output.clone();
            thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    output.lines.lock().unwrap().push(line);
                    output.grew.notify_all();
                }
            });
        }
        Self {
            name: name.to_owned(),
            child,
            output,
        }
    }

    /// The name given at [`Process::spawn`], used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operating system's id of the child.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a line of the child's output gives `Some` through `find`, and returns it.
    /// Panics, with the output so far, if the child exits or `timeout` passes first.
    pub fn wait_for_line<T>(&mut self, timeout: Duration, find: impl Fn(&str) -> Option<T>) -> T {
        self.try_wait_for_line(timeout, find)
            .unwrap_or_else(|why| panic!("{why}"))
    }

    /// [`Process::wait_for_line`], with `Err` saying why (and the output so far) instead of a
    /// panic.
    pub fn try_wait_for_line<T>(
        &mut self,
        timeout: Duration,
        find: impl Fn(&str) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            {
                let lines = self.output.lines.lock().unwrap();
                if let Some(found) = lines[seen..].iter().find_map(|line| find(line)) {
                    return Ok(found);
                }
                seen = lines.len();
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    drop(lines);
                    return Err(format!(
                        "{} printed no expected line within {timeout:?}:\n{}",
                        self.name,
                        self.log()
                    ));
                }
                // Woken by a new line, or every 100 ms to notice an exit.
                let wait = left.min(Duration::from_millis(100));
                let _ = self.output.grew.wait_timeout(lines, wait).unwrap();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Lines printed just before the exit may still be on their way.
                thread::sleep(Duration::from_millis(50));
                let lines = self.output.lines.lock().unwrap();
                if let Some(found) = lines[seen..].iter().find_map(|line| find(line)) {
                    return Ok(found);
                }
                drop(lines);
                return Err(format!(
                    "{} exited ({status}) before the expected line:\n{}",
                    self.name,
                    self.log()
                ));
            }
        }
    }

    /// Everything the child printed so far.
    pub fn log(&self) -> String {
        self.output.lines.lock().unwrap().join("\n")
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.pid() as i32);
        signal::kill(pid, signal)
            .unwrap_or_else(|err| panic!("sending {signal} to {}: {err}", self.name));
    }

    /// SIGSTOP: the child stays alive but runs no instruction (a long GC pause, a stalled VM)
    /// until [`Process::resume`].
    pub fn pause(&self) {
        self.signal(Signal::SIGSTOP);
    }

    /// SIGCONT after [`Process::pause`].
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// SIGKILL, then reaps the child: it has no chance to clean up, like a crashed node.
    pub fn kill(&mut self) {
        if self.is_running() {
            self.signal(Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for the child to exit by itself; SIGKILL after that.
    pub fn terminate(&mut self, timeout: Duration) {
        if !self.is_running() {
            return;
        }
        self.signal(Signal::SIGTERM);
        if self.wait_exit(timeout).is_none() {
            self.kill();
        }
    }

    /// Waits up to `timeout` for the child to exit by itself; `None` (the child still
    /// running) after that.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the child has not exited yet (a paused child is running).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() {
            // Captured by libtest like the panic message, so shown with the failure only.
            eprintln!(
                "---- output of {} (pid {}) ----\n{}\n---- end of {} ----",
                self.name,
                self.pid(),
                self.log(),
                self.name
            );
        }
    }
}

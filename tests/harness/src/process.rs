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
    io::{self, BufRead, BufReader},
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

/// Every line the child printed, stdout and stderr in the order it wrote them: both are one
/// pipe, read by one thread, so a line is never logged before one printed earlier.
#[derive(Default)]
struct Output {
    lines: Mutex<Lines>,
    grew: Condvar,
}

#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    /// The pipe reached its end: every process holding it (the child, and any child of its
    /// own) has exited or closed it, so no line is still on its way.
    closed: bool,
}

impl Process {
    /// Starts `command` with its stdout and stderr captured, both through one pipe. The child
    /// is sent SIGKILL if the thread that started it dies (Linux's parent-death signal), so it
    /// never outlives a test binary that is itself killed; start processes from the test's own
    /// thread.
    pub fn spawn(name: &str, command: &mut Command) -> Self {
        let (reader, writer) =
            io::pipe().unwrap_or_else(|err| panic!("a pipe for {name}'s output: {err}"));
        let writer_too = writer
            .try_clone()
            .unwrap_or_else(|err| panic!("a pipe for {name}'s output: {err}"));
        command
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(writer_too);
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // async-signal-safe prctl(2) call.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let spawned = command.spawn();
        // The command's copies of the write end, closed so that the pipe ends with the child.
        command.stdout(Stdio::null()).stderr(Stdio::null());
        let child = spawned.unwrap_or_else(|err| panic!("starting {name} ({command:?}): {err}"));
        let output = Arc::new(Output::default());
        let reading = output.clone();
        thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                reading.lines.lock().unwrap().lines.push(line);
                reading.grew.notify_all();
            }
            reading.lines.lock().unwrap().closed = true;
            reading.grew.notify_all();
        });
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
            let output = self.output.lines.lock().unwrap();
            if let Some(found) = output.lines[seen..].iter().find_map(|line| find(line)) {
                return Ok(found);
            }
            seen = output.lines.len();
            let closed = output.closed;
            let left = deadline.saturating_duration_since(Instant::now());
            if closed || left.is_zero() {
                drop(output);
                // Only a closed pipe says that no line is still on its way: an exit alone
                // does not, so it is told with the closed pipe or at the deadline.
                let why = match self.child.try_wait() {
                    Ok(Some(status)) => format!("exited ({status}) before the expected line"),
                    _ if closed => "closed its output before the expected line".to_owned(),
                    _ => format!("printed no expected line within {timeout:?}"),
                };
                return Err(format!("{} {why}:\n{}", self.name, self.log()));
            }
            // Woken by a new line or by the end of the pipe.
            let _ = self.output.grew.wait_timeout(output, left).unwrap();
        }
    }

    /// Everything the child printed so far.
    pub fn log(&self) -> String {
        self.output.lines.lock().unwrap().lines.join("\n")
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

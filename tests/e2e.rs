//! End-to-end tests of `examples/login_logout` with the official JavaScript socket.io client:
//! builds the demo, installs `tests/e2e`'s npm packages if needed, and runs its Node tests
//! (`node --test`), in Node and in headless Chromium.
//!
//! Without Node (or Chromium, for the browser test) the tests are skipped with a `SKIPPED`
//! line. With `SESSION_E2E_REQUIRED=1` (CI) a missing tool fails instead. `LOGIN_LOGOUT_BIN`
//! tests a prebuilt demo instead of building one; `CHROMIUM_PATH` names another Chromium.

use std::{
    env,
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread,
    time::{Duration, Instant},
};

/// The whole Node run, builds and installs excluded, must end within this.
const NODE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const NPM_TIMEOUT: Duration = Duration::from_secs(10 * 60);

fn required() -> bool {
    env::var("SESSION_E2E_REQUIRED").is_ok_and(|v| v == "1")
}

/// Says so where it is seen even when the test harness captures output, then passes or fails.
fn skip(what: &str) {
    if required() {
        panic!("FAILED (SESSION_E2E_REQUIRED=1): {what}");
    }
    // Straight to the stream: libtest captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "SKIPPED e2e: {what}");
}

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("e2e")
}

fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits for `child`, killing it after `timeout` so that nothing hangs.
fn wait(mut child: Child, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("waiting for a child process") {
            Some(status) => return status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {timeout:?}");
            }
            None => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Builds the demo with the same cargo and returns its executable, wherever the target
/// directory is.
fn build_demo() -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--example",
            "login_logout",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("running cargo build");
    assert!(
        output.status.success(),
        "cargo build --example login_logout failed"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| {
            msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "login_logout"
        })
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no executable for the login_logout example")
}

/// `npm ci` when `node_modules` is missing (or lacks a package the tests import).
fn install_packages(dir: &Path) -> bool {
    let modules = dir.join("node_modules");
    if modules.join("socket.io-client").is_dir() && modules.join("playwright-core").is_dir() {
        return true;
    }
    if !found("npm") {
        skip("npm not found (tests/e2e needs its packages: cd tests/e2e && npm ci)");
        return false;
    }
    let child = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .spawn()
        .expect("running npm ci");
    let status = wait(child, NPM_TIMEOUT, "npm ci");
    assert!(status.success(), "npm ci in tests/e2e failed: {status}");
    true
}

#[test]
fn login_logout_with_the_official_socket_io_client() {
    if !found("node") {
        skip("node not found (install Node.js >= 20 to run tests/e2e)");
        return;
    }
    let dir = e2e_dir();
    if !install_packages(&dir) {
        return;
    }
    let chromium = env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        // The Node browser test skips (or fails, when required) by itself; say it here too.
        skip(&format!(
            "browser test: no Chromium at {chromium} (apt-get install -y chromium)"
        ));
    }
    // A prebuilt demo (a release build, say) can be tested instead.
    let demo = env::var_os("LOGIN_LOGOUT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(build_demo);

    let started = Instant::now();
    let child = Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            "test/protocol.test.js",
            "test/browser.test.js",
        ])
        .current_dir(&dir)
        .env("LOGIN_LOGOUT_BIN", &demo)
        .env("CHROMIUM_PATH", &chromium)
        .spawn()
        .expect("running node --test");
    let status = wait(child, NODE_TIMEOUT, "node --test");
    let _ = writeln!(
        std::io::stderr(),
        "e2e: node --test finished in {:.1} s: {status}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.success(),
        "Node end-to-end tests failed ({status}); see their output above"
    );
}

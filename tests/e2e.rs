//! End-to-end tests of `examples/login_logout` with the official JavaScript socket.io client:
//! builds the demo, installs `tests/e2e`'s npm packages if needed, and runs its Node tests
//! (`node --test`), in Node and in headless Chromium, and on two demo nodes sharing a
//! `redis-server` of the test's own; then the two-node suites again, on two demo nodes sharing
//! a PostgreSQL server of the test's own (`DATABASE_URL`).
//!
//! Without Node (or Chromium, for the browser test; Redis or PostgreSQL, for the two-node
//! suites on it) the tests are skipped with a `SKIPPED` line. With `SESSION_E2E_REQUIRED=1`
//! (CI) a missing tool fails instead. `LOGIN_LOGOUT_BIN` tests a prebuilt demo instead of
//! building one; `CHROMIUM_PATH` names another Chromium.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use session_harness::{random_key, required, DemoNode, PostgresServer, Process, RedisServer};

/// The whole Node run, builds and installs excluded, must end within this.
const NODE_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const NPM_TIMEOUT: Duration = Duration::from_secs(10 * 60);

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("e2e")
}

/// Runs `command` to its end (its output printed only if it fails, but for the pushes'
/// `lateness:` lines, the `SKIPPED` ones and `node --test`'s counts); panics after `timeout`.
fn run(what: &str, command: &mut Command, timeout: Duration) {
    let started = Instant::now();
    let mut process = Process::spawn(what, command);
    let status = process
        .wait_exit(timeout)
        .unwrap_or_else(|| panic!("{what} did not finish within {timeout:?}"));
    assert!(status.success(), "{what} failed ({status})");
    const COUNTS: [&str; 4] = ["ℹ tests ", "ℹ pass ", "ℹ fail ", "ℹ skipped "];
    for line in process.log().lines() {
        if line.contains("lateness: ")
            || line.contains("SKIPPED")
            || COUNTS.iter().any(|count| line.starts_with(count))
        {
            eprintln!("e2e: {what}: {}", line.trim());
        }
    }
    eprintln!(
        "e2e: {what} finished in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// `npm ci` when `node_modules` is missing (or lacks a package the tests import).
fn install_packages(dir: &Path) -> bool {
    let modules = dir.join("node_modules");
    if modules.join("socket.io-client").is_dir() && modules.join("playwright-core").is_dir() {
        return true;
    }
    if !required::found("npm") {
        required::skip(
            "e2e",
            "npm not found (tests/e2e needs its packages: cd tests/e2e && npm ci)",
        );
        return false;
    }
    let mut npm = Command::new("npm");
    npm.args(["ci", "--no-audit", "--no-fund"]).current_dir(dir);
    run("npm ci", &mut npm, NPM_TIMEOUT);
    true
}

#[test]
fn login_logout_with_the_official_socket_io_client() {
    if !required::found("node") {
        required::skip(
            "e2e",
            "node not found (install Node.js >= 20 to run tests/e2e)",
        );
        return;
    }
    let dir = e2e_dir();
    if !install_packages(&dir) {
        return;
    }
    let chromium = env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        // The Node browser test skips (or fails, when required) by itself; say it here too.
        required::skip(
            "e2e",
            &format!("browser test: no Chromium at {chromium} (apt-get install -y chromium)"),
        );
    }
    // Two demo nodes on one Redis (`test/nodes.test.js`, and the second half of
    // `test/lifecycle.test.js`) need a redis-server of their own; without one those say
    // SKIPPED and the rest runs.
    let redis = RedisServer::start();
    let mut node = Command::new("node");
    node.args([
        "--test",
        "--test-concurrency=1",
        "--test-reporter=spec",
        "test/protocol.test.js",
        "test/origin.test.js",
        "test/browser.test.js",
        "test/lifecycle.test.js",
    ])
    .current_dir(&dir)
    .env("LOGIN_LOGOUT_BIN", DemoNode::binary())
    .env("CHROMIUM_PATH", &chromium)
    // The demo refuses both URLs at once; this run's database is Redis, and its lifecycle
    // tests include the one-node part.
    .env_remove("DATABASE_URL")
    .env_remove("SESSION_E2E_TWO_NODES_ONLY");
    if let Some(redis) = &redis {
        node.arg("test/nodes.test.js")
            .env("REDIS_URL", redis.url())
            .env("SESSION_KEY", random_key());
    }
    run("node --test", &mut node, NODE_TIMEOUT);
    drop(redis);

    // The same two-node suites on one PostgreSQL: sessions, leases and socket.io broadcasts
    // through LISTEN/NOTIFY instead of Redis. The one-node part of `test/lifecycle.test.js`
    // ran above, on its own store: `SESSION_E2E_TWO_NODES_ONLY=1` skips it.
    let Some(postgres) = PostgresServer::start() else {
        return;
    };
    let mut node = Command::new("node");
    node.args([
        "--test",
        "--test-concurrency=1",
        "--test-reporter=spec",
        "test/nodes.test.js",
        "test/lifecycle.test.js",
    ])
    .current_dir(&dir)
    .env("LOGIN_LOGOUT_BIN", DemoNode::binary())
    .env_remove("REDIS_URL")
    .env("DATABASE_URL", postgres.url())
    .env("SESSION_KEY", random_key())
    .env("SESSION_E2E_TWO_NODES_ONLY", "1");
    run(
        "node --test (two nodes on PostgreSQL)",
        &mut node,
        NODE_TIMEOUT,
    );
}

//! Tests that need a tool from outside cargo (Node, Chromium, `redis-server`) skip without it,
//! loudly, and fail instead when the environment says the tool must be there.
//!
//! `SESSION_E2E_REQUIRED=1` (set by `.ci/run`) turns every skip into a failure, so CI can never
//! pass by skipping.
//!
//! ```no_run
//! use session_harness::required;
//!
//! if !required::found("redis-server") {
//!     required::skip("multi-node", "redis-server not found (apt-get install -y redis-server)");
//!     return;
//! }
//! ```

use std::{
    io::Write,
    process::{Command, Stdio},
};

/// The variable that turns skips into failures.
pub const REQUIRED_VAR: &str = "SESSION_E2E_REQUIRED";

/// Whether a missing tool must fail the test instead of skipping it.
pub fn required() -> bool {
    std::env::var(REQUIRED_VAR).is_ok_and(|v| v == "1")
}

/// Says `SKIPPED <suite>: <why>` where it is seen even when libtest captures output, then
/// returns; panics instead under [`REQUIRED_VAR`]`=1`.
pub fn skip(suite: &str, why: &str) {
    if required() {
        panic!("FAILED ({REQUIRED_VAR}=1): {suite}: {why}");
    }
    // Straight to the stream: libtest shows captured output of failing tests only.
    let _ = writeln!(std::io::stderr(), "SKIPPED {suite}: {why}");
}

/// Whether `program --version` runs and succeeds.
pub fn found(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

//! Hosts the workspace's integration tests (`tests/`) and examples (`examples/`); the library
//! users depend on is `session-runtime`.
//!
//! What the test harness and the benchmark server share lives here, so that both speak the
//! demo protocol the same way. (The `login_logout` demo keeps its own copy on purpose: it is
//! the example people read, whole, in one file.)

pub mod protocol;

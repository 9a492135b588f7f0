//! Hosts the workspace's integration tests and the demo; see `session-runtime`.

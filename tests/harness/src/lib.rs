//! The test harness of the workspace: real servers, real stores, real clients and real
//! processes, one concept a module.
//!
//! | module | what it is for |
//! |---|---|
//! | [`server`] | [`TestServer`]: axum + socketioxide + tower-sessions on `127.0.0.1:0`, in this process |
//! | [`store`] | [`TestStore`]: a real store that counts, slows down and fails on demand |
//! | [`events`] | the socket events the test server registers, written with `#[with_session]` |
//! | [`hand_written`] | the same events written by hand with `SessionHandle`, on [`HAND_WRITTEN`] |
//! | [`routes`] | the test server's HTTP routes beyond the demo protocol |
//! | [`http`] | [`Http`]: a reqwest client with a cookie jar that speaks the demo protocol |
//! | [`socket`] | [`SocketClient`]: `rust_socketio` over websocket, polling, or both |
//! | [`raw_socket`] | [`RawSocket`]: a socket.io client with sequential ack ids, for bursts |
//! | [`fixtures`] | [`User`]: a logged-in client, with its sockets one call away |
//! | [`process`] | [`Process`]: a child process killed when the test ends, its log kept for failures |
//! | [`backend`] | [`backend::Backend`]: Redis or PostgreSQL, the database the cross-node suites run on both |
//! | [`costs`] | what socket events cost at the database, counted there, against what they should |
//! | [`cross`] | what the cross-node tests check: a [`cross::Tally`] of acks, bursts, subscriptions crossing nodes |
//! | [`demo`] | [`DemoNode`]: the `login_logout` demo as a real process (one or several) |
//! | [`redis`] | [`RedisServer`]: a `redis-server` of the test's own on a free port |
//! | [`postgres`] | [`PostgresServer`]: a PostgreSQL server of the test's own on a free port, crashed, restarted and paused with real signals, counting its statements |
//! | [`relay`] | [`Relay`]: a TCP relay that delays, blackholes or cuts a node's traffic to Redis |
//! | [`redis_ha`] | [`RedisCluster`] (3 masters, 3 replicas) and [`RedisSentinel`] (master, replica, 3 sentinels), for failovers |
//! | [`required`] | skip (`SKIPPED`) or fail when a tool the test needs is missing |
//!
//! Every wait is bounded by [`TIMEOUT`]: a test fails, it never hangs.
//!
//! A test reads as a scenario: the fixture in a line or two, then the behaviour.
//!
//! ```no_run
//! use serde_json::json;
//! use session_harness::{StoreKind, TestServer, Transport};
//!
//! # async fn scenario() {
//! let server = TestServer::builder().store(StoreKind::SqliteMemory).start().await;
//! let alice = server.login("alice").await;
//! let socket = alice.socket(Transport::Polling).await;
//! assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": "alice" }));
//! server.store.fail_writes(true); // now `incr` acks `{"error": "..."}`
//! # }
//! ```

pub mod backend;
pub mod costs;
pub mod cross;
pub mod demo;
pub mod events;
pub mod fixtures;
pub mod hand_written;
pub mod http;
pub mod postgres;
pub mod process;
pub mod raw_socket;
pub mod redis;
pub mod redis_ha;
pub mod relay;
pub mod required;
pub mod routes;
pub mod server;
pub mod socket;
pub mod store;

use std::{sync::Once, time::Duration};

pub use demo::{random_key, DemoNode};
pub use events::HoldProbe;
pub use fixtures::User;
pub use hand_written::HAND_WRITTEN;
pub use http::Http;
pub use postgres::PostgresServer;
pub use process::Process;
pub use raw_socket::{AckFailure, RawSocket};
pub use redis::RedisServer;
pub use redis_ha::{RedisCluster, RedisNode, RedisSentinel};
pub use relay::Relay;
pub use server::{CookieMode, ServerBuilder, TestServer};
pub use socket::{refusal, ConnectFailure, SocketClient, Transport};
pub use store::{StoreKind, TestStore, INJECTED_FAILURE};

/// The bound on every wait of the harness (an ack, a connection, an event, a process start).
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Logs to the test output when `RUST_LOG` is set, e.g. `RUST_LOG=session_runtime=debug`.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    });
}

/// The `{"error": "..."}` message of an ack, or a panic saying it was not an error.
///
/// ```
/// use serde_json::json;
///
/// let ack = json!({ "error": "the session is gone" });
/// assert_eq!(session_harness::error_of(&ack), "the session is gone");
/// ```
pub fn error_of(ack: &serde_json::Value) -> &str {
    ack["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error ack, got {ack}"))
}

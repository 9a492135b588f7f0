//! [`DemoNode`]: the `login_logout` demo (`examples/login_logout.rs`) as a real process on a
//! free port of 127.0.0.1 — one, or several sharing a cookie key (and, with `REDIS_URL`, a
//! Redis), as nodes behind a load balancer would.
//!
//! The demo is built once per test binary with the same cargo (`LOGIN_LOGOUT_BIN` names a
//! prebuilt one instead). Each node is a [`Process`]: killed when the test ends, its log
//! printed if the test fails, paused and killed with real signals for the fault tests.
//!
//! ```no_run
//! use session_harness::{DemoNode, Transport};
//! use serde_json::json;
//!
//! # async fn scenario() {
//! let [a, b] = DemoNode::start_many::<2>(&[]);
//! let alice = a.login("alice").await;
//! let socket = b.socket_of(&alice, Transport::Websocket).await; // same cookie, other node
//! assert_eq!(socket.ack("whoami", vec![]).await, json!("alice"));
//! b.process.pause(); // SIGSTOP
//! # }
//! ```

use std::{
    env,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use crate::{Process, RawSocket, SocketClient, Transport, User, TIMEOUT};

/// A running demo process.
pub struct DemoNode {
    /// The process, for signals and its log.
    pub process: Process,
    url: String,
}

impl DemoNode {
    /// The demo's executable: `LOGIN_LOGOUT_BIN`, or built once with `cargo build --example
    /// login_logout`.
    pub fn binary() -> &'static Path {
        static BINARY: OnceLock<PathBuf> = OnceLock::new();
        BINARY.get_or_init(|| {
            env::var_os("LOGIN_LOGOUT_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(build_demo)
        })
    }

    /// Starts one node with `env` added to its environment (`PORT` is set to 0: the node
    /// picks a free port and prints it) and waits until it accepts connections.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_named("demo", env)
    }

    /// Starts `N` nodes sharing one cookie key (a fresh `SESSION_KEY`, unless `env` sets one),
    /// named `node-a`, `node-b`, ...
    pub fn start_many<const N: usize>(env: &[(&str, &str)]) -> [Self; N] {
        let key = random_key();
        let mut env: Vec<(&str, &str)> = env.to_vec();
        if !env.iter().any(|(name, _)| *name == "SESSION_KEY") {
            env.push(("SESSION_KEY", &key));
        }
        std::array::from_fn(|i| {
            let name = format!("node-{}", char::from(b'a' + i as u8));
            Self::start_named(&name, &env)
        })
    }

    /// [`DemoNode::start`] under `name` (in its log lines and failures): for nodes configured
    /// apart, e.g. one reaching Redis through a [`Relay`](crate::Relay).
    pub fn start_named(name: &str, env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(Self::binary());
        command.env("PORT", "0").env(
            "RUST_LOG",
            env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        for (key, value) in env {
            command.env(key, value);
        }
        let mut process = Process::spawn(name, &mut command);
        let url = process.wait_for_line(TIMEOUT, |line| {
            line.strip_prefix("listening on ")
                .map(|url| url.trim().to_owned())
        });
        Self { process, url }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Logs `name` in on this node.
    pub async fn login(&self, name: &str) -> User {
        User::login(self.url(), name).await
    }

    /// A socket on this node's `/` with the cookie of `user` (logged in on any node).
    pub async fn socket_of(&self, user: &User, transport: Transport) -> SocketClient {
        SocketClient::connect(&self.url, "/", transport, Some(&user.cookie()))
            .await
            .unwrap_or_else(|err| panic!("socket on {}: {err:?}", self.process.name()))
    }

    /// [`DemoNode::socket_of`] as a hand-framed [`RawSocket`] (websocket), for bursts.
    pub async fn raw_socket_of(&self, user: &User) -> RawSocket {
        RawSocket::connect(&self.url, "/", Some(&user.cookie()))
            .await
            .unwrap_or_else(|err| panic!("socket on {}: {err:?}", self.process.name()))
    }
}

/// 64 random bytes as 128 hex digits, the form the demo's `SESSION_KEY` takes: what nodes
/// started elsewhere (e.g. by the Node tests) share.
pub fn random_key() -> String {
    let key = tower_sessions::cookie::Key::generate();
    key.master().iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the demo with the cargo that runs the tests and returns its executable, wherever
/// the target directory is.
fn build_demo() -> PathBuf {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(cargo)
        .args([
            "build",
            "-p",
            "session-workspace",
            "--example",
            "login_logout",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(root)
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

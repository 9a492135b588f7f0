//! [`User`]: a client with a session on some server, and its sockets one call away: the
//! "server + login + connect" every scenario starts with, in one line each.
//!
//! ```no_run
//! use serde_json::json;
//! use session_harness::{TestServer, Transport};
//!
//! # async fn scenario() {
//! let server = TestServer::start().await;
//! let alice = server.login("alice").await;          // POST /login
//! let socket = alice.raw_socket().await;             // websocket, cookie in the handshake
//! let polling = alice.socket(Transport::Polling).await; // rust_socketio
//! assert_eq!(socket.ack("incr", vec![]).await, json!(1));
//! assert_eq!(polling.ack("whoami", vec![]).await, json!({ "user": "alice" }));
//! let visitor = server.visitor(&[("count", "41")]).await; // a session without a login
//! # }
//! ```

use tower_sessions::session::Id;

use crate::{ConnectFailure, Http, RawSocket, SocketClient, TestServer, Transport};

/// A client holding a session cookie of the server at `http.base()`.
#[derive(Clone)]
pub struct User {
    /// Its HTTP client, whose jar holds the session cookie.
    pub http: Http,
}

impl User {
    /// Logs `name` in at the server at `url` (`POST /login`) with a new cookie jar.
    pub async fn login(url: String, name: &str) -> Self {
        let http = Http::new(url);
        http.login(name).await;
        Self { http }
    }

    /// The `Cookie` header to hand to a socket's handshake.
    pub fn cookie(&self) -> String {
        self.http.cookie_header()
    }

    /// The session id the server reads from the cookie (test servers only: `GET /session-id`).
    pub async fn id(&self) -> Id {
        self.http.session_id().await
    }

    /// A [`RawSocket`] on `/`, connected with the cookie; panics if refused.
    pub async fn raw_socket(&self) -> RawSocket {
        self.raw_socket_on("/").await
    }

    /// A [`RawSocket`] on `ns`, connected with the cookie; panics if refused.
    pub async fn raw_socket_on(&self, ns: &str) -> RawSocket {
        RawSocket::connect(self.http.base(), ns, Some(&self.cookie()))
            .await
            .unwrap_or_else(|err| panic!("raw socket on {ns}: {err:?}"))
    }

    /// A [`SocketClient`] on `/` over `transport`, connected with the cookie; panics if refused.
    pub async fn socket(&self, transport: Transport) -> SocketClient {
        self.socket_on("/", transport).await
    }

    /// A [`SocketClient`] on `ns` over `transport`, connected with the cookie; panics if refused.
    pub async fn socket_on(&self, ns: &str, transport: Transport) -> SocketClient {
        self.try_socket_on(ns, transport)
            .await
            .unwrap_or_else(|err| panic!("socket on {ns} over {transport:?}: {err:?}"))
    }

    /// A [`SocketClient`] on `ns` over `transport`, or why the server refused it.
    pub async fn try_socket_on(
        &self,
        ns: &str,
        transport: Transport,
    ) -> Result<SocketClient, ConnectFailure> {
        SocketClient::connect(self.http.base(), ns, transport, Some(&self.cookie())).await
    }
}

impl TestServer {
    /// Logs `name` in with a new client: the usual first line of a scenario.
    pub async fn login(&self, name: &str) -> User {
        User::login(self.url(), name).await
    }

    /// A new client whose fresh session holds `values` (`(key, JSON text)`, through the test
    /// route `POST /set`), without a login.
    pub async fn visitor(&self, values: &[(&str, &str)]) -> User {
        let http = self.http();
        http.set(values).await;
        User { http }
    }

    /// The record of `user`'s session as the store holds it now, as a JSON object of its
    /// values (`None`: no record).
    pub async fn data(&self, user: &User) -> Option<serde_json::Value> {
        let record = self.store.record(user.id().await).await?;
        Some(serde_json::to_value(record.data).expect("session values are JSON"))
    }

    /// A second client of the session of `cookie`, e.g. to send concurrent requests.
    pub fn http_with_cookie(&self, cookie: &str) -> Http {
        Http::with_cookie(self.url(), cookie)
    }

    /// [`TestServer::http_with_cookie`] whose requests give up after `timeout`.
    pub fn http_with_cookie_and_timeout(&self, cookie: &str, timeout: std::time::Duration) -> Http {
        Http::with_cookie_and_timeout(self.url(), cookie, timeout)
    }
}

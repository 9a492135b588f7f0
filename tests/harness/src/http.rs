//! [`Http`]: a reqwest client with its own cookie jar that speaks the HTTP half of the demo
//! protocol (`POST /login`, `POST /logout`, `GET /session`, `POST /incr`) and the test routes
//! of [`crate::routes`]. It talks to any server by URL: a [`TestServer`](crate::TestServer) or
//! a [`DemoNode`](crate::DemoNode).
//!
//! ```no_run
//! use session_harness::Http;
//!
//! # async fn scenario(url: String) {
//! let alice = Http::new(url.clone());
//! alice.login("alice").await;
//! assert_eq!(alice.incr().await, 1);
//! // The same session from a second client, e.g. on another node:
//! let again = Http::with_cookie(url, &alice.cookie_header());
//! assert_eq!(again.session().await["count"], 1);
//! # }
//! ```

use std::{sync::Arc, time::Duration};

use reqwest::cookie::CookieStore;
use serde_json::{json, Value};
use tower_sessions::session::Id;

use crate::TIMEOUT;

/// An HTTP client with its own cookie jar, speaking the demo protocol.
#[derive(Clone)]
pub struct Http {
    base: String,
    jar: Arc<reqwest::cookie::Jar>,
    client: reqwest::Client,
}

impl Http {
    /// A client of the server at `base` (`http://127.0.0.1:PORT`) with an empty cookie jar.
    pub fn new(base: String) -> Self {
        Self::with_timeout(base, TIMEOUT)
    }

    /// [`Http::new`] whose requests give up after `timeout`.
    pub fn with_timeout(base: String, timeout: Duration) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .timeout(timeout)
            .build()
            .expect("build reqwest client");
        Self { base, jar, client }
    }

    /// A client whose jar holds `cookie` (a `Cookie` header value, e.g. `id=...`).
    pub fn with_cookie(base: String, cookie: &str) -> Self {
        Self::with_cookie_and_timeout(base, cookie, TIMEOUT)
    }

    /// [`Http::with_cookie`] whose requests give up after `timeout`.
    pub fn with_cookie_and_timeout(base: String, cookie: &str, timeout: Duration) -> Self {
        let http = Self::with_timeout(base, timeout);
        let url = http.base.parse().unwrap();
        for pair in cookie.split("; ") {
            http.jar.add_cookie_str(&format!("{pair}; Path=/"), &url);
        }
        http
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The `Cookie` header this client sends, to hand to a socket's handshake.
    pub fn cookie(&self) -> Option<String> {
        let url = self.base.parse().unwrap();
        self.jar
            .cookies(&url)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// [`Http::cookie`], which must exist.
    pub fn cookie_header(&self) -> String {
        self.cookie().expect("this client has no session cookie")
    }

    /// Sends a request and returns the status and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("HTTP request failed");
        let status = resp.status().as_u16();
        let body = resp.json().await.expect("HTTP response is not JSON");
        (status, body)
    }

    /// Sends `method path` with `body` as raw `application/json` text (valid JSON or not) and
    /// returns the status and the body, parsed as JSON (`null` if it is not).
    pub async fn raw(&self, method: &str, path: &str, body: Option<String>) -> (u16, Value) {
        self.try_raw(method, path, body)
            .await
            .expect("HTTP request failed")
    }

    /// [`Http::raw`] that returns the transport's error (a timeout, a refused connection)
    /// instead of panicking: for probes that poll a node until it serves again.
    pub async fn try_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, Value), reqwest::Error> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `GET path` carrying `cookie` as its `Cookie` header instead of the jar's, on this
    /// client's connections: for floods, where building a client per request (each loads the
    /// TLS roots) would cost the load generator more than the server.
    pub async fn get_with_cookie(&self, path: &str, cookie: &str) -> u16 {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, cookie)
            .send()
            .await
            .expect("HTTP request failed");
        let status = resp.status().as_u16();
        let _ = resp.bytes().await;
        status
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.request(method, path, body).await;
        assert_eq!(status, 200, "{path} answered {status}: {body}");
        body
    }

    /// `POST /login {"user": user}`.
    pub async fn login(&self, user: &str) -> Value {
        self.ok(
            reqwest::Method::POST,
            "/login",
            Some(json!({ "user": user })),
        )
        .await
    }

    /// `POST /logout`.
    pub async fn logout(&self) -> Value {
        self.ok(reqwest::Method::POST, "/logout", None).await
    }

    /// `GET /session`: `{"user": .., "count": N}`.
    pub async fn session(&self) -> Value {
        self.ok(reqwest::Method::GET, "/session", None).await
    }

    /// `POST /incr`: the new count.
    pub async fn incr(&self) -> i64 {
        self.ok(reqwest::Method::POST, "/incr", None).await["count"]
            .as_i64()
            .expect("count")
    }

    /// `POST /incr`, returning the transport error instead of panicking on it.
    pub async fn try_incr(&self) -> Result<Value, reqwest::Error> {
        self.client
            .post(format!("{}/incr", self.base))
            .send()
            .await?
            .json()
            .await
    }

    /// `POST path` (no body): the status, the JSON body and the `Set-Cookie` header, if any.
    pub async fn post_for_cookie(&self, path: &str) -> (u16, Value, Option<String>) {
        self.for_cookie(reqwest::Method::POST, path).await
    }

    /// `GET path`: the status, the JSON body and the `Set-Cookie` header, if any.
    pub async fn get_for_cookie(&self, path: &str) -> (u16, Value, Option<String>) {
        self.for_cookie(reqwest::Method::GET, path).await
    }

    async fn for_cookie(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> (u16, Value, Option<String>) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .expect("HTTP request failed");
        let status = resp.status().as_u16();
        let set_cookie = resp
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .map(|v| v.to_str().expect("an ASCII header").to_owned());
        let body = resp.json().await.expect("HTTP response is not JSON");
        (status, body, set_cookie)
    }

    /// `POST /plain/logout` (test route): `flush` through tower-sessions' own `Session`.
    pub async fn plain_logout(&self) -> Value {
        self.ok(reqwest::Method::POST, "/plain/logout", None).await
    }

    /// `POST /plain/rotate` (test route): `cycle_id` through tower-sessions' own `Session`.
    pub async fn plain_rotate(&self) -> Value {
        self.ok(reqwest::Method::POST, "/plain/rotate", None).await
    }

    /// The session id the server reads from this client's cookie.
    pub async fn session_id(&self) -> Id {
        let body = self.ok(reqwest::Method::GET, "/session-id", None).await;
        body["id"]
            .as_str()
            .expect("this client has no session")
            .parse()
            .expect("an id")
    }

    /// `POST /set?key=json&...` (test route): writes each `(key, JSON text)` into this
    /// client's session, creating it if needed.
    pub async fn set(&self, values: &[(&str, &str)]) {
        self.client
            .post(format!("{}/set", self.base))
            .query(values)
            .send()
            .await
            .expect("POST /set")
            .error_for_status()
            .expect("POST /set succeeds");
    }
}

//! What clients are told when something fails, and what the log keeps.
//!
//! A client gets a short, stable message per kind of failure: never a session id, never a
//! store's or a lock backend's own text (they may hold ids, hosts or session data). The log
//! gets the whole error, its sources included, inside the event's span (`ns`, `event`,
//! `lock_waited`), and never the raw session id either.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};
use session_harness::{error_of, server::LOCK_FAILURE, RawSocket, TestServer, INJECTED_FAILURE};
use tracing_subscriber::fmt::MakeWriter;

/// Every log line the runtime writes while it is the thread's default subscriber. The tests
/// run on a current-thread runtime, so the server's tasks log on this thread too.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn capture() -> (Self, tracing::subscriber::DefaultGuard) {
        let log = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("session_runtime=trace,session_workspace=trace")
            .with_writer(log.clone())
            .with_ansi(false)
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Log {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

/// Asserts that `answer` (an ack or an HTTP body) names neither the session `id` nor any
/// backend text.
fn tells_nothing_secret(answer: &Value, id: &str) {
    let text = answer.to_string();
    assert!(
        !text.contains(id),
        "the session id reached the client: {text}"
    );
    for secret in [INJECTED_FAILURE, LOCK_FAILURE, "10.9.8.7", "invalid type"] {
        assert!(
            !text.contains(secret),
            "backend text ({secret}) reached the client: {text}"
        );
    }
}

#[tokio::test]
async fn every_error_kind_is_acknowledged_without_ids_or_backend_text() {
    let (log, _guard) = Log::capture();
    let server = TestServer::start().await;
    let alice = server.login("alice").await;
    let id = alice.id().await.to_string();
    let socket = alice.raw_socket().await;
    let expect = |ack: &Value, kind: &str| assert!(error_of(ack).contains(kind), "{ack}");

    // The store fails on save, then on load.
    server.store.fail_writes(true);
    let ack = socket.ack("incr", vec![]).await;
    assert_eq!(ack, json!({ "error": "session store failed" }));
    tells_nothing_secret(&ack, &id);
    server.store.fail_writes(false);
    server.store.fail_loads(true);
    let ack = socket.ack("whoami", vec![]).await;
    assert_eq!(ack, json!({ "error": "session store failed" }));
    server.store.fail_loads(false);
    tells_nothing_secret(&ack, &id);

    // A stored value of the wrong type: serde's text would quote the value.
    alice.http.set(&[("label", "\"ten\"")]).await;
    let ack = socket.ack("tally", vec![json!("late")]).await;
    expect(&ack, "`label`");
    tells_nothing_secret(&ack, &id);

    // A guard, a panic, and a bad payload.
    let visitor = server.visitor(&[("visits", "1")]).await;
    let ack = visitor
        .raw_socket()
        .await
        .ack("spend", vec![json!(1)])
        .await;
    assert_eq!(ack, json!({ "error": "the session has no `user`" }));
    let ack = socket.ack("panic_after_write", vec![]).await;
    expect(&ack, "panicked");
    tells_nothing_secret(&ack, &id);
    let ack = socket
        .ack("login", vec![json!(["not", "an", "object"])])
        .await;
    tells_nothing_secret(&ack, &id);

    // No session, then a gone one.
    let anonymous = RawSocket::connect(&server.url(), "/", None).await.unwrap();
    expect(&anonymous.ack("incr", vec![]).await, "no session");
    alice.http.logout().await;
    let ack = socket.ack("incr", vec![]).await;
    expect(&ack, "gone");
    assert!(!ack.to_string().contains(&id), "{ack}");

    // The log has the sources the clients were spared, in spans naming the event, and never
    // the id.
    let log = log.text();
    assert!(
        log.contains(INJECTED_FAILURE),
        "the store's error is not logged:\n{log}"
    );
    assert!(
        log.contains("invalid type"),
        "serde's error is not logged:\n{log}"
    );
    assert!(log.contains(r#"with_session{ns="/" event="incr""#), "{log}");
    assert!(log.contains("lock_waited=false"), "{log}");
    assert!(!log.contains(&id), "the session id was logged:\n{log}");
}

#[tokio::test]
async fn a_failing_lock_backend_is_answered_briefly_and_logged_whole() {
    let (log, _guard) = Log::capture();
    let server = TestServer::builder().failing_locks().start().await;
    let alice = server.login("alice").await;
    let id = alice.id().await.to_string();
    let socket = alice.raw_socket().await;

    let ack = socket.ack("incr", vec![]).await;
    assert_eq!(ack, json!({ "error": "could not lock the session" }));
    tells_nothing_secret(&ack, &id);
    // Readers take no lock.
    assert_eq!(
        socket.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );
    // HTTP writers take the same lock: 503 with the same short message.
    let (status, body) = alice.http.raw("POST", "/incr", None).await;
    assert_eq!(
        (status, &body),
        (503, &json!({ "error": "could not lock the session" }))
    );
    tells_nothing_secret(&body, &id);

    let log = log.text();
    assert!(
        log.contains(LOCK_FAILURE),
        "the backend's error is not logged:\n{log}"
    );
    assert!(!log.contains(&id), "the session id was logged:\n{log}");
}

#[tokio::test]
async fn http_store_failures_are_503_without_the_store_text() {
    let server = TestServer::start().await;
    let alice = server.login("alice").await;
    let id = alice.id().await.to_string();
    server.store.fail_loads(true);
    for (method, path) in [("POST", "/incr"), ("GET", "/session"), ("POST", "/logout")] {
        let (status, body) = alice.http.raw(method, path, None).await;
        assert_eq!(status, 503, "{method} {path}: {body}");
        assert!(error_of(&body).contains("store"), "{method} {path}: {body}");
        tells_nothing_secret(&body, &id);
    }
}

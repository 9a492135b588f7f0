//! The demo protocol's HTTP routes exist twice: in the demo (`examples/login_logout.rs`,
//! readable whole in one file) and in `session_workspace::protocol` (the test server and the
//! benchmark server). This test holds both to the same behaviour: the same requests, in the
//! same order, get the same status and the same body from the demo process and from a
//! [`TestServer`].

use serde_json::{json, Value};
use session_harness::{DemoNode, Http, TestServer};

/// A request of the protocol: method, path, and a body (`None`: none; `Some(text)`: sent as
/// `application/json`, valid JSON or not).
type Request = (&'static str, &'static str, Option<String>);

fn cases() -> Vec<Request> {
    let body = |v: Value| Some(v.to_string());
    let long_name = "x".repeat(65);
    vec![
        ("GET", "/session", None),
        ("POST", "/incr", None),
        ("POST", "/logout", None),
        ("POST", "/login", body(json!({ "user": "" }))),
        ("POST", "/login", body(json!({ "user": long_name }))),
        ("POST", "/login", body(json!({ "user": 5 }))),
        ("POST", "/login", body(json!(["bob"]))),
        ("POST", "/login", body(json!({}))),
        ("POST", "/login", Some("{not json".into())),
        ("POST", "/login", None),
        ("POST", "/login", body(json!({ "user": "alice" }))),
        ("GET", "/session", None),
        ("POST", "/incr", None),
        ("POST", "/incr", None),
        (
            "POST",
            "/login",
            body(json!({ "user": "bob", "extra": true })),
        ),
        ("GET", "/session", None),
        ("POST", "/logout", None),
        ("GET", "/session", None),
        ("POST", "/incr", None),
    ]
}

/// The protocol fixes an error's status and shape (`{"error": "<text>"}`), not its wording.
fn shape(answer: (u16, Value)) -> (u16, Value) {
    match answer {
        (status, Value::Object(body)) if body.len() == 1 => match body.get("error") {
            Some(Value::String(text)) if !text.is_empty() => (status, json!({ "error": "…" })),
            _ => (status, Value::Object(body)),
        },
        other => other,
    }
}

/// Sends every case in order with one cookie jar; returns what came back.
async fn replay(url: String) -> Vec<(u16, Value)> {
    let http = Http::new(url);
    let mut answers = Vec::new();
    for (method, path, body) in cases() {
        answers.push(shape(http.raw(method, path, body).await));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_and_the_shared_protocol_routes_answer_alike() {
    let demo = DemoNode::start(&[]);
    let server = TestServer::start().await;
    let from_demo = replay(demo.url()).await;
    let from_shared = replay(server.url()).await;
    for ((case, demo), shared) in cases().iter().zip(&from_demo).zip(&from_shared) {
        assert_eq!(demo, shared, "{case:?}: the demo and protocol.rs differ");
    }
    // The cases reach every answer the protocol has: not a run of identical 400s.
    let statuses: std::collections::BTreeSet<u16> = from_demo.iter().map(|(s, _)| *s).collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&400),
        "{statuses:?}"
    );
}

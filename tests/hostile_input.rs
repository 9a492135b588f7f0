//! Bad input never panics and loses nothing: property tests over what a client controls —
//! event payloads through the `#[with_session]` wrappers (any JSON shape, deep nesting, huge
//! strings, binary attachments), session records holding unexpected types, and cookies of any
//! length and alphabet — against a real server. Every event is answered (a value or
//! `{"error": ...}`, never "panicked"), and the server keeps serving. Oversized packets are
//! refused by the documented limit (`MAX_PAYLOAD`): that one connection is closed, nothing else.

use proptest::{
    prelude::*,
    test_runner::{Config, TestRunner},
};
use serde_json::{json, Value};
use session_harness::{server::MAX_PAYLOAD, Http, RawSocket, TestServer, User};
use tokio::runtime::Runtime;

/// The events of the test server that take or read something a client controls.
const EVENTS: [&str; 8] = [
    "whoami", "incr", "login", "spend", "add", "member", "note", "tally",
];

/// Any JSON value: scalars, strings up to `long` characters, arrays and objects nested a few
/// levels.
fn any_json(long: usize) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::from),
        (0..long).prop_map(|n| Value::from("ü".repeat(n))),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::from),
            prop::collection::hash_map(".{0,8}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Arrays nested `depth` deep: deeper than serde_json's recursion limit (128) at the top.
fn deep(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

/// The server, alice logged in, and a socket of hers, on a runtime the property test drives.
fn setup(rt: &Runtime) -> (TestServer, User, RawSocket) {
    rt.block_on(async {
        let server = TestServer::start().await;
        let alice = server.login("alice").await;
        let socket = alice.raw_socket().await;
        (server, alice, socket)
    })
}

/// An answer, not a panic: a value, or `{"error": "..."}` that does not say "panicked".
fn answered(event: &str, ack: &Value) -> Result<(), TestCaseError> {
    if let Some(error) = ack.get("error").and_then(Value::as_str) {
        prop_assert!(!error.contains("panicked"), "`{}` panicked: {}", event, ack);
    }
    Ok(())
}

/// `cases` cases of `input`, an event and what to send with it, each sent by `send` and
/// [`answered`]; then the same socket still serves alice.
fn every_case_answered<V: std::fmt::Debug, F: std::future::Future<Output = Value>>(
    rt: &Runtime,
    socket: &RawSocket,
    cases: u32,
    input: impl Strategy<Value = (&'static str, V)>,
    send: impl Fn((&'static str, V)) -> F,
) {
    runner(cases)
        .run(&input, |(event, value)| {
            let ack = rt.block_on(send((event, value)));
            answered(event, &ack)
        })
        .unwrap();
    let whoami = rt.block_on(socket.ack("whoami", vec![]));
    assert_eq!(whoami, json!({ "user": "alice" }), "still serving");
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn any_payload_is_answered_and_the_server_goes_on() {
    let rt = Runtime::new().unwrap();
    let (_server, _alice, socket) = setup(&rt);
    let event = prop::sample::select(EVENTS.to_vec());
    // Under the packet limit: over it the connection is closed, tested on its own below.
    let args = prop_oneof![
        prop::collection::vec(any_json(5_000), 0..4),
        (1usize..400).prop_map(|depth| vec![deep(depth)]),
    ]
    .prop_filter("fits in one packet", |args| {
        Value::from(args.clone()).to_string().len() < MAX_PAYLOAD - 100
    });
    every_case_answered(&rt, &socket, 300, (event, args), |(event, args)| {
        socket.ack(event, args)
    });
}

#[test]
fn binary_attachments_are_answered_and_the_server_goes_on() {
    let rt = Runtime::new().unwrap();
    let (_server, _alice, socket) = setup(&rt);
    let event = prop::sample::select(EVENTS.to_vec());
    let bytes = prop::collection::vec(any::<u8>(), 0..4096);
    every_case_answered(&rt, &socket, 100, (event, bytes), |(event, bytes)| {
        let placeholder = json!({ "_placeholder": true, "num": 0 });
        socket.emit_with_attachments(event, vec![placeholder], vec![bytes])
    });
}

#[test]
fn records_holding_unexpected_types_are_errors_never_panics() {
    let rt = Runtime::new().unwrap();
    let (server, alice, socket) = setup(&rt);
    let key = prop::sample::select(vec!["user", "count", "cart", "balance", "label", "note"]);
    runner(150)
        .run(&(key, any_json(100)), |(key, value)| {
            rt.block_on(alice.http.set(&[(key, &value.to_string())]));
            for event in EVENTS {
                let args = match event {
                    "spend" => vec![json!(1)],
                    "add" | "note" | "tally" => vec![json!("x")],
                    "login" => vec![json!({ "user": "alice" })],
                    _ => vec![],
                };
                let ack = rt.block_on(socket.ack(event, args));
                answered(event, &ack)?;
            }
            Ok(())
        })
        .unwrap();
    assert!(rt.block_on(server.data(&alice)).is_some());
}

#[test]
fn cookies_of_any_length_and_alphabet_read_nobody() {
    let rt = Runtime::new().unwrap();
    let (server, alice, _socket) = setup(&rt);
    let writes = server.store.writes();
    // Visible ASCII is what a header may hold; lengths up to 6 000 bytes.
    let value = prop::string::string_regex("[!-~]{0,6000}").unwrap();
    let name = prop_oneof![Just("id".to_owned()), "[a-zA-Z0-9_]{1,12}"];
    runner(150)
        .run(&(name, value), |(name, value)| {
            let cookie = format!("{name}={}", value.replace(';', ","));
            let http = Http::with_cookie(server.url(), &cookie);
            let (status, body) = rt.block_on(http.raw("GET", "/session", None));
            prop_assert!(status < 500, "{} for {:?}: {}", status, cookie, body);
            if status == 200 {
                prop_assert_eq!(&body, &json!({ "user": null, "count": 0 }));
            }
            if let Ok(socket) = rt.block_on(RawSocket::connect(&server.url(), "/", Some(&cookie))) {
                let ack = rt.block_on(socket.ack("whoami", vec![]));
                prop_assert_eq!(ack, json!({ "user": null }));
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(server.store.writes(), writes, "a forged cookie wrote");
    // alice's own session is untouched.
    let session = rt.block_on(alice.http.session());
    assert_eq!(session, json!({ "user": "alice", "count": 0 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_packet_closes_only_its_own_connection() {
    let server = TestServer::start().await;
    let alice = server.login("alice").await;
    let bystander = alice.raw_socket().await;
    let offender = alice.raw_socket().await;

    // Just under the limit is served.
    let fits = "x".repeat(MAX_PAYLOAD - 100);
    let ack = offender.ack("note", vec![json!(fits)]).await;
    assert_eq!(ack, json!({ "noted": true }));
    // Over it, the connection is closed; nothing was run.
    let huge = json!(["note", "x".repeat(MAX_PAYLOAD * 2)]);
    assert!(offender.send_raw(format!("42{huge}")));
    assert!(offender.next_event("close").await.is_some(), "still open");
    // Everyone else, and a new connection, go on.
    assert_eq!(bystander.ack("incr", vec![]).await, json!(1));
    assert_eq!(alice.raw_socket().await.ack("incr", vec![]).await, json!(2));
    let note = server.data(&alice).await.unwrap()["note"].clone();
    assert_eq!(note.as_str().map(str::len), Some(MAX_PAYLOAD - 100));
}

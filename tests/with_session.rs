//! What `#[with_session]` handlers do at run time, through a real server (the harness's
//! `TestServer`, whose events are written with the attribute) and a real `rust_socketio`
//! client: the ack comes after the save, `Err` saves nothing, `require` and bad payloads stop
//! the handler before anything runs, `SessionData` is written back, and `connect` refuses
//! sockets.

use std::time::Duration;

use serde_json::{json, Value};
use session_harness::{
    error_of, refusal, server::MEMBERS, SocketClient, TestServer, Transport, User, TIMEOUT,
};

/// A server, a visitor whose fresh session holds `values` (JSON texts), and a socket of it.
async fn visitor(values: &[(&str, &str)]) -> (TestServer, User, SocketClient) {
    let server = TestServer::start().await;
    let visitor = server.visitor(values).await;
    let socket = visitor.socket(Transport::Websocket).await;
    (server, visitor, socket)
}

/// Sends `event` with `args` and returns its ack, asserting that no write (`save` or `create`)
/// reached the store in the meantime.
async fn ack_saving_nothing(
    server: &TestServer,
    socket: &SocketClient,
    event: &str,
    args: Vec<Value>,
) -> Value {
    let writes = server.store.writes();
    let ack = socket.ack(event, args).await;
    assert_eq!(
        server.store.writes(),
        writes,
        "`{event}` saved; it acked {ack}"
    );
    ack
}

#[tokio::test]
async fn the_ack_comes_after_the_save() {
    let (server, visitor, socket) = visitor(&[("count", "41")]).await;

    assert_eq!(socket.ack("incr", vec![]).await, json!(42));
    // The client heard 42: the store already holds it.
    assert_eq!(server.data(&visitor).await.unwrap()["count"], json!(42));
}

#[tokio::test]
async fn require_stops_the_handler_before_its_body() {
    let (server, visitor, socket) = visitor(&[("balance", "10")]).await;

    for (event, args) in [("spend", vec![json!(5)]), ("member", vec![])] {
        let ack = ack_saving_nothing(&server, &socket, event, args).await;
        assert_eq!(
            ack,
            json!({ "error": "the session has no `user`" }),
            "{event}"
        );
    }
    assert_eq!(server.runs(), 0);
    assert_eq!(server.data(&visitor).await.unwrap()["balance"], json!(10));
}

#[tokio::test]
async fn an_err_saves_nothing() {
    let (server, visitor, socket) = visitor(&[("user", "\"alice\""), ("balance", "10")]).await;

    assert_eq!(socket.ack("spend", vec![json!(4)]).await, json!(6));
    // The body wrote -94 before returning `Err`: nothing of it reaches the store.
    let ack = ack_saving_nothing(&server, &socket, "spend", vec![json!(100)]).await;
    assert_eq!(ack, json!({ "error": "not enough credit" }));
    assert_eq!(server.runs(), 2);
    assert_eq!(server.data(&visitor).await.unwrap()["balance"], json!(6));
}

#[tokio::test]
async fn readonly_never_writes() {
    let (server, _visitor, socket) = visitor(&[("user", "\"alice\"")]).await;

    let ack = ack_saving_nothing(&server, &socket, "member", vec![]).await;
    assert_eq!(ack, json!("alice"));
}

#[tokio::test]
async fn a_bad_payload_is_answered_and_touches_nothing() {
    let (server, _visitor, socket) = visitor(&[("user", "\"alice\"")]).await;
    let loads = server.store.loads();

    let answer = socket.ack("spend", vec![json!("a lot")]).await;
    let error = error_of(&answer);
    assert!(error.starts_with("invalid payload: "), "{error}");
    assert_eq!(server.runs(), 0);
    let after = server.store.loads();
    assert_eq!(after, loads, "a bad payload must not reach the store");
}

#[tokio::test]
async fn session_data_is_written_back() {
    let (server, visitor, socket) = visitor(&[("user", "\"alice\"")]).await;

    assert_eq!(socket.ack("add", vec![json!("tea")]).await, json!(1));
    assert_eq!(socket.ack("add", vec![json!("milk")]).await, json!(2));
    let cart = server.data(&visitor).await.unwrap()["cart"].clone();
    assert_eq!(cart, json!({ "items": ["tea", "milk"] }));
}

#[tokio::test]
async fn session_data_that_does_not_read_fails_and_writes_nothing() {
    let (server, visitor, socket) = visitor(&[("cart", "42")]).await;

    let answer = ack_saving_nothing(&server, &socket, "add", vec![json!("tea")]).await;
    let error = error_of(&answer);
    assert!(error.contains("`cart`"), "{error}");
    assert_eq!(server.data(&visitor).await.unwrap()["cart"], json!(42));
}

#[tokio::test]
async fn a_unit_handler_acknowledges_by_itself() {
    let (server, visitor, socket) = visitor(&[("user", "\"alice\"")]).await;

    let ack = socket.ack("note", vec![json!("hello")]).await;
    assert_eq!(ack, json!({ "noted": true }));
    // Its save follows its own ack: wait for it, boundedly.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut saved = None;
    while tokio::time::Instant::now() < deadline {
        saved = server.data(&visitor).await.unwrap().get("note").cloned();
        if saved.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(saved, Some(json!("hello")));
}

#[tokio::test]
async fn connect_refuses_sockets_that_fail_the_guard() {
    let server = TestServer::start().await;
    let anonymous = server.visitor(&[("visits", "1")]).await;
    let banned = server
        .visitor(&[("user", "\"mallory\""), ("banned", "true")])
        .await;
    let member = server.visitor(&[("user", "\"alice\"")]).await;

    for (visitor, why) in [
        (&anonymous, "the session has no `user`"),
        (&banned, "this account is banned"),
    ] {
        let message = refusal(visitor.try_socket_on(MEMBERS, Transport::Websocket).await);
        assert!(message.contains(why), "{why}: {message}");
    }
    member.socket_on(MEMBERS, Transport::Websocket).await;
}

#[tokio::test]
async fn every_event_reloads_what_http_wrote_in_between() {
    let (_server, visitor, socket) = visitor(&[("count", "1")]).await;

    assert_eq!(socket.ack("incr", vec![]).await, json!(2));
    visitor.http.set(&[("count", "100")]).await;
    assert_eq!(socket.ack("incr", vec![]).await, json!(101));
}

#[tokio::test]
async fn an_early_return_still_saves_before_the_ack() {
    let (server, visitor, socket) = visitor(&[("label", "\"ten\"")]).await;
    let saves = server.store.saves();

    assert_eq!(socket.ack("tally", vec![json!("early")]).await, json!(7));
    assert_eq!(server.store.saves(), saves + 1);
    let record = server.data(&visitor).await.unwrap();
    assert_eq!(
        (&record["tally"], &record["touched"]),
        (&json!(7), &json!(true))
    );
}

#[tokio::test]
async fn an_error_through_question_mark_saves_nothing_and_is_answered() {
    let (server, visitor, socket) = visitor(&[("label", "\"ten\"")]).await;

    let answer = ack_saving_nothing(&server, &socket, "tally", vec![json!("late")]).await;
    assert!(error_of(&answer).contains("`label`"), "{answer}");
    // `touched` was written before the `?`: it never reached the store.
    assert_eq!(server.data(&visitor).await.unwrap().get("touched"), None);
}

#[tokio::test]
async fn a_panic_saves_nothing_is_answered_and_the_socket_goes_on() {
    let (server, visitor, socket) = visitor(&[("count", "5")]).await;

    let ack = ack_saving_nothing(&server, &socket, "panic_after_write", vec![]).await;
    assert_eq!(
        ack,
        json!({ "error": "the handler panicked; nothing was saved" })
    );
    assert_eq!(server.data(&visitor).await.unwrap()["count"], json!(5));
    // The lock was released and the socket still works.
    assert_eq!(socket.ack("incr", vec![]).await, json!(6));
}

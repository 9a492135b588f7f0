//! Logout reaches every socket at once: an HTTP logout or login (id rotation) through
//! `LockedSession` pushes `session:gone` to every socket of that session, in every namespace
//! and over every transport, within 1 s, and to no other session's socket. Then the `OnGone`
//! policy applies. Rooms are named after a keyed hash, never the id.

use std::time::Duration;

use serde_json::json;
use session_harness::{SocketClient, TestServer, Transport, User, HAND_WRITTEN};
use session_runtime::{OnGone, GONE_EVENT};
use tokio::time::Instant;

/// The second namespace the sessions are used in.
const ADMIN: &str = "/admin";

/// The protocol's promise.
const WITHIN: Duration = Duration::from_secs(1);

/// Alice's websocket on `/` and polling socket on [`ADMIN`], and Bob's socket on `/`.
async fn alice_twice_and_bob(server: &TestServer) -> (User, [SocketClient; 2], SocketClient) {
    let alice = server.login("alice").await;
    let sockets = [
        alice.socket_on("/", Transport::Websocket).await,
        alice.socket_on(ADMIN, Transport::Polling).await,
    ];
    let bob = server.login("bob").await.socket(Transport::Websocket).await;
    (alice, sockets, bob)
}

/// Logs alice out (`"logout"`) or in again (`"login"`, a new id) over HTTP, then asserts that
/// each of `sockets` got `session:gone` with `reason` within [`WITHIN`] of the request's start.
async fn http_then_gone(alice: &User, action: &str, sockets: &[SocketClient], reason: &str) {
    let deadline = Instant::now() + WITHIN;
    match action {
        "logout" => alice.http.logout().await,
        _ => alice.http.login("alice").await,
    };
    SocketClient::all_told_gone(sockets, deadline, reason, action).await;
}

/// `socket` hears no `session:gone` for a while.
async fn assert_no_push(socket: &SocketClient, why: &str) {
    let heard = tokio::time::timeout(Duration::from_millis(300), socket.next_event(GONE_EVENT));
    assert!(heard.await.is_err(), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_logout_and_login_push_session_gone_to_every_socket_of_that_session_only() {
    for (action, reason) in [("logout", "logged out"), ("login", "rotated")] {
        let server = TestServer::builder().namespace(ADMIN).start().await;
        let (alice, sockets, bob) = alice_twice_and_bob(&server).await;
        alice.http.incr().await;
        assert_no_push(&sockets[0], "a write that keeps the id pushed").await;

        http_then_gone(&alice, action, &sockets, reason).await;
        assert_no_push(&bob, &format!("{action}: bob heard of alice's session")).await;

        // KeepAnonymous: still connected, anonymous; bob untouched.
        for (i, socket) in sockets.iter().enumerate() {
            let whoami = socket.ack("whoami", vec![]).await;
            assert_eq!(whoami, json!({ "user": null }), "{action}: socket {i}");
        }
        let whoami = bob.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": "bob" }), "{action}: bob");
        if action == "login" {
            // A socket of the new id is another session's: its own logout is its own push.
            let new = alice.socket(Transport::Websocket).await;
            http_then_gone(&alice, "logout", &[new], "logged out").await;
            assert_no_push(&sockets[0], "a socket of the old id heard twice").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_gone_disconnect_the_pushed_sockets_are_disconnected() {
    for (action, reason) in [("logout", "logged out"), ("login", "rotated")] {
        let server = TestServer::builder()
            .namespace(ADMIN)
            .on_gone(OnGone::disconnect())
            .start()
            .await;
        let (alice, sockets, bob) = alice_twice_and_bob(&server).await;

        http_then_gone(&alice, action, &sockets, reason).await;
        for (i, socket) in sockets.iter().enumerate() {
            let closed = socket.next_event("close").await;
            assert!(closed.is_some(), "{action}: socket {i} is still connected");
        }
        assert_no_push(&bob, &format!("{action}: bob heard of alice's session")).await;
        let whoami = bob.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": "bob" }), "{action}: bob");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_named_by_a_keyed_hash_never_by_the_session_id() {
    let server = TestServer::builder().namespace(ADMIN).start().await;
    let (alice, _sockets, _bob) = alice_twice_and_bob(&server).await;
    let _hand_written = alice.raw_socket_on(HAND_WRITTEN).await;
    let id = alice.id().await;
    let room = server.sessions.room(id);

    for ns in ["/", ADMIN, HAND_WRITTEN] {
        let operators = server
            .io
            .of(ns)
            .unwrap_or_else(|| panic!("{ns}: no namespace"));
        let rooms = operators.rooms().await;
        let rooms = rooms.unwrap_or_else(|err| panic!("{ns}: {err:?}"));
        assert!(
            rooms.iter().any(|r| *r == room),
            "{ns}: no room for alice: {rooms:?}"
        );
        for r in &rooms {
            assert!(r.starts_with("session:"), "{ns}: {r}");
            for shown in [id.to_string(), id.0.to_string()] {
                assert!(!r.contains(&shown), "{ns}: room {r} shows the id");
            }
        }
    }
}

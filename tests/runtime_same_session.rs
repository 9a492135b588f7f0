//! "Same session" and "fresh every time": a socket shares the HTTP session whatever the
//! transport, cookie mode or namespace, and each side sees the other's last write.

use serde_json::json;
use session_harness::{CookieMode, RawSocket, TestServer, Transport, User, HAND_WRITTEN};

/// A server whose session cookies are `cookie`, serving the events on `/admin` too, and alice
/// logged in on it over HTTP.
async fn alice_on(cookie: CookieMode) -> (TestServer, User) {
    let builder = TestServer::builder().cookie(cookie).namespace("/admin");
    let server = builder.start().await;
    let alice = server.login("alice").await;
    (server, alice)
}

/// Logs `alice` in over HTTP, then checks a socket of the same cookie sees her, on every
/// transport, and that its write lands in the same record: for every cookie mode, with the
/// `#[with_session]` events (`/`, and another namespace) and their hand-written twins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_sees_http_login_on_every_transport_cookie_mode_and_namespace() {
    let modes = [CookieMode::Plain, CookieMode::Signed, CookieMode::Private];
    let cases = modes
        .into_iter()
        .flat_map(|cookie| [("/", cookie), (HAND_WRITTEN, cookie)]);
    for (ns, cookie) in cases.chain([("/admin", CookieMode::Signed)]) {
        let (_server, alice) = alice_on(cookie).await;
        for (n, transport) in Transport::ALL.into_iter().enumerate() {
            let socket = alice.socket_on(ns, transport).await;
            let whoami = socket.ack("whoami", vec![]).await;
            assert_eq!(
                whoami,
                json!({ "user": "alice" }),
                "{transport:?} {cookie:?} {ns}"
            );
            let count = socket.ack("incr", vec![]).await;
            assert_eq!(count, json!(n + 1), "{transport:?} {cookie:?} {ns}");
            socket.disconnect().await;
        }
        let session = alice.http.session().await;
        assert_eq!(
            session,
            json!({ "user": "alice", "count": 3 }),
            "{cookie:?} {ns}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_of_two_browsers_see_only_their_own_session() {
    let (server, alice) = alice_on(CookieMode::Plain).await;
    let bob = server.login("bob").await;
    let a = alice.raw_socket().await;
    let b = bob.raw_socket().await;
    assert_eq!(a.ack("whoami", vec![]).await, json!({ "user": "alice" }));
    assert_eq!(b.ack("whoami", vec![]).await, json!({ "user": "bob" }));
    assert_eq!(a.ack("incr", vec![]).await, json!(1));
    assert_eq!(
        bob.http.session().await,
        json!({ "user": "bob", "count": 0 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_increment_is_seen_by_the_very_next_socket_event() {
    let (_server, alice) = alice_on(CookieMode::Plain).await;
    let socket = alice.socket(Transport::Websocket).await;
    for round in 0..5 {
        // HTTP then socket, alternately: each must build on the other's last write.
        assert_eq!(alice.http.incr().await, 2 * round + 1, "round {round}");
        let incr = socket.ack("incr", vec![]).await;
        assert_eq!(incr, json!(2 * round + 2), "round {round}");
    }
    assert_eq!(socket.ack("peek", vec![]).await, json!(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_login_as_another_user_is_seen_by_the_very_next_socket_event() {
    let (_server, alice) = alice_on(CookieMode::Plain).await;
    // Polling: the handshake's `Session` (cached forever) would still say alice.
    let old = alice.socket(Transport::Polling).await;
    assert_eq!(old.ack("whoami", vec![]).await, json!({ "user": "alice" }));
    alice.http.incr().await;
    assert_eq!(old.ack("peek", vec![]).await, json!(1));

    // Login rotates the id: the old socket no longer sees alice, nor anyone.
    alice.http.login("bob").await;
    assert_eq!(old.ack("whoami", vec![]).await, json!({ "user": null }));
    let new = alice.socket(Transport::Polling).await;
    assert_eq!(new.ack("whoami", vec![]).await, json!({ "user": "bob" }));
    assert_eq!(new.ack("peek", vec![]).await, json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_writes_are_seen_by_the_very_next_http_request() {
    let (_server, alice) = alice_on(CookieMode::Private).await;
    let socket = alice.socket(Transport::PollingUpgraded).await;
    for n in 1..=5 {
        assert_eq!(socket.ack("incr", vec![]).await, json!(n), "write {n}");
        assert_eq!(
            alice.http.session().await,
            json!({ "user": "alice", "count": n }),
            "write {n}"
        );
    }
    assert_eq!(
        socket.ack("login", vec![json!({ "user": "bob" })]).await,
        json!({ "ok": true })
    );
    assert_eq!(alice.http.session().await["user"], "bob");
    assert_eq!(socket.ack("logout", vec![]).await, json!({ "ok": true }));
    assert_eq!(
        alice.http.session().await,
        json!({ "user": null, "count": 5 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_delete_logs_the_browser_out() {
    let (server, alice) = alice_on(CookieMode::Plain).await;
    let id = alice.id().await;
    let socket = alice.raw_socket().await;
    assert_eq!(socket.ack("delete", vec![]).await, json!({ "ok": true }));
    assert!(server.store.record(id).await.is_none());
    assert_eq!(
        alice.http.session().await,
        json!({ "user": null, "count": 0 })
    );
    assert_eq!(server.store.record_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_login_payload_gets_an_error_ack_and_changes_nothing() {
    let (server, alice) = alice_on(CookieMode::Plain).await;
    let socket = alice.raw_socket().await;
    let writes = server.store.writes();
    for bad in [
        json!({}),
        json!({ "user": "" }),
        json!({ "user": 7 }),
        json!("x".repeat(65)),
    ] {
        let ack = socket.ack("login", vec![bad.clone()]).await;
        assert!(ack["error"].is_string(), "{bad} got {ack}");
    }
    assert_eq!(server.store.writes(), writes);
    assert_eq!(
        socket.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_event_right_after_connect_is_never_missed() {
    // Handlers registered in a plain connect handler miss some first events;
    // `SocketSessions::handler` registers them before CONNECT is answered.
    let (server, alice) = alice_on(CookieMode::Plain).await;
    let cookie = alice.cookie();
    let firsts = (0..100).map(|_| async {
        let socket = RawSocket::connect(&server.url(), "/", Some(&cookie))
            .await
            .unwrap();
        socket.ack("incr", vec![]).await.as_i64().expect("a count")
    });
    let mut counts = futures_util::future::join_all(firsts).await;
    counts.sort_unstable();
    assert_eq!(counts, (1..=100).collect::<Vec<_>>());
}

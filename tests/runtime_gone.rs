//! "Gone means gone": a session logged out, rotated or never issued is never written by a
//! socket, and sockets without a valid session read nobody's data.

use futures_util::future::join_all;
use serde_json::json;
use session_harness::{
    error_of, refusal, CookieMode, RawSocket, StoreKind, TestServer, Transport, User, HAND_WRITTEN,
};
use session_runtime::{OnGone, GONE_EVENT};
use tower_sessions::session::Id;

/// Every writer a socket has, with its payload: none may write a gone session.
fn writers() -> [(&'static str, Vec<serde_json::Value>); 4] {
    [
        ("incr", vec![]),
        ("login", vec![json!({ "user": "mallory" })]),
        ("logout", vec![]),
        ("delete", vec![]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_http_logout_socket_writes_fail_and_nothing_is_written() {
    for ns in ["/", HAND_WRITTEN] {
        let server = TestServer::start().await;
        let alice = server.login("alice").await;
        let id = alice.id().await;
        let socket = alice.raw_socket_on(ns).await;
        assert_eq!(socket.ack("incr", vec![]).await, json!(1));

        alice.http.logout().await;
        let writes = server.store.writes();
        for _ in 0..2 {
            for (event, args) in writers() {
                let ack = socket.ack(event, args).await;
                assert!(error_of(&ack).contains("gone"), "{ns} {event}: {ack}");
            }
            assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": null }));
        }
        assert!(
            server.store.record(id).await.is_none(),
            "the old id came back"
        );
        assert_eq!(
            server.store.writes(),
            writes,
            "{ns}: a socket wrote after logout"
        );
        assert_eq!(server.store.record_count().await, 0);
        let session = alice.http.session().await;
        assert_eq!(session, json!({ "user": null, "count": 0 }));
    }
}

/// 30 `incr` in flight on a socket of alice's session while HTTP logs her out or in again
/// (`action`); every ack that is not a count says the session is gone. Returns the server,
/// alice, the id her socket holds, and the acks.
async fn burst_racing(action: &str) -> (TestServer, User, Id, Vec<serde_json::Value>) {
    let server = TestServer::builder()
        .latency(std::time::Duration::from_millis(1))
        .start()
        .await;
    let alice = server.login("alice").await;
    let id = alice.id().await;
    let socket = alice.raw_socket().await;
    let acks: Vec<_> = (0..30).map(|_| socket.emit("incr", vec![])).collect();
    // A login copies the record to a new id while socket writers queue on the old one.
    match action {
        "logout" => alice.http.logout().await,
        _ => alice.http.login("alice").await,
    };
    let acks = join_all(acks).await;
    for ack in acks.iter().filter(|a| !a.is_i64()) {
        assert!(error_of(ack).contains("gone"), "{action}: {ack}");
    }
    (server, alice, id, acks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_racing_a_burst_of_socket_writes_is_never_undone() {
    let (server, _alice, id, acks) = burst_racing("logout").await;
    // Whatever got in before the logout succeeded; everything after found the session gone.
    let mut counts: Vec<i64> = acks.iter().filter_map(|a| a.as_i64()).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=counts.len() as i64).collect::<Vec<_>>());
    assert!(
        server.store.record(id).await.is_none(),
        "the logout was undone"
    );
    assert_eq!(server.store.record_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotation_racing_a_burst_carries_every_acknowledged_update() {
    let (server, alice, old_id, acks) = burst_racing("login").await;
    let acknowledged = acks.iter().filter(|a| a.is_i64()).count();
    assert_eq!(
        alice.http.session().await,
        json!({ "user": "alice", "count": acknowledged }),
        "the new session must hold exactly the acknowledged increments"
    );
    assert!(server.store.record(old_id).await.is_none());
    assert_eq!(server.store.record_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_gone_and_never_refreshed_by_a_socket() {
    for store in [StoreKind::Memory, StoreKind::Moka, StoreKind::SqliteMemory] {
        let server = TestServer::builder().store(store).start().await;
        let alice = server.login("alice").await;
        let id = alice.id().await;
        let socket = alice.raw_socket().await;
        assert_eq!(socket.ack("incr", vec![]).await, json!(1));

        server.store.expire(id).await;
        let writes = server.store.writes();
        let ack = socket.ack("incr", vec![]).await;
        assert!(error_of(&ack).contains("gone"), "{store:?}: {ack}");
        let whoami = socket.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": null }), "{store:?}");
        assert_eq!(
            server.store.writes(),
            writes,
            "{store:?}: an expired session was saved"
        );
        assert!(server.store.record(id).await.is_none(), "{store:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_login_again_rotates_the_id_and_the_old_socket_finds_it_gone() {
    let server = TestServer::builder()
        .cookie(CookieMode::Signed)
        .start()
        .await;
    let alice = server.login("alice").await;
    let old_id = alice.id().await;
    let old = alice.socket(Transport::Websocket).await;
    assert_eq!(old.ack("incr", vec![]).await, json!(1));

    alice.http.login("alice").await;
    let new_id = alice.id().await;
    assert_ne!(old_id, new_id);
    let writes = server.store.writes();
    let ack = old.ack("incr", vec![]).await;
    assert!(error_of(&ack).contains("gone"), "{ack}");
    assert_eq!(old.ack("whoami", vec![]).await, json!({ "user": null }));
    assert_eq!(server.store.writes(), writes);
    assert!(server.store.record(old_id).await.is_none());
    assert_eq!(server.store.record_count().await, 1);
    let session = alice.http.session().await;
    assert_eq!(session, json!({ "user": "alice", "count": 1 }));

    let new = alice.socket(Transport::Websocket).await;
    assert_eq!(new.ack("incr", vec![]).await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gone_disconnect_tells_the_client_and_disconnects_it() {
    let server = TestServer::builder()
        .on_gone(OnGone::disconnect())
        .start()
        .await;
    let alice = server.login("alice").await;
    for ns in ["/", HAND_WRITTEN] {
        for transport in [Transport::Websocket, Transport::Polling] {
            let socket = alice.socket_on(ns, transport).await;
            let whoami = socket.ack("whoami", vec![]).await;
            assert_eq!(whoami, json!({ "user": "alice" }));
            alice.http.logout().await;
            let writes = server.store.writes();
            // The handler acknowledges first, then applies the policy: the client hears why.
            let answer = socket.ack("incr", vec![]).await;
            assert!(
                error_of(&answer).contains("gone"),
                "{ns} {transport:?}: {answer}"
            );
            let gone = socket.next_event(GONE_EVENT).await;
            let gone = gone.expect("no `session:gone` event");
            assert!(gone["reason"].as_str().unwrap().contains("gone"), "{gone}");
            let closed = socket.next_event("close").await;
            assert!(closed.is_some(), "{ns} {transport:?}: not disconnected");
            assert_eq!(server.store.writes(), writes);
            assert_eq!(server.store.record_count().await, 0);
            alice.http.login("alice").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_without_cookie_reads_nobody_and_cannot_write() {
    let server = TestServer::start().await;
    server.login("alice").await;
    let writes = server.store.writes();
    let socket = RawSocket::connect(&server.url(), "/", None).await.unwrap();
    assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": null }));
    assert!(socket.ack("peek", vec![]).await["error"].is_string());
    for (event, args) in [
        ("incr", vec![]),
        ("login", vec![json!({ "user": "mallory" })]),
    ] {
        let ack = socket.ack(event, args).await;
        assert!(error_of(&ack).contains("no session"), "{event}: {ack}");
    }
    assert_eq!(server.store.writes(), writes);
    assert_eq!(server.store.record_count().await, 1);
}

/// Cookies a forger can make: an unknown id, garbage, or (for signed/private cookies) a
/// real id without the server's signature, and a tampered signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cookies_read_nobody_and_write_nothing() {
    for mode in [CookieMode::Plain, CookieMode::Signed, CookieMode::Private] {
        let server = TestServer::builder().cookie(mode).start().await;
        let alice = server.login("alice").await;
        alice.http.incr().await;
        let alice_id = alice.id().await;
        let real = alice.cookie();
        let value = real.strip_prefix("id=").expect("cookie named `id`");
        let mut tampered = value.to_owned();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });

        let mut forged = vec![
            format!("id={}", Id::default()),
            "id=not-an-id".to_owned(),
            format!("id={tampered}"),
        ];
        if mode != CookieMode::Plain {
            forged.push(format!("id={alice_id}"));
        }
        let writes = server.store.writes();
        for cookie in forged {
            let socket = RawSocket::connect(&server.url(), "/", Some(&cookie))
                .await
                .unwrap();
            let whoami = socket.ack("whoami", vec![]).await;
            assert_eq!(whoami, json!({ "user": null }), "{mode:?} {cookie}");
            let ack = socket.ack("incr", vec![]).await;
            let message = error_of(&ack);
            assert!(
                message.contains("gone") || message.contains("no session"),
                "{mode:?} {cookie}: {ack}"
            );
            error_of(
                &socket
                    .ack("login", vec![json!({ "user": "mallory" })])
                    .await,
            );
        }
        assert_eq!(
            server.store.writes(),
            writes,
            "{mode:?}: a forged cookie wrote"
        );
        assert_eq!(server.store.record_count().await, 1);
        let session = alice.http.session().await;
        assert_eq!(session, json!({ "user": "alice", "count": 1 }), "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_session_refuses_sockets_without_a_valid_session_and_says_why() {
    let server = TestServer::builder()
        .require_session()
        .namespace("/admin")
        .start()
        .await;
    let alice = server.login("alice").await;
    let unknown = format!("id={}", Id::default());
    let url = server.url();

    for ns in ["/", "/admin"] {
        for cookie in [None, Some(unknown.as_str())] {
            let message = refusal(RawSocket::connect(&url, ns, cookie).await);
            assert!(message.contains("no session"), "{ns} {cookie:?}: {message}");
        }
        // rust_socketio sees the same refusal, on both transports.
        for transport in [Transport::Websocket, Transport::Polling] {
            let attempt = session_harness::SocketClient::connect(&url, ns, transport, None).await;
            let message = refusal(attempt);
            assert!(message.contains("no session"), "{transport:?}: {message}");
        }
        let socket = alice.raw_socket_on(ns).await;
        let whoami = socket.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": "alice" }));
    }

    // A session logged out is refused too.
    let cookie = alice.cookie();
    alice.http.logout().await;
    refusal(RawSocket::connect(&url, "/", Some(&cookie)).await);
    assert_eq!(server.store.record_count().await, 0);
}

//! "Gone means gone": a session logged out, rotated or never issued is never written by a
//! socket, and sockets without a valid session read nobody's data. Each guarantee holds on
//! both namespaces: `#[with_session]`'s (`/`) and the hand-written `SessionHandle` one.

use futures_util::future::join_all;
use serde_json::{json, Value};
use session_harness::{
    error_of, refusal, CookieMode, RawSocket, ServerBuilder, SocketClient, StoreKind, TestServer,
    Transport, User, HAND_WRITTEN,
};
use session_runtime::{OnGone, GONE_EVENT};
use tower_sessions::session::Id;

/// The namespaces that must keep every guarantee.
const BOTH: [&str; 2] = ["/", HAND_WRITTEN];

/// Every writer a socket has, with its payload: none may write a gone session.
fn writers() -> [(&'static str, Vec<Value>); 4] {
    [
        ("incr", vec![]),
        ("login", vec![json!({ "user": "mallory" })]),
        ("logout", vec![]),
        ("delete", vec![]),
    ]
}

/// Starts `builder`'s server and logs alice in; returns her session id too.
async fn alice_on(builder: ServerBuilder) -> (TestServer, User, Id) {
    let server = builder.start().await;
    let alice = server.login("alice").await;
    let id = alice.id().await;
    (server, alice, id)
}

/// The store saw no write since it counted `writes`, and holds `records` records.
async fn assert_nothing_written(server: &TestServer, writes: usize, records: usize, why: &str) {
    assert_eq!(server.store.writes(), writes, "{why}");
    assert_eq!(server.store.record_count().await, records, "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_http_logout_socket_writes_fail_and_nothing_is_written() {
    for ns in BOTH {
        let (server, alice, id) = alice_on(TestServer::builder()).await;
        let socket = alice.raw_socket_on(ns).await;
        assert_eq!(socket.ack("incr", vec![]).await, json!(1));

        alice.http.logout().await;
        let writes = server.store.writes();
        for _ in 0..2 {
            for (event, args) in writers() {
                let ack = socket.ack(event, args).await;
                assert!(error_of(&ack).contains("gone"), "{ns} {event}: {ack}");
            }
            let whoami = socket.ack("whoami", vec![]).await;
            assert_eq!(whoami, json!({ "user": null }), "{ns}");
        }
        assert!(
            server.store.record(id).await.is_none(),
            "{ns}: the old id came back"
        );
        let why = format!("{ns}: a socket wrote after logout");
        assert_nothing_written(&server, writes, 0, &why).await;
        let session = alice.http.session().await;
        assert_eq!(session, json!({ "user": null, "count": 0 }), "{ns}");
    }
}

/// 30 `incr` in flight on a socket of alice's session on `ns` while HTTP logs her out or in
/// again (`action`); every ack that is not a count says the session is gone. Returns the
/// server, alice, the id her socket holds, and the acks.
async fn burst_racing(ns: &str, action: &str) -> (TestServer, User, Id, Vec<Value>) {
    let latency = std::time::Duration::from_millis(1);
    let (server, alice, id) = alice_on(TestServer::builder().latency(latency)).await;
    let socket = alice.raw_socket_on(ns).await;
    let acks: Vec<_> = (0..30).map(|_| socket.emit("incr", vec![])).collect();
    // A login copies the record to a new id while socket writers queue on the old one.
    match action {
        "logout" => alice.http.logout().await,
        _ => alice.http.login("alice").await,
    };
    let acks = join_all(acks).await;
    for ack in acks.iter().filter(|a| !a.is_i64()) {
        assert!(error_of(ack).contains("gone"), "{ns} {action}: {ack}");
    }
    (server, alice, id, acks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_racing_a_burst_of_socket_writes_is_never_undone() {
    for ns in BOTH {
        let (server, _alice, id, acks) = burst_racing(ns, "logout").await;
        // Whatever got in before the logout succeeded; everything after found the session gone.
        let mut counts: Vec<i64> = acks.iter().filter_map(|a| a.as_i64()).collect();
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=counts.len() as i64).collect::<Vec<_>>(),
            "{ns}"
        );
        assert!(
            server.store.record(id).await.is_none(),
            "{ns}: the logout was undone"
        );
        assert_eq!(server.store.record_count().await, 0, "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotation_racing_a_burst_carries_every_acknowledged_update() {
    for ns in BOTH {
        let (server, alice, old_id, acks) = burst_racing(ns, "login").await;
        let acknowledged = acks.iter().filter(|a| a.is_i64()).count();
        assert_eq!(
            alice.http.session().await,
            json!({ "user": "alice", "count": acknowledged }),
            "{ns}: the new session must hold exactly the acknowledged increments"
        );
        assert!(server.store.record(old_id).await.is_none(), "{ns}");
        assert_eq!(server.store.record_count().await, 1, "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_gone_and_never_refreshed_by_a_socket() {
    for store in [StoreKind::Memory, StoreKind::Moka, StoreKind::SqliteMemory] {
        for ns in BOTH {
            let (server, alice, id) = alice_on(TestServer::builder().store(store)).await;
            let socket = alice.raw_socket_on(ns).await;
            let incr = socket.ack("incr", vec![]).await;
            assert_eq!(incr, json!(1), "{store:?} {ns}");

            server.store.expire(id).await;
            let writes = server.store.writes();
            let ack = socket.ack("incr", vec![]).await;
            assert!(error_of(&ack).contains("gone"), "{store:?} {ns}: {ack}");
            let whoami = socket.ack("whoami", vec![]).await;
            assert_eq!(whoami, json!({ "user": null }), "{store:?} {ns}");
            assert_eq!(
                server.store.writes(),
                writes,
                "{store:?} {ns}: an expired session was saved"
            );
            assert!(server.store.record(id).await.is_none(), "{store:?} {ns}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_login_again_rotates_the_id_and_the_old_socket_finds_it_gone() {
    for ns in BOTH {
        let (server, alice, old_id) =
            alice_on(TestServer::builder().cookie(CookieMode::Signed)).await;
        let old = alice.socket_on(ns, Transport::Websocket).await;
        assert_eq!(old.ack("incr", vec![]).await, json!(1), "{ns}");

        alice.http.login("alice").await;
        let new_id = alice.id().await;
        assert_ne!(old_id, new_id, "{ns}");
        let writes = server.store.writes();
        let ack = old.ack("incr", vec![]).await;
        assert!(error_of(&ack).contains("gone"), "{ns}: {ack}");
        let whoami = old.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": null }), "{ns}");
        assert!(server.store.record(old_id).await.is_none(), "{ns}");
        assert_nothing_written(&server, writes, 1, ns).await;
        let session = alice.http.session().await;
        assert_eq!(session, json!({ "user": "alice", "count": 1 }), "{ns}");

        let new = alice.socket_on(ns, Transport::Websocket).await;
        assert_eq!(new.ack("incr", vec![]).await, json!(2), "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gone_disconnect_tells_the_client_and_disconnects_it() {
    // Without the push of `tests/gone_push.rs`, the socket learns at its next event.
    let server = TestServer::builder()
        .on_gone(OnGone::disconnect())
        .without_gone_push()
        .start()
        .await;
    let alice = server.login("alice").await;
    for ns in BOTH {
        for transport in [Transport::Websocket, Transport::Polling] {
            let socket = alice.socket_on(ns, transport).await;
            let whoami = socket.ack("whoami", vec![]).await;
            assert_eq!(whoami, json!({ "user": "alice" }), "{ns} {transport:?}");
            alice.http.logout().await;
            let writes = server.store.writes();
            // The handler acknowledges first, then applies the policy: the client hears why.
            let answer = socket.ack("incr", vec![]).await;
            assert!(
                error_of(&answer).contains("gone"),
                "{ns} {transport:?}: {answer}"
            );
            let gone = socket.next_event(GONE_EVENT).await;
            let gone = gone.unwrap_or_else(|| panic!("{ns} {transport:?}: no `session:gone`"));
            let reason = gone["reason"].as_str();
            let reason = reason.unwrap_or_else(|| panic!("{ns} {transport:?}: {gone}"));
            assert!(reason.contains("gone"), "{ns} {transport:?}: {gone}");
            let closed = socket.next_event("close").await;
            assert!(closed.is_some(), "{ns} {transport:?}: not disconnected");
            assert_nothing_written(&server, writes, 0, &format!("{ns} {transport:?}")).await;
            alice.http.login("alice").await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_without_cookie_reads_nobody_and_cannot_write() {
    let server = TestServer::start().await;
    server.login("alice").await;
    let writes = server.store.writes();
    for ns in BOTH {
        let socket = RawSocket::connect(&server.url(), ns, None).await;
        let socket = socket.unwrap_or_else(|err| panic!("{ns}: {err:?}"));
        let whoami = socket.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": null }), "{ns}");
        assert!(
            socket.ack("peek", vec![]).await["error"].is_string(),
            "{ns}"
        );
        for (event, args) in [
            ("incr", vec![]),
            ("login", vec![json!({ "user": "mallory" })]),
        ] {
            let ack = socket.ack(event, args).await;
            assert!(error_of(&ack).contains("no session"), "{ns} {event}: {ack}");
        }
    }
    assert_nothing_written(&server, writes, 1, "a socket without a cookie wrote").await;
}

/// Cookies a forger can make: an unknown id, garbage, or (for signed/private cookies) a
/// real id without the server's signature, and a tampered signature.
fn forgeries(mode: CookieMode, alice: &User, alice_id: Id) -> Vec<String> {
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
    forged
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cookies_read_nobody_and_write_nothing() {
    for mode in [CookieMode::Plain, CookieMode::Signed, CookieMode::Private] {
        let (server, alice, alice_id) = alice_on(TestServer::builder().cookie(mode)).await;
        alice.http.incr().await;
        let writes = server.store.writes();
        for cookie in forgeries(mode, &alice, alice_id) {
            for ns in BOTH {
                let socket = RawSocket::connect(&server.url(), ns, Some(&cookie)).await;
                let socket = socket.unwrap_or_else(|err| panic!("{mode:?} {ns} {cookie}: {err:?}"));
                let whoami = socket.ack("whoami", vec![]).await;
                assert_eq!(whoami, json!({ "user": null }), "{mode:?} {ns} {cookie}");
                let ack = socket.ack("incr", vec![]).await;
                let message = error_of(&ack);
                assert!(
                    message.contains("gone") || message.contains("no session"),
                    "{mode:?} {ns} {cookie}: {ack}"
                );
                let mallory = vec![json!({ "user": "mallory" })];
                error_of(&socket.ack("login", mallory).await);
            }
        }
        let why = format!("{mode:?}: a forged cookie wrote");
        assert_nothing_written(&server, writes, 1, &why).await;
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

    for ns in ["/", "/admin", HAND_WRITTEN] {
        for cookie in [None, Some(unknown.as_str())] {
            let message = refusal(RawSocket::connect(&url, ns, cookie).await);
            assert!(message.contains("no session"), "{ns} {cookie:?}: {message}");
        }
        // rust_socketio sees the same refusal, on both transports.
        for transport in [Transport::Websocket, Transport::Polling] {
            let message = refusal(SocketClient::connect(&url, ns, transport, None).await);
            assert!(
                message.contains("no session"),
                "{ns} {transport:?}: {message}"
            );
        }
        let socket = alice.raw_socket_on(ns).await;
        let whoami = socket.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": "alice" }), "{ns}");
    }

    // A session logged out is refused too.
    let cookie = alice.cookie();
    alice.http.logout().await;
    for ns in BOTH {
        refusal(RawSocket::connect(&url, ns, Some(&cookie)).await);
    }
    assert_eq!(server.store.record_count().await, 0);
}

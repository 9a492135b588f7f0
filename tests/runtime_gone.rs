//! "Gone means gone": a session logged out, rotated or never issued is never written by a
//! socket, and sockets without a valid session read nobody's data.

mod common;

use common::{
    error_of, ConnectFailure, CookieMode, RawSocket, SocketClient, StoreKind, TestServer, Transport,
};
use serde_json::json;
use session_runtime::{OnGone, GONE_EVENT};
use tower_sessions::session::Id;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_http_logout_socket_writes_fail_and_nothing_is_written() {
    let server = TestServer::builder().start().await;
    let http = server.http();
    http.login("alice").await;
    let id = http.session_id().await;
    let socket = RawSocket::connect(&server, "/", Some(&http.cookie_header()))
        .await
        .unwrap();
    assert_eq!(socket.ack("incr", vec![]).await, json!(1));

    http.logout().await;
    let writes = server.store.writes();
    for _ in 0..2 {
        for (event, args) in [
            ("incr", vec![]),
            ("login", vec![json!({ "user": "mallory" })]),
            ("logout", vec![]),
            ("delete", vec![]),
        ] {
            let ack = socket.ack(event, args).await;
            assert!(error_of(&ack).contains("gone"), "{event}: {ack}");
        }
        assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": null }));
    }
    assert!(
        server.store.record(id).await.is_none(),
        "the old id came back"
    );
    assert_eq!(server.store.writes(), writes, "a socket wrote after logout");
    assert_eq!(server.store.record_count().await, 0);
    assert_eq!(http.session().await, json!({ "user": null, "count": 0 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_racing_a_burst_of_socket_writes_is_never_undone() {
    let server = TestServer::builder()
        .latency(std::time::Duration::from_millis(1))
        .start()
        .await;
    let http = server.http();
    http.login("alice").await;
    let id = http.session_id().await;
    let socket = RawSocket::connect(&server, "/", Some(&http.cookie_header()))
        .await
        .unwrap();
    let acks: Vec<_> = (0..30).map(|_| socket.emit("incr", vec![])).collect();
    http.logout().await;
    let acks = futures_util::future::join_all(acks).await;
    // Whatever got in before the logout succeeded; everything after found the session gone.
    let mut counts: Vec<i64> = acks.iter().filter_map(|a| a.as_i64()).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=counts.len() as i64).collect::<Vec<_>>());
    for ack in acks.iter().filter(|a| !a.is_i64()) {
        assert!(error_of(ack).contains("gone"), "{ack}");
    }
    assert!(
        server.store.record(id).await.is_none(),
        "the logout was undone"
    );
    assert_eq!(server.store.record_count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_is_gone_and_never_refreshed_by_a_socket() {
    for store in [StoreKind::Memory, StoreKind::Moka, StoreKind::SqliteMemory] {
        let server = TestServer::builder().store(store).start().await;
        let http = server.http();
        http.login("alice").await;
        let id = http.session_id().await;
        let socket = RawSocket::connect(&server, "/", Some(&http.cookie_header()))
            .await
            .unwrap();
        assert_eq!(socket.ack("incr", vec![]).await, json!(1));

        server.store.expire(id).await;
        let writes = server.store.writes();
        let ack = socket.ack("incr", vec![]).await;
        assert!(error_of(&ack).contains("gone"), "{store:?}: {ack}");
        assert_eq!(
            socket.ack("whoami", vec![]).await,
            json!({ "user": null }),
            "{store:?}"
        );
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
    let http = server.http();
    http.login("alice").await;
    let old_id = http.session_id().await;
    let old = SocketClient::connect(
        &server,
        "/",
        Transport::Websocket,
        Some(&http.cookie_header()),
    )
    .await
    .unwrap();
    assert_eq!(old.ack("incr", vec![]).await, json!(1));

    http.login("alice").await;
    let new_id = http.session_id().await;
    assert_ne!(old_id, new_id);
    let writes = server.store.writes();
    let ack = old.ack("incr", vec![]).await;
    assert!(error_of(&ack).contains("gone"), "{ack}");
    assert_eq!(old.ack("whoami", vec![]).await, json!({ "user": null }));
    assert_eq!(server.store.writes(), writes);
    assert!(server.store.record(old_id).await.is_none());
    assert_eq!(server.store.record_count().await, 1);
    assert_eq!(http.session().await, json!({ "user": "alice", "count": 1 }));

    let new = SocketClient::connect(
        &server,
        "/",
        Transport::Websocket,
        Some(&http.cookie_header()),
    )
    .await
    .unwrap();
    assert_eq!(new.ack("incr", vec![]).await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_rotation_racing_a_burst_carries_every_acknowledged_update() {
    let server = TestServer::builder()
        .latency(std::time::Duration::from_millis(1))
        .start()
        .await;
    let http = server.http();
    http.login("alice").await;
    let old_id = http.session_id().await;
    let socket = RawSocket::connect(&server, "/", Some(&http.cookie_header()))
        .await
        .unwrap();
    let acks: Vec<_> = (0..30).map(|_| socket.emit("incr", vec![])).collect();
    // The login copies the record to a new id while socket writers queue on the old one.
    http.login("alice").await;
    let acks = futures_util::future::join_all(acks).await;

    let acknowledged = acks.iter().filter(|a| a.is_i64()).count();
    for ack in acks.iter().filter(|a| !a.is_i64()) {
        assert!(error_of(ack).contains("gone"), "{ack}");
    }
    assert_eq!(
        http.session().await,
        json!({ "user": "alice", "count": acknowledged }),
        "the new session must hold exactly the acknowledged increments"
    );
    assert!(server.store.record(old_id).await.is_none());
    assert_eq!(server.store.record_count().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_gone_disconnect_tells_the_client_and_disconnects_it() {
    let server = TestServer::builder()
        .on_gone(OnGone::disconnect())
        .start()
        .await;
    let http = server.http();
    http.login("alice").await;
    for transport in [Transport::Websocket, Transport::Polling] {
        let socket = SocketClient::connect(&server, "/", transport, Some(&http.cookie_header()))
            .await
            .unwrap();
        assert_eq!(
            socket.ack("whoami", vec![]).await,
            json!({ "user": "alice" })
        );
        http.logout().await;
        let writes = server.store.writes();
        // The handler acknowledges first, then applies the policy: the client hears why.
        let answer = socket.ack("incr", vec![]).await;
        assert!(
            answer["error"].as_str().is_some_and(|e| e.contains("gone")),
            "{transport:?}: {answer}"
        );
        let gone = socket
            .next_event(GONE_EVENT)
            .await
            .expect("no `session:gone` event");
        assert!(gone["reason"].as_str().unwrap().contains("gone"), "{gone}");
        assert!(
            socket.next_event("close").await.is_some(),
            "{transport:?}: not disconnected"
        );
        assert_eq!(server.store.writes(), writes);
        assert_eq!(server.store.record_count().await, 0);
        http.login("alice").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_without_cookie_reads_nobody_and_cannot_write() {
    let server = TestServer::builder().start().await;
    server.http().login("alice").await;
    let writes = server.store.writes();
    let socket = RawSocket::connect(&server, "/", None).await.unwrap();
    assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": null }));
    assert!(socket.ack("peek", vec![]).await["error"].is_string());
    let ack = socket.ack("incr", vec![]).await;
    assert!(error_of(&ack).contains("no session"), "{ack}");
    let ack = socket
        .ack("login", vec![json!({ "user": "mallory" })])
        .await;
    assert!(error_of(&ack).contains("no session"), "{ack}");
    assert_eq!(server.store.writes(), writes);
    assert_eq!(server.store.record_count().await, 1);
}

/// Cookies a forger can make: an unknown id, garbage, or (for signed/private cookies) a
/// real id without the server's signature, and a tampered signature.
async fn forged_cookies_read_nobody_and_write_nothing(mode: CookieMode) {
    let server = TestServer::builder().cookie(mode).start().await;
    let alice = server.http();
    alice.login("alice").await;
    alice.incr().await;
    let alice_id = alice.session_id().await;
    let real = alice.cookie_header();
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
        let socket = RawSocket::connect(&server, "/", Some(&cookie))
            .await
            .unwrap();
        assert_eq!(
            socket.ack("whoami", vec![]).await,
            json!({ "user": null }),
            "{cookie}"
        );
        let ack = socket.ack("incr", vec![]).await;
        let message = error_of(&ack);
        assert!(
            message.contains("gone") || message.contains("no session"),
            "{cookie}: {ack}"
        );
        let ack = socket
            .ack("login", vec![json!({ "user": "mallory" })])
            .await;
        error_of(&ack);
    }
    assert_eq!(server.store.writes(), writes, "a forged cookie wrote");
    assert_eq!(server.store.record_count().await, 1);
    assert_eq!(
        alice.session().await,
        json!({ "user": "alice", "count": 1 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_plain_cookies_read_nobody_and_write_nothing() {
    forged_cookies_read_nobody_and_write_nothing(CookieMode::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_signed_cookies_read_nobody_and_write_nothing() {
    forged_cookies_read_nobody_and_write_nothing(CookieMode::Signed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_private_cookies_read_nobody_and_write_nothing() {
    forged_cookies_read_nobody_and_write_nothing(CookieMode::Private).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_session_refuses_sockets_without_a_valid_session_and_says_why() {
    let server = TestServer::builder()
        .require_session()
        .namespace("/admin")
        .start()
        .await;
    let http = server.http();
    http.login("alice").await;
    let unknown = format!("id={}", Id::default());

    for ns in ["/", "/admin"] {
        for cookie in [None, Some(unknown.as_str())] {
            match RawSocket::connect(&server, ns, cookie).await {
                Err(ConnectFailure::Refused(message)) => {
                    assert!(message.contains("no session"), "{ns} {cookie:?}: {message}")
                }
                Err(other) => panic!("{ns} {cookie:?}: expected a connect_error, got {other:?}"),
                Ok(_) => panic!("{ns} {cookie:?}: connected without a valid session"),
            }
        }
        // rust_socketio sees the same refusal, on both transports.
        for transport in [Transport::Websocket, Transport::Polling] {
            match SocketClient::connect(&server, ns, transport, None).await {
                Err(ConnectFailure::Refused(message)) => {
                    assert!(message.contains("no session"), "{transport:?}: {message}")
                }
                Err(other) => panic!("{transport:?}: expected a connect_error, got {other:?}"),
                Ok(_) => panic!("{transport:?}: connected without a session"),
            }
        }
        let socket = RawSocket::connect(&server, ns, Some(&http.cookie_header()))
            .await
            .unwrap();
        assert_eq!(
            socket.ack("whoami", vec![]).await,
            json!({ "user": "alice" })
        );
    }

    // A session logged out is refused too.
    let cookie = http.cookie_header();
    http.logout().await;
    assert!(matches!(
        RawSocket::connect(&server, "/", Some(&cookie)).await,
        Err(ConnectFailure::Refused(_))
    ));
    assert_eq!(server.store.record_count().await, 0);
}

//! The main flows against every published store the runtime is meant to plug into:
//! `MemoryStore`, `MokaStore`, and `SqliteStore` (in memory and on a file). Each test runs its
//! flow on every store in turn; the output of a failing one names the store.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;
use session_harness::{
    error_of, CookieMode, RawSocket, ServerBuilder, StoreKind, TestServer, Transport, User,
};

/// A server on `store`, configured further by `with`, with alice logged in. The output of a
/// failing test names the store.
async fn alice_logged_in_on(
    store: StoreKind,
    with: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> (TestServer, User) {
    eprintln!("store: {store:?}");
    let server = with(TestServer::builder().store(store)).start().await;
    let alice = server.login("alice").await;
    (server, alice)
}

/// [`alice_logged_in_on`] a server as it comes, and a socket of her session.
async fn alice_on(store: StoreKind) -> (TestServer, User, RawSocket) {
    let (server, alice) = alice_logged_in_on(store, |server| server).await;
    let socket = alice.raw_socket().await;
    (server, alice, socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_session_on_every_transport_and_namespace() {
    for store in StoreKind::ALL {
        let (_server, alice) = alice_logged_in_on(store, |server| {
            server.cookie(CookieMode::Signed).namespace("/admin")
        })
        .await;
        let mut count = 0;
        for ns in ["/", "/admin"] {
            for transport in Transport::ALL {
                let socket = alice.socket_on(ns, transport).await;
                assert_eq!(
                    socket.ack("whoami", vec![]).await,
                    json!({ "user": "alice" }),
                    "{store:?} {ns} {transport:?}"
                );
                count += 1;
                let incr = socket.ack("incr", vec![]).await;
                assert_eq!(incr, json!(count), "{store:?} {ns} {transport:?}");
                socket.disconnect().await;
            }
        }
        assert_eq!(
            alice.http.session().await,
            json!({ "user": "alice", "count": count }),
            "{store:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_socket_see_each_others_last_write() {
    for store in StoreKind::ALL {
        let (_server, alice, socket) = alice_on(store).await;
        for round in 0..3 {
            let case = format!("{store:?} round {round}");
            assert_eq!(alice.http.incr().await, 2 * round + 1, "{case}");
            let incr = socket.ack("incr", vec![]).await;
            assert_eq!(incr, json!(2 * round + 2), "{case}");
            let session = alice.http.session().await;
            assert_eq!(session["count"], json!(2 * round + 2), "{case}");
        }
        socket.ack("login", vec![json!({ "user": "bob" })]).await;
        assert_eq!(alice.http.session().await["user"], "bob", "{store:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_or_unchanged_handlers_save_nothing() {
    for store in StoreKind::ALL {
        let (server, alice, socket) = alice_on(store).await;
        assert_eq!(socket.ack("incr", vec![]).await, json!(1), "{store:?}");
        let saves = server.store.saves();
        error_of(&socket.ack("fail_after_write", vec![]).await);
        error_of(&socket.ack("panic_after_write", vec![]).await);
        socket.ack("whoami", vec![]).await;
        socket.ack("same", vec![]).await;
        assert_eq!(server.store.saves(), saves, "{store:?}");
        assert_eq!(
            alice.http.session().await,
            json!({ "user": "alice", "count": 1 }),
            "{store:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_or_logged_out_sessions_are_never_written_back() {
    for store in StoreKind::ALL {
        let (server, alice, first) = alice_on(store).await;
        let first_id = alice.id().await;
        alice.http.login("alice").await; // rotates the id
        let second = alice.raw_socket().await;
        let second_id = alice.id().await;
        let ack = first.ack("incr", vec![]).await;
        assert!(error_of(&ack).contains("gone"), "{store:?}: {ack}");
        assert_eq!(second.ack("incr", vec![]).await, json!(1), "{store:?}");
        assert!(server.store.record(first_id).await.is_none(), "{store:?}");
        assert_eq!(server.sqlite_rows().await.unwrap_or(1), 1, "{store:?}");

        alice.http.logout().await;
        let writes = server.store.writes();
        for (i, socket) in [&first, &second].into_iter().enumerate() {
            let ack = socket.ack("incr", vec![]).await;
            assert!(
                error_of(&ack).contains("gone"),
                "{store:?} socket {i}: {ack}"
            );
            let ack = socket.ack("login", vec![json!({ "user": "eve" })]).await;
            assert!(
                error_of(&ack).contains("gone"),
                "{store:?} socket {i}: {ack}"
            );
            let whoami = socket.ack("whoami", vec![]).await;
            assert_eq!(whoami, json!({ "user": null }), "{store:?} socket {i}");
        }
        assert_eq!(server.store.writes(), writes, "{store:?}");
        assert!(server.store.record(second_id).await.is_none(), "{store:?}");
        assert_eq!(server.store.record_count().await, 0, "{store:?}");
        assert_eq!(
            server.sqlite_rows().await.unwrap_or(0),
            0,
            "{store:?}: rows left in sqlite"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_socket_and_http_writers_lose_no_update() {
    for store in StoreKind::ALL {
        // 120 writers queue on one lock, on a loaded machine (SqliteFile) past the default
        // bound on that wait.
        let (server, alice) = alice_logged_in_on(store, ServerBuilder::patient_locks).await;
        let a = alice.raw_socket().await;
        server.store.set_latency(Duration::from_millis(1));
        let b = alice.raw_socket().await;
        let sockets: Vec<_> = (0..50)
            .flat_map(|_| [a.emit("incr", vec![]), b.emit("incr", vec![])])
            .collect();
        let https: Vec<_> = (0..20).map(|_| alice.http.incr()).collect();
        let (acks, https) = tokio::join!(join_all(sockets), join_all(https));
        let mut counts: Vec<i64> = acks
            .iter()
            .map(|a| a.as_i64().unwrap_or_else(|| panic!("{store:?}: {a}")))
            .collect();
        counts.extend(https);
        counts.sort_unstable();
        assert_eq!(counts, (1..=120).collect::<Vec<_>>(), "{store:?}");
        assert_eq!(alice.http.session().await["count"], 120, "{store:?}");
        assert!(server.locks.is_empty(), "{store:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failures_are_error_acks_and_the_socket_recovers() {
    for store in StoreKind::ALL {
        let (server, alice, socket) = alice_on(store).await;
        assert_eq!(socket.ack("incr", vec![]).await, json!(1), "{store:?}");
        server.store.fail_writes(true);
        let ack = socket.ack("incr", vec![]).await;
        assert!(error_of(&ack).contains("store"), "{store:?}: {ack}");
        server.store.fail_writes(false);
        server.store.fail_loads(true);
        let ack = socket.ack("whoami", vec![]).await;
        assert!(error_of(&ack).contains("store"), "{store:?}: {ack}");
        server.store.fail_loads(false);
        assert_eq!(alice.http.session().await["count"], 1, "{store:?}");
        assert_eq!(socket.ack("incr", vec![]).await, json!(2), "{store:?}");
    }
}

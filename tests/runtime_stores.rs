//! The main flows against every published store the runtime is meant to plug into:
//! `MemoryStore`, `MokaStore`, and `SqliteStore` (in memory and on a file).

mod common;

use std::time::Duration;

use common::{error_of, CookieMode, RawSocket, SocketClient, StoreKind, TestServer, Transport};
use futures_util::future::join_all;
use serde_json::json;

async fn same_session_on_every_transport(store: StoreKind) {
    let server = TestServer::builder()
        .store(store)
        .cookie(CookieMode::Signed)
        .namespace("/admin")
        .start()
        .await;
    let http = server.http();
    http.login("alice").await;
    let mut count = 0;
    for ns in ["/", "/admin"] {
        for transport in Transport::ALL {
            let socket = SocketClient::connect(&server, ns, transport, Some(&http.cookie_header()))
                .await
                .unwrap_or_else(|err| panic!("{ns} {transport:?}: {err:?}"));
            assert_eq!(
                socket.ack("whoami", vec![]).await,
                json!({ "user": "alice" })
            );
            count += 1;
            assert_eq!(socket.ack("incr", vec![]).await, json!(count));
            socket.disconnect().await;
        }
    }
    assert_eq!(
        http.session().await,
        json!({ "user": "alice", "count": count })
    );
}

async fn fresh_both_ways(store: StoreKind) {
    let server = TestServer::builder().store(store).start().await;
    let http = server.http();
    http.login("alice").await;
    let socket = RawSocket::connect(&server, "/", Some(&http.cookie_header()))
        .await
        .unwrap();
    for round in 0..3 {
        assert_eq!(http.incr().await, 2 * round + 1);
        assert_eq!(socket.ack("incr", vec![]).await, json!(2 * round + 2));
        assert_eq!(http.session().await["count"], json!(2 * round + 2));
    }
    socket.ack("login", vec![json!({ "user": "bob" })]).await;
    assert_eq!(http.session().await["user"], "bob");
}

async fn transactional(store: StoreKind) {
    let server = TestServer::builder().store(store).start().await;
    let http = server.http();
    http.login("alice").await;
    let socket = RawSocket::connect(&server, "/", Some(&http.cookie_header()))
        .await
        .unwrap();
    assert_eq!(socket.ack("incr", vec![]).await, json!(1));
    let saves = server.store.saves();
    error_of(&socket.ack("fail_after_write", vec![]).await);
    error_of(&socket.ack("panic_after_write", vec![]).await);
    socket.ack("whoami", vec![]).await;
    socket.ack("same", vec![]).await;
    assert_eq!(server.store.saves(), saves);
    assert_eq!(http.session().await, json!({ "user": "alice", "count": 1 }));
}

async fn gone_after_logout_and_rotation(store: StoreKind) {
    let server = TestServer::builder().store(store).start().await;
    let http = server.http();
    http.login("alice").await;
    let first_id = http.session_id().await;
    let first = RawSocket::connect(&server, "/", Some(&http.cookie_header()))
        .await
        .unwrap();
    http.login("alice").await; // rotates the id
    let second = RawSocket::connect(&server, "/", Some(&http.cookie_header()))
        .await
        .unwrap();
    let second_id = http.session_id().await;
    assert!(error_of(&first.ack("incr", vec![]).await).contains("gone"));
    assert_eq!(second.ack("incr", vec![]).await, json!(1));
    assert!(server.store.record(first_id).await.is_none());
    assert_eq!(server.sqlite_rows().await.unwrap_or(1), 1);

    http.logout().await;
    let writes = server.store.writes();
    for socket in [&first, &second] {
        assert!(error_of(&socket.ack("incr", vec![]).await).contains("gone"));
        assert!(
            error_of(&socket.ack("login", vec![json!({ "user": "eve" })]).await).contains("gone")
        );
        assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": null }));
    }
    assert_eq!(server.store.writes(), writes);
    assert!(server.store.record(second_id).await.is_none());
    assert_eq!(server.store.record_count().await, 0);
    assert_eq!(
        server.sqlite_rows().await.unwrap_or(0),
        0,
        "rows left in sqlite"
    );
}

async fn no_lost_updates(store: StoreKind) {
    let server = TestServer::builder()
        .store(store)
        .latency(Duration::from_millis(1))
        .start()
        .await;
    let http = server.http();
    http.login("alice").await;
    let cookie = http.cookie_header();
    let a = RawSocket::connect(&server, "/", Some(&cookie))
        .await
        .unwrap();
    let b = RawSocket::connect(&server, "/", Some(&cookie))
        .await
        .unwrap();
    let sockets: Vec<_> = (0..50)
        .flat_map(|_| [a.emit("incr", vec![]), b.emit("incr", vec![])])
        .collect();
    let https: Vec<_> = (0..20).map(|_| http.incr()).collect();
    let (acks, https) = tokio::join!(join_all(sockets), join_all(https));
    let mut counts: Vec<i64> = acks.iter().map(|a| a.as_i64().expect("a count")).collect();
    counts.extend(https);
    counts.sort_unstable();
    assert_eq!(counts, (1..=120).collect::<Vec<_>>());
    assert_eq!(http.session().await["count"], 120);
    assert!(server.locks.is_empty());
}

async fn store_failure_is_an_error_value(store: StoreKind) {
    let server = TestServer::builder().store(store).start().await;
    let http = server.http();
    http.login("alice").await;
    let socket = RawSocket::connect(&server, "/", Some(&http.cookie_header()))
        .await
        .unwrap();
    assert_eq!(socket.ack("incr", vec![]).await, json!(1));
    server.store.fail_writes(true);
    assert!(error_of(&socket.ack("incr", vec![]).await).contains("store"));
    server.store.fail_writes(false);
    server.store.fail_loads(true);
    assert!(error_of(&socket.ack("whoami", vec![]).await).contains("store"));
    server.store.fail_loads(false);
    assert_eq!(http.session().await["count"], 1);
    assert_eq!(socket.ack("incr", vec![]).await, json!(2));
}

macro_rules! for_each_store {
    ($($store:ident => $module:ident),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn same_session_on_every_transport_and_namespace() {
                super::same_session_on_every_transport(StoreKind::$store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn http_and_socket_see_each_others_last_write() {
                super::fresh_both_ways(StoreKind::$store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn failed_or_unchanged_handlers_save_nothing() {
                super::transactional(StoreKind::$store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rotated_or_logged_out_sessions_are_never_written_back() {
                super::gone_after_logout_and_rotation(StoreKind::$store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_socket_and_http_writers_lose_no_update() {
                super::no_lost_updates(StoreKind::$store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn store_failures_are_error_acks_and_the_socket_recovers() {
                super::store_failure_is_an_error_value(StoreKind::$store).await;
            }
        }
    )*};
}

for_each_store! {
    Memory => memory_store,
    Moka => moka_store,
    SqliteMemory => sqlite_in_memory_store,
    SqliteFile => sqlite_file_store,
}

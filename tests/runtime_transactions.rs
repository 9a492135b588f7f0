//! "Transactional" and "errors are values": a handler's writes are saved once, after it
//! succeeds, only if something changed; a failure of the handler or of the store writes
//! nothing, reaches the client as `{"error": ..}`, and leaves the socket working. Each rule
//! holds on both namespaces: `#[with_session]`'s (`/`) and the hand-written `SessionHandle`
//! one.

use std::time::Duration;

use serde_json::json;
use session_harness::{
    error_of, refusal, RawSocket, TestServer, Transport, User, HAND_WRITTEN, INJECTED_FAILURE,
    TIMEOUT,
};
use tower_sessions::{cookie::time::OffsetDateTime, Expiry};

/// The namespaces whose handlers must keep every transactional rule.
const BOTH: [&str; 2] = ["/", HAND_WRITTEN];

/// A server with alice logged in over HTTP and one socket of her session on `ns`, at
/// `count == 2`.
async fn alice_at_two(ns: &str) -> (TestServer, User, RawSocket) {
    let server = TestServer::start().await;
    let alice = server.login("alice").await;
    let socket = alice.raw_socket_on(ns).await;
    assert_eq!(socket.ack("incr", vec![]).await, json!(1), "{ns}");
    assert_eq!(socket.ack("incr", vec![]).await, json!(2), "{ns}");
    (server, alice, socket)
}

/// The ack of a store failure: the client is told the store failed, never the store's text.
fn assert_store_failed(ack: &serde_json::Value, context: &str) {
    let message = error_of(ack);
    assert!(
        message == "session store failed" && !message.contains(INJECTED_FAILURE),
        "{context}: {ack}"
    );
}

/// A handler that writes, then returns `Err` or panics: nothing it wrote is saved, the client
/// hears why, the lock is released and the session keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_failing_after_writing_saves_nothing_and_the_server_keeps_serving() {
    for ns in BOTH {
        for (event, says) in [
            ("fail_after_write", "deliberate failure"),
            ("panic_after_write", "panicked"),
        ] {
            let (server, alice, socket) = alice_at_two(ns).await;
            let writes = server.store.writes();
            let ack = socket.ack(event, vec![]).await;
            assert!(error_of(&ack).contains(says), "{ns} {event}: {ack}");
            assert_eq!(server.store.writes(), writes, "{ns} {event}: saved");
            let session = alice.http.session().await;
            assert_eq!(
                session,
                json!({ "user": "alice", "count": 2 }),
                "{ns} {event}"
            );
            assert!(server.locks.is_empty(), "{ns} {event}");
            assert_eq!(socket.ack("incr", vec![]).await, json!(3), "{ns} {event}");
            let other = alice.socket_on(ns, Transport::Polling).await;
            assert_eq!(other.ack("incr", vec![]).await, json!(4), "{ns} {event}");
            assert_eq!(alice.http.incr().await, 5, "{ns} {event}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_session_causes_no_save() {
    for ns in BOTH {
        let (server, _alice, socket) = alice_at_two(ns).await;
        let (saves, loads) = (server.store.saves(), server.store.loads());
        for _ in 0..3 {
            let whoami = socket.ack("whoami", vec![]).await;
            assert_eq!(whoami, json!({ "user": "alice" }), "{ns}");
            assert_eq!(socket.ack("peek", vec![]).await, json!(2), "{ns}");
            // Writing the value already there is not a change.
            assert_eq!(socket.ack("same", vec![]).await, json!(2), "{ns}");
        }
        assert_eq!(server.store.saves(), saves, "{ns}: reads must not write");
        assert_eq!(
            server.store.loads(),
            loads + 9,
            "{ns}: each event reloads the record"
        );
        assert_eq!(socket.ack("incr", vec![]).await, json!(3), "{ns}");
        assert_eq!(
            server.store.saves(),
            saves + 1,
            "{ns}: one change, one save"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_inactivity_expiry_moves_forward_when_a_socket_saves() {
    let inactivity = tower_sessions::cookie::time::Duration::hours(1);
    for ns in BOTH {
        let expiry = Expiry::OnInactivity(inactivity);
        let server = TestServer::builder().expiry(expiry).start().await;
        let alice = server.login("alice").await;
        let id = alice.id().await;
        let socket = alice.raw_socket_on(ns).await;
        let record = server.store.record(id).await;
        let before = record
            .unwrap_or_else(|| panic!("{ns}: no record"))
            .expiry_date;

        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = OffsetDateTime::now_utc();
        assert_eq!(socket.ack("incr", vec![]).await, json!(1), "{ns}");
        let record = server.store.record(id).await;
        let after = record
            .unwrap_or_else(|| panic!("{ns}: no record"))
            .expiry_date;
        assert!(
            after > before,
            "{ns}: a save must refresh the expiry: {before} -> {after}"
        );
        // The layer's rule (now + inactivity), not some default.
        assert!(
            after >= start + inactivity && after <= OffsetDateTime::now_utc() + inactivity,
            "{ns}: {after}"
        );

        // No save, no refresh.
        socket.ack("peek", vec![]).await;
        socket.ack("whoami", vec![]).await;
        let record = server.store.record(id).await;
        let unchanged = record
            .unwrap_or_else(|| panic!("{ns}: no record"))
            .expiry_date;
        assert_eq!(unchanged, after, "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_store_saves_give_an_error_ack_and_the_socket_recovers() {
    for ns in BOTH {
        let (server, alice, socket) = alice_at_two(ns).await;
        server.store.fail_writes(true);
        for (event, args) in [("incr", vec![]), ("login", vec![json!({ "user": "bob" })])] {
            assert_store_failed(&socket.ack(event, args).await, ns);
        }
        // Reads need no write: they keep working.
        let whoami = socket.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": "alice" }), "{ns}");
        server.store.fail_writes(false);

        let session = alice.http.session().await;
        assert_eq!(session, json!({ "user": "alice", "count": 2 }), "{ns}");
        assert!(server.locks.is_empty(), "{ns}");
        assert_eq!(socket.ack("incr", vec![]).await, json!(3), "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_store_loads_give_an_error_ack_and_the_socket_recovers() {
    for ns in BOTH {
        let (server, alice, socket) = alice_at_two(ns).await;
        let writes = server.store.writes();
        server.store.fail_loads(true);
        for event in ["whoami", "incr", "peek", "fail_after_write"] {
            let ack = socket.ack(event, vec![]).await;
            assert_store_failed(&ack, &format!("{ns} {event}"));
        }
        // The HTTP side, too, answers with an error instead of writing.
        let (status, body) = alice.http.raw("POST", "/incr", None).await;
        assert_ne!(status, 200, "{ns}: {body}");
        server.store.fail_loads(false);

        assert_eq!(server.store.writes(), writes, "{ns}: nothing half-written");
        let session = alice.http.session().await;
        assert_eq!(session, json!({ "user": "alice", "count": 2 }), "{ns}");
        let whoami = socket.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": "alice" }), "{ns}");
        assert_eq!(socket.ack("incr", vec![]).await, json!(3), "{ns}");
        assert!(server.locks.is_empty(), "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_failing_mid_burst_loses_no_acknowledged_update() {
    for ns in BOTH {
        let (server, alice, socket) = alice_at_two(ns).await;
        server.store.set_latency(Duration::from_millis(1));
        let acks: Vec<_> = (0..40).map(|_| socket.emit("incr", vec![])).collect();
        // Fail in the middle of the burst, then recover. Writers are serialised, so four
        // loads after the failure began mean at least three transactions tried to save.
        let store = server.store.clone();
        let saves = store.saves();
        let chaos = tokio::spawn(async move {
            wait_until(|| store.saves() >= saves + 10).await;
            store.fail_writes(true);
            let loads = store.loads();
            wait_until(|| store.loads() >= loads + 4).await;
            store.fail_writes(false);
        });
        let acks = futures_util::future::join_all(acks).await;
        chaos.await.unwrap_or_else(|err| panic!("{ns}: {err}"));

        let succeeded: Vec<i64> = acks.iter().filter_map(|a| a.as_i64()).collect();
        assert!(
            succeeded.len() >= 10 && succeeded.len() <= 37,
            "{ns}: {acks:?}"
        );
        for ack in acks.iter().filter(|a| !a.is_i64()) {
            assert_eq!(error_of(ack), "session store failed", "{ns}: {ack}");
        }
        // Every acknowledged count was stored, in order, with no gap and nothing extra.
        let expected: Vec<i64> = (3..3 + succeeded.len() as i64).collect();
        let mut sorted = succeeded.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "{ns}");
        let count = alice.http.session().await["count"].clone();
        assert_eq!(count, json!(2 + succeeded.len()), "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_session_with_a_failing_store_refuses_with_a_store_error() {
    let server = TestServer::builder().require_session().start().await;
    let alice = server.login("alice").await;
    for ns in BOTH {
        server.store.fail_loads(true);
        let attempt = RawSocket::connect(&server.url(), ns, Some(&alice.cookie())).await;
        let message = refusal(attempt);
        assert!(message.contains("store"), "{ns}: {message}");
        server.store.fail_loads(false);
        let socket = alice.raw_socket_on(ns).await;
        let whoami = socket.ack("whoami", vec![]).await;
        assert_eq!(whoami, json!({ "user": "alice" }), "{ns}");
    }
}

/// Polls `done` every millisecond, for at most [`TIMEOUT`].
async fn wait_until(done: impl Fn() -> bool) {
    tokio::time::timeout(TIMEOUT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("condition not reached in time");
}

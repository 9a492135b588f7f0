//! Every wait is bounded and store faults lose nothing: a hung store, a writer stuck on the
//! lock and a handler that never finishes get the client an error ack naming the cause (timed
//! out, busy, store failed), release the lock, write nothing, and the session works again as
//! soon as the store does. A flaky store, on every store kind, leaves exactly the acknowledged
//! updates.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use session_harness::{error_of, RawSocket, StoreKind, TestServer, User, TIMEOUT};
use session_runtime::Timeouts;

/// Short bounds, so that the tests run in well under a second per wait.
const BOUND: Duration = Duration::from_millis(300);

/// A server with short timeouts, alice logged in at `count == 1`, and a socket of hers.
async fn alice_with_bounds(timeouts: Timeouts) -> (TestServer, User, RawSocket) {
    let server = TestServer::builder().timeouts(timeouts).start().await;
    let alice = server.login("alice").await;
    let socket = alice.raw_socket().await;
    assert_eq!(socket.ack("incr", vec![]).await, json!(1));
    (server, alice, socket)
}

fn short() -> Timeouts {
    Timeouts::default()
        .with_store(BOUND)
        .with_lock(BOUND)
        .with_handler(Some(BOUND))
}

/// Sends `event` with `args` and returns its ack and how long it took; the ack must come within
/// ten times the bound, however stuck the store is.
async fn timed_ack(
    socket: &RawSocket,
    event: &str,
    args: Vec<serde_json::Value>,
) -> (serde_json::Value, Duration) {
    let started = Instant::now();
    let ack = socket.ack(event, args).await;
    let took = started.elapsed();
    assert!(took < BOUND * 10, "`{event}` took {took:?}");
    (ack, took)
}

/// Which operations of the test store hang.
#[derive(Debug, Clone, Copy)]
enum Hang {
    Loads,
    Writes,
}

impl Hang {
    fn set(self, server: &TestServer, hang: bool) {
        match self {
            Self::Loads => server.store.hang_loads(hang),
            Self::Writes => server.store.hang_writes(hang),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_store_is_answered_in_time_and_the_session_recovers() {
    let (server, alice, socket) = alice_with_bounds(short()).await;
    let bob = json!({ "user": "bob" });
    for (hang, events) in [
        (
            Hang::Loads,
            vec![("incr", vec![]), ("whoami", vec![]), ("login", vec![bob])],
        ),
        (
            Hang::Writes,
            vec![("incr", vec![]), ("logout", vec![]), ("delete", vec![])],
        ),
    ] {
        let writes = server.store.writes();
        hang.set(&server, true);
        for (event, args) in events {
            let (ack, took) = timed_ack(&socket, event, args).await;
            assert_eq!(
                error_of(&ack),
                "session store timed out",
                "{hang:?} {event}"
            );
            assert!(
                took >= BOUND / 2,
                "{hang:?} {event}: answered before the bound"
            );
        }
        hang.set(&server, false);
        assert!(
            server.locks.is_empty(),
            "{hang:?}: a lock outlived its timeout"
        );
        assert_eq!(
            server.store.writes(),
            writes,
            "{hang:?}: written while hung"
        );
    }
    // Recovered at once, with nothing lost or half-written.
    assert_eq!(socket.ack("incr", vec![]).await, json!(2));
    let session = alice.http.session().await;
    assert_eq!(session, json!({ "user": "alice", "count": 2 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stuck_behind_the_lock_is_told_the_session_is_busy() {
    let timeouts = Timeouts::default().with_lock(BOUND).with_handler(None);
    let (server, alice, holder) = alice_with_bounds(timeouts).await;
    let other = alice.raw_socket().await;
    let hold = holder.emit("hold", vec![]);
    tokio::time::timeout(TIMEOUT, server.probe.entered.notified())
        .await
        .expect("`hold` never took the lock");

    let (ack, _) = timed_ack(&other, "incr", vec![]).await;
    assert_eq!(error_of(&ack), "the session is busy: try again");
    // HTTP writers wait for the same lock, as long: 503 with the same message.
    let (status, body) = alice.http.raw("POST", "/incr", None).await;
    assert_eq!(
        (status, body),
        (503, json!({ "error": "the session is busy: try again" }))
    );
    // Readers take no lock and are not held up.
    assert_eq!(
        other.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );

    server.probe.release.add_permits(1);
    assert_eq!(hold.await, json!({ "ok": true }));
    assert_eq!(other.ack("incr", vec![]).await, json!(2));
    assert!(server.locks.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_never_finishes_is_stopped_and_writes_nothing() {
    let (server, alice, socket) = alice_with_bounds(short()).await;
    let saves = server.store.saves();
    let (ack, _) = timed_ack(&socket, "hold", vec![]).await;
    assert_eq!(
        error_of(&ack),
        "the handler did not finish in time; nothing was saved"
    );
    assert!(server.locks.is_empty(), "the stopped handler kept the lock");
    assert_eq!(server.store.saves(), saves);
    let record = server.data(&alice).await.unwrap();
    assert_eq!(
        record.get("held"),
        None,
        "the stopped handler's write was saved"
    );
    assert_eq!(socket.ack("incr", vec![]).await, json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_store_loses_no_acknowledged_update_on_any_store() {
    for store in StoreKind::ALL {
        let server = TestServer::builder().store(store).start().await;
        let alice = server.login("alice").await;
        let sockets = [alice.raw_socket().await, alice.raw_socket().await];
        server.store.fail_one_in(3);
        let acks: Vec<_> = (0..40)
            .map(|i| sockets[i % 2].emit("incr", vec![]))
            .collect();
        let https: Vec<_> = (0..10)
            .map(|_| alice.http.raw("POST", "/incr", None))
            .collect();
        let (acks, https) = tokio::join!(join_all(acks), join_all(https));
        server.store.fail_one_in(0);

        let mut counts = Vec::new();
        for ack in &acks {
            match ack.as_i64() {
                Some(count) => counts.push(count),
                None => assert_eq!(error_of(ack), "session store failed", "{store:?}"),
            }
        }
        for (status, answer) in https {
            match answer["count"].as_i64() {
                Some(count) => counts.push(count),
                // 503 from the reload under the lock, or from the lock layer when
                // tower-sessions' own save at the end of the request failed.
                None => {
                    assert_eq!(status, 503, "{store:?}: {answer}");
                    assert_eq!(error_of(&answer), "session store failed", "{store:?}");
                }
            }
        }
        // Each success built on the last one: every count from 1 up, once, and the store
        // holds the last.
        counts.sort_unstable();
        let expected: Vec<i64> = (1..=counts.len() as i64).collect();
        assert_eq!(counts, expected, "{store:?}");
        assert!(
            counts.len() >= 5,
            "{store:?}: almost nothing succeeded: {acks:?}"
        );
        let session = alice.http.session().await;
        assert_eq!(session["count"], json!(counts.len()), "{store:?}");
        assert!(server.locks.is_empty(), "{store:?}");
    }
}

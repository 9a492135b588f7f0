//! Faults of several nodes on one database, Redis and PostgreSQL alike, with real processes
//! and real signals: a node killed while it holds a session's lease, a node paused past its
//! lease, the database paused, and the database killed and started again. Leases are short
//! here (`SESSION_LEASE_MS`), so that they lapse within the test. Each case runs on both
//! (`<case>::redis`, `<case>::postgres`).
//!
//! What must hold: the other node's writers go on once a dead node's lease lapses; a late
//! write is refused (an error ack, never a success, never a count handed out twice); while
//! the database is away clients get errors (acks, HTTP 503), and once it is back the nodes
//! serve again without a restart, with nothing half-written.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use session_harness::{
    backend::{Backend, Kind},
    error_of, DemoNode, Http, RawSocket, TestServer, TIMEOUT,
};
use session_runtime::Timeouts;

/// `case(Kind::Redis, ..)` as `case::redis` and `case(Kind::Postgres, ..)` as
/// `case::postgres`, with the case's further arguments.
macro_rules! on_both {
    ($($name:ident => $case:ident($($arg:expr),*)),* $(,)?) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$case(Kind::Redis $(, $arg)*).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case(Kind::Postgres $(, $arg)*).await
            }
        }
    )*};
}

on_both!(
    a_node_killed_holding_a_lease_holds_the_others_up_only_until_it_lapses
        => killed_holding_a_lease(),
    a_node_paused_past_its_lease_has_its_late_socket_write_refused
        => paused_past_its_lease(Via::Socket),
    a_node_paused_past_its_lease_has_its_late_http_write_refused_with_503
        => paused_past_its_lease(Via::Http),
    a_holder_running_longer_than_its_lease_keeps_it_by_renewing => renewing(),
    while_the_database_is_away_clients_get_errors_and_the_nodes_recover_by_themselves
        => database_away(),
);

/// Two nodes on `db` with leases of `lease`.
fn two_nodes(db: &Backend, lease: Duration) -> [DemoNode; 2] {
    let lease = lease.as_millis().to_string();
    db.nodes(&[("SESSION_LEASE_MS", &lease)])
}

/// Sends `n` `incr` at once; each ack arrives on its own task (`Err` if the socket died first).
fn burst(socket: &RawSocket, n: usize) -> Vec<tokio::task::JoinHandle<Value>> {
    (0..n)
        .map(|_| tokio::spawn(socket.emit("incr", vec![])))
        .collect()
}

/// Pauses `node` while it holds the lease with a transaction under way: it is the only
/// writer, and the lease is still there 50 ms after the pause (a write sent before the pause
/// would have released it by then).
async fn pause_holding_the_lease(node: &DemoNode, db: &Backend) {
    for attempt in 0..50 {
        tokio::time::sleep(Duration::from_millis(5 + attempt % 7)).await;
        node.process.pause();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if db.lease_held() {
            return;
        }
        node.process.resume();
    }
    panic!("{} never held the lease when paused", node.process.name());
}

/// The counts in `acks` that succeeded, checking none is handed out twice; and the errors.
fn tally(acks: impl IntoIterator<Item = Value>, counts: &mut BTreeSet<i64>) -> Vec<String> {
    let mut errors = Vec::new();
    for ack in acks {
        match ack.as_i64() {
            Some(count) => assert!(counts.insert(count), "count {count} handed out twice"),
            None => errors.push(error_of(&ack).to_owned()),
        }
    }
    errors
}

async fn killed_holding_a_lease(kind: Kind) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let lease = Duration::from_millis(1000);
    let [mut a, b] = two_nodes(&db, lease);
    let alice = b.login("alice").await;
    let on_a = a.raw_socket_of(&alice).await;
    let acks_a = burst(&on_a, 200);
    pause_holding_the_lease(&a, &db).await;
    a.process.kill();
    let killed = Instant::now();

    let mut counts = BTreeSet::new();
    // Acks that reached the client before the kill; the others never come.
    let acked_on_a: Vec<Value> = futures_util::future::join_all(acks_a)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    assert!(tally(acked_on_a, &mut counts).is_empty());

    let on_b = b.raw_socket_of(&alice).await;
    let first = on_b.ack("incr", vec![]).await;
    let waited = killed.elapsed();
    let first = first
        .as_i64()
        .unwrap_or_else(|| panic!("B's writer did not go on: {first}"));
    assert!(
        waited < lease * 3,
        "B waited {waited:?} for a dead node's lease"
    );
    counts.insert(first);
    for _ in 0..5 {
        tally([on_b.ack("incr", vec![]).await], &mut counts);
    }
    // No acked update lost: the last count stands above every acked one, and each count was
    // handed out once (a write of A's that landed but whose ack died with it is the only gap).
    let last = *counts.last().unwrap();
    let stored = Http::with_cookie(b.url(), &alice.cookie()).session().await["count"]
        .as_i64()
        .unwrap();
    assert_eq!(stored, last);
    assert!(
        last - counts.len() as i64 <= 1,
        "{} counts acked, last {last}",
        counts.len()
    );
}

/// Where the paused node's writes come from.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// `incr` socket events: the late write is the lease's own script.
    Socket,
    /// `POST /incr`: the late write is the session layer's save, through the store.
    Http,
}

/// Node A, busy writing alice's session, is paused while it holds her lease, past its
/// lifetime; B takes the lease and writes; A wakes up. Its late write must be refused: an
/// error answer, and the counts stay exact (none handed out twice, none lost).
///
/// A socket event writes and releases in one script, so a lease still there 50 ms into the
/// pause means its write is yet to come. An HTTP request releases after its save, so the pause
/// may fall after the save: then there is nothing to refuse, and the round is played again
/// (the counts must be exact in every round).
async fn paused_past_its_lease(kind: Kind, via: Via) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let lease = Duration::from_millis(300);
    let [a, b] = two_nodes(&db, lease);
    let alice = b.login("alice").await;
    let on_a = a.raw_socket_of(&alice).await;
    let on_b = b.raw_socket_of(&alice).await;
    let http_a = Http::with_cookie(a.url(), &alice.cookie());
    let mut counts = BTreeSet::new();
    for round in 0..10 {
        let acks_a: Vec<tokio::task::JoinHandle<Value>> = match via {
            Via::Socket => burst(&on_a, 200),
            Via::Http => (0..50)
                .map(|_| {
                    let http = http_a.clone();
                    tokio::spawn(async move {
                        match http.raw("POST", "/incr", None).await {
                            (200, body) => body["count"].clone(),
                            (status, body) => json!({ "error": format!("{status}: {body}") }),
                        }
                    })
                })
                .collect(),
        };
        pause_holding_the_lease(&a, &db).await;
        tokio::time::sleep(lease * 3).await;
        // The lease lapsed: B takes it and writes, while A still believes it holds it.
        let errors = tally([on_b.ack("incr", vec![]).await], &mut counts);
        assert!(errors.is_empty(), "{via:?} round {round}: B: {errors:?}");
        a.process.resume();

        let acks_a = futures_util::future::join_all(acks_a)
            .await
            .into_iter()
            .map(|ack| {
                ack.unwrap_or_else(|err| panic!("{via:?} round {round}: an answer of A's: {err}"))
            });
        let errors = tally(acks_a, &mut counts);
        // Exact: every success is one increment, and nothing else wrote.
        let stored = Http::with_cookie(b.url(), &alice.cookie()).session().await["count"]
            .as_i64()
            .unwrap_or_else(|| panic!("{via:?} round {round}: no count stored"));
        assert_eq!(
            counts,
            (1..=stored).collect(),
            "{via:?} round {round}: errors: {errors:?}"
        );
        if errors.iter().any(|e| e.contains("lapsed")) {
            if let Via::Http = via {
                let all_503 = errors.iter().all(|e| e.starts_with("503"));
                assert!(all_503, "round {round}: {errors:?}");
            }
            return;
        }
        assert!(
            matches!(via, Via::Http),
            "round {round}: A's late socket write was not refused: {errors:?}"
        );
    }
    panic!("in 10 rounds, no late write of A's via {via:?} was refused");
}

async fn renewing(kind: Kind) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let lease = Duration::from_millis(300);
    let server = TestServer::builder()
        .shared(&db, lease)
        .timeouts(Timeouts::default().with_lock(lease * 2))
        .start()
        .await;
    let alice = server.login("alice").await;
    let (holder, other) = (alice.raw_socket().await, alice.raw_socket().await);
    let held = holder.emit("hold", vec![]);
    tokio::time::timeout(TIMEOUT, server.probe.entered.notified())
        .await
        .expect("`hold` holds the lease");
    // Several lifetimes later, the lease is still the holder's: the other writer gives up.
    let ack = other.ack("incr", vec![]).await;
    assert!(error_of(&ack).contains("busy"), "{ack}");
    tokio::time::sleep(lease * 2).await;
    server.probe.release.add_permits(1);
    assert_eq!(
        held.await,
        json!({ "ok": true }),
        "the holder's write was refused"
    );
    assert_eq!(server.data(&alice).await.unwrap()["held"], json!(true));
    assert_eq!(other.ack("incr", vec![]).await, json!(1));
}

/// `incr` over a socket and HTTP, both expected to fail while the database is away.
async fn both_fail(socket: &RawSocket, http: &Http) {
    let ack = socket.ack("incr", vec![]).await;
    assert!(ack.get("error").is_some(), "incr succeeded: {ack}");
    let (status, body) = http.raw("POST", "/incr", None).await;
    assert_eq!(status, 503, "{body}");
    let (status, body) = http.raw("GET", "/session", None).await;
    assert_eq!(status, 503, "{body}");
}

/// While the database is paused, then killed: errors; once it is back, both nodes serve
/// again by themselves, with nothing half-written. Redis comes back empty (the session is
/// gone, a new login works); PostgreSQL with every committed record (the count goes on).
async fn database_away(kind: Kind) {
    let Some(mut db) = Backend::start(kind) else {
        return;
    };
    let [a, b] = db.nodes(&[]);
    let alice = a.login("alice").await;
    let socket = b.raw_socket_of(&alice).await;
    let http = Http::with_cookie(a.url(), &alice.cookie());
    assert_eq!(socket.ack("incr", vec![]).await, json!(1));

    // Paused: connections stay open and nothing answers.
    db.pause();
    both_fail(&socket, &http).await;
    db.resume();
    // Nothing half-written: the count is what the successes said.
    assert_eq!(socket.ack("incr", vec![]).await, json!(2));
    assert_eq!(http.incr().await, 3);

    // Killed: connections drop.
    db.stop();
    both_fail(&socket, &http).await;
    db.start_again();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Each node reconnects on its own: wait for both. A read with a cookie goes to the store
    // (one without answers 200 without asking it).
    loop {
        let (on_a, _) = Http::with_cookie(a.url(), &alice.cookie())
            .raw("GET", "/session", None)
            .await;
        let (on_b, _) = Http::with_cookie(b.url(), &alice.cookie())
            .raw("GET", "/session", None)
            .await;
        if on_a == 200 && on_b == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the nodes did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bob = b.login("bob").await;
    if db.keeps_records() {
        assert_eq!(socket.ack("incr", vec![]).await, json!(4));
        assert_eq!(http.incr().await, 5);
    } else {
        let ack = socket.ack("incr", vec![]).await;
        assert!(error_of(&ack).contains("gone"), "{ack}");
    }
    let on_a = a.raw_socket_of(&bob).await;
    assert_eq!(on_a.ack("incr", vec![]).await, json!(1));
    assert_eq!(on_a.ack("whoami", vec![]).await, json!({ "user": "bob" }));
    assert_eq!(Http::with_cookie(b.url(), &bob.cookie()).incr().await, 2);
    // Pushes cross again: the listener and subscriber came back too.
    let _open = session_harness::cross::subscriptions_cross(&a, &b, 2).await;
}

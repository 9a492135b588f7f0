//! "No lost updates": concurrent writers of one session, over sockets and HTTP, are
//! serialised by the per-session lock; readers take no lock; the lock table does not leak.
//! Each guarantee holds on both namespaces: `#[with_session]`'s (`/`) and the hand-written
//! `SessionHandle` one.

use std::{collections::HashSet, time::Duration};

use futures_util::future::join_all;
use serde_json::{json, Value};
use session_harness::{TestServer, Transport, User, HAND_WRITTEN, TIMEOUT};
use session_runtime::locks::{LocalSessionLocks, SessionLocks};
use tower_sessions::session::Id;

/// Store latency that makes unserialised read-modify-write lose updates.
const LATENCY: Duration = Duration::from_millis(2);

/// The namespaces whose handlers must be serialised.
const BOTH: [&str; 2] = ["/", HAND_WRITTEN];

/// Fires `per_socket` incr on each of `sockets` new sockets of `user`'s session on `ns`
/// without awaiting, plus `http` concurrent `POST /incr`, then awaits everything; returns
/// every count a client was told, sorted.
async fn burst(user: &User, ns: &str, sockets: usize, per_socket: usize, http: usize) -> Vec<i64> {
    let mut clients = Vec::new();
    for _ in 0..sockets {
        clients.push(user.raw_socket_on(ns).await);
    }
    let client = user.http.clone();
    let http_incrs: Vec<_> = (0..http)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.incr().await })
        })
        .collect();
    let socket_incrs: Vec<_> = clients
        .iter()
        .flat_map(|c| (0..per_socket).map(|_| c.emit("incr", vec![])))
        .collect();

    let mut counts: Vec<i64> = join_all(socket_incrs)
        .await
        .into_iter()
        .map(|ack| {
            ack.as_i64()
                .unwrap_or_else(|| panic!("{ns}: incr failed: {ack}"))
        })
        .collect();
    for incr in join_all(http_incrs).await {
        counts.push(incr.unwrap_or_else(|err| panic!("{ns}: HTTP incr task: {err}")));
    }
    counts.sort_unstable();
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_sockets_and_http_increment_concurrently_without_losing_an_update() {
    for ns in BOTH {
        let server = TestServer::builder()
            .latency(LATENCY)
            // 450 writers queue on one lock past the default bound on that wait.
            .patient_locks()
            .start()
            .await;
        let alice = server.login("alice").await;

        let counts = burst(&alice, ns, 4, 100, 50).await;
        // Serialised: each writer saw the previous one's result, so every count from 1 to
        // 450 was handed out exactly once.
        assert_eq!(counts, (1..=450).collect::<Vec<_>>(), "{ns}");
        assert_eq!(
            alice.http.session().await,
            json!({ "user": "alice", "count": 450 }),
            "{ns}"
        );
        assert!(
            server.locks.is_empty(),
            "{ns}: {} lock entries left",
            server.locks.len()
        );
    }
}

/// The control experiment: the same burst with locks that exclude nothing loses updates,
/// so the test above can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_lock_the_same_burst_loses_updates() {
    let server = TestServer::builder()
        .latency(LATENCY)
        .without_locks()
        .start()
        .await;
    let alice = server.login("alice").await;

    let counts = burst(&alice, "/", 2, 50, 10).await;
    let distinct: HashSet<_> = counts.iter().collect();
    let count = alice.http.session().await["count"].as_i64().unwrap();
    assert!(
        count < 110 && distinct.len() < 110,
        "no update lost without locks ({count}): the burst does not race"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_and_websocket_clients_share_the_lock() {
    for ns in BOTH {
        let server = TestServer::builder().latency(LATENCY).start().await;
        let alice = server.login("alice").await;
        // rust_socketio awaits one ack at a time, so its clients run concurrent loops instead.
        let mut loops = Vec::new();
        for transport in Transport::ALL {
            let socket = alice.socket_on(ns, transport).await;
            loops.push(tokio::spawn(async move {
                let mut counts = Vec::new();
                for _ in 0..20 {
                    let ack = socket.ack("incr", vec![]).await;
                    let count = ack.as_i64();
                    counts.push(count.unwrap_or_else(|| panic!("{ns} {transport:?}: {ack}")));
                }
                counts
            }));
        }
        let burst = burst(&alice, ns, 1, 40, 10);
        let (loops, burst) = tokio::join!(join_all(loops), burst);
        let mut counts: Vec<i64> = loops
            .into_iter()
            .flat_map(|l| l.unwrap_or_else(|err| panic!("{ns}: {err}")))
            .chain(burst)
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=110).collect::<Vec<_>>(), "{ns}");
        assert_eq!(alice.http.session().await["count"], 110, "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_takes_no_lock_while_a_writer_holds_it() {
    for ns in BOTH {
        let server = TestServer::start().await;
        let alice = server.login("alice").await;
        let (writer, other) = (alice.raw_socket_on(ns).await, alice.raw_socket_on(ns).await);

        let mut hold = Box::pin(writer.emit("hold", vec![]));
        tokio::time::timeout(TIMEOUT, server.probe.entered.notified())
            .await
            .unwrap_or_else(|_| panic!("{ns}: `hold` never took the lock"));
        assert_eq!(server.locks.len(), 1, "{ns}");

        // Readers go through while the lock is held.
        assert_eq!(
            other.ack("whoami", vec![]).await,
            json!({ "user": "alice" }),
            "{ns}"
        );
        assert_eq!(alice.http.session().await["user"], "alice", "{ns}");
        // Writers wait: a socket's and an HTTP route's.
        let mut incr = Box::pin(other.emit("incr", vec![]));
        let mut http_incr = Box::pin({
            let http = alice.http.clone();
            async move { http.incr().await }
        });
        for _ in 0..3 {
            tokio::select! {
                ack = &mut incr => panic!("{ns}: a writer ran while the lock was held: {ack}"),
                n = &mut http_incr => {
                    panic!("{ns}: an HTTP writer ran while the lock was held: {n}")
                }
                ack = &mut hold => panic!("{ns}: `hold` returned before it was released: {ack}"),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
            assert_eq!(
                other.ack("whoami", vec![]).await,
                json!({ "user": "alice" }),
                "{ns}"
            );
        }

        server.probe.release.add_permits(1);
        assert_eq!(hold.await, json!({ "ok": true }), "{ns}");
        let (socket_count, http_count) = tokio::join!(incr, http_incr);
        let socket_count = socket_count.as_i64();
        let socket_count = socket_count.unwrap_or_else(|| panic!("{ns}: {socket_count:?}"));
        let mut counts = vec![socket_count, http_count];
        counts.sort_unstable();
        assert_eq!(counts, [1, 2], "{ns}");
        assert_eq!(
            alice.http.session().await,
            json!({ "user": "alice", "count": 2 }),
            "{ns}: the held writer's change is kept too"
        );
        assert!(server.locks.is_empty(), "{ns}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_table_is_empty_after_100_000_sessions_lock_and_unlock() {
    let locks = LocalSessionLocks::default();
    for _ in 0..100_000 {
        let guard = locks.lock(Id::default()).await.unwrap();
        drop(guard);
    }
    assert_eq!(locks.len(), 0);

    // Contended: many tasks on a few ids.
    let ids: Vec<Id> = (0..10).map(|_| Id::default()).collect();
    let tasks: Vec<_> = (0..2_000)
        .map(|i| {
            let (locks, id) = (locks.clone(), ids[i % ids.len()]);
            tokio::spawn(async move {
                let _guard = locks.lock(id).await.unwrap();
                tokio::task::yield_now().await;
            })
        })
        .collect();
    for task in join_all(tasks).await {
        task.unwrap();
    }
    assert_eq!(locks.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_lock_waiters_leave_no_entry() {
    let locks = LocalSessionLocks::default();
    let ids: Vec<Id> = (0..1_000).map(|_| Id::default()).collect();
    let mut holders = Vec::new();
    for &id in &ids {
        holders.push(locks.lock(id).await.unwrap());
        // Cancelled after waiting (polled once, then dropped by the timeout)...
        assert!(tokio::time::timeout(Duration::ZERO, locks.lock(id))
            .await
            .is_err());
        // ...and cancelled before it was ever polled.
        drop(locks.lock(id));
    }
    assert_eq!(locks.len(), ids.len());

    // Waiters cancelled while the holder releases, from other threads.
    let racers: Vec<_> = ids
        .iter()
        .map(|&id| {
            let locks = locks.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_micros(50), locks.lock(id)).await;
            })
        })
        .collect();
    drop(holders);
    for racer in join_all(racers).await {
        racer.unwrap();
    }
    assert_eq!(locks.len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_table_is_empty_after_real_sockets_and_http_requests() {
    let server = TestServer::start().await;
    let mut sessions = Vec::new();
    for n in 0..30 {
        let user = server.login(&format!("user{n}")).await;
        let socket = user.raw_socket_on(BOTH[n % 2]).await;
        sessions.push((user.http, socket));
    }
    let work = sessions.iter().map(|(http, socket)| async move {
        let acks: Vec<_> = (0..10).map(|_| socket.emit("incr", vec![])).collect();
        let https: Vec<_> = (0..3).map(|_| http.incr()).collect();
        let (acks, _) = tokio::join!(join_all(acks), join_all(https));
        assert!(acks.iter().all(Value::is_i64), "{acks:?}");
        socket.ack("whoami", vec![]).await;
    });
    join_all(work).await;
    assert_eq!(server.locks.len(), 0);
    for (n, (http, _)) in sessions.iter().enumerate() {
        assert_eq!(http.session().await["count"], 13, "user{n}");
    }

    // An HTTP writer that gives up while waiting for the lock leaves nothing behind either.
    let (http, socket) = &sessions[0];
    let hold = socket.emit("hold", vec![]);
    tokio::time::timeout(TIMEOUT, server.probe.entered.notified())
        .await
        .unwrap();
    let impatient =
        server.http_with_cookie_and_timeout(&http.cookie_header(), Duration::from_millis(100));
    assert!(
        impatient.try_incr().await.is_err(),
        "the request should have timed out"
    );
    server.probe.release.add_permits(1);
    hold.await;
    tokio::time::timeout(TIMEOUT, async {
        while !server.locks.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("lock entries left behind");
}

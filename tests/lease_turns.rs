//! Nodes take turns at a session's lease, on Redis and on PostgreSQL (the rule is in
//! `session-runtime`'s `redis/scripts/acquire.lua` and `postgres/schema.sql`): a node that has
//! waited its patience (20 ms) gets the lease before the holder's node hands it to its own next
//! writer, and a node that stops asking loses its turn within 100 ms; on PostgreSQL a waiter is
//! woken by the release, not by asking again and again.
//!
//! The first tests drive the rule through two `RedisSessions` (or `PostgresSessions`) of this
//! process, as two nodes. The last runs two demo processes writing one session as fast as they
//! can and prints both nodes' share of the writes and their p50/p99 event latency, which is the
//! lock wait plus two round trips (`-- --nocapture`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use session_harness::{
    backend::{Backend, Kind},
    RawSocket,
};
use session_runtime::{
    locks::{SessionLockGuard, SessionLocks},
    postgres::PostgresSessions,
    redis::RedisSessions,
};
use tower_sessions::session::Id;

type Locks = Arc<dyn SessionLocks>;

/// Two nodes' locks on one database: two `RedisSessions` or `PostgresSessions`, each its own
/// node.
async fn two_nodes(db: &Backend) -> [Locks; 2] {
    let mut nodes: Vec<Locks> = Vec::new();
    for _ in 0..2 {
        nodes.push(match db {
            Backend::Redis(redis) => Arc::new(
                RedisSessions::connect(&redis.url())
                    .await
                    .expect("connect")
                    .locks(),
            ),
            Backend::Postgres(pg) => Arc::new(
                PostgresSessions::connect(&pg.url())
                    .await
                    .expect("connect")
                    .locks(),
            ),
        });
    }
    nodes.try_into().unwrap_or_else(|_| unreachable!())
}

/// `node` waiting for `id`'s lease on a task of its own; the guard and when it came.
fn waits(node: Locks, id: Id) -> tokio::task::JoinHandle<(SessionLockGuard, Instant)> {
    tokio::spawn(async move {
        let guard = node.lock(id).await.expect("the lease");
        (guard, Instant::now())
    })
}

session_harness::on_both_backends!(
    a_node_that_waited_its_patience_goes_before_the_holders_next_writer
);

async fn a_node_that_waited_its_patience_goes_before_the_holders_next_writer(kind: Kind) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let [a, b] = two_nodes(&db).await;
    let id = Id::default();
    for round in 0..5 {
        let held = a.lock(id).await.expect("A takes the lease");
        let b_waiting = waits(b.clone(), id);
        tokio::time::sleep(Duration::from_millis(40)).await; // B is due
        drop(held);
        // A's next writer asks at once; B asks within its pause.
        let a_again = waits(a.clone(), id);
        // A's second guard, if A took the lease again, sits in its finished task: B would wait
        // for it forever.
        let Ok(b) = tokio::time::timeout(Duration::from_secs(2), b_waiting).await else {
            panic!("round {round}: A took the lease again while B had waited past its patience");
        };
        let (b_guard, b_took) = b.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(
            !a_again.is_finished(),
            "round {round}: A and B held the lease at once"
        );
        drop(b_guard);
        let (a_guard, a_took) = a_again.await.unwrap();
        assert!(a_took > b_took, "round {round}");
        drop(a_guard);
        tokio::time::sleep(Duration::from_millis(20)).await; // A's release lands
    }
}

session_harness::on_both_backends!(a_node_that_stops_waiting_loses_its_turn);

async fn a_node_that_stops_waiting_loses_its_turn(kind: Kind) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let [a, b] = two_nodes(&db).await;
    let id = Id::default();
    let held = a.lock(id).await.expect("A takes the lease");
    let b_waiting = waits(b, id);
    tokio::time::sleep(Duration::from_millis(40)).await; // B is due
    b_waiting.abort(); // B's writer gives up (e.g. its lock bound)
    let _ = b_waiting.await;
    drop(held);
    let started = Instant::now();
    let (_guard, _) = waits(a, id).await.unwrap();
    let waited = started.elapsed();
    eprintln!("A waited {waited:?} for B's abandoned turn to lapse");
    assert!(
        waited < Duration::from_secs(1),
        "A waited {waited:?}: an abandoned turn holds the lease up"
    );
}

/// On PostgreSQL a waiting node is woken by the release's `NOTIFY`: it takes the lease within
/// milliseconds of the guard's drop (the release's own round trip included), where asking again
/// every 50 ms would take 25 ms at the median.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_woken_by_the_release_postgres() {
    let Some(db) = Backend::start(Kind::Postgres) else {
        return;
    };
    let [a, b] = two_nodes(&db).await;
    let mut lags = Vec::new();
    for round in 0..7 {
        let id = Id::default();
        let held = a.lock(id).await.expect("A takes the lease");
        let b_waiting = waits(b.clone(), id);
        // Past B's patience and some of its waits; a different offset each round.
        tokio::time::sleep(Duration::from_millis(100 + 13 * round)).await;
        // The guard's drop gives the lease back in one statement, in the background.
        let released = Instant::now();
        drop(held);
        let (b_guard, b_took) = b_waiting.await.unwrap();
        lags.push(b_took - released);
        drop(b_guard);
    }
    lags.sort();
    let median = lags[lags.len() / 2];
    eprintln!("B took the lease {lags:?} after A's release (median {median:?})");
    assert!(
        median < Duration::from_millis(10),
        "B took the lease {median:?} after the release at the median: not woken by it ({lags:?})"
    );
}

/// Sockets per node, each sending `incr` one after the other.
const SOCKETS: usize = 4;
const RUN: Duration = Duration::from_secs(3);

/// What one node's sockets saw.
#[derive(Default)]
struct Seen {
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

async fn closed_loop(socket: RawSocket, until: Instant) -> Seen {
    let mut seen = Seen::default();
    while Instant::now() < until {
        let started = Instant::now();
        let ack = socket.ack("incr", vec![]).await;
        match ack.as_i64() {
            Some(_) => seen.latencies.push(started.elapsed()),
            None => seen.errors.push(ack.to_string()),
        }
    }
    seen
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

session_harness::on_both_backends!(two_demo_nodes_writing_one_session_both_get_their_share);

async fn two_demo_nodes_writing_one_session_both_get_their_share(kind: Kind) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let nodes = db.nodes::<2>(&[]);
    let alice = nodes[0].login("alice").await;
    let mut sockets = Vec::new();
    for node in &nodes {
        for _ in 0..SOCKETS {
            sockets.push(node.raw_socket_of(&alice).await);
        }
    }
    let until = Instant::now() + RUN;
    let mut seen = join_all(sockets.into_iter().map(|s| closed_loop(s, until))).await;
    let b: Seen = seen
        .split_off(SOCKETS)
        .into_iter()
        .fold(Seen::default(), merge);
    let a: Seen = seen.into_iter().fold(Seen::default(), merge);

    let total = (a.latencies.len() + b.latencies.len()) as f64;
    let mut report = Vec::new();
    for (name, node) in [("A", &a), ("B", &b)] {
        let mut sorted = node.latencies.clone();
        sorted.sort();
        let share = sorted.len() as f64 / total;
        report.push(format!(
            "{name}: {} writes ({:.0} %), p50 {:?}, p99 {:?}, {} errors",
            sorted.len(),
            share * 100.0,
            sorted.get(sorted.len() / 2).copied().unwrap_or_default(),
            if sorted.is_empty() {
                Duration::ZERO
            } else {
                percentile(&sorted, 0.99)
            },
            node.errors.len()
        ));
    }
    eprintln!("{kind:?}: {}", report.join("; "));
    for (name, node) in [("A", &a), ("B", &b)] {
        assert!(
            node.errors.is_empty(),
            "node {name} got errors: {:?} ({report:?})",
            &node.errors[..node.errors.len().min(3)]
        );
        // In turn means half each; a third leaves room for a loaded machine.
        assert!(
            node.latencies.len() as f64 >= total / 3.0,
            "node {name} starved: {report:?}"
        );
    }
}

fn merge(mut into: Seen, other: Seen) -> Seen {
    into.latencies.extend(other.latencies);
    into.errors.extend(other.errors);
    into
}

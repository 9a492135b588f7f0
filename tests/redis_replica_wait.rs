//! `RedisSessions::with_replica_wait`: a write is acknowledged only once a replica has it. With
//! the replica paused (SIGSTOP), socket writes get error acks and HTTP writes 503 after the
//! wait's timeout, never a success a failover could take back; a node without the opt-in on
//! the same Redis goes on acknowledging; once the replica is back, writes succeed again.
//!
//! On a Cluster the wait is for the replica of the record's own master: another master's
//! replica, paused, holds nothing up.
//!
//! The refused writes are on the master all the same (`WAIT` undoes nothing): the count goes
//! on from them. Its cost in round trips is counted in `redis_round_trips`.

use std::time::{Duration, Instant};

use serde_json::json;
use session_harness::{error_of, RedisCluster, RedisNode, RedisServer, TestServer};
use session_runtime::redis::RedisSessions;
use tower_sessions::{
    cookie::time::{self, OffsetDateTime},
    session::{Id, Record},
    SessionStore,
};

const WAIT: Duration = Duration::from_millis(300);
const LEASE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_replica_paused_a_write_fails_after_the_wait_and_succeeds_once_it_is_back() {
    let Some(master) = RedisServer::start() else {
        return;
    };
    let replica = RedisServer::start_replica_of(&master);
    let waiting = TestServer::builder()
        .redis(&master.url(), LEASE)
        .replica_wait(1, WAIT)
        .start()
        .await;
    let plain = TestServer::builder()
        .redis(&master.url(), LEASE)
        .start()
        .await;
    let alice = waiting.login("alice").await;
    let socket = alice.raw_socket().await;
    assert_eq!(socket.ack("incr", vec![]).await, json!(1));
    // In sync: the replica has the write the moment it is acknowledged.
    let record = master.cli(&["KEYS", "*"]);
    let record = record
        .lines()
        .find(|key| !key.contains('{'))
        .expect("alice's record")
        .to_owned();
    assert_eq!(replica.cli(&["EXISTS", &record]), "1");

    // What the wait costs here (loopback, the replica a few microseconds behind): printed, not
    // asserted.
    let bob = plain.login("bob").await;
    let bob_socket = bob.raw_socket().await;
    let mut medians = Vec::new();
    for socket in [&socket, &bob_socket] {
        let mut took = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            assert!(socket.ack("incr", vec![]).await.is_i64());
            took.push(started.elapsed());
        }
        took.sort();
        medians.push(took[took.len() / 2]);
    }
    let counted = 51;

    replica.process.pause();
    let started = Instant::now();
    let ack = socket.ack("incr", vec![]).await;
    let socket_error = started.elapsed();
    assert_eq!(error_of(&ack), "session store failed");
    let started = Instant::now();
    let (status, body) = alice.http.raw("POST", "/incr", None).await;
    let http_error = started.elapsed();
    assert_eq!(status, 503, "{body}");
    for took in [socket_error, http_error] {
        assert!(took >= WAIT, "answered before the wait's timeout: {took:?}");
    }
    // Without the opt-in, the same Redis acknowledges at once.
    assert_eq!(bob_socket.ack("incr", vec![]).await, json!(51));

    replica.process.resume();
    let ack = socket.ack("incr", vec![]).await;
    assert_eq!(
        ack,
        json!(counted + 3),
        "the refused writes are on the master: the count goes on from them"
    );
    eprintln!(
        "median `incr` {:?} with the wait, {:?} without; replica paused: socket error ack \
         after {socket_error:?}, HTTP 503 after {http_error:?} (wait {WAIT:?})",
        medians[0], medians[1]
    );
}

/// The port of the replica of the master on `master`.
fn replica_of(cluster: &RedisCluster, master: u16) -> u16 {
    let info = session_harness::redis::cli(master, &["INFO", "replication"]);
    info.lines()
        .find_map(|line| line.strip_prefix("slave0:"))
        .and_then(|fields| fields.split(',').find_map(|f| f.strip_prefix("port=")))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no replica of {master}:\n{}", cluster.nodes_view()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_the_wait_is_for_the_replica_of_the_records_master() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    let store = RedisSessions::connect(&cluster.url())
        .await
        .expect("connect")
        .with_replica_wait(1, WAIT)
        .store();
    let mut record = Record {
        id: Id::default(),
        data: Default::default(),
        expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.expect("created");
    let master = cluster.master_of(&record.id.to_string());
    let node = |port: u16| {
        cluster
            .nodes()
            .iter()
            .find(|node| node.port() == port)
            .expect("a node")
    };
    let own = node(replica_of(&cluster, master));
    let other_master = cluster
        .nodes()
        .iter()
        .map(RedisNode::port)
        .find(|&port| {
            port != master && !session_harness::redis::cli(port, &["ROLE"]).starts_with("slave")
        })
        .expect("another master");
    let other = node(replica_of(&cluster, other_master));

    other.process.pause();
    let elsewhere = store.save(&record).await;
    other.process.resume();
    elsewhere.expect("another master's replica does not hold this write up");

    own.process.pause();
    let refused = store.save(&record).await;
    own.process.resume();
    assert!(refused.is_err(), "written with its master's replica paused");
    store.save(&record).await.expect("its replica is back");
}

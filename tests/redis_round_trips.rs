//! What an event costs in Redis round trips, counted by Redis itself: with
//! `slowlog-log-slower-than 0` every command a client sends is logged, and commands run inside
//! a script are logged apart (client `?:0`), so the top-level entries are the round trips.
//!
//! An uncontended `autosave` event that changes the session costs 2 (take the lease and read
//! the record; write the record and release the lease), one that changes nothing 2 (take and
//! read; release), and a `readonly` event 1 (`GET`). Waiting for a replica
//! (`RedisSessions::with_replica_wait`) adds a `WAIT` to the first only.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use session_harness::{
    costs::{assert_costs, Costs},
    RawSocket, RedisServer, ServerBuilder, TestServer,
};

/// Top-level commands since the last `SLOWLOG RESET`, by name, leaving out redis-cli's own.
fn round_trips(redis: &RedisServer) -> BTreeMap<String, u64> {
    let log: Value =
        serde_json::from_str(&redis.cli(&["--json", "SLOWLOG", "GET", "-1"])).expect("json");
    let mut counts = BTreeMap::new();
    for entry in log.as_array().expect("a list") {
        let command = entry[3][0]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let client = entry[4].as_str().unwrap_or_default();
        if client == "?:0"
            || ["slowlog", "hello", "config", "replconf", "info"].contains(&command.as_str())
        {
            continue; // inside a script, redis-cli, or a replica's acknowledgements
        }
        *counts.entry(command).or_default() += 1;
    }
    // The slow log leaves out commands that block, such as `WAIT`: the command statistics
    // count them (and scripts' commands too, hence not used for the others).
    let stats = redis.cli(&["INFO", "commandstats"]);
    if let Some(calls) = stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_wait:calls="))
    {
        let calls: u64 = calls.split(',').next().unwrap().parse().expect("a count");
        counts.insert("wait".into(), calls);
    }
    counts
}

/// Starts counting afresh.
fn reset(redis: &RedisServer) {
    redis.cli(&["SLOWLOG", "RESET"]);
    redis.cli(&["CONFIG", "RESETSTAT"]);
}

/// Counts events of each kind on a test server on `redis` (configured further by `with`),
/// against what each should cost.
async fn counted(
    redis: &RedisServer,
    with: impl FnOnce(ServerBuilder) -> ServerBuilder,
    costs: Costs<'_>,
) {
    logging(redis);
    let server = with(TestServer::builder().redis(&redis.url(), Duration::from_secs(5)))
        .start()
        .await;
    let alice = server.login("alice").await;
    let socket = alice.raw_socket().await;
    // Warm: the connections are up, the scripts loaded.
    assert_eq!(socket.ack("incr", vec![]).await, json!(1));
    assert_eq!(
        socket.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );

    events_cost(redis, &socket, costs).await;
}

/// A Redis that logs every command.
fn logging(redis: &RedisServer) {
    redis.cli(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]);
    redis.cli(&["CONFIG", "SET", "slowlog-max-len", "100000"]);
}

/// Events of each kind on `socket` cost what each should, in Redis commands.
async fn events_cost(redis: &RedisServer, socket: &RawSocket, costs: Costs<'_>) {
    let counter = (|| reset(redis), || round_trips(redis));
    assert_costs(socket, costs, "round trips", counter.0, counter.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autosave_costs_two_round_trips_and_readonly_one() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    counted(
        &redis,
        |server| server,
        &[
            ("incr", &[("evalsha", 2)]),
            ("peek", &[("evalsha", 2)]),
            ("whoami", &[("get", 1)]),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_a_replica_adds_one_round_trip_to_a_write_and_none_to_a_read() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let _replica = RedisServer::start_replica_of(&redis);
    counted(
        &redis,
        |server| server.replica_wait(1, Duration::from_secs(1)),
        &[
            ("incr", &[("evalsha", 2), ("wait", 1)]),
            ("peek", &[("evalsha", 2)]),
            ("whoami", &[("get", 1)]),
        ],
    )
    .await;
}

/// The demo on Redis, users on (its index in Redis sorted sets): events cost what they cost
/// without users, since they do not change the user; a login's cost is printed with the
/// commands it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_users_on_events_cost_the_same_and_a_login_adds_one_index_write() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    logging(&redis);
    let [node] = session_harness::DemoNode::start_many(&[("REDIS_URL", &redis.url())]);
    // Warm: the connections are up, the scripts loaded.
    let warm = node.login("warm").await;
    let socket = node.raw_socket_of(&warm).await;
    assert_eq!(socket.ack("incr", vec![]).await, json!(1));

    // A login of a new client: the index gains the session before the record names its user.
    reset(&redis);
    let alice = node.login("alice").await;
    let mut login = round_trips(&redis);
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        login = round_trips(&redis);
    }
    let total: u64 = login.values().sum();
    println!("round trips of a login with users on: {total} {login:?}");

    // The same login on a server without users, for the difference.
    let plain = TestServer::builder()
        .redis(&redis.url(), Duration::from_secs(5))
        .start()
        .await;
    plain.login("warm").await;
    reset(&redis);
    plain.login("carol").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let without = round_trips(&redis);
    let total_without: u64 = without.values().sum();
    println!("round trips of a login without users: {total_without} {without:?}");
    assert_eq!(without.get("zadd"), None, "{without:?}");
    assert_eq!(
        login.get("zadd"),
        Some(&1),
        "one index write per login: {login:?}"
    );

    let socket = node.raw_socket_of(&alice).await;
    assert_eq!(socket.ack("incr", vec![]).await, json!(1));
    events_cost(
        &redis,
        &socket,
        &[("incr", &[("evalsha", 2)]), ("whoami", &[("get", 1)])],
    )
    .await;
}

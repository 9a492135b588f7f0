//! A node cut off from Redis while its clients stay connected: node A reaches Redis through
//! the harness's fault-injecting [`Relay`], node B directly; both are real demo processes.
//!
//! What must hold: A's clients get error acks (and HTTP 503) within the `Timeouts` bounds,
//! B's writers go on once A's lease lapses, a write A sent into the partition and that Redis
//! receives only on heal changes nothing, and afterwards A serves again without a restart,
//! with pushes and broadcasts crossing both ways. Each run prints its figures
//! (`-- --nocapture`).

use std::time::{Duration, Instant};

use session_harness::{
    cross::{burst, subscriptions_cross, Tally},
    error_of, random_key,
    relay::Fault,
    DemoNode, Http, RawSocket, RedisServer, Relay, User,
};

/// The nodes' lease (`SESSION_LEASE_MS`): short, so that it lapses within the test.
const LEASE: Duration = Duration::from_millis(1000);

/// The demo's `Timeouts`: the store bound plus the lock bound (3 s each, the defaults), with
/// room for a loaded machine.
const ERROR_BOUND: Duration = Duration::from_secs(8);

/// The bound on A serving again after the heal.
const RECOVERY: Duration = Duration::from_secs(5);

struct Partitioned {
    redis: RedisServer,
    relay: Relay,
    a: DemoNode,
    b: DemoNode,
}

/// Node A through a relay, node B directly, on one fresh Redis; `None` (SKIPPED) without
/// redis-server.
fn nodes() -> Option<Partitioned> {
    let redis = RedisServer::start()?;
    let relay = Relay::start(redis.port());
    let key = random_key();
    let lease = LEASE.as_millis().to_string();
    let env = |url: &str| {
        [
            ("REDIS_URL", url.to_owned()),
            ("SESSION_KEY", key.clone()),
            ("SESSION_LEASE_MS", lease.clone()),
        ]
    };
    let start = |name: &str, url: &str| {
        let env = env(url);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        DemoNode::start_named(name, &env)
    };
    let a = start("node-a", &relay.redis_url());
    let b = start("node-b", &redis.url());
    Some(Partitioned { redis, relay, a, b })
}

/// `incr` on `socket` until it succeeds, within `bound`; returns how long it took.
async fn until_it_writes(socket: &RawSocket, tally: &mut Tally, bound: Duration) -> Duration {
    let since = Instant::now();
    loop {
        let ack = socket.ack("incr", vec![]).await;
        let ok = ack.is_i64();
        tally.socket_ack(ack);
        if ok {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < bound,
            "no write within {bound:?}: {:?}",
            tally.errors.last()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The count Redis keeps for `user`, read on `node`.
async fn stored(node: &DemoNode, user: &User) -> i64 {
    Http::with_cookie(node.url(), &user.cookie())
        .session()
        .await["count"]
        .as_i64()
        .expect("a count")
}

/// Sends one `incr` on A that takes the lease and then sends its write into the partition:
/// every byte is 150 ms late each way, so the lease is taken by 300 ms and the write reaches
/// Redis at about 450 ms; the blackhole starts at 375 ms and holds it. `None` if the
/// machine's timing missed the window (the ack says which step the blackhole caught).
///
/// An `incr` on B starts with the blackhole: returns how long B waited for A's lease.
async fn write_into_the_partition(
    nodes: &Partitioned,
    [on_a, on_b]: [&RawSocket; 2],
    tally: &mut Tally,
) -> Option<Duration> {
    const EACH_WAY: Duration = Duration::from_millis(150);
    nodes.relay.set(Fault::Delay(EACH_WAY));
    tokio::time::sleep(EACH_WAY * 2).await; // what was in flight before is through
    let sent = Instant::now();
    let ack = tokio::spawn(on_a.emit("incr", vec![]));
    tokio::time::sleep_until((sent + EACH_WAY * 5 / 2).into()).await;
    nodes.relay.set(Fault::Blackhole);
    let blackhole = Instant::now();
    let on_b = on_b.emit("incr", vec![]);
    let b_wrote = tokio::spawn(async move { (on_b.await, blackhole.elapsed()) });
    let ack = ack.await.expect("the ack comes");
    let answered = sent.elapsed();
    let (b_ack, b_waited) = b_wrote.await.expect("B's ack comes");
    assert!(b_ack.is_i64(), "B failed while A was cut off: {b_ack}");
    tally.socket_ack(b_ack);
    assert!(
        answered < ERROR_BOUND,
        "A answered after {answered:?}: {ack}"
    );
    if ack.is_i64() {
        // Too late: the write went through before the blackhole.
        tally.socket_ack(ack);
        nodes.relay.set(Fault::None);
        return None;
    }
    let error = error_of(&ack).to_owned();
    eprintln!("A's write into the partition: {error:?} after {answered:?}");
    tally.errors.push(error.clone());
    // A store error: the write was sent and never answered. Anything else: the lease was
    // never A's (the blackhole caught the acquire).
    error.contains("store").then_some(b_waited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_in_a_partition_errors_the_other_goes_on_and_its_held_write_lands_on_nothing() {
    let Some(nodes) = nodes() else {
        return;
    };
    let (a, b) = (&nodes.a, &nodes.b);
    let mut open = Vec::new();
    open.extend(subscriptions_cross(a, b, 0).await);
    open.extend(subscriptions_cross(b, a, 2).await);

    let alice = b.login("alice").await;
    let (on_a, on_b) = (a.raw_socket_of(&alice).await, b.raw_socket_of(&alice).await);
    let http_a = Http::with_cookie_and_timeout(a.url(), &alice.cookie(), ERROR_BOUND);
    let mut tally = Tally::default();
    tally.socket_ack(on_a.ack("incr", vec![]).await);
    tally.socket_ack(on_b.ack("incr", vec![]).await);

    let mut caught = None;
    for _ in 0..5 {
        caught = write_into_the_partition(&nodes, [&on_a, &on_b], &mut tally).await;
        if caught.is_some() {
            break;
        }
        // Missed: heal and wait for A before trying again.
        nodes.relay.set(Fault::None);
        until_it_writes(&on_a, &mut tally, RECOVERY).await;
    }
    let b_waited = caught.expect("the blackhole caught A's write in one of 5 tries");

    // B: wrote once A's lease lapsed, and goes on.
    for _ in 0..10 {
        let ack = on_b.ack("incr", vec![]).await;
        assert!(ack.is_i64(), "B failed while A was cut off: {ack}");
        tally.socket_ack(ack);
    }
    let before_heal = stored(b, &alice).await;
    assert_eq!(Some(&before_heal), tally.counts.last());

    // A: errors within the bounds, on sockets and HTTP alike.
    let started = Instant::now();
    let acks = futures_util::future::join_all(burst(&on_a, 20)).await;
    for ack in acks {
        let ack = ack.expect("every ack comes");
        assert!(!ack.is_i64(), "A wrote while cut off: {ack}");
        tally.socket_ack(ack);
    }
    let burst_errors = started.elapsed();
    let started = Instant::now();
    let (status, body) = http_a.raw("GET", "/session", None).await;
    let http_error = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(
        burst_errors < ERROR_BOUND && http_error < ERROR_BOUND,
        "A's errors took {burst_errors:?} (sockets), {http_error:?} (HTTP)"
    );

    // Heal: A's held write reaches Redis now, and must change nothing.
    nodes.relay.set(Fault::None);
    let recovery = until_it_writes(&on_a, &mut tally, RECOVERY).await;
    assert!(recovery < RECOVERY, "A served again after {recovery:?}");
    let last = *tally.counts.last().unwrap();
    assert_eq!(stored(b, &alice).await, last, "a stale write landed");
    assert_eq!(
        tally.counts,
        (1..=last).collect(),
        "every count once, none lost: errors {:?}",
        tally.errors
    );
    // The acquires A sent into the partition reach Redis on heal too; each is released
    // right behind it on its connection.
    let deadline = Instant::now() + Duration::from_millis(500);
    while !nodes.redis.cli(&["KEYS", "*:lock"]).is_empty() {
        assert!(Instant::now() < deadline, "a lease was left behind");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "partitioned: A's 20 events errored within {burst_errors:?}, its HTTP 503 \
         after {http_error:?}; B waited {b_waited:?} for A's lease (lifetime {LEASE:?}); \
         A wrote again {recovery:?} after the heal",
    );

    // Pushes, broadcasts and requests cross both ways again (alice's two sockets count).
    open.extend(subscriptions_cross(a, b, 6).await);
    subscriptions_cross(b, a, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_connections_are_cut_errors_and_reconnects_by_itself_on_heal() {
    let Some(nodes) = nodes() else {
        return;
    };
    let (a, b) = (&nodes.a, &nodes.b);
    let alice = a.login("alice").await;
    let (on_a, on_b) = (a.raw_socket_of(&alice).await, b.raw_socket_of(&alice).await);
    let mut tally = Tally::default();
    tally.socket_ack(on_a.ack("incr", vec![]).await);

    nodes.relay.set(Fault::Cut);
    // fred sees its connections close; its reconnections are closed too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let ack = on_a.ack("incr", vec![]).await;
    let answered = started.elapsed();
    assert!(!ack.is_i64(), "A wrote while cut off: {ack}");
    assert!(answered < ERROR_BOUND, "A answered after {answered:?}");
    tally.socket_ack(ack);
    for _ in 0..5 {
        let ack = on_b.ack("incr", vec![]).await;
        assert!(ack.is_i64(), "B failed while A was cut off: {ack}");
        tally.socket_ack(ack);
    }

    nodes.relay.set(Fault::None);
    let recovery = until_it_writes(&on_a, &mut tally, RECOVERY).await;
    let last = *tally.counts.last().unwrap();
    assert_eq!(stored(a, &alice).await, last);
    assert_eq!(tally.counts, (1..=last).collect());
    eprintln!("cut: A's error ack after {answered:?}; A wrote again {recovery:?} after the heal");

    // The subscriber reconnected too, and subscribed again (alice's two sockets count).
    let open = subscriptions_cross(a, b, 2).await;
    subscriptions_cross(b, a, 4).await;
    drop(open);
}

//! Failover: two demo processes on a Redis that loses its master mid-burst, on a Redis Cluster
//! (3 masters, 3 replicas) and on Sentinel (master, replica, 3 sentinels), with real processes
//! and SIGKILL.
//!
//! What must hold: while the master is gone clients get errors, never a false success (every
//! count acknowledged once, none above what Redis keeps); once a replica is promoted both
//! nodes serve again by themselves within [`RECOVERY`]; and every subscription of the
//! adapter is back: a `session:gone` push, a broadcast and a request every node answers cross
//! the nodes both ways. Each run prints how long recovery took (`-- --nocapture`).

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use session_harness::{
    cross::{burst, subscriptions_cross, Tally},
    DemoNode, Http, RedisCluster, RedisSentinel, User,
};

/// The bound on recovery, from the replica's promotion to both nodes serving writes.
const RECOVERY: Duration = Duration::from_secs(5);

/// The adapter's channel every node listens on for broadcasts on `/` (socketioxide-redis's
/// default prefix).
const BROADCAST_CHANNEL: &str = "socket.io-request#/#";

/// The Redis under test.
enum Ha {
    Cluster(RedisCluster),
    Sentinel(RedisSentinel),
}

impl Ha {
    fn url(&self) -> String {
        match self {
            Ha::Cluster(cluster) => cluster.url(),
            Ha::Sentinel(sentinel) => sentinel.url(),
        }
    }

    /// The port of the master holding `key` (on Sentinel, the master).
    fn master_of(&self, key: &str) -> u16 {
        match self {
            Ha::Cluster(cluster) => cluster.master_of(key),
            Ha::Sentinel(sentinel) => sentinel.master_port(),
        }
    }

    /// The session records in Redis (bare ids: every key but the leases and turns, `{<id>}:...`).
    fn records(&self) -> Vec<String> {
        let ports: Vec<u16> = match self {
            Ha::Cluster(cluster) => cluster.live_ports(),
            Ha::Sentinel(sentinel) => vec![sentinel.master_port()],
        };
        let mut keys = BTreeSet::new();
        for port in ports {
            let found = cli(port, &["KEYS", "*"]);
            keys.extend(
                found
                    .lines()
                    .filter(|key| !key.is_empty() && !key.starts_with('{'))
                    // The users' index lives beside the records and is not one.
                    .filter(|key| !key.starts_with("session-runtime:"))
                    .map(str::to_owned),
            );
        }
        keys.into_iter().collect()
    }

    /// SIGKILL to the master on `port`.
    fn kill(&mut self, port: u16) {
        match self {
            Ha::Cluster(cluster) => cluster.kill(port),
            Ha::Sentinel(sentinel) => assert_eq!(sentinel.kill_master(), port),
        }
    }

    /// Waits for a replica's promotion after [`Ha::kill`]; returns when it was seen.
    fn wait_promoted(&mut self, key: &str, old: u16) -> Instant {
        let promoted = tokio::task::block_in_place(|| match self {
            Ha::Cluster(cluster) => cluster.wait_promoted(key),
            Ha::Sentinel(sentinel) => sentinel.wait_promoted(old),
        });
        eprintln!("promoted: 127.0.0.1:{promoted}");
        Instant::now()
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = std::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("running redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Logs a user in on `node` until its record lies on the master of the broadcast channel (on
/// Cluster; any login on Sentinel): the kill then cuts both the writes and the broadcasts.
async fn user_beside_the_broadcasts(ha: &Ha, node: &DemoNode) -> (User, String) {
    let target = ha.master_of(BROADCAST_CHANNEL);
    for attempt in 0..30 {
        let user = node.login(&format!("alice{attempt}")).await;
        let records = ha.records();
        assert_eq!(records.len(), 1, "one session at a time: {records:?}");
        let record = records[0].clone();
        if ha.master_of(&record) == target {
            return (user, record);
        }
        user.http.logout().await;
    }
    panic!("30 logins and no session on the broadcast channel's master");
}

/// `POST /incr` on every node with `user`'s cookie until each has succeeded once; returns how
/// long after `since` the last one did.
async fn until_both_write(nodes: &[&DemoNode; 2], user: &User, tally: &mut Tally) -> Duration {
    let since = Instant::now();
    let mut pending: Vec<Http> = nodes
        .iter()
        .map(|node| {
            Http::with_cookie_and_timeout(node.url(), &user.cookie(), Duration::from_secs(4))
        })
        .collect();
    while !pending.is_empty() {
        let answers = join_all(pending.iter().map(|http| http.raw("POST", "/incr", None))).await;
        let mut still = Vec::new();
        for (http, answer) in pending.into_iter().zip(answers) {
            if !tally.http_answer(answer) {
                still.push(http);
            }
        }
        pending = still;
        assert!(
            since.elapsed() < RECOVERY * 4,
            "the nodes did not serve again within {:?}: {:?}",
            RECOVERY * 4,
            tally.errors.last()
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    since.elapsed()
}

async fn master_killed_mid_burst(mut ha: Ha) {
    let [a, b] =
        DemoNode::start_many::<2>(&[("REDIS_URL", &ha.url()), ("SESSION_LEASE_MS", "1000")]);
    // Everything crosses before the failover.
    let mut open = Vec::new();
    open.extend(subscriptions_cross(&a, &b, 0).await);
    open.extend(subscriptions_cross(&b, &a, 2).await);

    let (alice, record) = user_beside_the_broadcasts(&ha, &a).await;
    let (on_a, on_b) = (a.raw_socket_of(&alice).await, b.raw_socket_of(&alice).await);
    let mut tally = Tally::default();
    tally.socket_ack(on_a.ack("incr", vec![]).await);

    let master = ha.master_of(&record);
    let acks: Vec<_> = burst(&on_a, 200)
        .into_iter()
        .chain(burst(&on_b, 200))
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    ha.kill(master);
    let killed = Instant::now();
    let promoted = ha.wait_promoted(&record, master);
    let failover = promoted - killed;
    for ack in join_all(acks).await {
        tally.socket_ack(ack.expect("every ack comes"));
    }
    eprintln!(
        "burst answered {:?} after the kill: errors {:?}",
        killed.elapsed(),
        tally.errors
    );
    let during = tally.counts.len();
    let recovery = until_both_write(&[&a, &b], &alice, &mut tally).await;
    eprintln!(
        "failover: promotion {failover:?} after the kill; both nodes wrote {recovery:?} after \
         the promotion; {during} counts acked by then, {} errors",
        tally.errors.len()
    );
    assert!(
        !tally.errors.is_empty(),
        "the kill failed nothing: too late?"
    );

    // Never a false success: every count acked is in what Redis keeps now.
    let stored = Http::with_cookie(b.url(), &alice.cookie()).session().await["count"]
        .as_i64()
        .expect("alice's count");
    let lost: Vec<i64> = tally
        .counts
        .iter()
        .copied()
        .filter(|&c| c > stored)
        .collect();
    assert!(
        lost.is_empty(),
        "acked counts lost in the failover: {lost:?} (stored {stored})"
    );
    assert!(recovery <= RECOVERY, "recovery took {recovery:?}");

    // The nodes serve as before, and count on from what they acknowledged.
    for _ in 0..5 {
        tally.socket_ack(on_a.ack("incr", vec![]).await);
        tally.socket_ack(on_b.ack("incr", vec![]).await);
    }
    let last = *tally.counts.last().unwrap();
    let stored = Http::with_cookie(a.url(), &alice.cookie()).session().await["count"]
        .as_i64()
        .unwrap();
    assert_eq!(stored, last);

    // Every subscription is back (alice's two sockets and those of the earlier rounds count).
    open.extend(subscriptions_cross(&a, &b, 6).await);
    subscriptions_cross(&b, &a, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_master_killed_mid_burst_errors_then_recovers_with_every_subscription() {
    let Some(sentinel) = RedisSentinel::start() else {
        return;
    };
    master_killed_mid_burst(Ha::Sentinel(sentinel)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_master_killed_mid_burst_errors_then_recovers_with_every_subscription() {
    let Some(cluster) = RedisCluster::start() else {
        return;
    };
    master_killed_mid_burst(Ha::Cluster(cluster)).await;
}

/// What a user of the app needs back after a failover, checked from `from` to `to`: a login
/// on `from`, an `incr` on a socket of that session on `to`, and the logout on `from` pushed
/// to that socket within 1 s. `Err` says which step failed (each is bounded, so a node that
/// hangs fails the probe instead of the test).
async fn serves_across(from: &DemoNode, to: &DemoNode, name: &str) -> Result<(), String> {
    let step = Duration::from_secs(2);
    let http = Http::with_timeout(from.url(), step);
    let body = Some(serde_json::json!({ "user": name }).to_string());
    answered_ok("login", http.try_raw("POST", "/login", body).await)?;
    let socket = tokio::time::timeout(
        step,
        session_harness::RawSocket::connect(&to.url(), "/", Some(&http.cookie_header())),
    )
    .await
    .map_err(|_| "socket: no CONNECT".to_owned())?
    .map_err(|err| format!("socket: {err:?}"))?;
    let ack = tokio::time::timeout(step, socket.ack("incr", vec![]))
        .await
        .map_err(|_| "incr: no ack".to_owned())?;
    if !ack.is_i64() {
        return Err(format!("incr: {ack}"));
    }
    answered_ok("logout", http.try_raw("POST", "/logout", None).await)?;
    match socket
        .next_event_within(session_runtime::GONE_EVENT, Duration::from_secs(1))
        .await
    {
        Some(_) => Ok(()),
        None => Err("logout not pushed within 1 s".into()),
    }
}

/// `Ok` for a 200, else what `step` got.
fn answered_ok(
    step: &str,
    answer: Result<(u16, serde_json::Value), impl std::fmt::Display>,
) -> Result<(), String> {
    match answer {
        Ok((200, _)) => Ok(()),
        Ok((status, body)) => Err(format!("{step} {status}: {body}")),
        Err(err) => Err(format!("{step}: {err}")),
    }
}

/// Polls [`serves_across`] both ways until it holds; how long after `promoted` it did.
async fn until_serving(a: &DemoNode, b: &DemoNode, promoted: Instant, round: usize) -> Duration {
    loop {
        let ab = serves_across(a, b, &format!("carol{round}")).await;
        let ba = serves_across(b, a, &format!("dave{round}")).await;
        match (ab, ba) {
            (Ok(()), Ok(())) => return promoted.elapsed(),
            (Err(err), _) | (_, Err(err)) => assert!(
                promoted.elapsed() < RECOVERY * 4,
                "not serving {:?} after the promotion: {err}",
                RECOVERY * 4
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 27: each master of a Cluster killed in turn (the first the one serving the
/// adapter's broadcast channel, every one of them a seed of `REDIS_URL`, which names only
/// the three masters as a user would): after each promotion both nodes serve logins, socket
/// events and the cross-node push again within [`RECOVERY`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_every_master_killed_in_turn_serves_again_within_5s_of_each_promotion() {
    let Some(mut cluster) = RedisCluster::start() else {
        return;
    };
    let seeds = cluster.masters();
    assert_eq!(seeds.len(), 3, "{}", cluster.nodes_view());
    let url = cluster.url_with_seeds(&seeds);
    let [a, b] = DemoNode::start_many::<2>(&[("REDIS_URL", &url), ("SESSION_LEASE_MS", "1000")]);
    until_serving(&a, &b, Instant::now(), 0).await;

    let first = cluster.master_of(BROADCAST_CHANNEL);
    let order: Vec<u16> = std::iter::once(first)
        .chain(seeds.iter().copied().filter(|&port| port != first))
        .collect();
    let mut times = Vec::new();
    for (round, master) in order.into_iter().enumerate() {
        // A key of the killed master's, to wait for its slot's new owner.
        let key = (0..)
            .map(|n| format!("probe{n}"))
            .find(|key| cluster.master_of(key) == master)
            .expect("some key hashes to each master");
        cluster.kill(master);
        let killed = Instant::now();
        let promoted_port = tokio::task::block_in_place(|| cluster.wait_promoted(&key));
        let promoted = Instant::now();
        let recovery = until_serving(&a, &b, promoted, round + 1).await;
        eprintln!(
            "killed 127.0.0.1:{master} (round {round}); 127.0.0.1:{promoted_port} promoted \
             {:?} after the kill; both nodes serving {recovery:?} after the promotion",
            promoted - killed
        );
        times.push((master, recovery));
    }
    for (master, recovery) in times {
        assert!(
            recovery <= RECOVERY,
            "after 127.0.0.1:{master} was killed, serving again took {recovery:?}"
        );
    }
}

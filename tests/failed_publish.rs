//! A push whose publish to the other nodes fails is not lost (found by the chaos run:
//! a "log out everywhere" answered just before PostgreSQL crashed left a socket of that very
//! node connected for 12 s). Both adapters publish to the other nodes before they deliver to
//! this node's sockets, and give up on both when the publish fails: the runtime then tells
//! this node's sockets itself, and publishes again until it goes out.
//!
//! Made to fail for real, with Redis's ACLs: node A connects as a user that may do anything
//! but `SPUBLISH` (the adapter's publish), node B as the default user. Alice's session has a socket on each; she logs
//! out on A. A's socket hears it at once (A delivers it itself), B's not yet (A cannot
//! publish). Once A's user may publish again, A's retry reaches B's socket.

use std::time::{Duration, Instant};

use serde_json::json;
use session_harness::{random_key, DemoNode, RedisServer};
use session_runtime::GONE_EVENT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_that_cannot_be_published_reaches_this_node_at_once_and_the_others_once_it_can() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    redis.cli(&[
        "ACL",
        "SETUSER",
        "node-a",
        "on",
        ">secret",
        "~*",
        "&*",
        "+@all",
        "-spublish",
    ]);
    let key = random_key();
    let start = |name: &str, url: String| {
        DemoNode::start_named(
            name,
            &[("REDIS_URL", url.as_str()), ("SESSION_KEY", key.as_str())],
        )
    };
    let a = start(
        "node-a",
        format!("redis://node-a:secret@127.0.0.1:{}", redis.port()),
    );
    let b = start("node-b", redis.url());
    let alice = a.login("alice").await;
    let on_a = a.raw_socket_of(&alice).await;
    let on_b = b.raw_socket_of(&alice).await;
    assert_eq!(on_b.ack("whoami", vec![]).await, json!({ "user": "alice" }));

    let sent = Instant::now();
    assert_eq!(alice.http.logout().await, json!({ "ok": true }));
    let here = on_a
        .next_event_within(GONE_EVENT, Duration::from_secs(2))
        .await;
    println!(
        "node A's own socket told {:?} after the logout",
        sent.elapsed()
    );
    assert_eq!(
        here,
        Some(json!({ "reason": "logged out" })),
        "node A's socket"
    );
    let there = on_b
        .next_event_within(GONE_EVENT, Duration::from_millis(500))
        .await;
    assert_eq!(there, None, "node B was told without a publish");

    redis.cli(&["ACL", "SETUSER", "node-a", "+spublish"]);
    let allowed = Instant::now();
    let there = on_b
        .next_event_within(GONE_EVENT, Duration::from_secs(3))
        .await;
    let took = allowed.elapsed();
    println!("node B's socket told {took:?} after node A could publish again");
    assert_eq!(
        there,
        Some(json!({ "reason": "logged out" })),
        "node B's socket"
    );
    assert!(took < Duration::from_secs(1), "told {took:?} after");
    assert_eq!(
        on_a.next_event_within(GONE_EVENT, Duration::from_millis(300))
            .await,
        None,
        "node A's socket told twice"
    );
}

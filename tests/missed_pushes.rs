//! No push lost to a listener's reconnection, on Redis and on PostgreSQL: node B reaches the
//! database through the harness's [`Relay`](session_harness::Relay), node A directly, both
//! real demo processes. While B is cut off, alice logs out on A: A's `session:gone` goes out
//! through the adapter while B's listener (Redis pub/sub, PostgreSQL `LISTEN`) is away, and is
//! lost. Once the relay heals, B's listener comes back, B checks the sessions of its own
//! sockets against the store, and pushes alice's socket gone; bob's socket, whose session
//! lives, is not pushed. Each run prints how long after the heal the push came
//! (`-- --nocapture`).

use std::time::{Duration, Instant};

use serde_json::json;
use session_harness::{
    backend::{Backend, Kind},
    relay::Fault,
};
use session_runtime::GONE_EVENT;

/// How long B's listener takes to come back after the heal (a reconnect pause of 100 ms, a
/// connection, its subscriptions again), plus the 1 s the push is promised within.
const BOUND: Duration = Duration::from_millis(1_500);

session_harness::on_both_backends!(
    a_logout_while_a_node_is_cut_off_is_pushed_once_its_listener_is_back
);

async fn a_logout_while_a_node_is_cut_off_is_pushed_once_its_listener_is_back(kind: Kind) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let (relay, a, b) = db.nodes_one_relayed(&[("RUST_LOG", "info,session_runtime=debug")]);
    let alice = a.login("alice").await;
    let bob = a.login("bob").await;
    let alice_b = b.raw_socket_of(&alice).await;
    let bob_b = b.raw_socket_of(&bob).await;
    assert_eq!(
        alice_b.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );
    assert_eq!(bob_b.ack("whoami", vec![]).await, json!({ "user": "bob" }));

    relay.set(Fault::Cut);
    // B's connections closed by the cut; give its listener the time to see it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alice.http.logout().await, json!({ "ok": true }));
    // Nothing reaches B meanwhile: the push is lost, not late.
    let meanwhile = alice_b
        .next_event_within(GONE_EVENT, Duration::from_millis(700))
        .await;
    assert_eq!(meanwhile, None, "B was pushed while cut off");

    relay.set(Fault::None);
    let healed = Instant::now();
    let gone = alice_b.next_event_within(GONE_EVENT, BOUND * 2).await;
    let took = healed.elapsed();
    println!("{kind:?}: a logout missed while cut off, pushed {took:?} after the heal");
    assert_eq!(gone, Some(json!({ "reason": "logged out" })));
    assert!(took < BOUND, "pushed {took:?} after the heal");
    assert_eq!(alice_b.ack("whoami", vec![]).await, json!({ "user": null }));
    // Bob's session lives: B's check leaves his socket alone.
    assert_eq!(bob_b.ack("whoami", vec![]).await, json!({ "user": "bob" }));
    assert!(bob_b.heard(GONE_EVENT).is_empty(), "bob was pushed");
}

//! What the cross-node tests check, shared: a [`Tally`] of what was acknowledged (each count
//! once), a [`burst`] of `incr`, and [`subscriptions_cross`]: a push, a broadcast and a request
//! every node answers, crossing from one node to another.
//!
//! ```no_run
//! use session_harness::{cross::{burst, subscriptions_cross, Tally}, DemoNode};
//!
//! # async fn scenario(a: DemoNode, b: DemoNode) {
//! let alice = a.login("alice").await;
//! let socket = a.raw_socket_of(&alice).await;
//! let mut tally = Tally::default();
//! for ack in futures_util::future::join_all(burst(&socket, 10)).await {
//!     tally.socket_ack(ack.unwrap());
//! }
//! let _open = subscriptions_cross(&a, &b, 1).await; // alice's socket counts
//! # }
//! ```

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use session_runtime::GONE_EVENT;

use crate::{error_of, DemoNode, RawSocket};

/// The counts acknowledged so far, each once, and the errors.
#[derive(Default)]
pub struct Tally {
    pub counts: BTreeSet<i64>,
    pub errors: Vec<String>,
}

impl Tally {
    /// Counts a socket's `incr` ack: a count (never seen before) or an error.
    pub fn socket_ack(&mut self, ack: Value) {
        match ack.as_i64() {
            Some(count) => assert!(self.counts.insert(count), "count {count} handed out twice"),
            None => self.errors.push(error_of(&ack).to_owned()),
        }
    }

    /// Counts a `POST /incr` answer like [`Tally::socket_ack`]; whether it succeeded.
    pub fn http_answer(&mut self, (status, body): (u16, Value)) -> bool {
        match body["count"].as_i64() {
            Some(count) if status == 200 => {
                assert!(self.counts.insert(count), "count {count} handed out twice");
                true
            }
            _ => {
                self.errors.push(format!("{status}: {body}"));
                false
            }
        }
    }
}

/// Sends `n` `incr` at once on `socket`; each ack on its own task.
pub fn burst(socket: &RawSocket, n: usize) -> Vec<tokio::task::JoinHandle<Value>> {
    (0..n)
        .map(|_| tokio::spawn(socket.emit("incr", vec![])))
        .collect()
}

/// A logout on `from` pushes `session:gone` to the session's socket on `to`; a `shout` on
/// `to` reaches a socket on `from`; `sockets` on either counts `others` + 2 (the sockets of
/// both nodes: each answers the other's request). Returns the two sockets it opened (still
/// connected, as the caller must count them).
pub async fn subscriptions_cross(from: &DemoNode, to: &DemoNode, others: i64) -> [RawSocket; 2] {
    let bob = from.login("bob").await;
    let on_to = to.raw_socket_of(&bob).await;
    let on_from = from.raw_socket_of(&bob).await;
    for (node, socket) in [(from, &on_from), (to, &on_to)] {
        // The other node's subscriptions may take a moment after a failover or a database
        // restart (its listener connects again through a pool the node's requests share). A
        // request sent before the other node listens again is lost and answered only at the
        // adapter's request timeout (5 s), so the deadline bounds when a request is sent, not
        // when its answer comes.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let sent = Instant::now();
            let seen = socket.ack("sockets", vec![]).await;
            if seen == json!(others + 2) {
                break;
            }
            assert!(
                sent < deadline,
                "`sockets` on {}: {seen}, not {}",
                node.process.name(),
                others + 2
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(
        on_to.ack("shout", vec![json!("hi")]).await,
        json!({ "ok": true })
    );
    assert_eq!(
        on_from.next_event("shout").await,
        Some(json!("hi")),
        "a broadcast from {} reached no socket on {}",
        to.process.name(),
        from.process.name()
    );
    let started = Instant::now();
    bob.http.logout().await;
    let gone = on_to.next_event(GONE_EVENT).await;
    assert_eq!(
        gone,
        Some(json!({ "reason": "logged out" })),
        "no push from {} to {}",
        from.process.name(),
        to.process.name()
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    [on_from, on_to]
}

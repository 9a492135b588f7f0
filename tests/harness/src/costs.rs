//! What socket events cost at the database, counted there (Redis's slow log, PostgreSQL's
//! `pg_stat_statements`): the round-trip suites of both databases share these steps.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use crate::{RawSocket, TIMEOUT};

/// How many events of each kind are counted.
pub const EVENTS: u64 = 20;

/// What one event of a kind costs: `(event, [(what the database counts, how many)])`.
pub type Costs<'a> = &'a [(&'a str, &'a [(&'a str, u64)])];

/// Sends [`EVENTS`] events of each kind in `costs` on `socket` (each answered without an
/// error), with the count `reset` before each kind, and asserts that `count` reaches
/// `EVENTS` times the kind's cost, exactly. `unit` names what is counted, for the output.
///
/// The count is read again until it matches or [`TIMEOUT`] passes: a lease released in the
/// background may still be on its way when the last answer arrives, and a surplus never
/// turns into the expected count.
pub async fn assert_costs(
    socket: &RawSocket,
    costs: Costs<'_>,
    unit: &str,
    mut reset: impl FnMut(),
    mut count: impl FnMut() -> BTreeMap<String, u64>,
) {
    for (event, per_event) in costs {
        reset();
        for _ in 0..EVENTS {
            let ack = socket.ack(event, vec![]).await;
            assert!(ack.get("error").is_none(), "{event}: {ack}");
        }
        let expected: BTreeMap<String, u64> = per_event
            .iter()
            .map(|(what, n)| (what.to_string(), n * EVENTS))
            .collect();
        let deadline = Instant::now() + TIMEOUT;
        let mut counted = count();
        while counted != expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            counted = count();
        }
        println!("{unit} of {EVENTS} `{event}` events: {counted:?}");
        assert_eq!(counted, expected, "{EVENTS} `{event}` events");
    }
}

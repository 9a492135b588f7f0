//! What an event costs in PostgreSQL statements, counted by the server itself
//! (`pg_stat_statements`, top-level statements only: the statements inside the lease's plpgsql
//! functions are not round trips). Each statement is one round trip once its connection has
//! prepared it (sqlx caches prepared statements per connection), and the pool checks no
//! connection before lending it (`test_before_acquire(false)`), which would add one.
//!
//! An uncontended `autosave` event that changes the session costs 2 (take the lease and read
//! the record; write the record and release the lease), one that changes nothing 2 (take and
//! read; release), and a `readonly` event 1 (PostgresStore's `SELECT`).

use std::{collections::BTreeMap, time::Duration};

use session_harness::{
    costs::{assert_costs, Costs},
    PostgresServer, RawSocket, TestServer,
};

/// Statements since the last reset, by what they do, leaving out the counting itself.
fn statements(pg: &PostgresServer) -> BTreeMap<String, u64> {
    let rows = pg.psql(
        r"SELECT regexp_replace(query, '\s+', ' ', 'g'), calls FROM pg_stat_statements
          WHERE query NOT ILIKE '%pg_stat_statements%'",
    );
    let mut counts = BTreeMap::new();
    for row in rows.lines().filter(|row| !row.is_empty()) {
        let (query, calls) = row.rsplit_once('|').expect("query|calls");
        let what = if query.contains("session_acquire") {
            "acquire"
        } else if query.contains("session_write") {
            "write"
        } else if query.to_lowercase().starts_with(" select data from")
            || query.to_lowercase().starts_with("select data from")
        {
            "load"
        } else {
            query
        };
        *counts.entry(what.to_owned()).or_default() += calls.parse::<u64>().expect("calls");
    }
    counts
}

/// `socket`'s events, warmed first (every connection of the pool has prepared the statements
/// of each), then counted against `costs` (statements per event, by kind).
async fn events_cost(pg: &PostgresServer, socket: &RawSocket, costs: Costs<'_>) {
    for _ in 0..20 {
        for (event, _) in costs {
            let ack = socket.ack(event, vec![]).await;
            assert!(ack.get("error").is_none(), "{event}: {ack}");
        }
    }
    let counter = (|| pg.reset_statements(), || statements(pg));
    assert_costs(socket, costs, "statements", counter.0, counter.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autosave_costs_two_statements_and_readonly_one() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let server = TestServer::builder()
        .postgres(&pg.url(), Duration::from_secs(5))
        .start()
        .await;
    let alice = server.login("alice").await;
    let socket = alice.raw_socket().await;
    let costs: [(&str, &[(&str, u64)]); 3] = [
        ("incr", &[("acquire", 1), ("write", 1)]),
        ("peek", &[("acquire", 1), ("write", 1)]),
        ("whoami", &[("load", 1)]),
    ];
    events_cost(&pg, &socket, &costs).await;
}

/// The demo keeps its users' index in the database: events that leave the user as it is cost
/// what they cost without users; a login's statements are printed (`-- --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_users_on_events_cost_the_same() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let [node] = session_harness::DemoNode::start_many(&[("DATABASE_URL", &pg.url())]);
    let warm = node.login("warm").await;
    drop(warm);
    pg.reset_statements();
    let alice = node.login("alice").await;
    let login = statements(&pg);
    let total: u64 = login.values().sum();
    println!("statements of a login with users on: {total} {login:?}");
    let socket = node.raw_socket_of(&alice).await;
    let costs: [(&str, &[(&str, u64)]); 2] = [
        ("incr", &[("acquire", 1), ("write", 1)]),
        ("whoami", &[("load", 1)]),
    ];
    events_cost(&pg, &socket, &costs).await;
}

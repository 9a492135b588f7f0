//! Two demo processes on one database serve the same users as one, on Redis (`REDIS_URL`)
//! and on PostgreSQL (`DATABASE_URL`) alike: a login on one node is a socket's session on
//! the other, every write is seen by the next read on either, a burst of increments from
//! sockets and HTTP on both nodes hands out every count once, and logouts and broadcasts cross
//! nodes. Each case runs on both (`<case>::redis`, `<case>::postgres`).

use std::collections::BTreeSet;

use futures_util::future::join_all;
use serde_json::{json, Value};
use session_harness::{
    backend::{Backend, Kind},
    cross, DemoNode, Http,
};

/// Two nodes on a fresh database, or `None` (SKIPPED) without its server.
fn two_nodes(kind: Kind) -> Option<(Backend, [DemoNode; 2])> {
    let backend = Backend::start(kind)?;
    let nodes = backend.nodes(&[]);
    Some((backend, nodes))
}

session_harness::on_both_backends!(
    a_login_on_one_node_is_the_session_of_a_socket_on_the_other,
    a_write_on_either_node_is_seen_by_the_next_read_on_the_other,
    a_burst_from_sockets_and_http_on_both_nodes_hands_out_every_count_once,
    logouts_and_broadcasts_cross_both_ways,
);

async fn a_login_on_one_node_is_the_session_of_a_socket_on_the_other(kind: Kind) {
    let Some((_db, [a, b])) = two_nodes(kind) else {
        return;
    };
    let alice = a.login("alice").await;
    let on_b = b.raw_socket_of(&alice).await;
    assert_eq!(on_b.ack("whoami", vec![]).await, json!({ "user": "alice" }));
}

async fn a_write_on_either_node_is_seen_by_the_next_read_on_the_other(kind: Kind) {
    let Some((_db, [a, b])) = two_nodes(kind) else {
        return;
    };
    let alice = a.login("alice").await;
    let (socket_a, socket_b) = (a.raw_socket_of(&alice).await, b.raw_socket_of(&alice).await);
    let (http_a, http_b) = (
        Http::with_cookie(a.url(), &alice.cookie()),
        Http::with_cookie(b.url(), &alice.cookie()),
    );

    assert_eq!(socket_a.ack("incr", vec![]).await, json!(1));
    assert_eq!(http_b.session().await["count"], json!(1));
    assert_eq!(http_b.incr().await, 2);
    assert_eq!(socket_a.ack("incr", vec![]).await, json!(3));
    assert_eq!(socket_b.ack("incr", vec![]).await, json!(4));
    assert_eq!(http_a.session().await["count"], json!(4));

    let bob = json!({ "user": "bob" });
    assert_eq!(
        socket_b.ack("login", vec![bob]).await,
        json!({ "ok": true })
    );
    assert_eq!(http_a.session().await["user"], json!("bob"));
    assert_eq!(
        socket_a.ack("whoami", vec![]).await,
        json!({ "user": "bob" })
    );
    assert_eq!(socket_a.ack("logout", vec![]).await, json!({ "ok": true }));
    assert_eq!(http_b.session().await["user"], Value::Null);
}

async fn a_burst_from_sockets_and_http_on_both_nodes_hands_out_every_count_once(kind: Kind) {
    let Some((_db, [a, b])) = two_nodes(kind) else {
        return;
    };
    let alice = a.login("alice").await;
    const PER_SOCKET: usize = 50;
    const PER_NODE_HTTP: usize = 20;
    let sockets = [
        a.raw_socket_of(&alice).await,
        a.raw_socket_of(&alice).await,
        b.raw_socket_of(&alice).await,
        b.raw_socket_of(&alice).await,
    ];
    // Every event in flight at once, then every HTTP increment at once.
    let socket_acks: Vec<_> = sockets
        .iter()
        .flat_map(|socket| (0..PER_SOCKET).map(|_| socket.emit("incr", vec![])))
        .collect();
    let http_acks = [a.url(), b.url()].into_iter().flat_map(|url| {
        let http = Http::with_cookie(url, &alice.cookie());
        (0..PER_NODE_HTTP).map(move |_| {
            let http = http.clone();
            async move { http.raw("POST", "/incr", None).await }
        })
    });
    let (socket_acks, http_acks) = tokio::join!(
        join_all(socket_acks),
        join_all(http_acks.collect::<Vec<_>>())
    );

    let mut counts = BTreeSet::new();
    let mut failures = Vec::new();
    for ack in socket_acks {
        match ack.as_i64() {
            Some(count) => assert!(counts.insert(count), "count {count} handed out twice"),
            None => failures.push(ack),
        }
    }
    for (status, body) in http_acks {
        match body["count"].as_i64() {
            Some(count) if status == 200 => {
                assert!(counts.insert(count), "count {count} handed out twice")
            }
            _ => failures.push(json!({ "status": status, "body": body })),
        }
    }
    assert!(failures.is_empty(), "failed increments: {failures:?}");
    let total = (4 * PER_SOCKET + 2 * PER_NODE_HTTP) as i64;
    assert_eq!(counts, (1..=total).collect(), "every count, once");
    let on_b = Http::with_cookie(b.url(), &alice.cookie());
    assert_eq!(on_b.session().await["count"], json!(total));
}

/// A logout on either node pushes `session:gone` to the other within 1 s; a broadcast
/// reaches the other node's sockets; `sockets` counts both nodes' sockets.
async fn logouts_and_broadcasts_cross_both_ways(kind: Kind) {
    let Some((_db, [a, b])) = two_nodes(kind) else {
        return;
    };
    let _open = cross::subscriptions_cross(&a, &b, 0).await;
    cross::subscriptions_cross(&b, &a, 2).await;
}

#[test]
fn with_postgres_and_no_session_key_the_demo_refuses_to_start_and_says_how_to_make_one() {
    refuses_without_a_session_key("DATABASE_URL", "postgres://127.0.0.1:1/none");
}

#[test]
fn with_redis_and_postgres_both_the_demo_refuses_to_start() {
    let mut command = std::process::Command::new(DemoNode::binary());
    command
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env("PORT", "0")
        .env("SESSION_KEY", session_harness::random_key());
    let mut demo = session_harness::Process::spawn("demo", &mut command);
    let said = demo.wait_for_line(session_harness::TIMEOUT, |line| {
        line.contains("DATABASE_URL").then(|| line.to_owned())
    });
    assert!(said.contains("both"), "{said}");
    let status = demo
        .wait_exit(session_harness::TIMEOUT)
        .expect("the demo exits");
    assert!(!status.success());
}

#[test]
fn with_redis_and_no_session_key_the_demo_refuses_to_start_and_says_how_to_make_one() {
    refuses_without_a_session_key("REDIS_URL", "redis://127.0.0.1:1");
}

fn refuses_without_a_session_key(var: &str, url: &str) {
    let mut command = std::process::Command::new(DemoNode::binary());
    command
        .env(var, url)
        .env("PORT", "0")
        .env_remove("SESSION_KEY");
    let mut demo = session_harness::Process::spawn("demo", &mut command);
    let said = demo.wait_for_line(session_harness::TIMEOUT, |line| {
        line.contains("SESSION_KEY").then(|| line.to_owned())
    });
    assert!(said.contains("openssl rand -hex 64"), "{said}");
    assert!(said.contains(var), "{said}");
    let status = demo
        .wait_exit(session_harness::TIMEOUT)
        .expect("the demo exits");
    assert!(!status.success());
    assert!(!demo.log().contains("listening on"), "{}", demo.log());
}

//! Every session of one user, on one demo process and on two (Redis and PostgreSQL, as
//! `tests/nodes.rs` runs both): `GET /session/devices` counts them and their sockets exactly,
//! `POST /logout/others` and `POST /logout/everywhere` (and the socket event
//! `logout_everywhere`) end them and push `session:gone` `{"reason": "logged out everywhere"}`
//! to every socket of theirs on every node within 1 s, another user is untouched, and a node
//! paused holding a lease across "log out everywhere" has its late write refused.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{json, Value};
use session_harness::{
    backend::{Backend, Kind},
    error_of, DemoNode, Http, RawSocket, User,
};
use session_runtime::GONE_EVENT;

const EVERYWHERE: &str = "logged out everywhere";

session_harness::on_one_node_and_both_backends!(
    log_out_others_and_everywhere_reach_every_socket_of_the_user_and_no_other,
    counts_stay_exact_after_rotations_logouts_and_user_changes,
    counts_stay_exact_after_expiries,
    a_hundred_sessions_on_two_nodes_are_all_pushed,
);

/// Two nodes on a fresh database of `kind`, or one node twice (no database): `None`
/// (SKIPPED) without the database's server.
struct Nodes {
    _db: Option<Backend>,
    nodes: Vec<DemoNode>,
}

impl Nodes {
    fn start(kind: Option<Kind>, env: &[(&str, &str)]) -> Option<Self> {
        Some(match kind {
            None => Self {
                _db: None,
                nodes: vec![DemoNode::start(env)],
            },
            Some(kind) => {
                let db = Backend::start(kind)?;
                let [a, b] = db.nodes(env);
                Self {
                    _db: Some(db),
                    nodes: vec![a, b],
                }
            }
        })
    }

    /// Node A, and node B (A again on one node).
    fn pair(&self) -> (&DemoNode, &DemoNode) {
        (&self.nodes[0], self.nodes.last().expect("a node"))
    }
}

async fn devices(user: &User) -> Value {
    let (status, body) = user.http.raw("GET", "/session/devices", None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits for `session:gone` on each of `sockets`, every one within 1 s of `since`.
async fn all_pushed(sockets: &[&RawSocket], since: Instant, reason: &str) {
    for (n, socket) in sockets.iter().enumerate() {
        let gone = socket
            .next_event_within(
                GONE_EVENT,
                Duration::from_secs(1).saturating_sub(since.elapsed()),
            )
            .await;
        assert_eq!(gone, Some(json!({ "reason": reason })), "socket {n}");
    }
    assert!(
        since.elapsed() < Duration::from_secs(1),
        "{:?}",
        since.elapsed()
    );
}

/// Posts `path` (`/logout/others` or `/logout/everywhere`) with `user`'s cookie to `node`:
/// answered `{"ended": ended}`, and every one of `told` is pushed.
async fn log_out(node: &DemoNode, user: &User, path: &str, ended: usize, told: &[&RawSocket]) {
    let started = Instant::now();
    let (status, body) = Http::with_cookie(node.url(), &user.cookie())
        .raw("POST", path, None)
        .await;
    assert_eq!((status, body), (200, json!({ "ended": ended })), "{path}");
    all_pushed(told, started, EVERYWHERE).await;
}

/// None of `sockets` has heard `session:gone`.
fn none_pushed(sockets: &[&RawSocket]) {
    for (n, socket) in sockets.iter().enumerate() {
        assert!(socket.heard(GONE_EVENT).is_empty(), "socket {n} was pushed");
    }
}

/// Alice logged in three times (three cookies) with sockets on both nodes; bob once.
/// "Log out others" from one pushes the other two within 1 s and leaves the caller working;
/// "log out everywhere" ends all; bob is untouched throughout.
async fn log_out_others_and_everywhere_reach_every_socket_of_the_user_and_no_other(
    kind: Option<Kind>,
) {
    let Some(nodes) = Nodes::start(kind, &[]) else {
        return;
    };
    let (a, b) = nodes.pair();
    let (one, two, three) = (
        a.login("alice").await,
        b.login("alice").await,
        a.login("alice").await,
    );
    let bob = b.login("bob").await;
    let one_a = a.raw_socket_of(&one).await;
    let one_b = b.raw_socket_of(&one).await;
    let two_b = b.raw_socket_of(&two).await;
    let three_a = a.raw_socket_of(&three).await;
    let three_b = b.raw_socket_of(&three).await;
    let bob_a = a.raw_socket_of(&bob).await;

    assert_eq!(devices(&one).await, json!({ "sessions": 3, "sockets": 5 }));
    assert_eq!(devices(&bob).await, json!({ "sessions": 1, "sockets": 1 }));

    log_out(b, &one, "/logout/others", 2, &[&two_b, &three_a, &three_b]).await;
    none_pushed(&[&one_a, &one_b, &bob_a]);
    // The caller's session goes on, on both nodes; the others' records are gone.
    assert_eq!(one_a.ack("incr", vec![]).await, json!(1));
    assert_eq!(one_b.ack("incr", vec![]).await, json!(2));
    assert!(error_of(&two_b.ack("incr", vec![]).await).contains("gone"));
    assert_eq!(two.http.session().await["user"], Value::Null);
    assert_eq!(three.http.session().await["user"], Value::Null);
    // Ended sockets left alice's room: only the caller's count.
    assert_eq!(devices(&one).await, json!({ "sessions": 1, "sockets": 2 }));

    let again = b.login("alice").await;
    let again_a = a.raw_socket_of(&again).await;
    assert_eq!(
        devices(&again).await,
        json!({ "sessions": 2, "sockets": 3 })
    );
    log_out(
        a,
        &again,
        "/logout/everywhere",
        2,
        &[&one_a, &one_b, &again_a],
    )
    .await;
    none_pushed(&[&bob_a]);
    for user in [&one, &again] {
        let (status, body) = user.http.raw("GET", "/session/devices", None).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(user.http.session().await["user"], Value::Null);
    }

    // The socket event does the same; bob is still untouched.
    let four = a.login("alice").await;
    let (four_a, four_b) = (a.raw_socket_of(&four).await, b.raw_socket_of(&four).await);
    let five = b.login("alice").await;
    let five_a = a.raw_socket_of(&five).await;
    let started = Instant::now();
    assert_eq!(
        four_b.ack("logout_everywhere", vec![]).await,
        json!({ "ended": 2 })
    );
    all_pushed(&[&four_a, &four_b, &five_a], started, EVERYWHERE).await;
    assert_eq!(
        four_b.ack("logout_everywhere", vec![]).await,
        json!({ "error": "not logged in" })
    );
    none_pushed(&[&bob_a]);
    assert_eq!(bob_a.ack("whoami", vec![]).await, json!({ "user": "bob" }));
    assert_eq!(bob_a.ack("incr", vec![]).await, json!(1));
    assert_eq!(devices(&bob).await, json!({ "sessions": 1, "sockets": 1 }));
}

/// "Log out everywhere" of a user with 100 sessions, a socket each, alternating between the
/// nodes: every socket is pushed. The burst of 200 adapter messages it makes once
/// overflowed the subscriber's 32-message queue on the other node, and a push was lost.
async fn a_hundred_sessions_on_two_nodes_are_all_pushed(kind: Option<Kind>) {
    const SESSIONS: usize = 100;
    let Some(nodes) = Nodes::start(kind, &[]) else {
        return;
    };
    let (a, b) = nodes.pair();
    let on = |i: usize| if i.is_multiple_of(2) { a } else { b };
    let users = join_all((0..SESSIONS).map(|i| on(i).login("carol"))).await;
    let sockets = join_all(
        users
            .iter()
            .enumerate()
            .map(|(i, u)| on(i).raw_socket_of(u)),
    )
    .await;
    // Each socket answers an event once it is in its rooms.
    join_all(sockets.iter().map(|s| s.ack("whoami", vec![]))).await;
    let (status, body) = users[0].http.raw("POST", "/logout/everywhere", None).await;
    assert_eq!((status, body), (200, json!({ "ended": SESSIONS })));
    // Loss, not speed, is the point here (`users_bench` times it): a generous bound.
    let pushed = join_all(
        sockets
            .iter()
            .map(|s| s.next_event_within(GONE_EVENT, Duration::from_secs(5))),
    )
    .await;
    let missed: Vec<_> = (0..SESSIONS)
        .filter(|&i| pushed[i] != Some(json!({ "reason": EVERYWHERE })))
        .collect();
    assert!(missed.is_empty(), "sockets never pushed: {missed:?}");
}

/// A rotation (`POST /login` again), a logout over HTTP, and a change of user over a socket
/// each leave the counts exact: the old id, the ended session and the session that moved to
/// another user no longer count for alice, and their sockets left her room.
async fn counts_stay_exact_after_rotations_logouts_and_user_changes(kind: Option<Kind>) {
    let Some(nodes) = Nodes::start(kind, &[]) else {
        return;
    };
    let (a, b) = nodes.pair();
    let [one, two, three] = [
        a.login("alice").await,
        b.login("alice").await,
        a.login("alice").await,
    ];
    let one_b = b.raw_socket_of(&one).await;
    let two_a = a.raw_socket_of(&two).await;
    let three_b = b.raw_socket_of(&three).await;
    assert_eq!(devices(&one).await, json!({ "sessions": 3, "sockets": 3 }));

    // A rotation: a new id for `one`; its socket, on the old id, is pushed and left the room.
    one.http.login("alice").await;
    assert_eq!(
        one_b.next_event(GONE_EVENT).await,
        Some(json!({ "reason": "rotated" }))
    );
    assert_eq!(devices(&one).await, json!({ "sessions": 3, "sockets": 2 }));
    // A logout over HTTP.
    two.http.logout().await;
    assert_eq!(
        two_a.next_event(GONE_EVENT).await,
        Some(json!({ "reason": "logged out" }))
    );
    assert_eq!(devices(&one).await, json!({ "sessions": 2, "sockets": 1 }));
    // A socket's login as another user moves the session and its sockets to bob.
    let as_bob = json!({ "user": "bob" });
    assert_eq!(
        three_b.ack("login", vec![as_bob]).await,
        json!({ "ok": true })
    );
    assert_eq!(devices(&one).await, json!({ "sessions": 1, "sockets": 0 }));
    assert_eq!(
        devices(&three).await,
        json!({ "sessions": 1, "sockets": 1 })
    );
    // And a socket's logout takes it out of bob's too.
    assert_eq!(three_b.ack("logout", vec![]).await, json!({ "ok": true }));
    let bob = a.login("bob").await;
    assert_eq!(devices(&bob).await, json!({ "sessions": 1, "sockets": 0 }));
    // None of the sessions that left alice is ended by her "log out everywhere".
    let (_, ended) = one.http.raw("POST", "/logout/everywhere", None).await;
    assert_eq!(ended, json!({ "ended": 1 }));
    assert_eq!(three_b.ack("incr", vec![]).await, json!(1));
    assert_eq!(devices(&bob).await, json!({ "sessions": 1, "sockets": 0 }));
}

/// Sessions that expire (1 s idle) no longer count, on Redis (the record's own expiry) as
/// anywhere; one kept busy still does.
async fn counts_stay_exact_after_expiries(kind: Option<Kind>) {
    let Some(nodes) = Nodes::start(kind, &[("SESSION_IDLE_SECS", "2")]) else {
        return;
    };
    let (a, b) = nodes.pair();
    let kept = a.login("alice").await;
    let idle = join_all([b.login("alice"), a.login("alice"), b.login("alice")]).await;
    assert_eq!(devices(&kept).await["sessions"], json!(4));
    let until = Instant::now() + Duration::from_millis(3500);
    while Instant::now() < until {
        kept.http.incr().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(devices(&kept).await, json!({ "sessions": 1, "sockets": 0 }));
    for user in &idle {
        assert_eq!(user.http.session().await["user"], Value::Null);
    }
}

session_harness::on_both_backends!(
    a_node_paused_holding_a_lease_across_log_out_everywhere_has_its_late_write_refused
);

/// Node A is paused while it holds alice's lease with a write under way; "log out everywhere"
/// on B ends her sessions at once (it does not wait for the lease) and pushes; when A wakes up,
/// its late write is refused and the record stays gone.
async fn a_node_paused_holding_a_lease_across_log_out_everywhere_has_its_late_write_refused(
    kind: Kind,
) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let [a, b] = db.nodes(&[]);
    let alice = b.login("alice").await;
    let other = a.login("alice").await;
    let on_a = a.raw_socket_of(&alice).await;
    let other_b = b.raw_socket_of(&other).await;
    for round in 0..10 {
        let acks: Vec<_> = (0..200)
            .map(|_| tokio::spawn(on_a.emit("incr", vec![])))
            .collect();
        let held = pause_holding_the_lease(&a, &db).await;
        if !held {
            continue;
        }
        let started = Instant::now();
        let (status, body) = Http::with_cookie(b.url(), &other.cookie())
            .raw("POST", "/logout/everywhere", None)
            .await;
        assert_eq!(
            (status, body),
            (200, json!({ "ended": 2 })),
            "round {round}"
        );
        all_pushed(&[&other_b], started, EVERYWHERE).await;
        a.process.resume();
        let acks: Vec<Value> = join_all(acks)
            .await
            .into_iter()
            .map(|ack| ack.expect("an answer of A's"))
            .collect();
        let errors: Vec<&str> = acks.iter().filter(|a| !a.is_i64()).map(error_of).collect();
        assert!(
            errors.iter().any(|e| e.contains("lapsed")),
            "round {round}: A's late write was not refused: {errors:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        for node in [&a, &b] {
            let seen = Http::with_cookie(node.url(), &alice.cookie())
                .session()
                .await;
            assert_eq!(seen, json!({ "user": null, "count": 0 }), "round {round}");
        }
        return;
    }
    panic!("in 10 rounds, A never held the lease when paused");
}

/// Pauses `node` while it holds a lease with a transaction under way (still held 50 ms into
/// the pause); `false`, resumed, if it never did.
async fn pause_holding_the_lease(node: &DemoNode, db: &Backend) -> bool {
    for attempt in 0..50 {
        tokio::time::sleep(Duration::from_millis(5 + attempt % 7)).await;
        node.process.pause();
        tokio::time::sleep(Duration::from_millis(50)).await;
        if db.lease_held() {
            return true;
        }
        node.process.resume();
    }
    false
}

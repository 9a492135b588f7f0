//! The whole life of a session reaches its sockets: whatever ends a session — `flush` or
//! `cycle_id` through tower-sessions' own `Session` in a plain route, `flush` in a socket
//! handler, or the record's expiry — pushes `session:gone` to every socket of that session
//! within 1 s, and to no other session's socket. Socket events keep an `OnInactivity` session
//! alive (`KeepAlive`), under the session's lock: a touch never brings back a session that
//! ended, and the socket is told `session:refresh` so the page can renew its cookie.

use std::time::Duration;

use serde_json::{json, Value};
use session_harness::{Http, ServerBuilder, SocketClient, TestServer, Transport, User};
use session_runtime::{KeepAlive, GONE_EVENT, REFRESH_EVENT};
use tokio::time::{sleep, sleep_until, timeout_at, Instant};
use tower_sessions::{cookie::time::OffsetDateTime, session::Id, Expiry};

/// The second namespace the sessions are used in.
const ADMIN: &str = "/admin";

/// The protocol's promise: a session's end reaches its sockets within this.
const WITHIN: Duration = Duration::from_secs(1);

/// How long a socket that must hear nothing is listened to.
const QUIET: Duration = Duration::from_millis(500);

/// The inactivity window of the expiry tests.
const WINDOW: Duration = Duration::from_secs(2);

fn inactivity(window: Duration) -> Expiry {
    Expiry::OnInactivity(window.try_into().expect("a short window"))
}

/// The monotonic instant of wall-clock instant `at` (now if it has passed).
fn instant_of(at: OffsetDateTime) -> Instant {
    let left = (at - OffsetDateTime::now_utc()).try_into();
    Instant::now() + left.unwrap_or(Duration::ZERO)
}

/// When the record of `id` expires, as the store holds it now.
async fn expiry_of(server: &TestServer, id: Id) -> OffsetDateTime {
    server
        .store
        .record(id)
        .await
        .expect("the session has a record")
        .expiry_date
}

/// What a socket heard of `session:gone`, checked: exactly one push, `"expired"`, no earlier
/// than `expiry` and within [`WITHIN`] of it. Returns how late it came.
fn expired_in_time(
    heard: Vec<(Value, OffsetDateTime)>,
    expiry: OffsetDateTime,
    what: &str,
) -> Duration {
    assert_eq!(heard.len(), 1, "{what}: {heard:?}");
    let (reason, at) = &heard[0];
    assert_eq!(*reason, json!({ "reason": "expired" }), "{what}");
    let late = *at - expiry;
    assert!(
        !late.is_negative(),
        "{what}: pushed {late} before the expiry"
    );
    let late: Duration = late.try_into().unwrap();
    assert!(late <= WITHIN, "{what}: pushed {late:?} after the expiry");
    println!("{what}: `expired` arrived {late:?} after the expiry");
    late
}

/// A server whose sessions expire after [`WINDOW`] of inactivity (configured further by
/// `with`), and alice logged in there: her client, session id and cookie, as [`login`].
async fn alice_in_window(
    with: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> (TestServer, User, Id, String) {
    let server = with(TestServer::builder().expiry(inactivity(WINDOW)))
        .start()
        .await;
    let (alice, id, cookie) = login(&server, "alice").await;
    (server, alice, id, cookie)
}

/// Logs `name` in and returns the client, its session id and its cookie (kept: with
/// `OnInactivity` the jar forgets the cookie after one window, whatever the store holds).
async fn login(server: &TestServer, name: &str) -> (User, Id, String) {
    let user = server.login(name).await;
    let id = user.id().await;
    let cookie = user.cookie();
    (user, id, cookie)
}

/// The server of the races between touches and a logout: a long window, aged by hand each
/// round ([`due_login`]) so that every touch finds the session due; a slow store, so that the
/// touch and the logout overlap.
async fn race_server() -> TestServer {
    TestServer::builder()
        .expiry(inactivity(Duration::from_secs(60)))
        .latency(Duration::from_millis(3))
        .start()
        .await
}

/// [`login`] of alice, the record aged to be due for a touch in the race tests' 60 s window
/// (30 s left).
async fn due_login(server: &TestServer) -> (User, Id, String) {
    let (alice, id, cookie) = login(server, "alice").await;
    let aged = OffsetDateTime::now_utc() + Duration::from_secs(30);
    server.store.set_expiry_date(id, aged).await;
    (alice, id, cookie)
}

/// Three `touch`es 3 ms apart racing alice's HTTP logout: they start from 10 ms before it to
/// 10 ms after it, as `round` says. What each `touch` returned.
async fn touches_around_logout<T>(
    round: u64,
    alice: &User,
    mut touch: impl AsyncFnMut() -> T,
) -> Vec<T> {
    let offset = (round % 11) as i64 * 2 - 10;
    let delay = |ms: i64| Duration::from_millis(ms.max(0) as u64);
    let touches = async {
        sleep(delay(offset)).await;
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(touch().await);
            sleep(Duration::from_millis(3)).await;
        }
        out
    };
    let logout = async {
        sleep(delay(-offset)).await;
        alice.http.logout().await
    };
    tokio::join!(touches, logout).0
}

/// The logged-out record of `id` stays gone once a touch that waited for the lock is done.
async fn not_back(server: &TestServer, id: Id, round: u64, what: &str) {
    sleep(Duration::from_millis(100)).await;
    assert!(
        server.store.record(id).await.is_none(),
        "round {round}: {what} brought the session back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_routes_flush_and_cycle_id_push_to_every_socket_of_that_session_only() {
    for (path, reason) in [
        ("/plain/logout", "logged out"),
        ("/plain/rotate", "rotated"),
    ] {
        let server = TestServer::builder().namespace(ADMIN).start().await;
        let (alice, id, _) = login(&server, "alice").await;
        let sockets = [
            alice.socket_on("/", Transport::Websocket).await,
            alice.socket_on(ADMIN, Transport::Polling).await,
        ];
        let bob = server.login("bob").await;
        let bobs = bob.socket(Transport::Websocket).await;

        let deadline = Instant::now() + WITHIN;
        let (status, body, _) = alice.http.post_for_cookie(path).await;
        assert_eq!((status, body), (200, json!({ "ok": true })), "{path}");
        SocketClient::all_told_gone(&sockets, deadline, reason, path).await;
        let heard = bobs.next_event_within(GONE_EVENT, QUIET).await;
        assert_eq!(heard, None, "{path}: bob heard of alice's session");

        assert!(
            server.store.record(id).await.is_none(),
            "{path}: old record"
        );
        for socket in &sockets {
            assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": null }));
            assert_eq!(socket.heard(GONE_EVENT).len(), 1, "{path}: pushed twice");
        }
        assert_eq!(bobs.ack("whoami", vec![]).await, json!({ "user": "bob" }));
        // A rotation keeps the data under the new id (the jar has the new cookie).
        let user = if path == "/plain/rotate" {
            json!("alice")
        } else {
            Value::Null
        };
        assert_eq!(alice.http.session().await["user"], user, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_handlers_flush_pushes_logged_out_to_every_socket_of_the_session() {
    let server = TestServer::builder().namespace(ADMIN).start().await;
    let (alice, id, _) = login(&server, "alice").await;
    let deleting = alice.raw_socket().await;
    let other = alice.socket_on(ADMIN, Transport::Polling).await;
    let bob = server.login("bob").await.raw_socket().await;

    let deadline = Instant::now() + WITHIN;
    assert_eq!(deleting.ack("delete", vec![]).await, json!({ "ok": true }));
    let gone = timeout_at(deadline, other.next_event(GONE_EVENT)).await;
    let gone = gone.expect("the other socket heard nothing within 1 s");
    assert_eq!(gone, Some(json!({ "reason": "logged out" })));
    let own = timeout_at(deadline, deleting.next_event(GONE_EVENT)).await;
    assert_eq!(own.ok().flatten(), Some(json!({ "reason": "logged out" })));

    assert_eq!(bob.next_event_within(GONE_EVENT, QUIET).await, None);
    assert!(server.store.record(id).await.is_none());
    assert_eq!(other.ack("whoami", vec![]).await, json!({ "user": null }));
    assert_eq!(bob.ack("whoami", vec![]).await, json!({ "user": "bob" }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_inactivity_idle_sockets_hear_expired_within_a_second_and_an_active_session_does_not() {
    let (server, alice, alice_id, _) = alice_in_window(|server| server.namespace(ADMIN)).await;
    let idle = [
        alice.socket_on("/", Transport::Websocket).await,
        alice.socket_on(ADMIN, Transport::Polling).await,
    ];
    let (bob, _, bob_cookie) = login(&server, "bob").await;
    let bobs = bob.raw_socket().await;
    // Nothing of alice's moved her record since the login: this is her last activity + window.
    let expiry = expiry_of(&server, alice_id).await;

    // Bob keeps talking (readonly events, every third of a window) past alice's expiry.
    let until = instant_of(expiry) + WITHIN + QUIET;
    while Instant::now() < until {
        assert_eq!(bobs.ack("whoami", vec![]).await, json!({ "user": "bob" }));
        sleep(WINDOW / 3).await;
    }

    for (socket, what) in idle.iter().zip(["websocket on /", "polling on /admin"]) {
        expired_in_time(socket.heard(GONE_EVENT), expiry, what);
        assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": null }));
    }
    assert!(server.store.record(alice_id).await.is_none());
    assert!(
        bobs.heard(GONE_EVENT).is_empty(),
        "bob's active session was pushed"
    );
    let again = server.http_with_cookie(&bob_cookie);
    assert_eq!(again.session().await["user"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_date_time_idle_sockets_hear_expired_within_a_second_of_that_instant() {
    let at = OffsetDateTime::now_utc() + Duration::from_secs(4);
    let server = TestServer::builder()
        .namespace(ADMIN)
        .expiry(Expiry::AtDateTime(at))
        .start()
        .await;
    let (alice, id, _) = login(&server, "alice").await;
    let sockets = [
        alice.socket_on("/", Transport::Websocket).await,
        alice.socket_on(ADMIN, Transport::Polling).await,
    ];
    let raw = alice.raw_socket().await;
    assert_eq!(expiry_of(&server, id).await, at);
    // Active right until the end: an event does not move a fixed expiry.
    assert_eq!(raw.ack("whoami", vec![]).await, json!({ "user": "alice" }));

    sleep_until(instant_of(at) + WITHIN + QUIET).await;
    for (socket, what) in sockets.iter().zip(["websocket on /", "polling on /admin"]) {
        expired_in_time(socket.heard(GONE_EVENT), at, what);
    }
    expired_in_time(raw.heard(GONE_EVENT), at, "raw websocket on /");
    assert!(server.store.record(id).await.is_none());
}

/// A server whose sessions end after a `WINDOW` idle, alice logged in: her session's id,
/// cookie and a websocket of it.
async fn idle_alice() -> (TestServer, Id, String, SocketClient) {
    let (server, alice, id, cookie) = alice_in_window(|server| server).await;
    let socket = alice.socket(Transport::Websocket).await;
    (server, id, cookie, socket)
}

/// Then silence: the session of `id`, touched last less than a window ago, ends one window
/// after that touch; `socket` of it hears `expired` in time, and `http` (its cookie) finds no
/// user any more.
async fn silence_ends_it(
    server: &TestServer,
    id: Id,
    socket: &SocketClient,
    http: &Http,
    what: &str,
) {
    let expiry = expiry_of(server, id).await;
    let left: Duration = (expiry - OffsetDateTime::now_utc()).try_into().unwrap();
    assert!(left <= WINDOW, "{what}: expiry {left:?} away");
    sleep_until(instant_of(expiry) + WITHIN + QUIET).await;
    expired_in_time(socket.heard(GONE_EVENT), expiry, what);
    assert_eq!(http.session().await["user"], Value::Null, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_events_keep_the_session_alive_and_silence_then_ends_it() {
    let (server, id, cookie, socket) = idle_alice().await;

    // Three windows of readonly events, one every third of a window.
    let until = Instant::now() + WINDOW * 3;
    while Instant::now() < until {
        assert_eq!(
            socket.ack("whoami", vec![]).await,
            json!({ "user": "alice" })
        );
        sleep(WINDOW / 3).await;
    }
    assert!(
        socket.heard(GONE_EVENT).is_empty(),
        "pushed gone while active"
    );
    let http = server.http_with_cookie(&cookie);
    assert_eq!(
        http.session().await["user"],
        "alice",
        "the events kept nothing alive"
    );
    assert!(!socket.heard(REFRESH_EVENT).is_empty(), "no touch was told");

    silence_ends_it(&server, id, &socket, &http, "after the last event").await;
}

/// The protocol's "any HTTP request is activity": a page that only reads its session over
/// HTTP, never writing it, stays signed in, and each touch re-sends the cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_http_requests_keep_the_session_alive_and_silence_then_ends_it() {
    let (server, id, cookie, socket) = idle_alice().await;
    let http = server.http_with_cookie(&cookie);
    let first = expiry_of(&server, id).await;

    // Three windows of `GET /session`, one every half window.
    let until = Instant::now() + WINDOW * 3;
    let mut cookies = 0;
    while Instant::now() < until {
        let (status, body, set_cookie) = http.get_for_cookie("/session").await;
        assert_eq!((status, &body["user"]), (200, &json!("alice")), "{body}");
        if let Some(set_cookie) = set_cookie {
            assert!(
                set_cookie.starts_with(&cookie),
                "{set_cookie} is not {cookie}"
            );
            assert!(set_cookie.contains("Max-Age=2"), "{set_cookie}");
            cookies += 1;
        }
        sleep(WINDOW / 2).await;
    }
    assert!(
        socket.heard(GONE_EVENT).is_empty(),
        "pushed gone while active over HTTP"
    );
    let moved = expiry_of(&server, id).await;
    assert!(
        moved > first + WINDOW * 2,
        "the requests did not extend it: {moved}"
    );
    println!("{cookies} of 6 read-only requests touched the session and sent the cookie");
    assert!(cookies >= 4, "{cookies} touches in 3 windows");

    silence_ends_it(&server, id, &socket, &http, "after the last GET").await;
}

/// A read-only request's touch racing an HTTP logout of the same session, as the socket
/// events' below: the touch takes the session's lock and reloads, so it never writes the
/// record back, and a logged-out cookie gets no new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_requests_touch_racing_a_logout_never_brings_the_session_back() {
    let server = race_server().await;
    let mut touched = 0;
    for round in 0..40u64 {
        let (alice, id, cookie) = due_login(&server).await;
        let reader = server.http_with_cookie(&cookie);
        let answers = touches_around_logout(round, &alice, async || {
            reader.get_for_cookie("/session").await
        })
        .await;
        for (status, body, set_cookie) in answers {
            assert_eq!(status, 200, "{body}");
            match &body["user"] {
                user if user == "alice" => touched += usize::from(set_cookie.is_some()),
                // tower-sessions removes the cookie of a session it no longer finds.
                user => assert!(
                    user.is_null() && set_cookie.as_ref().is_none_or(|c| c.contains("Max-Age=0")),
                    "{body} {set_cookie:?}"
                ),
            }
        }
        not_back(&server, id, round, "a read").await;
        let after = server.http_with_cookie(&cookie).session().await;
        assert_eq!(after["user"], Value::Null, "round {round}");
    }
    println!("{touched} reads touched the session before its logout");
    assert!(touched > 0, "no read touched the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touch_racing_an_http_logout_never_brings_the_session_back() {
    let server = race_server().await;
    let mut ended = Vec::new();
    let mut refreshed = 0;
    for round in 0..40u64 {
        let (alice, id, cookie) = due_login(&server).await;
        let socket = alice.raw_socket().await;
        // Sent, not awaited: the acks come in while the next events go out.
        let acks =
            touches_around_logout(round, &alice, async || socket.emit("whoami", vec![])).await;
        for ack in futures_util::future::join_all(acks).await {
            assert!(ack["user"] == "alice" || ack["user"].is_null(), "{ack}");
        }
        not_back(&server, id, round, "a touch").await;
        refreshed += socket.heard(REFRESH_EVENT).len();
        ended.push((id, cookie));
    }
    sleep(Duration::from_secs(1)).await;
    for (round, (id, cookie)) in ended.iter().enumerate() {
        assert!(
            server.store.record(*id).await.is_none(),
            "round {round}: back later"
        );
        let session = server.http_with_cookie(cookie).session().await;
        assert_eq!(session["user"], Value::Null, "round {round}");
    }
    println!("{refreshed} of 40 rounds touched the session before the logout");
    // Otherwise no touch ran near a logout, and the rounds proved nothing.
    assert!(refreshed > 0, "no event touched the session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_touch_sends_session_refresh_and_the_refresh_route_resends_the_cookie() {
    let window = Duration::from_secs(60);
    let server = TestServer::builder()
        .expiry(inactivity(window))
        .start()
        .await;
    let (alice, id, cookie) = login(&server, "alice").await;
    let socket = alice.socket(Transport::Polling).await;

    // Not due yet (fresh from the login): no touch, no refresh.
    assert_eq!(
        socket.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );
    assert_eq!(socket.next_event_within(REFRESH_EVENT, QUIET).await, None);

    let aged = OffsetDateTime::now_utc() + Duration::from_secs(30);
    server.store.set_expiry_date(id, aged).await;
    assert_eq!(
        socket.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );
    let refresh = socket
        .next_event_within(REFRESH_EVENT, Duration::from_secs(5))
        .await;
    assert!(refresh.is_some(), "no `session:refresh` after a touch");
    let moved = expiry_of(&server, id).await;
    assert!(
        moved > aged + Duration::from_secs(25),
        "the touch did not extend: {moved}"
    );
    // Just touched: the next event has nothing to do.
    assert_eq!(
        socket.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );
    assert_eq!(socket.next_event_within(REFRESH_EVENT, QUIET).await, None);

    // The page's answer: the cookie again, and the record extended.
    server.store.set_expiry_date(id, aged).await;
    let (status, body, set_cookie) = alice.http.post_for_cookie("/session/refresh").await;
    assert_eq!((status, body), (200, json!({ "refreshed": true })));
    let set_cookie = set_cookie.expect("no Set-Cookie on a refresh");
    assert!(
        set_cookie.starts_with(&cookie),
        "{set_cookie} is not {cookie}"
    );
    assert!(set_cookie.contains("Max-Age="), "{set_cookie}");
    assert!(expiry_of(&server, id).await > aged + Duration::from_secs(25));

    // Without a session: nothing to refresh, no cookie, no record.
    let records = server.store.record_count().await;
    let (status, body, set_cookie) = server.http().post_for_cookie("/session/refresh").await;
    assert_eq!((status, body), (200, json!({ "refreshed": false })));
    assert_eq!(set_cookie, None);
    // With the cookie of a session that ended: the same, and nothing comes back.
    alice.http.logout().await;
    let stale = Http::with_cookie(server.url(), &cookie);
    let (status, body, _) = stale.post_for_cookie("/session/refresh").await;
    assert_eq!((status, body), (200, json!({ "refreshed": false })));
    assert!(server.store.record(id).await.is_none());
    assert_eq!(server.store.record_count().await, records - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keep_alive_off_readonly_events_do_not_extend_the_session() {
    let (server, alice, id, _) = alice_in_window(|server| server.keep_alive(KeepAlive::Off)).await;
    let socket = alice.raw_socket().await;
    let expiry = expiry_of(&server, id).await;

    let until = instant_of(expiry) + WITHIN + QUIET;
    while Instant::now() < until {
        let ack = socket.ack("whoami", vec![]).await;
        assert!(ack["user"] == "alice" || ack["user"].is_null(), "{ack}");
        if server.store.record(id).await.is_some() {
            assert_eq!(expiry_of(&server, id).await, expiry, "an event extended it");
        }
        sleep(WINDOW / 3).await;
    }
    expired_in_time(socket.heard(GONE_EVENT), expiry, "KeepAlive::Off");
    assert!(socket.heard(REFRESH_EVENT).is_empty());
    assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": null }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timer_that_finds_the_record_extended_elsewhere_waits_for_the_new_expiry() {
    let (server, alice, id, _) = alice_in_window(|server| server).await;
    let socket = alice.socket(Transport::Websocket).await;
    let first = expiry_of(&server, id).await;
    // Another node's save: the store holds a later expiry, and this node's timer was not told.
    let later = first + WINDOW;
    server.store.set_expiry_date(id, later).await;

    sleep_until(instant_of(first) + WITHIN + QUIET).await;
    assert!(
        socket.heard(GONE_EVENT).is_empty(),
        "pushed at the stale expiry"
    );
    assert_eq!(
        socket.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );
    // The event above may have extended it again (KeepAlive): wait for what the store says.
    let expiry = expiry_of(&server, id).await;
    assert!(expiry >= later);
    sleep_until(instant_of(expiry) + WITHIN + QUIET).await;
    expired_in_time(socket.heard(GONE_EVENT), expiry, "after a re-arm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_keep_alive_writes_only_autosave_events_touch_and_they_fold_it_into_their_save() {
    let server = TestServer::builder()
        .expiry(inactivity(Duration::from_secs(60)))
        .keep_alive(KeepAlive::Writes)
        .start()
        .await;
    let (alice, id, _) = login(&server, "alice").await;
    let socket = alice.raw_socket().await;
    let aged = OffsetDateTime::now_utc() + Duration::from_secs(30);
    server.store.set_expiry_date(id, aged).await;

    assert_eq!(
        socket.ack("whoami", vec![]).await,
        json!({ "user": "alice" })
    );
    assert_eq!(socket.next_event_within(REFRESH_EVENT, QUIET).await, None);
    assert_eq!(
        expiry_of(&server, id).await,
        aged,
        "a readonly event touched"
    );

    // `peek` changes nothing, but is due: its transaction saves the new expiry itself.
    let saves = server.store.saves();
    assert_eq!(socket.ack("peek", vec![]).await, json!(0));
    assert_eq!(server.store.saves(), saves + 1, "one save, the event's own");
    assert!(expiry_of(&server, id).await > aged + Duration::from_secs(25));
    let refresh = socket
        .next_event_within(REFRESH_EVENT, Duration::from_secs(5))
        .await;
    assert!(refresh.is_some(), "no `session:refresh` after the touch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_gone_disconnect_an_expired_sessions_sockets_are_disconnected() {
    let (server, alice, id, _) =
        alice_in_window(|server| server.on_gone(session_runtime::OnGone::disconnect())).await;
    let socket = alice.socket(Transport::Polling).await;
    let expiry = expiry_of(&server, id).await;

    sleep_until(instant_of(expiry) + WITHIN + QUIET).await;
    expired_in_time(socket.heard(GONE_EVENT), expiry, "OnGone::Disconnect");
    assert!(
        socket.next_event("close").await.is_some(),
        "still connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_sockets_left_and_came_back_is_still_watched() {
    let (server, alice, id, _) = alice_in_window(|server| server).await;
    let expiry = expiry_of(&server, id).await;
    // Its last socket leaves (the timer goes with it), then a new one comes.
    let first = alice.socket(Transport::Websocket).await;
    first.disconnect().await;
    sleep(Duration::from_millis(200)).await;
    let again = alice.socket(Transport::Polling).await;

    sleep_until(instant_of(expiry) + WITHIN + QUIET).await;
    expired_in_time(again.heard(GONE_EVENT), expiry, "a socket that came back");
}

//! An idle session lasts its window, to within 50 ms, on Redis and on PostgreSQL: real demo
//! nodes with `SESSION_IDLE_SECS=2`, logins made half-way through a wall-clock second (where
//! an expiry kept in whole seconds would end the session 500 ms early). One session is still
//! there 100 ms before its end; the other's socket hears `expired` within 50 ms of its end,
//! and the session is gone then. Each run prints the figures (`-- --nocapture`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::join;
use serde_json::{json, Value};
use session_harness::backend::{Backend, Kind};
use session_runtime::GONE_EVENT;

const WINDOW: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_millis(50);

session_harness::on_both_backends!(an_idle_session_ends_within_50_ms_of_its_window);

/// Sleeps until the wall clock is `at_ms` milliseconds into a second.
async fn until_millisecond(at_ms: u32) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = now.subsec_millis();
    let wait = (1_000 + at_ms - into) % 1_000;
    tokio::time::sleep(Duration::from_millis(wait.into())).await;
}

async fn an_idle_session_ends_within_50_ms_of_its_window(kind: Kind) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let [node] = db.nodes(&[("SESSION_IDLE_SECS", "2")]);
    for round in 0..3 {
        until_millisecond(500).await;
        let sent = Instant::now();
        let (alive, idle) = join(node.login("alice"), node.login("bob")).await;
        let received = Instant::now();
        let socket = node.raw_socket_of(&idle).await;

        // Alice's session is there until the end of its window: 100 ms before, a read sees her.
        tokio::time::sleep_until((received + WINDOW - Duration::from_millis(100)).into()).await;
        assert_eq!(
            alive.http.session().await["user"],
            json!("alice"),
            "{kind:?} round {round}: alice's session ended early, {:?} after the login",
            sent.elapsed()
        );

        // Bob's ends with its window: `expired` within 50 ms of it, and the session is gone.
        let gone = socket
            .next_event_within(GONE_EVENT, WINDOW + Duration::from_secs(1))
            .await;
        let at = Instant::now();
        assert_eq!(gone, Some(json!({ "reason": "expired" })), "{kind:?}");
        let earliest = sent + WINDOW - SLACK;
        let latest = received + WINDOW + SLACK;
        println!(
            "{kind:?} round {round}: `expired` {:?} after the login was sent ({:?} to answer)",
            at - sent,
            received - sent
        );
        assert!(
            earliest <= at && at <= latest,
            "{kind:?} round {round}: `expired` {:?} after the login was sent, not within \
             {WINDOW:?} ± {SLACK:?} (the login took {:?})",
            at - sent,
            received - sent
        );
        assert_eq!(idle.http.session().await["user"], Value::Null, "{kind:?}");
    }
}

/// Records stay tower-sessions-redis-store's: each store loads what the other wrote, and the
/// key of one this crate wrote expires at the record's own millisecond, where
/// tower-sessions-redis-store's ends at the start of its second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_records_load_either_way_and_ours_expire_to_the_millisecond() {
    use session_runtime::redis::{tower_sessions_redis_store::RedisStore, RedisSessions};
    use tower_sessions::{
        cookie::time::{Duration as TimeDuration, OffsetDateTime},
        session::{Id, Record},
        SessionStore,
    };

    let Some(redis) = session_harness::RedisServer::start() else {
        return;
    };
    let sessions = RedisSessions::connect(&redis.url()).await.unwrap();
    let ours = sessions.store();
    let theirs = RedisStore::new(sessions.pool().clone());
    let record = |name: &str| {
        let expiry = OffsetDateTime::now_utc() + TimeDuration::seconds(60);
        // Half-way through a second, so whole seconds would differ from the instant.
        let expiry = expiry.replace_millisecond(500).unwrap();
        Record {
            id: Id::default(),
            data: [("user".to_owned(), json!(name))].into(),
            expiry_date: expiry,
        }
    };
    let expire_time = |id: Id| -> i64 {
        redis
            .cli(&["PEXPIRETIME", &id.to_string()])
            .parse()
            .unwrap()
    };
    let millis = |at: OffsetDateTime| (at.unix_timestamp_nanos() / 1_000_000) as i64;

    let mut mine = record("alice");
    ours.create(&mut mine).await.unwrap();
    assert_eq!(theirs.load(&mine.id).await.unwrap(), Some(mine.clone()));
    assert_eq!(expire_time(mine.id), millis(mine.expiry_date));
    mine.expiry_date += TimeDuration::milliseconds(250);
    ours.save(&mine).await.unwrap();
    assert_eq!(theirs.load(&mine.id).await.unwrap(), Some(mine.clone()));
    assert_eq!(expire_time(mine.id), millis(mine.expiry_date));

    let mut written = record("bob");
    theirs.create(&mut written).await.unwrap();
    assert_eq!(ours.load(&written.id).await.unwrap(), Some(written.clone()));
    assert_eq!(
        expire_time(written.id),
        written.expiry_date.unix_timestamp() * 1_000,
        "tower-sessions-redis-store writes whole seconds"
    );
    // A save of ours over theirs keeps the encoding and makes the expiry exact.
    ours.save(&written).await.unwrap();
    assert_eq!(
        theirs.load(&written.id).await.unwrap(),
        Some(written.clone())
    );
    assert_eq!(expire_time(written.id), millis(written.expiry_date));
}

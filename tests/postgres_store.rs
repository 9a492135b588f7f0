//! The PostgreSQL store against a real server: its records are tower-sessions-sqlx-store's
//! own (an app moves from `PostgresStore` to `PostgresSessions` and back without logging
//! anyone out), a plain save never brings back a deleted session (PostgresStore's upsert
//! would), and the cleanup task removes expired records and lapsed leases.

use std::time::{Duration, Instant};

use serde_json::json;
use session_harness::{PostgresServer, TIMEOUT};
use session_runtime::postgres::{tower_sessions_sqlx_store::PostgresStore, PostgresSessions};
use tower_sessions::{
    cookie::time::{Duration as Span, OffsetDateTime},
    session::{Id, Record},
    SessionStore,
};

fn record(count: i64) -> Record {
    Record {
        id: Id::default(),
        data: [("count".to_owned(), json!(count))].into_iter().collect(),
        expiry_date: OffsetDateTime::now_utc() + Span::hours(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_move_between_postgres_store_and_ours_both_ways() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let ours = PostgresSessions::connect(&pg.url()).await.expect("connect");
    let theirs = PostgresStore::new(ours.pool().clone());

    let mut before = record(1);
    theirs.create(&mut before).await.unwrap();
    assert_eq!(
        ours.store().load(&before.id).await.unwrap(),
        Some(before.clone())
    );

    let mut after = record(2);
    ours.store().create(&mut after).await.unwrap();
    after.data.insert("count".into(), json!(3));
    ours.store().save(&after).await.unwrap();
    assert_eq!(theirs.load(&after.id).await.unwrap(), Some(after.clone()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_after_a_delete_brings_nothing_back() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let ours = PostgresSessions::connect(&pg.url()).await.expect("connect");
    let store = ours.store();
    let mut loaded = record(1);
    store.create(&mut loaded).await.unwrap();
    // A request read the session; a logout elsewhere deletes it; the request then saves.
    store.delete(&loaded.id).await.unwrap();
    store.save(&loaded).await.unwrap();
    assert_eq!(store.load(&loaded.id).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cleanup_removes_expired_records_and_lapsed_leases_only() {
    let Some(pg) = PostgresServer::start() else {
        return;
    };
    let ours = PostgresSessions::connect(&pg.url())
        .await
        .expect("connect")
        .with_cleanup(Duration::from_millis(200));
    let mut live = record(1);
    ours.store().create(&mut live).await.unwrap();
    pg.psql(
        r#"INSERT INTO "tower_sessions"."session" VALUES ('old', '\x80', now() - interval '1 s');
           INSERT INTO "tower_sessions"."session_lease" VALUES
               ('lapsed', 't1', now() - interval '1 s'),
               ('held', 't2', now() + interval '1 hour')"#,
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = pg.psql(
            r#"SELECT (SELECT string_agg(id, ',' ORDER BY id) FROM "tower_sessions"."session")
                   || ' ' || (SELECT string_agg(id, ',' ORDER BY id)
                              FROM "tower_sessions"."session_lease")"#,
        );
        if left == format!("{} held", live.id) {
            break;
        }
        assert!(Instant::now() < deadline, "left: {left}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

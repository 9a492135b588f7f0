//! The index of users' sessions holds exactly the live sessions under 10 000 sessions' churn
//! (logins, rotations, changes of user, logouts and expiries), on Redis and on PostgreSQL,
//! measured against a model of what each client did (seeded, so a failure replays).
//!
//! Two phases, on two demo nodes sharing the store: 3 000 sessions churn on a node with a 3 s
//! idle window and then idle until they expire (on Redis the records vanish by their own TTL,
//! leaving their index entries behind); 7 000 more churn on a node with the default window
//! and stay live. Then:
//! - before any read, the stored index holds exactly the live sessions plus the entries of
//!   the expired ones that were still logged in: every logout, rotation and change of user
//!   removed its entry (red with the removal taken out);
//! - `GET /session/devices` of every user counts exactly that user's live sessions;
//! - after those reads, the stored index holds exactly the live sessions (reads removed the
//!   entries of expired records).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures_util::{stream, StreamExt as _};
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use serde_json::json;
use session_harness::{
    backend::{Backend, Kind},
    Http,
};

const USERS: usize = 100;
const EXPIRING: usize = 3_000;
const LIVE: usize = 7_000;
const EXPIRING_IDLE_SECS: u64 = 3;
const AT_ONCE: usize = 32;

session_harness::on_both_backends!(the_index_is_exact_under_10000_sessions_of_churn);

/// One client's life: where it ended, and its cookie then.
struct Client {
    user: Option<String>,
    cookie: String,
}

/// `POST path` with `cookie` on the shared client: the cookie the client holds afterwards (a
/// login rotates it). One client for all: building one per session (each loads its TLS roots)
/// cost more than the server's work.
async fn post(
    client: &reqwest::Client,
    url: &str,
    path: &str,
    cookie: &str,
    body: Option<serde_json::Value>,
) -> String {
    let mut request = client.post(format!("{url}{path}"));
    if !cookie.is_empty() {
        request = request.header(reqwest::header::COOKIE, cookie);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("HTTP request failed");
    let status = response.status();
    let set = response
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .map(|v| v.to_str().expect("an ASCII header").to_owned());
    let _ = response.bytes().await;
    assert!(status.is_success(), "{path} answered {status}");
    match set {
        Some(set) => set.split(';').next().unwrap_or_default().to_owned(),
        None => cookie.to_owned(),
    }
}

async fn login(client: &reqwest::Client, url: &str, cookie: &str, user: &str) -> String {
    post(client, url, "/login", cookie, Some(json!({ "user": user }))).await
}

/// Logs in as a random user, then rotates, changes user, logs out or does nothing.
async fn churn(client: reqwest::Client, url: String, seed: u64) -> Client {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut user = format!("u{}", rng.gen_range(0..USERS));
    let mut cookie = login(&client, &url, "", &user).await;
    let user = match rng.gen_range(0..100) {
        // A rotation: a new id, the same user.
        0..25 => {
            cookie = login(&client, &url, &cookie, &user).await;
            Some(user)
        }
        // A change of user (and a rotation).
        25..40 => {
            user = format!("u{}", rng.gen_range(0..USERS));
            cookie = login(&client, &url, &cookie, &user).await;
            Some(user)
        }
        40..60 => {
            post(&client, &url, "/logout", &cookie, None).await;
            None
        }
        _ => Some(user),
    };
    Client { user, cookie }
}

async fn phase(url: &str, seeds: std::ops::Range<u64>) -> Vec<Client> {
    let client = reqwest::Client::new();
    stream::iter(seeds)
        .map(|seed| churn(client.clone(), url.to_owned(), seed))
        .buffer_unordered(AT_ONCE)
        .collect()
        .await
}

/// Every session id in the stored index, over all users.
fn stored(db: &Backend) -> usize {
    let counted = match db {
        Backend::Redis(redis) => redis.cli(&[
            "EVAL",
            "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
             n = n + redis.call('ZCARD', k) end return n",
            "0",
            "session-runtime:users:*",
        ]),
        Backend::Postgres(pg) => pg.psql(r#"SELECT count(*) FROM "tower_sessions"."session_user""#),
    };
    counted
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("not a count: {counted}"))
}

async fn the_index_is_exact_under_10000_sessions_of_churn(kind: Kind) {
    let Some(db) = Backend::start(kind) else {
        return;
    };
    let seed: u64 = std::env::var("USERS_EXACT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(24);
    println!("seed {seed} (USERS_EXACT_SEED replays it)");
    // Two nodes on one store: the first sessions live on a short idle window, the rest on
    // the demo's default (minutes), so that the churn may take as long as it takes.
    // One key for both: the index names users by a keyed hash.
    let key = session_harness::random_key();
    let [short] = db.nodes(&[
        ("SESSION_KEY", &key),
        ("SESSION_IDLE_SECS", &EXPIRING_IDLE_SECS.to_string()),
    ]);
    let [long] = db.nodes(&[("SESSION_KEY", &key)]);
    let base = seed * 1_000_000;

    let started = Instant::now();
    let expiring = phase(&short.url(), base..base + EXPIRING as u64).await;
    let expiring_done = Instant::now();
    let live = phase(
        &long.url(),
        base + EXPIRING as u64..base + (EXPIRING + LIVE) as u64,
    )
    .await;
    let churned = started.elapsed();
    let expired_at = expiring_done + Duration::from_millis(EXPIRING_IDLE_SECS * 1000 + 1500);
    tokio::time::sleep_until(expired_at.into()).await;
    let url = long.url();

    let mut by_user: HashMap<&str, Vec<&str>> = HashMap::new();
    for client in &live {
        if let Some(user) = &client.user {
            by_user.entry(user).or_default().push(&client.cookie);
        }
    }
    let live_total: usize = by_user.values().map(Vec::len).sum();
    let expired_logged_in = expiring.iter().filter(|c| c.user.is_some()).count();
    let before = stored(&db);
    println!(
        "{kind:?}: churned {} sessions in {churned:?}; live {live_total}, expired while logged in \
         {expired_logged_in}; stored entries before any read {before}",
        EXPIRING + LIVE
    );
    assert_eq!(
        before,
        live_total + expired_logged_in,
        "the index kept entries of ended sessions"
    );
    assert_eq!(
        by_user.len(),
        USERS,
        "every user has a live session (seed {seed})"
    );

    for (user, cookies) in &by_user {
        let http = Http::with_cookie(url.clone(), cookies[0]);
        let (status, body) = http.raw("GET", "/session/devices", None).await;
        assert_eq!(status, 200, "{user}: {body}");
        assert_eq!(
            body["sessions"],
            json!(cookies.len()),
            "{user}'s live sessions (seed {seed})"
        );
    }
    let after = stored(&db);
    println!("{kind:?}: stored entries after one read per user {after}");
    assert_eq!(after, live_total, "reads left entries of expired records");
    drop((short, long));
}

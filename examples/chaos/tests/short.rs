//! The short chaos run of `cargo test`: 45 s of faults on Redis Sentinel and on PostgreSQL,
//! a new seed each time (printed; `CHAOS_SEED` replays one), green only without anomalies.

use std::{env, time::Duration};

use session_chaos::{run, Config};
use session_harness::backend::Kind;

/// One run at a time: two at once on a 2-core machine would measure the machine.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn short(kind: Kind) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let seed = env::var("CHAOS_SEED")
        .ok()
        .map(|seed| seed.parse().expect("`CHAOS_SEED` is a number"))
        .unwrap_or_else(rand::random);
    let Some(report) = run(Config::new(kind, seed, Duration::from_secs(45))).await else {
        return; // SKIPPED: no database here
    };
    println!("{report}");
    if !report.verdict.anomalies.is_empty() {
        panic!(
            "{report}\n{}\nreplay with CHAOS_SEED={seed}",
            report.logs.as_deref().unwrap_or_default()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_sentinel() {
    short(Kind::Redis).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres() {
    short(Kind::Postgres).await
}

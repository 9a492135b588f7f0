//! "Log out everywhere", timed: a user with `--sessions` sessions (100), one socket each,
//! alternating between two demo nodes on one store (Redis, then PostgreSQL: the harness's
//! own servers), ends them all with `POST /logout/everywhere`; the figure is the time from
//! sending the request to the last socket's `session:gone`, over `--rounds` rounds (20).
//!
//! ```text
//! cargo run --release -p session-bench --bin users_bench -- --rounds 20 --out results.jsonl
//! ```
//!
//! The demo is `LOGIN_LOGOUT_BIN` (run.sh builds it in release), else built by the harness.
//! Prints one line per store with the median and p99 in milliseconds, and appends
//! `{"kind":"users", ...}` to `--out` for the report.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use serde_json::json;
use session_harness::{
    backend::{Backend, Kind},
    RawSocket, User,
};

struct Opts {
    rounds: usize,
    sessions: usize,
    out: Option<String>,
}

fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts {
        rounds: 20,
        sessions: 100,
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--rounds" => opts.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--sessions" => {
                opts.sessions = value()?.parse().map_err(|e| format!("--sessions: {e}"))?
            }
            "--out" => opts.out = Some(value()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if opts.rounds == 0 || opts.sessions < 2 {
        return Err("--rounds must be at least 1 and --sessions at least 2".into());
    }
    Ok(opts)
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// One round: `sessions` logins of one user, a socket each, then the timed logout.
async fn round(urls: &[String; 2], user: &str, sessions: usize) -> Duration {
    let users = join_all((0..sessions).map(|i| User::login(urls[i % 2].clone(), user))).await;
    let sockets = join_all(users.iter().enumerate().map(|(i, user)| async move {
        RawSocket::connect(&urls[i % 2], "/", Some(&user.cookie()))
            .await
            .unwrap_or_else(|err| panic!("socket {i}: {err:?}"))
    }))
    .await;
    // Every socket is in its rooms once it answers an event.
    join_all(sockets.iter().map(|s| s.ack("whoami", vec![]))).await;
    let started = Instant::now();
    let (status, body) = users[0].http.raw("POST", "/logout/everywhere", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ended"], json!(sessions), "{body}");
    let arrivals = join_all(sockets.iter().enumerate().map(|(i, s)| async move {
        s.next_event(session_runtime::GONE_EVENT)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "socket {i} (node {}) never pushed gone: heard {:?}",
                    i % 2,
                    s.heard("disconnect")
                )
            });
        started.elapsed()
    }))
    .await;
    arrivals.into_iter().max().unwrap_or_default()
}

async fn measure(kind: Kind, opts: &Opts) -> Option<serde_json::Value> {
    let db = Backend::start(kind)?;
    let nodes: [_; 2] = db.nodes(&[]);
    let urls = [nodes[0].url(), nodes[1].url()];
    // Warm: connections up, scripts loaded.
    round(&urls, "warm", 4).await;
    let mut took = Vec::with_capacity(opts.rounds);
    for r in 0..opts.rounds {
        let last = round(&urls, &format!("user{r}"), opts.sessions).await;
        took.push(last.as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    let median = quantile(&took, 0.5);
    let p99 = quantile(&took, 0.99);
    println!(
        "{kind:?}: log out everywhere, {} sessions on 2 nodes, last socket pushed: median {median:.1} ms, p99 {p99:.1} ms ({} rounds)",
        opts.sessions, opts.rounds
    );
    drop(nodes);
    Some(json!({
        "kind": "users",
        "store": format!("{kind:?}").to_lowercase(),
        "nodes": 2,
        "sessions": opts.sessions,
        "rounds": opts.rounds,
        "last_push_ms": { "median": median, "p99": p99, "all": took },
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let opts = match parse_args() {
        Ok(opts) => opts,
        Err(err) => {
            eprintln!("users_bench: {err}");
            std::process::exit(2);
        }
    };
    let mut rows = Vec::new();
    for kind in [Kind::Redis, Kind::Postgres] {
        match measure(kind, &opts).await {
            Some(row) => rows.push(row),
            None => eprintln!("users_bench: {kind:?} skipped (not installed)"),
        }
    }
    if let Some(out) = &opts.out {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .unwrap_or_else(|err| panic!("{out}: {err}"));
        for row in rows {
            writeln!(file, "{row}").expect("writing the results");
        }
    }
}

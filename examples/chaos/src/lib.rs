//! The chaos run: three demo nodes (`examples/login_logout.rs`) on a Redis Sentinel setup
//! (master, replica, three sentinels), or on one PostgreSQL, driven by clients that log in,
//! increment over sockets and HTTP, read, rotate their ids, log out here, elsewhere and
//! everywhere, and leave sessions idle until they expire, while a nemesis injects faults
//! from a seeded schedule: nodes paused (SIGSTOP) past their leases and killed (SIGKILL) and
//! started again, the database paused, the Redis master killed (a failover), a node cut off
//! from PostgreSQL by its relay, PostgreSQL crashed and started again. Every operation is
//! recorded with its outcome (ok, error, unknown); afterwards [`check()`] reads the whole
//! history, as Jepsen's checkers do.
//!
//! A crate of its own, beside `examples/bench/`: `cargo test` runs its short run
//! (`tests/short.rs`, 45 s of faults a database); the long one is a command:
//!
//! ```text
//! CHAOS_BACKEND=postgres CHAOS_SECS=600 CHAOS_SEED=7 cargo run -p session-chaos
//! ```
//!
//! A seed replays its schedule of faults and each client's choices (the machine decides the
//! timing). The run's printed [`Report`] names the seed.
//!
//! ```no_run
//! use std::time::Duration;
//! use session_chaos::{run, Config};
//! use session_harness::backend::Kind;
//!
//! # async fn chaos() {
//! let config = Config::new(Kind::Postgres, 7, Duration::from_secs(45));
//! if let Some(report) = run(config).await {
//!     println!("{report}");
//!     assert!(report.verdict.anomalies.is_empty());
//! }
//! # }
//! ```

pub mod check;
pub mod client;
pub mod cluster;
pub mod history;
pub mod schedule;

use std::{
    collections::BTreeMap,
    fmt,
    panic::{self, AssertUnwindSafe},
    sync::{atomic::Ordering, mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use session_harness::{backend::Kind, RawSocket};

pub use check::{check, Verdict};
use client::{Client, World, PATIENCE};
use cluster::{Cluster, Outage};
use history::{End, History, Outcome};
use schedule::{schedule, Fault, FaultKind};

/// The nodes of a run.
pub const NODES: usize = 3;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Config {
    pub kind: Kind,
    pub seed: u64,
    /// How long faults are injected; the clients go on 3 s after the last one is healed.
    pub chaos: Duration,
    /// Clients, each a device of user `i % users`.
    pub clients: usize,
    pub users: usize,
    /// `SESSION_IDLE_SECS` of the nodes.
    pub idle_secs: u64,
    /// `SESSION_LEASE_MS` of the nodes: shorter than most node pauses, so that paused nodes'
    /// late writes meet the fence.
    pub lease_ms: u64,
}

impl Config {
    /// 9 clients of 3 users, sessions idle for 3 s expire, leases of 500 ms.
    pub fn new(kind: Kind, seed: u64, chaos: Duration) -> Self {
        Self {
            kind,
            seed,
            chaos,
            clients: 9,
            users: 3,
            idle_secs: 3,
            lease_ms: 500,
        }
    }
}

/// What a run did and what the checker found.
pub struct Report {
    pub config: Config,
    pub faults: Vec<Fault>,
    pub outages: Vec<Outage>,
    pub ops: BTreeMap<(&'static str, Outcome), usize>,
    /// Session lives by how they ended.
    pub lives: BTreeMap<&'static str, usize>,
    pub verdict: Verdict,
    /// The nodes' logs, kept when there are anomalies.
    pub logs: Option<String>,
}

impl Report {
    /// The run's figures as one JSON object (`"kind": "chaos"`), as the benchmark's
    /// `results.jsonl` holds them: `bench_report` writes the report's chaos section from it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut faults: BTreeMap<String, usize> = BTreeMap::new();
        for fault in &self.faults {
            *faults.entry(fault.kind.to_string()).or_default() += 1;
        }
        let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
        for ((_, outcome), n) in &self.ops {
            *outcomes.entry(outcome.to_string()).or_default() += n;
        }
        let verdict = &self.verdict;
        serde_json::json!({
            "kind": "chaos",
            "database": match self.config.kind {
                Kind::Redis => "redis",
                Kind::Postgres => "postgres",
            },
            "seed": self.config.seed,
            "chaos_s": self.config.chaos.as_secs(),
            "nodes": NODES,
            "clients": self.config.clients,
            "users": self.config.users,
            "idle_s": self.config.idle_secs,
            "lease_ms": self.config.lease_ms,
            "faults": self.faults.len(),
            "faults_by_kind": faults,
            "operations": self.ops.values().sum::<usize>(),
            "operations_by_outcome": outcomes,
            "lives": self.lives.values().sum::<usize>(),
            "lives_counted": verdict.counted,
            "increments_checked": verdict.increments,
            "sockets_told": verdict.sockets_judged,
            "anomalies": verdict.anomalies,
        })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.config;
        let database = match config.kind {
            Kind::Redis => "Redis Sentinel (master, replica, 3 sentinels)",
            Kind::Postgres => "PostgreSQL",
        };
        writeln!(
            f,
            "chaos run, seed {}: {NODES} nodes on {database}, {} s of faults, {} clients of {} \
             users, sessions idle {} s, leases {} ms",
            config.seed,
            config.chaos.as_secs(),
            config.clients,
            config.users,
            config.idle_secs,
            config.lease_ms
        )?;
        let mut kinds: BTreeMap<FaultKind, usize> = BTreeMap::new();
        for fault in &self.faults {
            *kinds.entry(fault.kind).or_default() += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(f, "faults: {} ({})", self.faults.len(), kinds.join(", "))?;
        for fault in &self.faults {
            writeln!(f, "  {fault}")?;
        }
        let total: usize = self.ops.values().sum();
        writeln!(f, "operations: {total}")?;
        let mut by_kind: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        for ((kind, outcome), n) in &self.ops {
            let slot = match outcome {
                Outcome::Ok => 0,
                Outcome::Error => 1,
                Outcome::Unknown => 2,
            };
            by_kind.entry(kind).or_default()[slot] += n;
        }
        for (kind, [ok, error, unknown]) in by_kind {
            writeln!(
                f,
                "  {kind:<18} ok {ok:>6}  error {error:>5}  unknown {unknown:>5}"
            )?;
        }
        let lives: Vec<String> = self.lives.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(
            f,
            "session lives: {} ({})",
            self.lives.values().sum::<usize>(),
            lives.join(", ")
        )?;
        let verdict = &self.verdict;
        writeln!(
            f,
            "checked: counts of {} lives ({} acknowledged increments); {} sockets told of their \
             session's end ({} not judged: their record stopped first)",
            verdict.counted, verdict.increments, verdict.sockets_judged, verdict.sockets_unjudged
        )?;
        writeln!(f, "anomalies: {}", verdict.anomalies.len())?;
        for anomaly in &verdict.anomalies {
            writeln!(f, "  {anomaly}")?;
        }
        Ok(())
    }
}

/// Runs the chaos of `config`; `None` (after saying `SKIPPED`) when its database is not
/// installed.
pub async fn run(config: Config) -> Option<Report> {
    let faults = schedule(config.seed, config.kind, config.chaos, NODES);
    let outages: cluster::Outages = Arc::default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_tx, stop_rx) = mpsc::channel::<bool>();
    let (logs_tx, logs_rx) = mpsc::channel::<String>();
    let nemesis_failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let nemesis = {
        let (config, faults, outages) = (config.clone(), faults.clone(), outages.clone());
        let nemesis_failed = nemesis_failed.clone();
        // The cluster lives on this thread (see `cluster`'s docs).
        thread::spawn(move || {
            let cluster = Cluster::start(config.kind, NODES, config.idle_secs, config.lease_ms);
            let Some(mut cluster) = cluster else {
                let _ = ready_tx.send(None);
                return;
            };
            let _ = ready_tx.send(Some(cluster.urls()));
            if go_rx.recv().is_err() {
                return;
            }
            let start = Instant::now();
            for fault in &faults {
                thread::sleep((start + fault.at).saturating_duration_since(Instant::now()));
                let injected = panic::catch_unwind(AssertUnwindSafe(|| {
                    cluster.inject(fault, &outages);
                }));
                if let Err(panic) = injected {
                    let why = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default();
                    *nemesis_failed.lock().unwrap() = Some(format!("{fault}: {why}"));
                    break;
                }
            }
            let _ = done_tx.send(());
            if stop_rx.recv() == Ok(true) {
                let _ = logs_tx.send(cluster.logs());
            }
        })
    };
    let urls = tokio::task::spawn_blocking(move || ready_rx.recv().ok().flatten())
        .await
        .expect("the nemesis thread")?;
    let window = Duration::from_secs(config.idle_secs);
    let world = World::new(urls, config.clients, config.users, window);
    let started = Instant::now();
    let clients: Vec<_> = (0..config.clients)
        .map(|i| tokio::spawn(Client::new(world.clone(), i, config.seed).run()))
        .collect();
    let _ = go_tx.send(());
    let _ = done_rx.await;
    tokio::time::sleep(config.chaos.saturating_sub(started.elapsed()) + Duration::from_secs(3))
        .await;
    world.stop.store(true, Ordering::Relaxed);
    let mut ended = Vec::new();
    for client in clients {
        let mut client = client.await.expect("a client task");
        ended.extend(client.wind_up().await);
    }
    let mut late = probe_ended(&world, &ended).await;
    late.extend(stuck_nodes(&world).await);

    let outages = outages.lock().unwrap().clone();
    let (verdict, lives, ops) = {
        let history = world.history.lock().unwrap();
        if let Ok(path) = std::env::var("CHAOS_HISTORY") {
            // Everything, one item a line, for reading an anomaly's context.
            let lines: Vec<String> = (outages.iter().map(|o| format!("{o:?}")))
                .chain(
                    history
                        .epochs
                        .iter()
                        .enumerate()
                        .map(|(i, e)| format!("epoch {i} {e:?}")),
                )
                .chain(history.ops.iter().map(|o| format!("{o:?}")))
                .chain(history.ends.iter().map(|e| format!("{e:?}")))
                .collect();
            std::fs::write(path, lines.join("\n")).expect("writing the history");
        }
        let mut verdict = check(&history, &outages, window);
        if let Some(why) = nemesis_failed.lock().unwrap().take() {
            // Not a broken promise of the nodes: the run itself could not go on.
            verdict
                .anomalies
                .insert(0, format!("the nemesis failed, the run is void: {why}"));
        }
        verdict.anomalies.extend(late);
        let lives = lives(&history);
        let ops = history.tally();
        (verdict, lives, ops)
    };
    let want_logs = !verdict.anomalies.is_empty();
    let _ = stop_tx.send(want_logs);
    let logs = want_logs.then(|| logs_rx.recv().ok()).flatten();
    let _ = tokio::task::spawn_blocking(move || nemesis.join()).await;
    Some(Report {
        config,
        faults,
        outages,
        ops,
        lives,
        verdict,
        logs,
    })
}

fn lives(history: &History) -> BTreeMap<&'static str, usize> {
    let mut lives = BTreeMap::new();
    for epoch in &history.epochs {
        let kind = match epoch.end {
            End::Live => "live at the end",
            End::Logout => "logged out",
            End::LoggedOutElsewhere => "logged out elsewhere",
            End::Idle => "expired idle",
            End::Found { .. } => "found ended",
            End::Abandoned(_) => "of unknown end",
        };
        *lives.entry(kind).or_default() += 1;
    }
    lives
}

/// Every cookie of an ended session, read once more on some node: none shows its user.
async fn probe_ended(world: &World, cookies: &[String]) -> Vec<String> {
    let mut anomalies = Vec::new();
    for (i, cookie) in cookies.iter().enumerate() {
        let node = i % world.urls.len();
        let answer = world
            .request(reqwest::Method::GET, node, "/session", Some(cookie), None)
            .await;
        match answer {
            Ok((200, body, _)) if body["user"].is_null() => {}
            Ok((status, body, _)) => anomalies.push(format!(
                "after the run, an ended session's cookie read {status} {body} on node {node}"
            )),
            Err((_, why)) => anomalies.push(format!(
                "after the run, a read of an ended session on node {node} failed: {why}"
            )),
        }
    }
    anomalies
}

/// After the last fault: every node logs in, reads and increments over a socket within its
/// bounds.
async fn stuck_nodes(world: &World) -> Vec<String> {
    let mut anomalies = Vec::new();
    for node in 0..world.urls.len() {
        if let Err(why) = serves(world, node).await {
            anomalies.push(format!("node {node} stuck after the last fault: {why}"));
        }
    }
    anomalies
}

async fn serves(world: &World, node: usize) -> Result<(), String> {
    let body = json!({ "user": "after-the-chaos" });
    let login = world
        .request(reqwest::Method::POST, node, "/login", None, Some(body))
        .await;
    let cookie = match login {
        Ok((200, _, Some(cookie))) => cookie,
        Ok((status, body, _)) => return Err(format!("a login answered {status} {body}")),
        Err((_, why)) => return Err(format!("a login failed: {why}")),
    };
    let read = world
        .request(reqwest::Method::GET, node, "/session", Some(&cookie), None)
        .await;
    match read {
        Ok((200, body, _)) if body["user"] == "after-the-chaos" => {}
        Ok((status, body, _)) => return Err(format!("a read answered {status} {body}")),
        Err((_, why)) => return Err(format!("a read failed: {why}")),
    }
    let socket = tokio::time::timeout(
        PATIENCE,
        RawSocket::connect(&world.urls[node], "/", Some(&cookie)),
    )
    .await
    .map_err(|_| "a socket did not connect in time".to_owned())?
    .map_err(|err| format!("a socket did not connect: {err:?}"))?;
    match socket.try_emit("incr", vec![], PATIENCE).await {
        Ok(Value::Number(n)) if n.as_i64() == Some(1) => Ok(()),
        Ok(answer) => Err(format!("a socket incr answered {answer}")),
        Err(failure) => Err(format!("a socket incr: {failure}")),
    }
}

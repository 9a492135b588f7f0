//! The nodes and their database, and the nemesis that injects [`Fault`]s into them with real
//! signals and a real relay, recording each as an [`Outage`].
//!
//! A [`Cluster`] lives on one thread from its start to the end of the run: the harness's
//! processes die with the thread that started them (Linux's parent-death signal), and the
//! nemesis starts nodes and Redis servers again.

use std::{
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};

use session_harness::{
    backend::Kind, random_key, relay::Fault as LinkFault, DemoNode, PostgresServer, RedisSentinel,
    Relay,
};
use time::OffsetDateTime;

use crate::schedule::{Fault, FaultKind};

/// The sentinels' `down-after-milliseconds` in a run.
pub const SENTINEL_DOWN_AFTER: Duration = Duration::from_secs(3);

/// The wall clock, as the harness's sockets stamp what they hear.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A span during which some node could not do its work: from the fault's start until it was
/// healed and the nodes had time to reconnect (`recovered`).
#[derive(Debug, Clone)]
pub struct Outage {
    /// The node, or `None` for all (the database).
    pub node: Option<usize>,
    pub kind: FaultKind,
    pub from: OffsetDateTime,
    /// Healed and reconnected: every promise's bound starts again from here.
    pub recovered: OffsetDateTime,
}

/// The outages so far, shared by the nemesis (which writes) and the checker (which reads).
pub type Outages = Arc<Mutex<Vec<Outage>>>;

/// How long nodes take to find the database again after a fault of `kind` ends, beyond which
/// the 1 s bounds apply: Redis clients reconnect every 100 ms and the sentinels answer with the
/// new master at once; PostgreSQL pools and listeners reconnect every 100 ms.
fn reconnect(kind: FaultKind) -> Duration {
    match kind {
        FaultKind::NodePause | FaultKind::NodeKill => Duration::ZERO,
        FaultKind::RelayCut | FaultKind::DbPause => Duration::from_millis(500),
        FaultKind::MasterKill | FaultKind::DbCrash => Duration::from_secs(1),
    }
}

enum Db {
    Sentinel(RedisSentinel),
    /// The server, and one relay a node (node `i` reaches it through `relays[i]`).
    Postgres(PostgresServer, Vec<Relay>),
}

/// The database and the demo nodes on it (see the module docs).
pub struct Cluster {
    db: Db,
    nodes: Vec<DemoNode>,
    /// Each node's environment, its port included, to start it again alike.
    envs: Vec<Vec<(String, String)>>,
    urls: Vec<String>,
    /// The logs of the nodes' earlier lives, ended by [`FaultKind::NodeKill`].
    killed: Vec<String>,
}

impl Cluster {
    /// Starts the database of `kind` and `n` demo nodes on it sharing a cookie key, sessions
    /// expiring after `idle_secs` idle, leases of `lease_ms`; `None` (after saying `SKIPPED`)
    /// when the database is not installed.
    pub fn start(kind: Kind, n: usize, idle_secs: u64, lease_ms: u64) -> Option<Self> {
        let key = random_key();
        let common = [
            ("SESSION_KEY".to_owned(), key),
            ("SESSION_IDLE_SECS".to_owned(), idle_secs.to_string()),
            ("SESSION_LEASE_MS".to_owned(), lease_ms.to_string()),
        ];
        let (db, links): (Db, Vec<(String, String)>) = match kind {
            Kind::Redis => {
                // Sentinels that wait 3 s before they take a master for dead: at 1 s this
                // loaded machine (three debug nodes, their clients, five Redis processes) made
                // them fail over on their own, a second promotion racing the nemesis's.
                let sentinel = RedisSentinel::start_with(SENTINEL_DOWN_AFTER)?;
                let url = sentinel.url();
                (Db::Sentinel(sentinel), vec![("REDIS_URL".into(), url); n])
            }
            Kind::Postgres => {
                let pg = PostgresServer::start()?;
                let relays: Vec<Relay> = (0..n).map(|_| Relay::start(pg.port())).collect();
                let urls = relays
                    .iter()
                    .map(|relay| {
                        let url = PostgresServer::url_at(relay.port());
                        ("DATABASE_URL".to_owned(), url)
                    })
                    .collect();
                (Db::Postgres(pg, relays), urls)
            }
        };
        let mut nodes = Vec::new();
        let mut envs = Vec::new();
        for (i, link) in links.into_iter().enumerate() {
            let mut env: Vec<(String, String)> = common.to_vec();
            env.push(link);
            if kind == Kind::Redis {
                // A failover must lose no acknowledged write.
                env.push(("SESSION_REPLICA_WAIT".into(), "1".into()));
            }
            let node = start_node(i, &env);
            let port = node.url().rsplit(':').next().expect("a port").to_owned();
            env.push(("PORT".into(), port));
            nodes.push(node);
            envs.push(env);
        }
        let urls = nodes.iter().map(DemoNode::url).collect();
        Some(Self {
            db,
            nodes,
            envs,
            urls,
            killed: Vec::new(),
        })
    }

    /// The nodes' `http://127.0.0.1:PORT`, the same after a node is started again.
    pub fn urls(&self) -> Vec<String> {
        self.urls.clone()
    }

    /// Injects `fault`, waits its length, heals it, and records the outage.
    pub fn inject(&mut self, fault: &Fault, outages: &Outages) {
        let from = now();
        let node = fault.kind.one_node().then_some(fault.node);
        match fault.kind {
            FaultKind::NodePause => {
                self.nodes[fault.node].process.pause();
                thread::sleep(fault.length);
                self.nodes[fault.node].process.resume();
            }
            FaultKind::NodeKill => {
                self.nodes[fault.node].process.kill();
                thread::sleep(fault.length);
                let again = start_node(fault.node, &self.envs[fault.node]);
                let killed = std::mem::replace(&mut self.nodes[fault.node], again);
                self.killed.push(format!(
                    "---- {} (killed at {from}) ----\n{}",
                    killed.process.name(),
                    killed.process.log()
                ));
            }
            FaultKind::DbPause => match &self.db {
                Db::Sentinel(sentinel) => {
                    let master = sentinel.master_port();
                    sentinel.pause_server(master, true);
                    thread::sleep(fault.length);
                    sentinel.pause_server(master, false);
                    if fault.length > sentinel.down_after() {
                        // Paused past the sentinels' patience: the replica may be promoted, and
                        // writes (which wait for a replica) fail until the old master is the
                        // new one's replica. Healed when it is.
                        thread::sleep(sentinel.down_after());
                        sentinel.wait_healed(master);
                    }
                }
                Db::Postgres(pg, _) => {
                    pg.pause();
                    thread::sleep(fault.length);
                    pg.resume();
                }
            },
            FaultKind::MasterKill => {
                let Db::Sentinel(sentinel) = &mut self.db else {
                    unreachable!("master kills are scheduled on Redis only")
                };
                let old = sentinel.kill_master();
                sentinel.wait_promoted(old);
                sentinel.restart_as_replica(old);
            }
            FaultKind::RelayCut => {
                let Db::Postgres(_, relays) = &self.db else {
                    unreachable!("relay cuts are scheduled on PostgreSQL only")
                };
                relays[fault.node].set(LinkFault::Cut);
                thread::sleep(fault.length);
                relays[fault.node].set(LinkFault::None);
            }
            FaultKind::DbCrash => {
                let Db::Postgres(pg, _) = &mut self.db else {
                    unreachable!("database crashes are scheduled on PostgreSQL only")
                };
                pg.stop();
                thread::sleep(fault.length);
                pg.start_again();
            }
        }
        outages.lock().unwrap().push(Outage {
            node,
            kind: fault.kind,
            from,
            recovered: now() + reconnect(fault.kind),
        });
    }

    /// Each node's log and the database's, for a report with anomalies.
    pub fn logs(&self) -> String {
        let mut processes: Vec<&session_harness::Process> =
            self.nodes.iter().map(|node| &node.process).collect();
        match &self.db {
            Db::Sentinel(sentinel) => processes.extend(
                sentinel
                    .servers()
                    .iter()
                    .chain(sentinel.sentinels())
                    .map(|server| &server.process),
            ),
            Db::Postgres(pg, _) => processes.push(&pg.process),
        }
        self.killed
            .iter()
            .cloned()
            .chain(
                processes
                    .iter()
                    .map(|process| format!("---- {} ----\n{}", process.name(), process.log())),
            )
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn start_node(i: usize, env: &[(String, String)]) -> DemoNode {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    DemoNode::start_named(&format!("node-{}", char::from(b'a' + i as u8)), &env)
}

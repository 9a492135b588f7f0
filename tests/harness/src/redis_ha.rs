//! Redis with failover, of the test's own, on free ports of 127.0.0.1 (Debian's
//! `redis-server`, no persistence), every process killed when the test ends, its log printed
//! if the test fails:
//!
//! - [`RedisCluster`]: a Redis Cluster of 3 masters and 3 replicas (`--cluster-enabled`,
//!   joined by `redis-cli --cluster create`), a node timeout of 1 s;
//! - [`RedisSentinel`]: a master, its replica and three sentinels (`redis-server
//!   --sentinel`, quorum 2) that promote the replica 1 s after the master stops answering.
//!
//! Both kill a master with SIGKILL (a crash: whatever was not yet replicated is lost) and wait
//! for the replica's promotion, returning when it happened. Without `redis-server` their
//! `start` says `SKIPPED` and returns `None` (a failure under `SESSION_E2E_REQUIRED=1`).
//!
//! ```no_run
//! use session_harness::{RedisCluster, RedisSentinel};
//!
//! let Some(mut cluster) = RedisCluster::start() else { return }; // SKIPPED without redis
//! let url = cluster.url(); // redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&node=...
//! let master = cluster.master_of("some-key");
//! cluster.kill(master);
//! let promoted = cluster.wait_promoted("some-key"); // the port of the new master
//!
//! let Some(mut sentinel) = RedisSentinel::start() else { return };
//! let url = sentinel.url(); // redis-sentinel://127.0.0.1:S1?sentinelServiceName=...&node=...
//! let old = sentinel.kill_master();
//! let promoted = sentinel.wait_promoted(old);
//! ```

use std::{
    fs,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use crate::{
    redis::{cli, free_port, launch, temp_dir, tools_found, try_cli},
    Process, TIMEOUT,
};

/// The name the sentinels know the master by.
pub const SERVICE_NAME: &str = "session-master";

/// How long the setups take to notice a dead master (`cluster-node-timeout`,
/// `down-after-milliseconds`).
pub const NODE_TIMEOUT: Duration = Duration::from_millis(1000);

/// Polls `check` every 50 ms until it gives `Some`, for at most `timeout`.
fn poll<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// One `redis-server` (a node of a [`RedisCluster`], a server or a sentinel of a
/// [`RedisSentinel`]).
pub struct RedisNode {
    /// The process, for signals and its log.
    pub process: Process,
    port: u16,
}

impl RedisNode {
    /// The port it serves clients on.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A Redis Cluster of 3 masters with a replica each (see the module docs).
pub struct RedisCluster {
    nodes: Vec<RedisNode>,
    // Last: the nodes are killed before their config files go.
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts 6 nodes, joins them into a cluster and waits until every slot is served and
    /// every replica is in sync; `None` (after saying `SKIPPED`) without `redis-server`.
    pub fn start() -> Option<Self> {
        if !tools_found("redis-cluster") {
            return None;
        }
        let dir = temp_dir("cluster");
        let nodes: Vec<RedisNode> = (0..6).map(|_| start_cluster_node(dir.path())).collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let mut creating = Process::spawn("redis-cli --cluster create", &mut create);
        let status = creating
            .wait_exit(TIMEOUT)
            .expect("cluster create finishes");
        assert!(status.success(), "cluster create: {}", creating.log());
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_healthy(TIMEOUT);
        Some(cluster)
    }

    /// `redis-cluster://127.0.0.1:P1?node=127.0.0.1:P2&node=...`: every node, fred's form.
    pub fn url(&self) -> String {
        let ports: Vec<u16> = self.nodes.iter().map(|node| node.port).collect();
        self.url_with_seeds(&ports)
    }

    /// [`RedisCluster::url`] naming only the nodes on `seeds` (fred's seed list, as a user
    /// would write it: a few of the nodes, perhaps all masters).
    pub fn url_with_seeds(&self, seeds: &[u16]) -> String {
        let (first, rest) = seeds.split_first().expect("at least one seed");
        let rest: Vec<String> = rest
            .iter()
            .map(|port| format!("node=127.0.0.1:{port}"))
            .collect();
        format!("redis-cluster://127.0.0.1:{first}?{}", rest.join("&"))
    }

    /// The ports of the live masters that serve slots, lowest first.
    pub fn masters(&self) -> Vec<u16> {
        let mut masters: Vec<u16> = self
            .nodes_view()
            .lines()
            .filter_map(|line| {
                let (port, slots) = serving_master(line)?;
                (!slots.is_empty()).then_some(port)
            })
            .collect();
        masters.sort_unstable();
        masters
    }

    /// The nodes, masters and replicas, as started.
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// `redis-cli -c` on a live node (following redirections), output trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut with_c = vec!["-c"];
        with_c.extend_from_slice(args);
        self.live_ports()
            .into_iter()
            .find_map(|port| try_cli(port, &with_c).ok())
            .expect("no live cluster node answers")
    }

    /// The port of the master serving `key`'s slot now.
    pub fn master_of(&self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        self.owner(slot).expect("every slot has a master")
    }

    /// The hash slot of `key`.
    pub fn slot_of(&self, key: &str) -> u16 {
        self.cli(&["CLUSTER", "KEYSLOT", key])
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// SIGKILL to the node on `port`.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .unwrap_or_else(|| panic!("no cluster node on {port}"));
        node.process.kill();
    }

    /// Waits until `key`'s slot is served by a live master again and every live node says
    /// `cluster_state:ok`; returns that master's port.
    pub fn wait_promoted(&mut self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        let live = self.live_ports();
        poll(TIMEOUT, || {
            let owner = self.owner(slot).filter(|port| live.contains(port))?;
            live.iter().all(|&port| cluster_ok(port)).then_some(owner)
        })
        .unwrap_or_else(|| panic!("no replica took over slot {slot}:\n{}", self.nodes_view()))
    }

    /// The ports of the nodes still running.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|node| try_cli(node.port, &["PING"]).is_ok_and(|pong| pong == "PONG"))
            .map(|node| node.port)
            .collect()
    }

    /// `CLUSTER NODES` as a live node sees it.
    pub fn nodes_view(&self) -> String {
        self.cli(&["CLUSTER", "NODES"])
    }

    /// The port of the master that a live node says serves `slot`, if it is not failed.
    fn owner(&self, slot: u16) -> Option<u16> {
        self.nodes_view().lines().find_map(|line| {
            let (port, slots) = serving_master(line)?;
            let serves = slots.iter().any(|range| {
                let mut ends = range.split('-').map(|n| n.parse::<u16>());
                match (ends.next(), ends.next()) {
                    (Some(Ok(from)), Some(Ok(to))) => (from..=to).contains(&slot),
                    (Some(Ok(only)), None) => only == slot,
                    _ => false,
                }
            });
            serves.then_some(port)
        })
    }

    fn wait_healthy(&self, timeout: Duration) {
        let ports: Vec<u16> = self.nodes.iter().map(|node| node.port).collect();
        poll(timeout, || {
            let all_ok = ports.iter().all(|&port| cluster_ok(port));
            let in_sync = ports.iter().all(|&port| {
                let info = try_cli(port, &["INFO", "replication"]).unwrap_or_default();
                info.contains("role:master") || info.contains("master_link_status:up")
            });
            (all_ok && in_sync).then_some(())
        })
        .unwrap_or_else(|| panic!("the cluster did not come up:\n{}", self.nodes_view()));
    }
}

/// A `CLUSTER NODES` line of a master not marked failed: its port and its slot ranges
/// (`0-5460`, `5461`, ...).
fn serving_master(line: &str) -> Option<(u16, Vec<&str>)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let flags = fields.get(2)?;
    if !flags.contains("master") || flags.contains("fail") {
        return None;
    }
    Some((
        port_in(fields[1])?,
        fields.iter().skip(8).copied().collect(),
    ))
}

/// `127.0.0.1:PORT@BUS` (or `127.0.0.1:PORT@BUS,hostname`) → PORT
fn port_in(address: &str) -> Option<u16> {
    address.split('@').next()?.rsplit(':').next()?.parse().ok()
}

fn cluster_ok(port: u16) -> bool {
    try_cli(port, &["CLUSTER", "INFO"]).is_ok_and(|info| info.contains("cluster_state:ok"))
}

fn start_cluster_node(dir: &Path) -> RedisNode {
    for _ in 0..5 {
        let (port, bus) = (free_port(), free_port());
        let config = dir.join(format!("nodes-{port}.conf"));
        let timeout = NODE_TIMEOUT.as_millis().to_string();
        let bus_arg = bus.to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            &bus_arg,
            "--cluster-config-file",
            config.to_str().expect("a UTF-8 temporary directory"),
            "--cluster-node-timeout",
            &timeout,
            // A replica takes over however long it was cut off from its master.
            "--cluster-replica-validity-factor",
            "0",
            "--dir",
            dir.to_str().expect("a UTF-8 temporary directory"),
        ];
        if let Some(process) = launch(port, &args) {
            return RedisNode { process, port };
        }
    }
    panic!("a cluster node did not start on any of 5 free ports");
}

/// A master, its replica and three sentinels (see the module docs).
pub struct RedisSentinel {
    servers: Vec<RedisNode>,
    sentinels: Vec<RedisNode>,
    /// The sentinels' `down-after-milliseconds`.
    down: Duration,
    /// Servers started again so far: each in a directory of its own, empty.
    restarts: usize,
    _dir: tempfile::TempDir,
}

impl RedisSentinel {
    /// Starts the master, the replica (in sync before this returns) and three sentinels that
    /// know both and each other; `None` (after saying `SKIPPED`) without `redis-server`.
    pub fn start() -> Option<Self> {
        Self::start_with(NODE_TIMEOUT)
    }

    /// [`RedisSentinel::start`] with sentinels that take the master for dead after `down`
    /// without an answer (`down-after-milliseconds`) instead of [`NODE_TIMEOUT`]: on a
    /// loaded machine 1 s of silence happens without a death, and sentinels then fail over on
    /// their own.
    pub fn start_with(down: Duration) -> Option<Self> {
        if !tools_found("redis-sentinel") {
            return None;
        }
        let dir = temp_dir("sentinel");
        // A replica keeps the RDB of its sync in its `--dir`, and a server started again loads
        // the RDB there: one directory a server, as one disk a machine.
        let server_dir = |name: &str| {
            let path = dir.path().join(name);
            fs::create_dir(&path).expect("a server's directory");
            path.to_str().expect("a UTF-8 temporary path").to_owned()
        };
        let master = start_server(&["--dir", &server_dir("first-master")]);
        let replica_of = master.port.to_string();
        let replica_dir = server_dir("first-replica");
        let replica = start_server(&[
            "--dir",
            &replica_dir,
            "--replicaof",
            "127.0.0.1",
            &replica_of,
        ]);
        poll(TIMEOUT, || in_sync(replica.port).then_some(()))
            .expect("the replica syncs with its master");
        let sentinels = (0..3)
            .map(|i| start_sentinel(dir.path(), i, master.port, down))
            .collect();
        let setup = Self {
            servers: vec![master, replica],
            sentinels,
            down,
            restarts: 0,
            _dir: dir,
        };
        // A failover needs every sentinel to know the replica and a quorum of the others.
        poll(TIMEOUT, || {
            setup
                .sentinels
                .iter()
                .all(|sentinel| {
                    let replicas = try_cli(sentinel.port, &["SENTINEL", "REPLICAS", SERVICE_NAME]);
                    let others = try_cli(sentinel.port, &["SENTINEL", "SENTINELS", SERVICE_NAME]);
                    replicas.is_ok_and(|r| r.contains("slave"))
                        && others.is_ok_and(|o| o.matches("runid").count() == 2)
                })
                .then_some(())
        })
        .expect("the sentinels know the replica and each other");
        Some(setup)
    }

    /// `redis-sentinel://127.0.0.1:S1?sentinelServiceName=NAME&node=127.0.0.1:S2&node=...`:
    /// the three sentinels, fred's form.
    pub fn url(&self) -> String {
        let mut ports = self.sentinels.iter().map(|sentinel| sentinel.port);
        let first = ports.next().expect("three sentinels");
        let rest: String = ports
            .map(|port| format!("&node=127.0.0.1:{port}"))
            .collect();
        format!("redis-sentinel://127.0.0.1:{first}?sentinelServiceName={SERVICE_NAME}{rest}")
    }

    /// The master and the replica, as started (the replica may be the master by now).
    pub fn servers(&self) -> &[RedisNode] {
        &self.servers
    }

    /// The sentinels.
    pub fn sentinels(&self) -> &[RedisNode] {
        &self.sentinels
    }

    /// The port of the master, as the sentinels say.
    pub fn master_port(&self) -> u16 {
        self.sentinels
            .iter()
            .find_map(|sentinel| {
                let reply = try_cli(
                    sentinel.port,
                    &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE_NAME],
                )
                .ok()?;
                reply.lines().nth(1)?.trim().parse().ok()
            })
            .expect("a sentinel names the master")
    }

    /// `redis-cli` on the master, output trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.master_port(), args)
    }

    /// SIGKILL to the master; returns its port.
    pub fn kill_master(&mut self) -> u16 {
        let port = self.master_port();
        let master = self
            .servers
            .iter_mut()
            .find(|server| server.port == port)
            .expect("the master is one of ours");
        master.process.kill();
        port
    }

    /// Starts the server killed on `port` again as a replica of the master the sentinels name
    /// now, not to be promoted (`replica-priority 0`) until it is in sync, and returns then:
    /// as an operator brings a crashed master back. (Started as a master, empty, before the
    /// sentinels noticed its death, it would be taken for the master it was and its emptiness
    /// replicated; promoted while it syncs, the same.)
    pub fn restart_as_replica(&mut self, port: u16) {
        let master = self.master_port().to_string();
        // A new, empty directory, as a replaced disk: no RDB of an earlier life to load.
        self.restarts += 1;
        let dir = self._dir.path().join(format!("restart-{}", self.restarts));
        fs::create_dir(&dir).expect("a server's directory");
        let dir = dir.to_str().expect("a UTF-8 temporary path").to_owned();
        let server = self
            .servers
            .iter_mut()
            .find(|server| server.port == port)
            .expect("a server of ours");
        // Not to be promoted before it has the data: the sentinels of a loaded machine may
        // take the new master for dead a moment after promoting it, and promote the only
        // other server, this one, empty (found by the chaos run: every session lost).
        let args = [
            "--dir",
            &dir,
            "--replicaof",
            "127.0.0.1",
            &master,
            "--replica-priority",
            "0",
        ];
        server.process = launch(port, &args)
            .unwrap_or_else(|| panic!("redis-server did not start again on {port}"));
        poll(2 * TIMEOUT, || in_sync(port).then_some(()))
            .unwrap_or_else(|| panic!("the server on {port} did not sync with its new master"));
        cli(port, &["CONFIG", "SET", "replica-priority", "100"]);
    }

    /// The sentinels' `down-after-milliseconds` (see [`RedisSentinel::start_with`]).
    pub fn down_after(&self) -> Duration {
        self.down
    }

    /// SIGSTOP (`pause: true`) or SIGCONT (`false`) to the server on `port`: paused past
    /// [`RedisSentinel::down_after`], its replica is promoted meanwhile, and the sentinels make it a replica
    /// once it answers again.
    pub fn pause_server(&self, port: u16, pause: bool) {
        let server = self
            .servers
            .iter()
            .find(|server| server.port == port)
            .expect("a server of ours");
        if pause {
            server.process.pause();
        } else {
            server.process.resume();
        }
    }

    /// After [`RedisSentinel::pause_server`] of the master on `paused` and its resumption:
    /// waits until the sentinels name a master that answers as one and, if they promoted
    /// another, until `paused` is its replica and in sync (the sentinels convert it when they
    /// see it back, then it loads the new master's data: seconds). Returns the master's port.
    pub fn wait_healed(&self, paused: u16) -> u16 {
        poll(4 * TIMEOUT, || {
            let master = self.master_port();
            if !try_cli(master, &["ROLE"]).is_ok_and(|role| role.starts_with("master")) {
                return None;
            }
            if master == paused {
                return Some(master);
            }
            in_sync(paused).then_some(master)
        })
        .unwrap_or_else(|| panic!("the server on {paused} did not come back as master or replica"))
    }

    /// Waits until the sentinels name a master other than `old` and it says it is one;
    /// returns its port.
    pub fn wait_promoted(&self, old: u16) -> u16 {
        poll(TIMEOUT, || {
            let port = self.master_port();
            (port != old && try_cli(port, &["ROLE"]).is_ok_and(|role| role.starts_with("master")))
                .then_some(port)
        })
        .unwrap_or_else(|| {
            let logs: Vec<String> = self.sentinels.iter().map(|s| s.process.log()).collect();
            panic!("the sentinels promoted no replica:\n{}", logs.join("\n"))
        })
    }
}

/// Whether the server on `port` is a replica with its master's data (its link up).
fn in_sync(port: u16) -> bool {
    try_cli(port, &["INFO", "replication"])
        .is_ok_and(|info| info.contains("role:slave") && info.contains("master_link_status:up"))
}

fn start_server(extra: &[&str]) -> RedisNode {
    for _ in 0..5 {
        let port = free_port();
        if let Some(process) = launch(port, extra) {
            return RedisNode { process, port };
        }
    }
    panic!("redis-server did not start on any of 5 free ports");
}

fn start_sentinel(dir: &Path, i: usize, master: u16, down: Duration) -> RedisNode {
    for _ in 0..5 {
        let port = free_port();
        // A sentinel rewrites its config file: one each.
        let config = dir.join(format!("sentinel-{i}.conf"));
        let down = down.as_millis();
        fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {SERVICE_NAME} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {SERVICE_NAME} {down}\n\
                 sentinel failover-timeout {SERVICE_NAME} 5000\n\
                 sentinel parallel-syncs {SERVICE_NAME} 1\n",
                dir = dir.display()
            ),
        )
        .expect("writing a sentinel's config");
        let mut command = Command::new("redis-server");
        command.arg(&config).arg("--sentinel");
        let mut process = Process::spawn(&format!("sentinel:{port}"), &mut command);
        if process
            .try_wait_for_line(TIMEOUT, |line| {
                line.contains("+monitor master").then_some(())
            })
            .is_ok()
        {
            return RedisNode { process, port };
        }
    }
    panic!("a sentinel did not start on any of 5 free ports");
}

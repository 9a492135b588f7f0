//! Several nodes on one Redis (feature `redis`): session records, per-session locks and
//! socket.io broadcasts shared by every process of an app.
//!
//! | piece | built on | what it gives |
//! |---|---|---|
//! | [`RedisSessionStore`] | [`tower_sessions_redis_store::RedisStore`] (0.16) | the records, in its exact encoding (key = the bare session id, value = MessagePack), with the expiry to the millisecond (`PXAT`, where it writes whole seconds) |
//! | [`RedisSessionLocks`] | Lua scripts on the same Redis | a per-session *lease* that fences writes |
//! | [`RedisSessions::adapter`] | [`socketioxide_redis`] (0.4.4, `fred` driver) | broadcasts and rooms across nodes |
//!
//! One client library, [`fred`] 10, serves all three. Take the store and the locks from the same
//! [`RedisSessions`]: the store fences the HTTP side's writes with the locks' leases.
//!
//! ```no_run
//! use axum::Router;
//! use session_runtime::redis::{socketioxide_redis::FredAdapter, RedisSessions};
//! use session_runtime::SocketSessions;
//! use socketioxide::{extract::SocketRef, SocketIo};
//! use tower_sessions::cookie::Key;
//!
//! # async fn run(cookie_key: Key) -> Result<(), Box<dyn std::error::Error>> {
//! // `cookie_key`: the same on every node (e.g. read from the environment).
//! let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?; // RESP3, reconnects
//! let sessions = SocketSessions::new(redis.store())
//!     .with_locks(redis.locks())
//!     .with_room_key(cookie_key.master()); // shared by every node, so logouts reach them all
//! let (sio_layer, io) = SocketIo::builder()
//!     .with_adapter::<FredAdapter<_>>(redis.adapter().await?)
//!     .build_layer();
//! // Subscribed to the other nodes before serving.
//! io.ns("/", sessions.handler(|_socket: SocketRef<FredAdapter<_>>| {})).await?;
//! let app: Router = Router::new()
//!     .layer(sio_layer)
//!     // The session layer keeps its records in the same Redis, its writes fenced by the leases.
//!     .layer(sessions.layer(io, |layer| layer.with_private(cookie_key)));
//! # Ok(()) }
//! ```
//!
//! | crate | version | why this one |
//! |---|---|---|
//! | socketioxide | 0.18.9 | pins socketioxide-core 0.20 |
//! | socketioxide-redis | 0.4.4, feature `fred` | the release on core 0.20 (another builds a second core) |
//! | tower-sessions-redis-store | 0.16 | the release on tower-sessions-core 0.14; records stay in its format |
//! | fred | 10 | shared by the store, the locks and the adapter; Redis ≥ 7 (RESP3) |
//!
//! What holds across nodes: every rule of the model (see the [crate docs](crate)), with the
//! lock as a lease (below). Every logout, rotation and expiry is pushed to the session's
//! sockets on every node: logouts and rotations through the adapter, to the room named by the
//! keyed hash (so the nodes must share the room key); expiries by each node's own timers.
//!
//! # The lease
//!
//! A writer takes its session's lease before it reloads the record and gives it back after it
//! saved. The lease is a key beside the record, `{<id>}:lock` (the same Redis Cluster hash slot
//! as the record under the bare `<id>`; ids are base64url and hold no braces), set to a random
//! token of the holder's with `NX` and a bounded lifetime ([`RedisSessions::with_lease`], 5 s by
//! default). While its holder runs, a task renews it every third of that lifetime; only the
//! holder releases it. Writers of one process queue in the process first
//! ([`LocalSessionLocks`](crate::locks::LocalSessionLocks)), so one of them at a time polls Redis
//! (with backoff) while another node holds the lease; the runtime's lock bound
//! ([`Timeouts::with_lock`](crate::Timeouts::with_lock)) ends the wait with
//! [`SessionError::Busy`](crate::SessionError::Busy).
//!
//! **Turns.** The holder's node hands the lease to its own next writer in the time of one
//! round trip, while a waiting node learns the lease is free only at its next poll. So the
//! first node refused records itself as waiting (`{<id>}:next`, beside the lease); once it has
//! waited 20 ms, no other node takes the lease before it does, and it asks every millisecond
//! until the holder's transaction ends. Under steady contention the nodes thus run batches of
//! about 20 ms in turn. A node that stops asking (its writer gave up, or it died) loses its
//! turn 100 ms after its last ask. Measured by the repository's fairness test (two demo
//! processes writing one session from closed loops for 3 s, debug build, one run each), the
//! per-node p99 event latency (lock wait plus two round trips) went from:
//!
//! | sockets on A + B | before: p99 A / B, writes | with turns: p99 A / B, writes |
//! |---|---|---|
//! | 4 + 4 | 66 / 102 ms, 3 209 | 30 / 29 ms, 3 531 |
//! | 8 + 1 | 75 / 62 ms, 3 066 | 41 / 32 ms, 3 409 |
//! | 16 + 2 | 81 / 75 ms, 3 138 | 65 / 59 ms, 3 801 |
//! | 16 + 1 | 105 / 103 ms, 2 538 | 51 / 51 ms, 3 349 |
//!
//! Turns are per node, not per writer: a node with 16 writers shares its turns among them, so
//! each of them waits longer than the one writer of a node beside it. With more than two
//! nodes waiting, the first refused goes next, the others after it in no fixed order.
//!
//! **Fencing.** A holder that is paused or cut off for longer than the lifetime loses the
//! lease, and another writer may take it. Every write made under a lease is one Lua script
//! that checks the lease and writes the record together, so a holder whose lease lapsed writes
//! nothing: its client gets [`SessionError::LeaseLost`](crate::SessionError::LeaseLost) (on
//! HTTP, 503), never a success for a write that did not happen, and never a write over a
//! later holder's. This needs the record and the lease in the same Redis, as here.
//!
//! **Round trips.** An uncontended `autosave` event costs two: one script takes the lease and
//! reads the record, one writes the record and releases the lease (or only releases it when
//! nothing changed). A `readonly` event costs one `GET`, an HTTP route taking
//! [`LockedSession`](crate::http::LockedSession) about four. Taking the lease rides with the
//! load and giving it back with the save, so the lease itself costs no extra round trip.
//!
//! # Topologies and failover
//!
//! [`RedisSessions::connect`] takes fred's URL forms:
//!
//! | URL | topology | what it guarantees |
//! |---|---|---|
//! | `redis://host:port` | one Redis | no failover: while it is down, writes fail (errors, 503) and the nodes reconnect by themselves; restarted empty, it has forgotten every session |
//! | `redis-sentinel://host:port?sentinelServiceName=NAME&node=host:port&node=...` (the sentinels) | a master, its replicas, sentinels | the sentinels promote a replica when the master dies; the nodes find the new master through them |
//! | `redis-cluster://host:port?node=host:port&node=...` (any nodes) | Redis Cluster | sessions spread over the masters by hash slot (record and lease share one); a replica takes over its dead master's slots |
//!
//! After a failover the nodes serve again without a restart, and every subscription of the
//! socket.io adapter is restored (broadcasts and rooms, requests to one node, responses), so
//! `session:gone` pushes and broadcasts cross nodes again. Between the master's death and the
//! promotion, writers get errors (acknowledgements `{"error": ...}`, HTTP 503), never a success
//! for a write that did not happen. Measured by the repository's failover test (two nodes, the
//! master SIGKILLed in a burst of 400 `incr`, debug build, 2 shared cores, promotion 1 s after
//! the master stops answering):
//!
//! | | promotion after the kill | both nodes writing again after the promotion | acknowledged writes lost |
//! |---|---|---|---|
//! | Sentinel (11 runs) | 2.2–2.4 s | 0.13–0.26 s | 0 |
//! | Cluster (9 runs) | 2.2–2.9 s | 0.17–0.33 s | 0 |
//!
//! **Every master in turn.** `REDIS_URL` may name only some nodes (the seeds); once they
//! have all failed over, the client finds the cluster through the nodes of the layout it
//! last knew, so the seed list never has to be current. Measured by the repository's test
//! that kills each of the three masters in turn (the seeds, the first one serving the
//! adapter's broadcast channel): logins, socket events and the cross-node push served again
//! 0.20–0.28 s after each promotion (3 runs, 9 kills); before that fix, nothing was served
//! after the third.
//!
//! The promotion itself takes what the Redis is configured for (`down-after-milliseconds` and
//! the election for Sentinel, `cluster-node-timeout` for a Cluster: with its default 15 s, 22 s
//! in one run).
//!
//! **A node cut off from Redis** while its clients stay connected (measured by the
//! repository's partition test, through a fault-injecting relay, lease 1 s): its clients get
//! error acks and HTTP 503 within the store and lock bounds (3.0 s with the default
//! [`Timeouts`](crate::Timeouts)); the other node's writer waited 0.78 s for the cut-off node's
//! lease to lapse, then went on; the write the cut-off node had sent into the partition reached
//! Redis on heal and changed nothing (its lease was gone); the node wrote again 7 ms after the
//! heal, without a restart, and pushes and broadcasts crossed both ways. With its connections
//! closed instead (a cut), its clients got an error ack within 1 ms and it wrote again 0.16 s
//! after the heal, its subscriber subscribed again.
//!
//! **What a failover may lose.** Replication is asynchronous: a write the old master
//! acknowledged but had not yet sent to its replica is gone after the promotion — a record's
//! update (its count goes back, and the next writer hands the same count out again) or a lease
//! (two holders may then overlap, for one lease lifetime at most). On one machine's loopback
//! the replica is a few microseconds behind and no run lost an acknowledged write; across a
//! network the window is the replication lag.
//!
//! **Waiting for a replica.** [`RedisSessions::with_replica_wait`] closes that window for the
//! records: every write is followed by `WAIT`, and is acknowledged only once a replica has
//! it (else the client gets an error, HTTP 503). A replica that has the write also has the
//! lease taken before it (replication keeps order), so the promoted replica fences the old
//! holder. It costs one round trip per write and the replica's acknowledgement; `readonly`
//! events and unchanged sessions cost nothing more. Leases taken and not yet followed by a
//! write can still be lost, so two holders may overlap after a failover, but only one of them
//! can write: the one whose token the promoted replica holds.
//!
//! **Bringing a crashed master back.** Start it as a replica of the master the sentinels name
//! now (`--replicaof`) and not promotable (`--replica-priority 0`) until it has synced
//! (`master_link_status:up`), then give it its priority back. The repository's chaos run
//! (`examples/chaos/`, nodes with replica wait, masters SIGKILLed and brought back) found
//! why: on a loaded machine the sentinels took the just-promoted master for dead a second
//! later and promoted the restarted server, still empty; the promoted master then synced from
//! it and every session was gone. Restarted that way, no chaos run since has lost an
//! acknowledged write.
//!
//! **Why the adapter resubscribes itself.** fred 10.1's `SubscriberClient::manage_subscriptions`
//! sends `SUBSCRIBE` with the (empty) list of plain channels first, Redis refuses it, and it
//! never gets to the shard channels socketioxide-redis uses. [`RedisSessions::adapter`]
//! subscribes again itself on every reconnection, retrying with backoff until the new master
//! takes the commands.
//!
//! # Limits
//!
//! The lease is as safe as the Redis that holds it: with a replica promoted after a failover,
//! writes the old primary acknowledged but had not replicated are lost, leases included, so two
//! holders can overlap ([`RedisSessions::with_replica_wait`] keeps the writes; the overlapping
//! holders stay fenced). Writers that take no lock (a plain `tower_sessions::Session` route
//! that writes) are not fenced. Clocks do not matter:
//! lifetimes are counted by Redis alone. A node that dies holds its sessions up for one lease
//! at most.

mod lease;
mod replicas;
mod resubscribe;
mod scripts;
mod store;
mod users;

use std::{
    collections::HashMap,
    fmt,
    sync::{atomic::AtomicBool, Arc, Mutex, PoisonError},
    time::Duration,
};

use fred::{
    clients::{Client, Pool, SubscriberClient},
    interfaces::ClientLike,
    prelude::{Builder, Config, PerformanceConfig, ReconnectPolicy},
    types::{config::ClusterDiscoveryPolicy, RespVersion},
};
use socketioxide_redis::{drivers::fred::FredDriver, RedisAdapterCtr};
use tower_sessions::session::Id;

pub use fred;
pub use lease::RedisSessionLocks;
pub use socketioxide_redis;
pub use store::RedisSessionStore;
pub use tower_sessions_redis_store;
pub use users::RedisUserIndex;

use replicas::ReplicaWait;
use scripts::Scripts;

/// The lease's lifetime unless [`RedisSessions::with_lease`] says otherwise.
///
/// ```
/// use std::time::Duration;
/// use session_runtime::redis::DEFAULT_LEASE;
///
/// assert_eq!(DEFAULT_LEASE, Duration::from_secs(5));
/// ```
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// Connections [`RedisSessions::connect`] opens for records and leases.
const POOL_SIZE: usize = 2;

/// A Redis connection shared by the store, the locks and the socket.io adapter of one app
/// (see the [module docs](self)).
///
/// ```no_run
/// use std::time::Duration;
/// use session_runtime::redis::RedisSessions;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisSessions::connect("redis://127.0.0.1:6379")
///     .await?
///     .with_lease(Duration::from_secs(2));
/// let (store, locks) = (redis.store(), redis.locks());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSessions {
    shared: Arc<Shared>,
    lease: Duration,
    replicas: Option<ReplicaWait>,
}

/// What the store and the locks of one [`RedisSessions`] share.
pub(crate) struct Shared {
    pool: Pool,
    scripts: Scripts,
    /// The leases this process holds, by session: the store fences its writes with them.
    /// Writers of one process queue in the process first, so an id has one entry at most.
    held: Mutex<HashMap<Id, Arc<Held>>>,
    /// This process among the nodes, for taking turns at a lease: random, never reused.
    node: String,
    /// Ticked when the adapter's listener is back after its connection died, or the database
    /// answers again: the other nodes' pushes meanwhile may be lost (see `listener_returns`).
    pub(crate) returns: crate::locks::Returns,
}

/// A lease this process holds.
pub(crate) struct Held {
    token: String,
    /// A write through the store was refused: the lease had lapsed.
    lost: AtomicBool,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Arc<Held>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The lease this process holds on `id`, if any.
    fn holding(&self, id: &Id) -> Option<Arc<Held>> {
        self.held().get(id).cloned()
    }

    /// The client for our next command: a connected one when the pool has one, as fred's
    /// `Pool` picks for tower-sessions-redis-store's calls (after Redis comes back, the
    /// pool's clients reconnect one by one).
    fn client(&self) -> &Client {
        self.pool.next_connected()
    }
}

impl fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessions")
            .field("lease", &self.lease)
            .field("replicas", &self.replicas)
            .finish_non_exhaustive()
    }
}

impl RedisSessions {
    /// Connects to the Redis at `url` and loads the scripts: `redis://host:port` (`rediss://`
    /// with a TLS feature of fred), a Redis Cluster as
    /// `redis-cluster://host:port?node=host:port&node=...`, or the sentinels of a master as
    /// `redis-sentinel://host:port?sentinelServiceName=NAME&node=host:port...`.
    ///
    /// The connections speak RESP3 (the adapter needs it; fred takes the protocol from its
    /// config, not from the URL), reconnect every 100 ms after a failure, never resend a
    /// command whose connection dropped (a script may have run), and give up on a command
    /// after 3 s.
    ///
    /// ```no_run
    /// use session_runtime::redis::RedisSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let one = RedisSessions::connect("redis://127.0.0.1:6379").await?;
    /// let sentinel = RedisSessions::connect(
    ///     "redis-sentinel://10.0.0.1:26379?sentinelServiceName=sessions&node=10.0.0.2:26379",
    /// )
    /// .await?;
    /// let cluster =
    ///     RedisSessions::connect("redis-cluster://10.0.0.1:7000?node=10.0.0.2:7000").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// fred's error when the URL is invalid or the first connection fails.
    pub async fn connect(url: &str) -> Result<Self, fred::error::Error> {
        let pool = builder(url)?.build_pool(POOL_SIZE)?;
        pool.init().await?;
        let sessions = Self::new(pool);
        sessions
            .shared
            .scripts
            .load(sessions.shared.client())
            .await?;
        Ok(sessions)
    }

    /// Uses `pool`, connected or not. For the socket.io adapter the pool must speak RESP3
    /// (`config.version = RespVersion::RESP3`). The scripts load on first use.
    ///
    /// ```no_run
    /// use session_runtime::redis::{
    ///     fred::{prelude::{Builder, ClientLike, Config}, types::RespVersion},
    ///     RedisSessions,
    /// };
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut config = Config::from_url("redis://127.0.0.1:6379")?;
    /// config.version = RespVersion::RESP3;
    /// let pool = Builder::from_config(config).build_pool(4)?;
    /// pool.init().await?;
    /// let redis = RedisSessions::new(pool);
    /// # Ok(()) }
    /// ```
    pub fn new(pool: Pool) -> Self {
        Self {
            shared: Arc::new(Shared {
                pool,
                scripts: Scripts::default(),
                held: Mutex::default(),
                node: Id::default().to_string(),
                returns: crate::locks::Returns::new(),
            }),
            lease: DEFAULT_LEASE,
            replicas: None,
        }
    }

    /// The lease's lifetime (default [`DEFAULT_LEASE`]): how long other nodes wait for the
    /// session of a writer that died, and how long a paused writer may stall before its write
    /// is refused. Its holder renews it every third of it. Applies to the locks made after.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use session_runtime::redis::RedisSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisSessions::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_lease(Duration::from_secs(2)); // before `locks()`
    /// let locks = redis.locks();
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// When `ttl` is under 30 ms: renewals would not keep up.
    pub fn with_lease(mut self, ttl: Duration) -> Self {
        assert!(
            ttl >= Duration::from_millis(30),
            "a lease of {ttl:?} is too short to renew"
        );
        self.lease = ttl;
        self
    }

    /// Acknowledges a write of a session only once `replicas` replicas have it: every write
    /// of a record (a save or a delete under a lease, and the store's own creates, saves and
    /// deletes) is followed by `WAIT replicas timeout` on the connection that wrote, routed on
    /// a Cluster to the node of the record's slot. When fewer replicas confirm it within
    /// `timeout`, the write fails: its client gets an error (HTTP 503), never a success for a
    /// write a failover could lose, though the write may well be there (Redis does not undo
    /// it). Applies to the store and the locks made after.
    ///
    /// Without it (the default) replication is asynchronous: a failover may lose the writes
    /// the old master acknowledged last (see the [module docs](self)).
    ///
    /// It costs one round trip per write (a `readonly` event and an `autosave` event that
    /// changes nothing cost what they did), plus the replica's acknowledgement: the
    /// replication lag, measured in the repository's benchmark. Keep `timeout` under the store
    /// bound ([`Timeouts::with_store`](crate::Timeouts::with_store), 3 s by default).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use session_runtime::redis::RedisSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisSessions::connect("redis-sentinel://10.0.0.1:26379?sentinelServiceName=sessions")
    ///     .await?
    ///     .with_replica_wait(1, Duration::from_millis(500)); // before `store()` and `locks()`
    /// let (store, locks) = (redis.store(), redis.locks());
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// When `replicas` is 0: use the default instead.
    pub fn with_replica_wait(mut self, replicas: u32, timeout: Duration) -> Self {
        assert!(replicas > 0, "waiting for 0 replicas waits for nothing");
        self.replicas = Some(ReplicaWait { replicas, timeout });
        self
    }

    /// The session store, for `SessionManagerLayer` and [`SocketSessions::new`](crate::SocketSessions::new).
    ///
    /// Give it to [`SocketSessions::new`](crate::SocketSessions::new) only: the session layer
    /// that [`SocketSessions::layer`](crate::SocketSessions::layer) builds uses it too.
    ///
    /// ```no_run
    /// use session_runtime::redis::RedisSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?;
    /// let sessions = session_runtime::SocketSessions::new(redis.store());
    /// # Ok(()) }
    /// ```
    pub fn store(&self) -> RedisSessionStore {
        RedisSessionStore::new(self.shared.clone(), self.replicas)
    }

    /// The per-session locks, for [`SocketSessions::with_locks`](crate::SocketSessions::with_locks).
    ///
    /// ```no_run
    /// use session_runtime::redis::RedisSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?;
    /// let sessions = session_runtime::SocketSessions::new(redis.store()).with_locks(redis.locks());
    /// # Ok(()) }
    /// ```
    pub fn locks(&self) -> RedisSessionLocks {
        RedisSessionLocks::new(self.shared.clone(), self.lease, self.replicas)
    }

    /// The index of users' sessions in this Redis, for
    /// [`Users::with_index`](crate::users::Users::with_index): every node that shares the
    /// Redis shares it (see [`RedisUserIndex`]).
    ///
    /// ```no_run
    /// use session_runtime::{redis::RedisSessions, users::Users, SocketSessions};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?;
    /// let users = Users::key("user").with_index(redis.user_index());
    /// let sessions = SocketSessions::new(redis.store()).with_locks(redis.locks()).with_users(users);
    /// # Ok(()) }
    /// ```
    pub fn user_index(&self) -> RedisUserIndex {
        RedisUserIndex::new(self.shared.clone())
    }

    /// The pool of connections.
    ///
    /// For the app's own commands, on the same connections.
    ///
    /// ```no_run
    /// use session_runtime::redis::{fred::prelude::KeysInterface, RedisSessions};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?;
    /// let visits: i64 = redis.pool().incr("visits").await?;
    /// # Ok(()) }
    /// ```
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    /// A socketioxide-redis adapter on a subscriber connection of its own, configured as the
    /// pool (RESP3 required), that resubscribes after a reconnection: for
    /// `SocketIo::builder().with_adapter::<FredAdapter<_>>(..)`.
    ///
    /// ```no_run
    /// use session_runtime::redis::{socketioxide_redis::FredAdapter, RedisSessions};
    /// use socketioxide::SocketIo;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?;
    /// let (sio_layer, io) = SocketIo::builder()
    ///     .with_adapter::<FredAdapter<_>>(redis.adapter().await?)
    ///     .build_layer();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// fred's error when the subscriber cannot connect.
    pub async fn adapter(&self) -> Result<RedisAdapterCtr<FredDriver>, fred::error::Error> {
        let client = self.shared.client();
        let mut builder = Builder::from_config(client.client_config());
        builder.set_connection_config(client.connection_config().clone());
        if let Some(policy) = client.client_reconnect_policy() {
            builder.set_policy(policy);
        }
        builder.set_performance_config(PerformanceConfig {
            broadcast_channel_capacity: SUBSCRIBER_QUEUE,
            ..client.perf_config()
        });
        let subscriber: SubscriberClient = builder.build_subscriber_client()?;
        let adapter = RedisAdapterCtr::new_with_fred(subscriber.clone()).await?;
        // A restarted Redis or a promoted replica knows none of the subscriptions: subscribe
        // again on every reconnection (not with fred's `manage_subscriptions`, see
        // `resubscribe`).
        resubscribe::after_reconnections(subscriber, self.shared.returns.sender());
        Ok(adapter)
    }
}

/// How many messages the adapter's subscriber holds for socketioxide-redis before dropping
/// the oldest: fred's default (32) lost a push when another node ended a user's 100 sessions
/// at once; this matches the adapter's own queue behind it (its `stream_buffer`, 1024).
const SUBSCRIBER_QUEUE: usize = 1024;

/// fred's configuration for [`RedisSessions::connect`].
fn builder(url: &str) -> Result<Builder, fred::error::Error> {
    let mut config = Config::from_url(url)?;
    config.version = RespVersion::RESP3;
    if config.server.is_clustered() {
        // fred's default asks only the URL's seed nodes for the cluster's layout once its
        // connection for that question dies: after every seed master has failed over, no
        // node it asks is left and no command is served again (issue 27, reproduced by the
        // failover test that kills each master in turn). Asking the nodes of the last layout
        // as well finds the promoted replicas.
        config
            .server
            .set_cluster_discovery_policy(ClusterDiscoveryPolicy::UseCache)?;
    }
    let mut builder = Builder::from_config(config);
    builder
        .set_policy(ReconnectPolicy::new_constant(0, 100))
        .with_connection_config(|connection| {
            connection.max_command_attempts = 1;
            connection.connection_timeout = Duration::from_secs(3);
            connection.internal_command_timeout = Duration::from_secs(3);
            // fred leaves Nagle's algorithm on: a command written while the previous one's
            // segment is unacknowledged waits for that acknowledgement, which rides back with
            // the reply, so under load each command waited about one more round trip (a
            // `GET` took two at +5 ms of network latency).
            connection.tcp.nodelay = Some(true);
        })
        .with_performance_config(|performance| {
            performance.default_command_timeout = Duration::from_secs(3);
        });
    Ok(builder)
}

/// The keys of one session: the record under the bare id (tower-sessions-redis-store's key),
/// the lease beside it in the same Redis Cluster hash slot.
#[derive(Clone)]
pub(crate) struct Keys {
    record: String,
    lease: String,
    /// The node whose turn is next (see `scripts/acquire.lua`).
    turn: String,
}

impl Keys {
    fn of(id: &Id) -> Self {
        let record = id.to_string();
        // Base64url: no braces, so the hash tag is the whole id.
        debug_assert!(!record.contains(['{', '}']));
        let lease = format!("{{{record}}}:lock");
        let turn = format!("{{{record}}}:next");
        Self {
            record,
            lease,
            turn,
        }
    }
}

/// A fred failure as the store error tower-sessions knows; its text stays in logs.
fn backend(err: fred::error::Error) -> tower_sessions::session_store::Error {
    tower_sessions::session_store::Error::Backend(err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_hashes_in_the_record_slot() {
        for _ in 0..1000 {
            let keys = Keys::of(&Id::default());
            assert_eq!(keys.lease, format!("{{{}}}:lock", keys.record));
            assert_eq!(keys.turn, format!("{{{}}}:next", keys.record));
            assert!(!keys.record.contains(['{', '}']));
        }
    }
}

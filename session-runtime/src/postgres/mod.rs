//! Several nodes on one PostgreSQL (feature `postgres`): session records, per-session leases
//! and socket.io broadcasts shared by every process of an app, with no Redis.
//!
//! | piece | built on | what it gives |
//! |---|---|---|
//! | [`PostgresSessionStore`] | [`tower_sessions_sqlx_store::PostgresStore`] (0.15) | the records in its exact table and encoding: `"tower_sessions"."session"` (`id`, `data` = MessagePack of the record, `expiry_date`) |
//! | [`PostgresSessionLocks`] | two plpgsql functions beside the records | a per-session *lease* that fences writes |
//! | [`PostgresSessions::adapter`] | [`socketioxide_postgres`] (0.2, LISTEN/NOTIFY) on [`ListenNotify`] | broadcasts and rooms across nodes |
//!
//! One client library, [`sqlx`] 0.8, and one pool serve all three. Take the store and the
//! locks from the same [`PostgresSessions`]: the store fences the HTTP side's writes with the
//! locks' leases.
//!
//! ```no_run
//! use axum::Router;
//! use session_runtime::postgres::{PostgresAdapter, PostgresSessions};
//! use session_runtime::SocketSessions;
//! use socketioxide::{extract::SocketRef, SocketIo};
//! use tower_sessions::cookie::Key;
//!
//! # async fn run(cookie_key: Key) -> Result<(), Box<dyn std::error::Error>> {
//! // `cookie_key`: the same on every node (e.g. read from the environment).
//! let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?; // creates its tables
//! let sessions = SocketSessions::new(pg.store())
//!     .with_locks(pg.locks())
//!     .with_room_key(cookie_key.master()); // shared by every node, so logouts reach them all
//! let (sio_layer, io) = SocketIo::builder()
//!     .with_adapter::<PostgresAdapter<_>>(pg.adapter())
//!     .build_layer();
//! // Listening to the other nodes before serving.
//! io.ns("/", sessions.handler(|_socket: SocketRef<PostgresAdapter<_>>| {})).await?;
//! let app: Router = Router::new()
//!     .layer(sio_layer)
//!     .layer(sessions.layer(io, |layer| layer.with_private(cookie_key)));
//! # Ok(()) }
//! ```
//!
//! | crate | version | why this one |
//! |---|---|---|
//! | tower-sessions-sqlx-store | 0.15, feature `postgres` | the release on tower-sessions-core 0.14; records stay in its table |
//! | sqlx | 0.8 | the one tower-sessions-sqlx-store 0.15 is built on, shared by everything here |
//! | socketioxide-postgres | 0.2, no default features | the release on socketioxide-core 0.20; its own sqlx driver needs sqlx 0.9, so [`ListenNotify`] drives it on sqlx 0.8 |
//! | PostgreSQL | 12 or later | plpgsql, `ON CONFLICT`, `LISTEN`/`NOTIFY` |
//!
//! **Why not sqlx 0.9.** socketioxide-postgres's built-in driver is on sqlx 0.9 while
//! tower-sessions-sqlx-store 0.15 is on 0.8: taking both builds two sqlx (two pools, two
//! sets of connections, 30 more crates: 208 instead of 178 in `cargo tree`, 9 of them
//! sqlx's). [`ListenNotify`] is the driver trait's implementation on sqlx 0.8: the same
//! statements, and a listener that connects again after the database restarts (sqlx 0.9's
//! driver stream ends on the first error, and its node would hear the others no more).
//! Measured on a small app (a release build from scratch, 2 cores): without this feature
//! 61 s and a 1.65 MB binary; with it 127 s and 7.06 MB; with socketioxide-postgres's own
//! sqlx 0.9 driver as well 155 s and 8.89 MB.
//!
//! # The lease
//!
//! A writer takes its session's lease before it reloads the record and gives it back after it
//! saved. The lease is a row of `"tower_sessions"."session_lease"` (an `UNLOGGED` table: a
//! lease is worth nothing after a crash) with a random token of the holder's and a bounded
//! lifetime ([`PostgresSessions::with_lease`], 5 s by default), counted by the database's
//! clock. While its holder runs, a task renews it every third of that lifetime; only the
//! holder releases it, and the release deletes the row, so rows exist only while a session is
//! being written (a task removes those of nodes that died, every minute, with the expired
//! records: [`PostgresSessions::with_cleanup`]). Writers of one process queue in the process
//! first ([`LocalSessionLocks`](crate::locks::LocalSessionLocks)), so one of them at a time
//! waits for the database while another node holds the lease; the runtime's lock bound
//! ([`Timeouts::with_lock`](crate::Timeouts::with_lock)) ends the wait with
//! [`SessionError::Busy`](crate::SessionError::Busy).
//!
//! **Wake-ups.** A refused writer leaves a random tag of its own on the lease's row; the
//! release `NOTIFY`s each tag (channel `tower_sessions_lease`, sent at the release's commit),
//! and the node's `LISTEN` connection, opened at its first wait, wakes the writer, which asks
//! again at once. A notification lost (the listener reconnecting) costs 50 ms at most: a
//! waiter asks again after that anyway, or when the lease lapses if sooner.
//!
//! **Turns.** The holder's node hands the lease to its own next writer as soon as it is
//! released, before a woken node's ask arrives; so, as on Redis, nodes take turns: the first
//! node refused records itself in `"tower_sessions"."session_turn"`, and once it has waited
//! 20 ms no other node takes the lease until it has (or until it stops asking and its turn
//! lapses, 100 ms later).
//!
//! **Fencing.** A holder that is paused or cut off for longer than the lifetime loses the
//! lease, and another writer may take it. Every write made under a lease is one call of a
//! function that checks the lease (locking its row) and writes the record in one transaction,
//! so a holder whose lease lapsed writes nothing: its client gets
//! [`SessionError::LeaseLost`](crate::SessionError::LeaseLost) (on HTTP, 503), never a success
//! for a write that did not happen, and never a write over a later holder's. A save is an
//! `UPDATE`, so a session deleted meanwhile (a logout on another node) is never brought back.
//!
//! **Round trips.** An uncontended `autosave` event costs two statements: one takes the lease
//! and reads the record, one writes the record and releases the lease (or only releases it
//! when nothing changed). A `readonly` event costs one `SELECT`. The pool checks no
//! connection before lending it (`test_before_acquire(false)`), which would cost a round trip
//! per statement; a dead connection fails its statement instead (an error ack), and the pool
//! replaces it.
//!
//! # Failure
//!
//! While the database is down or paused, writers get errors within the runtime's bounds
//! ([`Timeouts`](crate::Timeouts): acknowledgements `{"error": ...}`, HTTP 503), never a
//! success for a write that did not happen; the pool connects again by itself when it is back,
//! and the listener listens again, so pushes and broadcasts cross nodes again without a
//! restart. Notifications sent while a node was not listening are lost (as with Redis
//! pub/sub), but not the session ends they told of: once the listener is back, the node checks
//! the sessions of its sockets in one statement per 500 and pushes those that ended
//! (`SessionLocks::live`).
//!
//! # Limits
//!
//! The lease is as safe as the database that holds it; with a replica promoted after a
//! failover, what the old primary acknowledged and had not replicated is lost (use synchronous
//! replication to keep it). Writers that take no lock (a plain `tower_sessions::Session` route
//! that writes) are not fenced. The
//! tables are PostgresStore's defaults (`"tower_sessions"."session"`); another schema or
//! table name is not supported. `NOTIFY` payloads are limited to 8 000 bytes: larger packets
//! go through the adapter's attachment table (threshold 7 000 bytes here).

mod lease;
mod listen;
mod sql;
mod store;
mod users;
mod wake;

use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::{atomic::AtomicBool, Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use socketioxide_postgres::{CustomPostgresAdapter, PostgresAdapterConfig, PostgresAdapterCtr};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};
use tower_sessions::{session::Id, ExpiredDeletion};
use tower_sessions_sqlx_store::PostgresStore;

pub use lease::PostgresSessionLocks;
pub use listen::{ListenNotify, Notice};
pub use socketioxide_postgres;
pub use sqlx;
pub use store::PostgresSessionStore;
pub use tower_sessions_sqlx_store;
pub use users::PostgresUserIndex;

/// The lease's lifetime unless [`PostgresSessions::with_lease`] says otherwise.
///
/// ```
/// use std::time::Duration;
/// use session_runtime::postgres::DEFAULT_LEASE;
///
/// assert_eq!(DEFAULT_LEASE, Duration::from_secs(5));
/// ```
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);

/// The socket.io adapter of [`PostgresSessions::adapter`], for
/// `SocketIo::builder().with_adapter::<PostgresAdapter<_>>(..)` and `SocketRef<PostgresAdapter<_>>`.
pub type PostgresAdapter<E> = CustomPostgresAdapter<E, ListenNotify>;

/// Connections [`PostgresSessions::connect`] keeps at most, the listener's included.
const POOL_SIZE: u32 = 10;

/// How long a statement may wait for a connection of the pool.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often the expired records and the leases of dead nodes are removed by default.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// The `NOTIFY` payload above which the adapter goes through its attachment table: under
/// PostgreSQL's 8 000 bytes with room for the adapter's own envelope.
const PAYLOAD_THRESHOLD: usize = 7_000;

/// Serialises the nodes creating the tables and functions at start (`CREATE OR REPLACE
/// FUNCTION` and `CREATE SCHEMA IF NOT EXISTS` fail when run concurrently).
const SCHEMA_LOCK: i64 = 0x005e_5510_e57a_b1e5;

/// A PostgreSQL pool shared by the store, the locks and the socket.io adapter of one app
/// (see the [module docs](self)).
///
/// ```no_run
/// use std::time::Duration;
/// use session_runtime::postgres::PostgresSessions;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app")
///     .await?
///     .with_lease(Duration::from_secs(2));
/// let (store, locks) = (pg.store(), pg.locks());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresSessions {
    shared: Arc<Shared>,
    lease: Duration,
}

/// What the store and the locks of one [`PostgresSessions`] share.
pub(crate) struct Shared {
    pool: PgPool,
    records: PostgresStore,
    /// The leases this process holds, by session: the store fences its writes with them.
    /// Writers of one process queue in the process first, so an id has one entry at most.
    held: Mutex<HashMap<Id, Arc<Held>>>,
    /// The cleanup task, aborted with the last handle.
    cleanup: Mutex<Option<tokio::task::AbortHandle>>,
    /// Ticked when the adapter's listener is back after its connection died, or the database
    /// answers again: the other nodes' pushes meanwhile may be lost (see `listener_returns`).
    pub(crate) returns: crate::locks::Returns,
    /// This process's name in the turns at a lease: random, one per `PostgresSessions`.
    node: String,
    /// The writers waiting for a lease another node holds, woken by its release.
    wakes: Arc<wake::Wakes>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(task) = self.cleanup.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
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
}

impl fmt::Debug for PostgresSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSessions")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl PostgresSessions {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`, as
    /// [`sqlx::postgres::PgConnectOptions`] reads it), then creates what is missing: the
    /// records' schema and table (PostgresStore's `migrate`), the lease table and its
    /// functions. Nodes starting together take turns at it.
    ///
    /// The pool keeps up to 10 connections, waits 3 s at most for one, and checks none before
    /// lending it (a round trip per statement). Expired records and the leases of dead nodes
    /// are removed every minute ([`with_cleanup`](Self::with_cleanup)).
    ///
    /// ```no_run
    /// use session_runtime::postgres::PostgresSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pg = PostgresSessions::connect("postgres://app:secret@10.0.0.1:5432/app").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// sqlx's error when the URL is invalid, the database cannot be reached, or the user may
    /// not create the tables.
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        // The `CREATE ... IF NOT EXISTS` of every start would log a notice each.
        let options =
            PgConnectOptions::from_str(url)?.options([("client_min_messages", "warning")]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Self::migrate(&pool).await?;
        Ok(Self::new(pool))
    }

    /// Uses `pool` as it is: its tables must exist already ([`PostgresSessions::migrate`]).
    /// A pool of at least 3 connections (the adapter's listener keeps one);
    /// `test_before_acquire(false)` keeps an event at its round trips.
    ///
    /// ```no_run
    /// use session_runtime::postgres::{sqlx::postgres::PgPoolOptions, PostgresSessions};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPoolOptions::new()
    ///     .max_connections(32)
    ///     .test_before_acquire(false)
    ///     .connect("postgres://app@127.0.0.1/app")
    ///     .await?;
    /// PostgresSessions::migrate(&pool).await?;
    /// let pg = PostgresSessions::new(pool);
    /// # Ok(()) }
    /// ```
    pub fn new(pool: PgPool) -> Self {
        let shared = Arc::new(Shared {
            records: PostgresStore::new(pool.clone()),
            pool,
            held: Mutex::default(),
            cleanup: Mutex::default(),
            returns: crate::locks::Returns::new(),
            node: Id::default().to_string(),
            wakes: Arc::default(),
        });
        let sessions = Self {
            shared,
            lease: DEFAULT_LEASE,
        };
        sessions.with_cleanup(CLEANUP_EVERY)
    }

    /// Creates what is missing in the database of `pool`: the records' schema and table
    /// (PostgresStore's own `migrate`), the lease table and its functions (replaced by this
    /// version's). Serialised across nodes by an advisory lock.
    ///
    /// ```no_run
    /// use session_runtime::postgres::{sqlx::PgPool, PostgresSessions};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pool = PgPool::connect("postgres://app@127.0.0.1/app").await?;
    /// PostgresSessions::migrate(&pool).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// sqlx's error when a statement fails (e.g. the user may not create schemas).
    pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
        // A session-level lock on a connection of its own, held while PostgresStore migrates
        // on another: its `migrate` takes no lock and gives up silently on a concurrent
        // `CREATE SCHEMA`, leaving the table uncreated.
        let mut conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *conn)
            .await?;
        let created = async {
            PostgresStore::new(pool.clone()).migrate().await?;
            sqlx::raw_sql(include_str!("schema.sql"))
                .execute(&mut *conn)
                .await?;
            Ok::<_, sqlx::Error>(())
        }
        .await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *conn)
            .await;
        if unlocked.is_err() {
            // Never back into the pool holding the lock.
            conn.close_on_drop();
        }
        created?;
        unlocked.map(drop)
    }

    /// The lease's lifetime (default [`DEFAULT_LEASE`]): how long other nodes wait for the
    /// session of a writer that died, and how long a paused writer may stall before its write
    /// is refused. Its holder renews it every third of it. Applies to the locks made after.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use session_runtime::postgres::PostgresSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app")
    ///     .await?
    ///     .with_lease(Duration::from_secs(2)); // before `locks()`
    /// let locks = pg.locks();
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

    /// Removes expired records (PostgresStore's `delete_expired`) and the leases that lapsed
    /// (their nodes died holding them) every `period`, in a task of the current runtime
    /// (every minute unless this says otherwise; it replaces the previous task). Every node
    /// runs it; the deletes are idempotent.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use session_runtime::postgres::PostgresSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app")
    ///     .await?
    ///     .with_cleanup(Duration::from_secs(600));
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    ///
    /// When `period` is zero.
    pub fn with_cleanup(self, period: Duration) -> Self {
        assert!(!period.is_zero(), "a cleanup every 0 s");
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self;
        };
        let task = runtime.spawn(clean_every(Arc::downgrade(&self.shared), period));
        let previous = self
            .shared
            .cleanup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task.abort_handle());
        if let Some(previous) = previous {
            previous.abort();
        }
        self
    }

    /// The session store, for [`SocketSessions::new`](crate::SocketSessions::new).
    ///
    /// ```no_run
    /// use session_runtime::postgres::PostgresSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?;
    /// let sessions = session_runtime::SocketSessions::new(pg.store());
    /// # Ok(()) }
    /// ```
    pub fn store(&self) -> PostgresSessionStore {
        PostgresSessionStore::new(self.shared.clone())
    }

    /// The per-session locks, for [`SocketSessions::with_locks`](crate::SocketSessions::with_locks).
    ///
    /// ```no_run
    /// use session_runtime::postgres::PostgresSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?;
    /// let sessions = session_runtime::SocketSessions::new(pg.store()).with_locks(pg.locks());
    /// # Ok(()) }
    /// ```
    pub fn locks(&self) -> PostgresSessionLocks {
        PostgresSessionLocks::new(self.shared.clone(), self.lease)
    }

    /// The index of users' sessions in this database, for
    /// [`Users::with_index`](crate::users::Users::with_index): every node that shares the
    /// database shares it (see [`PostgresUserIndex`]).
    ///
    /// ```no_run
    /// use session_runtime::{postgres::PostgresSessions, users::Users, SocketSessions};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?;
    /// let users = Users::key("user").with_index(pg.user_index());
    /// let sessions = SocketSessions::new(pg.store()).with_locks(pg.locks()).with_users(users);
    /// # Ok(()) }
    /// ```
    pub fn user_index(&self) -> PostgresUserIndex {
        PostgresUserIndex::new(self.shared.clone())
    }

    /// The pool, for the app's own queries on the same connections.
    ///
    /// ```no_run
    /// use session_runtime::postgres::PostgresSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?;
    /// let (sessions,): (i64,) = session_runtime::postgres::sqlx::query_as(
    ///     r#"SELECT count(*) FROM "tower_sessions"."session""#,
    /// )
    /// .fetch_one(pg.pool())
    /// .await?;
    /// # Ok(()) }
    /// ```
    pub fn pool(&self) -> &PgPool {
        &self.shared.pool
    }

    /// A socketioxide-postgres adapter on this pool (its listener keeps one connection, and
    /// listens again after the database comes back): for
    /// `SocketIo::builder().with_adapter::<PostgresAdapter<_>>(..)`. Payloads over 7 000 bytes
    /// go through its attachment table, `socket_io_attachments`, created on first use.
    ///
    /// ```no_run
    /// use session_runtime::postgres::{PostgresAdapter, PostgresSessions};
    /// use socketioxide::SocketIo;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?;
    /// let (sio_layer, io) = SocketIo::builder()
    ///     .with_adapter::<PostgresAdapter<_>>(pg.adapter())
    ///     .build_layer();
    /// # Ok(()) }
    /// ```
    pub fn adapter(&self) -> PostgresAdapterCtr<ListenNotify> {
        let config = PostgresAdapterConfig::new().with_payload_threshold(PAYLOAD_THRESHOLD);
        let driver = ListenNotify::ticking(self.shared.pool.clone(), self.shared.returns.sender());
        PostgresAdapterCtr::new_with_driver(driver, config)
    }
}

/// The cleanup loop of [`PostgresSessions::with_cleanup`], until the sessions are dropped.
async fn clean_every(shared: Weak<Shared>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Err(err) = shared.records.delete_expired().await {
            tracing::warn!(%err, "could not delete expired sessions");
        }
        if let Err(err) = sql::delete_lapsed(&shared.pool).await {
            tracing::warn!(%err, "could not delete lapsed session leases");
        }
    }
}

/// A sqlx failure as the store error tower-sessions knows; its text stays in logs.
fn backend(err: sqlx::Error) -> tower_sessions::session_store::Error {
    tower_sessions::session_store::Error::Backend(err.to_string())
}

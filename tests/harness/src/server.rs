//! [`TestServer`]: axum 0.8 + socketioxide 0.18 + tower-sessions 0.14 on `127.0.0.1:0`, in the
//! test's own process, configured by [`ServerBuilder`].
//!
//! It speaks the HTTP half of the demo protocol (`session_workspace::protocol`) plus the test
//! routes of [`crate::routes`], and registers the socket events of [`crate::events`] on `/` (and
//! on one more namespace if asked), the hand-written twins of [`crate::hand_written`] on
//! [`crate::HAND_WRITTEN`], and a connect guard on `/members`.
//!
//! ```no_run
//! use session_harness::{CookieMode, StoreKind, TestServer};
//!
//! # async fn scenario() {
//! let server = TestServer::builder()
//!     .cookie(CookieMode::Private)
//!     .store(StoreKind::Moka)
//!     .latency(std::time::Duration::from_millis(2))
//!     .start()
//!     .await;
//! let alice = server.login("alice").await;
//! assert_eq!(alice.http.incr().await, 1);
//! assert!(server.locks.is_empty());
//! # }
//! ```

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use axum::routing::{get, post};
use session_runtime::{
    http::WatchedStore,
    locks::{LocalSessionLocks, LockFuture, SessionLockGuard, SessionLocks},
    postgres::PostgresSessions,
    redis::RedisSessions,
    KeepAlive, OnGone, SessionError, SocketSessions, Timeouts,
};
use socketioxide::{extract::SocketRef, handler::ConnectHandler, SocketIo};
use tower_sessions::{cookie::Key, session::Id, Expiry, SessionManagerLayer};

use crate::{
    events::{self, HoldProbe},
    hand_written, routes,
    store::{Sqlite, StoreKind, TestStore},
    Http, HAND_WRITTEN, TIMEOUT,
};

/// Socket.io packets buffered per socket. socketioxide's default of 128 overflows under a
/// burst of 200 concurrent events and then drops acks; the tests send 100 per
/// socket and expect every ack.
pub const MAX_BUFFER_SIZE: usize = 1024;

/// The largest socket.io packet accepted, on every transport (the demo's limit).
pub const MAX_PAYLOAD: usize = 64 << 10;

/// The namespace whose connect guard is [`events::members_only`].
pub const MEMBERS: &str = "/members";

/// How the session cookie is protected. The socket side is never given the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieMode {
    /// The cookie value is the session id.
    Plain,
    /// `SessionManagerLayer::with_signed`.
    Signed,
    /// `SessionManagerLayer::with_private`.
    Private,
}

/// Configures a [`TestServer`]; start with [`TestServer::builder`].
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    cookie: CookieMode,
    store: StoreKind,
    namespace: Option<&'static str>,
    on_gone: OnGone,
    require_session: bool,
    expiry: Option<Expiry>,
    keep_alive: KeepAlive,
    latency: Duration,
    locks: LockKind,
    timeouts: Option<Timeouts>,
    push_gone: bool,
    redis: Option<(String, Duration)>,
    /// `ServerBuilder::postgres`'s URL and lease.
    postgres: Option<(String, Duration)>,
    /// `RedisSessions::with_replica_wait`'s replicas and timeout.
    replica_wait: Option<(u32, Duration)>,
}

/// The database several nodes would share, when the builder names one.
enum Shared {
    Redis(RedisSessions),
    Postgres(PostgresSessions),
}

/// Which locks the server's sockets and HTTP routes share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LockKind {
    /// `LocalSessionLocks`, the runtime's.
    Local,
    /// Locks that exclude nothing: the control experiment.
    None,
    /// A lock backend that fails every time.
    Failing,
}

impl ServerBuilder {
    /// The cookie mode (default [`CookieMode::Plain`]).
    pub fn cookie(mut self, cookie: CookieMode) -> Self {
        self.cookie = cookie;
        self
    }

    /// The store (default [`StoreKind::Memory`]).
    pub fn store(mut self, store: StoreKind) -> Self {
        self.store = store;
        self
    }

    /// Also registers every socket event in namespace `ns` (e.g. `"/admin"`).
    pub fn namespace(mut self, ns: &'static str) -> Self {
        self.namespace = Some(ns);
        self
    }

    /// The gone policy (default [`OnGone::KeepAnonymous`]).
    pub fn on_gone(mut self, policy: OnGone) -> Self {
        self.on_gone = policy;
        self
    }

    /// `SocketSessions::require_session()`.
    pub fn require_session(mut self) -> Self {
        self.require_session = true;
        self
    }

    /// `SessionManagerLayer::with_expiry` (default: the layer's, `OnSessionEnd`).
    pub fn expiry(mut self, expiry: Expiry) -> Self {
        self.expiry = Some(expiry);
        self
    }

    /// `SocketSessions::with_keep_alive` (default: the runtime's, `KeepAlive::Events`).
    pub fn keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// Latency added to every store operation from the start (see [`TestStore::set_latency`]).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// A control experiment: the sockets and HTTP routes get locks that exclude nothing, to
    /// show that the no-lost-update tests fail without the runtime's locks.
    pub fn without_locks(mut self) -> Self {
        self.locks = LockKind::None;
        self
    }

    /// `SocketSessions::timeouts` (default: the runtime's defaults).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = Some(timeouts);
        self
    }

    /// Writers wait for a session's lock up to [`TIMEOUT`], not the default 3 s: for tests of
    /// serialisation, whose hundreds of writers queued on one lock wait past the default on a
    /// loaded machine (and would get `Busy`, which `runtime_faults.rs` tests).
    pub fn patient_locks(self) -> Self {
        self.timeouts(Timeouts::default().with_lock(TIMEOUT))
    }

    /// HTTP logouts and rotations push nothing to the sockets (no `push_gone`), so sockets
    /// learn that their session is gone only at their next event.
    pub fn without_gone_push(mut self) -> Self {
        self.push_gone = false;
        self
    }

    /// Locks whose backend fails every time (as a distributed lock whose server is down),
    /// with [`LOCK_FAILURE`] as the error's source.
    pub fn failing_locks(mut self) -> Self {
        self.locks = LockKind::Failing;
        self
    }

    /// Records, locks and the store's fencing in the Redis at `url` (`RedisServer::url`), with
    /// leases of `lease`: `session_runtime::redis::RedisSessions`, as a node of several would
    /// run. The store is still wrapped in a [`TestStore`], which sees the loads and writes that
    /// go through it (not those of the leases' own scripts).
    pub fn redis(mut self, url: &str, lease: Duration) -> Self {
        self.redis = Some((url.to_owned(), lease));
        self
    }

    /// Records, locks and the store's fencing in the PostgreSQL at `url`
    /// (`PostgresServer::url`), with leases of `lease`:
    /// `session_runtime::postgres::PostgresSessions`, as a node of several would run. The
    /// store is wrapped in a [`TestStore`] as with [`ServerBuilder::redis`].
    pub fn postgres(mut self, url: &str, lease: Duration) -> Self {
        self.postgres = Some((url.to_owned(), lease));
        self
    }

    /// [`ServerBuilder::redis`] or [`ServerBuilder::postgres`], whichever `backend` is.
    pub fn shared(self, backend: &crate::backend::Backend, lease: Duration) -> Self {
        match backend {
            crate::backend::Backend::Redis(redis) => self.redis(&redis.url(), lease),
            crate::backend::Backend::Postgres(pg) => self.postgres(&pg.url(), lease),
        }
    }

    /// With [`ServerBuilder::redis`]: every write is acknowledged only once `replicas`
    /// replicas have it, or fails after `timeout` (`RedisSessions::with_replica_wait`).
    pub fn replica_wait(mut self, replicas: u32, timeout: Duration) -> Self {
        self.replica_wait = Some((replicas, timeout));
        self
    }

    /// Builds the store, binds `127.0.0.1:0` and serves in a background task.
    pub async fn start(self) -> TestServer {
        crate::init_tracing();
        let shared = match (&self.redis, &self.postgres) {
            (Some((url, lease)), _) => {
                let redis = RedisSessions::connect(url)
                    .await
                    .expect("connect to redis")
                    .with_lease(*lease);
                let redis = match self.replica_wait {
                    Some((replicas, timeout)) => redis.with_replica_wait(replicas, timeout),
                    None => redis,
                };
                Some(Shared::Redis(redis))
            }
            (None, Some((url, lease))) => Some(Shared::Postgres(
                PostgresSessions::connect(url)
                    .await
                    .expect("connect to postgres")
                    .with_lease(*lease),
            )),
            (None, None) => None,
        };
        let (store, sqlite) = match &shared {
            Some(Shared::Redis(redis)) => (TestStore::new(redis.store()), None),
            Some(Shared::Postgres(pg)) => (TestStore::new(pg.store()), None),
            None => self.store.open().await,
        };
        store.set_latency(self.latency);

        let locks = LocalSessionLocks::default();
        let mut sessions = SocketSessions::new(store.clone())
            .with_on_gone(self.on_gone)
            .with_keep_alive(self.keep_alive);
        sessions = match (self.locks, &shared) {
            (LockKind::Local, Some(Shared::Redis(redis))) => sessions.with_locks(redis.locks()),
            (LockKind::Local, Some(Shared::Postgres(pg))) => sessions.with_locks(pg.locks()),
            (LockKind::Local, None) => sessions.with_locks(locks.clone()),
            (LockKind::None, _) => sessions.with_locks(NoLocks),
            (LockKind::Failing, _) => sessions.with_locks(FailingLocks),
        };
        if self.require_session {
            sessions = sessions.with_session_required();
        }
        if let Some(timeouts) = self.timeouts {
            sessions = sessions.with_timeouts(timeouts);
        }

        let probe = Arc::new(HoldProbe::default());
        let runs = events::Runs::default();
        let (sio_layer, io) = SocketIo::builder()
            .max_buffer_size(MAX_BUFFER_SIZE)
            .max_payload(MAX_PAYLOAD as u64)
            .ws_max_message_size(MAX_PAYLOAD)
            .with_state(probe.clone())
            .with_state(runs.clone())
            .build_layer();
        let register = |socket: SocketRef| events::register(&socket);
        io.ns("/", sessions.handler(register));
        if let Some(ns) = self.namespace {
            io.ns(ns, sessions.handler(register));
        }
        io.ns(
            HAND_WRITTEN,
            sessions.handler(|socket: SocketRef| hand_written::register(&socket)),
        );
        io.ns(
            MEMBERS,
            sessions
                .handler(|_: SocketRef| {})
                .with(events::members_only),
        );

        let router = session_workspace::protocol::http_routes()
            .route("/session-id", get(routes::session_id))
            .route("/set", post(routes::set))
            .route("/plain/logout", post(routes::plain_logout))
            .route("/plain/rotate", post(routes::plain_rotate))
            .route("/session/refresh", session_runtime::http::refresh_cookie())
            .layer(axum::middleware::from_fn(routes::read_user_first))
            .layer(sio_layer);
        // Without the push, its sockets learn at their next event: pushes then go to a
        // socket.io server that has no sockets.
        let push_to = if self.push_gone {
            io.clone()
        } else {
            SocketIo::new_layer().1
        };
        // The key exists only here: the socket side reads the id the layer verified.
        let key = Key::generate();
        let (cookie, expiry) = (self.cookie, self.expiry);
        let configure = move |layer: SessionManagerLayer<WatchedStore>| {
            let layer = layer.with_secure(false);
            match expiry {
                Some(expiry) => layer.with_expiry(expiry),
                None => layer,
            }
        };
        let app = match cookie {
            CookieMode::Plain => router.layer(sessions.layer(push_to, configure)),
            CookieMode::Signed => {
                router.layer(sessions.layer(push_to, |l| configure(l).with_signed(key)))
            }
            CookieMode::Private => {
                router.layer(sessions.layer(push_to, |l| configure(l).with_private(key)))
            }
        };

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        TestServer {
            addr,
            config: self,
            store,
            locks,
            sessions,
            io,
            probe,
            runs,
            sqlite,
            task,
        }
    }
}

/// Locks that exclude nothing (see [`ServerBuilder::without_locks`]).
struct NoLocks;

impl SessionLocks for NoLocks {
    fn lock(&self, _: Id) -> LockFuture<'_> {
        Box::pin(async { Ok(SessionLockGuard::new(())) })
    }
}

/// What [`ServerBuilder::failing_locks`]' backend says; tests look for it in logs, and make
/// sure clients never see it.
pub const LOCK_FAILURE: &str = "injected failure: the lock server at 10.9.8.7 is down";

/// Locks that always fail (see [`ServerBuilder::failing_locks`]).
struct FailingLocks;

impl SessionLocks for FailingLocks {
    fn lock(&self, _: Id) -> LockFuture<'_> {
        Box::pin(async {
            Err(SessionError::Lock {
                source: LOCK_FAILURE.into(),
            })
        })
    }
}

/// A running server; dropping it stops it.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// How it was built.
    pub config: ServerBuilder,
    /// The store both HTTP and sockets use.
    pub store: TestStore,
    /// The locks both HTTP and sockets use (unused with [`ServerBuilder::redis`]).
    pub locks: LocalSessionLocks,
    /// The socket side's configuration (e.g. [`SocketSessions::room`]).
    pub sessions: SocketSessions,
    /// The socket.io server (e.g. its rooms: `io.of("/")?.rooms()`).
    pub io: SocketIo,
    /// See [`HoldProbe`].
    pub probe: Arc<HoldProbe>,
    runs: events::Runs,
    sqlite: Option<Sqlite>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Default configuration: plain cookies, `MemoryStore`, namespace `/` only.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            cookie: CookieMode::Plain,
            store: StoreKind::Memory,
            namespace: None,
            on_gone: OnGone::default(),
            require_session: false,
            expiry: None,
            keep_alive: KeepAlive::default(),
            latency: Duration::ZERO,
            locks: LockKind::Local,
            timeouts: None,
            push_gone: true,
            redis: None,
            postgres: None,
            replica_wait: None,
        }
    }

    /// A server with the default configuration, started.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new HTTP client with an empty cookie jar.
    pub fn http(&self) -> Http {
        Http::new(self.url())
    }

    /// How many bodies of the guarded events (`spend`) ran: a guard that stops a handler must
    /// leave it unchanged.
    pub fn runs(&self) -> usize {
        self.runs.0.load(Ordering::SeqCst)
    }

    /// Rows of the SQLite store's table, counted by SQL (`None` for other stores).
    pub async fn sqlite_rows(&self) -> Option<i64> {
        Some(self.sqlite.as_ref()?.rows().await)
    }
}

//! Shared harness of the runtime's integration tests: a real server and real clients.
//!
//! - [`TestServer`] runs axum 0.8 + socketioxide 0.18 + tower-sessions 0.14 on `127.0.0.1:0`,
//!   speaking the HTTP half of `shared/bench-protocol.md` plus a few test-only socket events.
//!   [`ServerBuilder`] chooses the cookie mode, the store, an extra namespace, the gone policy,
//!   `require_session()`, the session expiry and the store's latency.
//! - [`TestStore`] wraps the real store (never a mock): it counts operations, remembers every
//!   id it wrote, adds latency and fails on demand with `session_store::Error::Backend`.
//! - [`Http`] is a reqwest client with a cookie jar; [`SocketClient`] is `rust_socketio` 0.6
//!   (websocket, polling, polling upgraded to websocket); [`RawSocket`] is a minimal socket.io
//!   client over websocket with sequential ack ids, for bursts (see its docs for why).
//!
//! Every wait is bounded by [`TIMEOUT`]: a test fails, it never hangs.
//!
//! Handlers are written by hand with [`SessionHandle`] and acknowledge after the transaction
//! returns, as `#[with_session]` will generate them; the events are listed on
//! [`register_events`]. HTTP routes pass through an auth-style middleware that reads the
//! session first, so `LockedSession` must reload a stale copy.
//!
//! ```ignore
//! mod common;
//! use common::{CookieMode, SocketClient, StoreKind, TestServer, Transport};
//!
//! let server = TestServer::builder()
//!     .cookie(CookieMode::Signed)
//!     .store(StoreKind::SqliteMemory)
//!     .start()
//!     .await;
//! let http = server.http();
//! http.login("alice").await;
//! let socket = SocketClient::connect(&server, "/", Transport::Polling, Some(&http.cookie_header()))
//!     .await
//!     .unwrap();
//! assert_eq!(socket.ack("whoami", vec![]).await, json!({ "user": "alice" }));
//! server.store.fail_writes(true); // now `incr` acks `{"error": "session store failed: ..."}`
//! ```
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::{
    collections::{HashMap, HashSet},
    fmt,
    future::Future,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex, Once,
    },
    time::Duration,
};

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
    Json,
};
use futures_util::{FutureExt, SinkExt, StreamExt};
use reqwest::cookie::CookieStore;
use rust_socketio::{
    asynchronous::{Client as SioClient, ClientBuilder},
    Event, Payload, TransportType,
};
use serde_json::{json, Value};
use session_runtime::{
    LocalSessionLocks, LockFuture, OnGone, SessionError, SessionHandle, SessionLockGuard,
    SessionLocks, SocketSessions,
};
use session_workspace::protocol::{self, parse_user};
use socketioxide::{
    extract::{AckSender, SocketRef, TryData},
    SocketIo,
};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};
use tower_sessions::{
    cookie::Key,
    session::{Expiry, Id, Record},
    session_store, MemoryStore, SessionManagerLayer, SessionStore,
};
use tower_sessions_moka_store::MokaStore;
use tower_sessions_sqlx_store::{
    sqlx::{sqlite::SqlitePoolOptions, SqlitePool},
    SqliteStore,
};

/// The bound on every wait of the harness (an ack, a connection, an event).
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// Socket.io packets buffered per socket. socketioxide's default of 128 overflows under a
/// burst of 200 concurrent events and then drops acks (design.md); the tests send 100 per
/// socket and expect every ack.
pub const MAX_BUFFER_SIZE: usize = 1024;

/// Logs to the test output when `RUST_LOG` is set, e.g. `RUST_LOG=session_runtime=debug`.
pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    });
}

// ------------------------------------------------------------------------------------------
// Stores
// ------------------------------------------------------------------------------------------

/// Which real store backs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `tower_sessions::MemoryStore`.
    Memory,
    /// `tower_sessions_moka_store::MokaStore`.
    Moka,
    /// `tower_sessions_sqlx_store::SqliteStore` on `sqlite::memory:` (one connection, since
    /// every connection to `:memory:` is a database of its own).
    SqliteMemory,
    /// `SqliteStore` on a temporary file, removed when the server drops.
    SqliteFile,
}

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

/// The error [`TestStore`] returns while failing; tests look for it in messages.
pub const INJECTED_FAILURE: &str = "injected failure: the store is unavailable";

/// A real store wrapped to observe and disturb it: counts operations, remembers every id it
/// created or saved, sleeps `latency` before each operation, and fails on demand.
///
/// Failing is failure injection, not a mock: the wrapped store is the real one, and while a
/// failure flag is set the operation returns `session_store::Error::Backend` without reaching it.
#[derive(Clone)]
pub struct TestStore {
    inner: Arc<dyn SessionStore>,
    stats: Arc<StoreStats>,
}

#[derive(Default)]
struct StoreStats {
    loads: AtomicUsize,
    creates: AtomicUsize,
    saves: AtomicUsize,
    deletes: AtomicUsize,
    latency_us: AtomicU64,
    fail_loads: AtomicBool,
    fail_writes: AtomicBool,
    written_ids: Mutex<HashSet<Id>>,
}

impl fmt::Debug for TestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl TestStore {
    /// Wraps `inner`.
    pub fn new(inner: impl SessionStore) -> Self {
        Self {
            inner: Arc::new(inner),
            stats: Arc::default(),
        }
    }

    /// Sleeps this long before every operation, so that races between writers would bite.
    pub fn set_latency(&self, latency: Duration) {
        self.stats
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// While set, `load` fails.
    pub fn fail_loads(&self, fail: bool) {
        self.stats.fail_loads.store(fail, Ordering::SeqCst);
    }

    /// While set, `create`, `save` and `delete` fail.
    pub fn fail_writes(&self, fail: bool) {
        self.stats.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Every operation fails (or none).
    pub fn fail_all(&self, fail: bool) {
        self.fail_loads(fail);
        self.fail_writes(fail);
    }

    /// Successful `save` calls so far.
    pub fn saves(&self) -> usize {
        self.stats.saves.load(Ordering::SeqCst)
    }

    /// Successful `create` calls so far.
    pub fn creates(&self) -> usize {
        self.stats.creates.load(Ordering::SeqCst)
    }

    /// Successful `create` + `save` calls so far: every way a record can come to exist.
    pub fn writes(&self) -> usize {
        self.creates() + self.saves()
    }

    /// Successful `load` calls so far.
    pub fn loads(&self) -> usize {
        self.stats.loads.load(Ordering::SeqCst)
    }

    /// Successful `delete` calls so far.
    pub fn deletes(&self) -> usize {
        self.stats.deletes.load(Ordering::SeqCst)
    }

    /// The record under `id`, read from the real store (no latency, no failure, not counted).
    pub async fn record(&self, id: Id) -> Option<Record> {
        self.inner.load(&id).await.expect("the real store failed")
    }

    /// Makes the record under `id` expired a minute ago, in the real store, as if time had
    /// passed.
    pub async fn expire(&self, id: Id) {
        let mut record = self.record(id).await.expect("no record to expire");
        record.expiry_date =
            tower_sessions::cookie::time::OffsetDateTime::now_utc() - Duration::from_secs(60);
        self.inner
            .save(&record)
            .await
            .expect("the real store failed");
    }

    /// How many records the store holds: every record was written through this wrapper, so
    /// counting the ids it wrote that still load is exact, for any store.
    pub async fn record_count(&self) -> usize {
        let ids: Vec<Id> = self
            .stats
            .written_ids
            .lock()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let mut count = 0;
        for id in ids {
            count += usize::from(self.record(id).await.is_some());
        }
        count
    }

    async fn before(&self, write: bool) -> session_store::Result<()> {
        let latency = self.stats.latency_us.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_micros(latency)).await;
        }
        let failing = if write {
            &self.stats.fail_writes
        } else {
            &self.stats.fail_loads
        };
        if failing.load(Ordering::SeqCst) {
            return Err(session_store::Error::Backend(INJECTED_FAILURE.into()));
        }
        Ok(())
    }

    fn wrote(&self, id: Id, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.stats.written_ids.lock().unwrap().insert(id);
    }
}

#[async_trait::async_trait]
impl SessionStore for TestStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.before(true).await?;
        self.inner.create(record).await?;
        self.wrote(record.id, &self.stats.creates);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.before(true).await?;
        self.inner.save(record).await?;
        self.wrote(record.id, &self.stats.saves);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.before(false).await?;
        let record = self.inner.load(id).await?;
        self.stats.loads.fetch_add(1, Ordering::SeqCst);
        Ok(record)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.before(true).await?;
        self.inner.delete(id).await?;
        self.stats.deletes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Server
// ------------------------------------------------------------------------------------------

/// Lets a test see inside the `hold` handler: it signals `entered` once it holds the
/// session's lock, then waits for a permit of `release`.
pub struct HoldProbe {
    /// Notified (one permit) each time a `hold` handler holds the lock.
    pub entered: Notify,
    /// One permit lets one waiting `hold` handler finish; starts with none.
    pub release: Semaphore,
}

impl Default for HoldProbe {
    fn default() -> Self {
        Self {
            entered: Notify::new(),
            release: Semaphore::new(0),
        }
    }
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
    latency: Duration,
    without_locks: bool,
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

    /// Latency added to every store operation from the start (see [`TestStore::set_latency`]).
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// A control experiment: the sockets and HTTP routes get locks that exclude nothing, to
    /// show that the no-lost-update tests fail without the runtime's locks.
    pub fn without_locks(mut self) -> Self {
        self.without_locks = true;
        self
    }

    /// Builds the store, binds `127.0.0.1:0` and serves in a background task.
    pub async fn start(self) -> TestServer {
        init_tracing();
        let mut sqlite = None;
        let mut temp_file = None;
        let inner: TestStore = match self.store {
            StoreKind::Memory => TestStore::new(MemoryStore::default()),
            StoreKind::Moka => TestStore::new(MokaStore::new(Some(100_000))),
            StoreKind::SqliteMemory | StoreKind::SqliteFile => {
                let pool = if self.store == StoreKind::SqliteMemory {
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect("sqlite::memory:")
                        .await
                } else {
                    let path = unique_temp_path("sqlite");
                    let url = format!("sqlite://{}?mode=rwc", path.display());
                    temp_file = Some(path);
                    SqlitePoolOptions::new()
                        .max_connections(4)
                        .connect(&url)
                        .await
                }
                .expect("open sqlite");
                let store = SqliteStore::new(pool.clone());
                store.migrate().await.expect("migrate the sqlite store");
                sqlite = Some(pool);
                TestStore::new(store)
            }
        };
        inner.set_latency(self.latency);
        let store = inner;

        let locks = LocalSessionLocks::default();
        let mut sessions = SocketSessions::new(store.clone()).on_gone(self.on_gone);
        sessions = if self.without_locks {
            sessions.with_locks(NoLocks)
        } else {
            sessions.with_locks(locks.clone())
        };
        if self.require_session {
            sessions = sessions.require_session();
        }

        let probe = Arc::new(HoldProbe::default());
        let (sio_layer, io) = SocketIo::builder()
            .max_buffer_size(MAX_BUFFER_SIZE)
            .build_layer();
        let register = {
            let probe = probe.clone();
            move |socket: SocketRef| register_events(&socket, &probe)
        };
        io.ns("/", sessions.handler(register.clone()));
        if let Some(ns) = self.namespace {
            io.ns(ns, sessions.handler(register));
        }

        let router = protocol::http_routes()
            .route("/session-id", get(http_session_id))
            .layer(axum::middleware::from_fn(read_user_first))
            .layer(sio_layer);
        let mut layer = SessionManagerLayer::new(store.clone()).with_secure(false);
        if let Some(expiry) = self.expiry {
            layer = layer.with_expiry(expiry);
        }
        // The key exists only here: the socket side reads the id the layer verified.
        let key = Key::generate();
        let app = match self.cookie {
            CookieMode::Plain => router.layer(layer),
            CookieMode::Signed => router.layer(layer.with_signed(key)),
            CookieMode::Private => router.layer(layer.with_private(key)),
        }
        .layer(sessions.lock_layer());

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
            probe,
            sqlite,
            temp_file,
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

/// A running server; dropping it stops it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub config: ServerBuilder,
    /// The store both HTTP and sockets use.
    pub store: TestStore,
    /// The locks both HTTP and sockets use.
    pub locks: LocalSessionLocks,
    /// See [`HoldProbe`].
    pub probe: Arc<HoldProbe>,
    sqlite: Option<SqlitePool>,
    temp_file: Option<PathBuf>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(path) = &self.temp_file {
            let _ = std::fs::remove_file(path);
        }
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
            latency: Duration::ZERO,
            without_locks: false,
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A new HTTP client with an empty cookie jar.
    pub fn http(&self) -> Http {
        Http::new(self.url())
    }

    /// A new HTTP client whose jar holds `cookie` (a `Cookie` header value, e.g. `id=...`).
    pub fn http_with_cookie(&self, cookie: &str) -> Http {
        self.http_with_cookie_and_timeout(cookie, TIMEOUT)
    }

    /// [`TestServer::http_with_cookie`] whose requests give up after `timeout`.
    pub fn http_with_cookie_and_timeout(&self, cookie: &str, timeout: Duration) -> Http {
        let http = Http::with_timeout(self.url(), timeout);
        let url = self.url().parse().unwrap();
        for pair in cookie.split("; ") {
            http.jar.add_cookie_str(&format!("{pair}; Path=/"), &url);
        }
        http
    }

    /// Rows of the sqlite store's table, counted by SQL (`None` for other stores).
    pub async fn sqlite_rows(&self) -> Option<i64> {
        let pool = self.sqlite.as_ref()?;
        let (n,): (i64,) =
            tower_sessions_sqlx_store::sqlx::query_as("select count(*) from tower_sessions")
                .fetch_one(pool)
                .await
                .expect("count sqlite rows");
        Some(n)
    }
}

fn unique_temp_path(ext: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "session-runtime-test-{}-{}.{ext}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

// --- HTTP routes: the shape of shared/bench-protocol.md ---------------------------------

fn http_error(status: StatusCode, message: impl fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn session_error(err: tower_sessions::session::Error) -> Response {
    http_error(StatusCode::SERVICE_UNAVAILABLE, err)
}

/// Reads the session before every HTTP route runs, as an auth or logging middleware would:
/// the copy it loads is stale by the time a writer holds the lock, so `LockedSession` must
/// reload it.
async fn read_user_first(
    session: tower_sessions::Session,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(err) = session.get::<String>("user").await {
        return session_error(err);
    }
    next.run(request).await
}

/// Test-only: the id the session layer read from the cookie, whatever the cookie mode.
async fn http_session_id(session: tower_sessions::Session) -> Json<Value> {
    Json(json!({ "id": session.id().map(|id| id.to_string()) }))
}

// --- Socket events ------------------------------------------------------------------------

/// Acknowledges after the transaction returned: `value`, or `{"error": "..."}`; then applies
/// the `OnGone` policy, as a hand-written handler must (after the ack, so the client hears why).
fn reply<T: serde::Serialize, E: fmt::Display>(
    handle: &SessionHandle,
    ack: AckSender,
    result: Result<T, E>,
) {
    let answer = match result {
        Ok(value) => json!(value),
        Err(err) => json!({ "error": err.to_string() }),
    };
    if let Err(err) = ack.send(&answer) {
        // Never silent: a lost ack shows up as a client timeout, this says why.
        tracing::warn!(%err, "could not send an acknowledgement");
    }
    handle.apply_gone_policy();
}

/// What a handler's body may fail with: a session error or its own.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Registers the test events on `socket`:
///
/// | event | kind | effect | ack |
/// |---|---|---|---|
/// | `whoami` | readonly | - | `{"user": ..}` |
/// | `incr` | autosave | `count += 1` | the new count |
/// | `login` `{"user":..}` | autosave | sets `user` | `{"ok":true}` |
/// | `logout` | autosave | removes `user` | `{"ok":true}` |
/// | `peek` | autosave | reads `count`, writes nothing | `count` |
/// | `same` | autosave | writes `count` with the value it has | `count` |
/// | `delete` | autosave | `Session::delete` | `{"ok":true}` |
/// | `fail_after_write` | autosave | sets `count` to 1000, then returns `Err` | error |
/// | `panic_after_write` | autosave | sets `count` to 1000, then panics | error |
/// | `hold` | autosave | sets `held`, waits for [`HoldProbe::release`] | `{"ok":true}` |
fn register_events(socket: &SocketRef, probe: &Arc<HoldProbe>) {
    socket.on("whoami", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .readonly(async |session| {
                Ok::<_, SessionError>(json!({ "user": session.get::<String>("user")? }))
            })
            .await;
        reply(&handle, ack, result);
    });
    socket.on("incr", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| {
                let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
                session.insert("count", count)?;
                Ok::<_, SessionError>(count)
            })
            .await;
        reply(&handle, ack, result);
    });
    socket.on(
        "login",
        async |handle: SessionHandle, TryData(body): TryData<Value>, ack: AckSender| {
            let user = match body
                .map_err(|err| format!("invalid payload: {err}"))
                .and_then(|body| parse_user(&body))
            {
                Ok(user) => user,
                Err(message) => return reply::<(), _>(&handle, ack, Err(message)),
            };
            let result = handle
                .autosave(async |session| {
                    session.insert("user", &user)?;
                    Ok::<_, SessionError>(json!({ "ok": true }))
                })
                .await;
            reply(&handle, ack, result);
        },
    );
    socket.on("logout", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| {
                session.remove_value("user")?;
                Ok::<_, SessionError>(json!({ "ok": true }))
            })
            .await;
        reply(&handle, ack, result);
    });
    socket.on("peek", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| Ok::<_, SessionError>(session.get::<i64>("count")?))
            .await;
        reply(&handle, ack, result);
    });
    socket.on("same", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| {
                let count = session.get_value("count").unwrap_or(json!(0));
                session.insert_value("count", count.clone())?;
                Ok::<_, SessionError>(count)
            })
            .await;
        reply(&handle, ack, result);
    });
    socket.on("delete", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| {
                session.delete()?;
                Ok::<_, SessionError>(json!({ "ok": true }))
            })
            .await;
        reply(&handle, ack, result);
    });
    socket.on(
        "fail_after_write",
        async |handle: SessionHandle, ack: AckSender| {
            let result = handle
                .autosave(async |session| {
                    session.insert("count", 1000)?;
                    session.insert("user", "mallory")?;
                    Err::<(), BoxError>("deliberate failure after writing".into())
                })
                .await;
            reply(&handle, ack, result);
        },
    );
    socket.on(
        "panic_after_write",
        async |handle: SessionHandle, ack: AckSender| {
            let result = handle
                .autosave(async |session| {
                    session.insert("count", 1000)?;
                    session.insert("user", "mallory")?;
                    if session.is_modified() {
                        panic!("deliberate panic after writing");
                    }
                    Ok::<_, SessionError>(())
                })
                .await;
            reply(&handle, ack, result);
        },
    );
    let probe = probe.clone();
    socket.on("hold", move |handle: SessionHandle, ack: AckSender| {
        let probe = probe.clone();
        async move {
            let result = handle
                .autosave(async |session| {
                    session.insert("held", true)?;
                    probe.entered.notify_one();
                    probe
                        .release
                        .acquire()
                        .await
                        .expect("the probe's semaphore is never closed")
                        .forget();
                    Ok::<_, SessionError>(json!({ "ok": true }))
                })
                .await;
            reply(&handle, ack, result);
        }
    });
}

// ------------------------------------------------------------------------------------------
// Clients
// ------------------------------------------------------------------------------------------

/// An HTTP client with its own cookie jar, speaking the demo protocol.
#[derive(Clone)]
pub struct Http {
    base: String,
    jar: Arc<reqwest::cookie::Jar>,
    client: reqwest::Client,
}

impl Http {
    fn new(base: String) -> Self {
        Self::with_timeout(base, TIMEOUT)
    }

    fn with_timeout(base: String, timeout: Duration) -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let client = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .timeout(timeout)
            .build()
            .expect("build reqwest client");
        Self { base, jar, client }
    }

    /// The `Cookie` header this client sends, to hand to a socket's handshake.
    pub fn cookie(&self) -> Option<String> {
        let url = self.base.parse().unwrap();
        self.jar
            .cookies(&url)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// [`Http::cookie`], which must exist.
    pub fn cookie_header(&self) -> String {
        self.cookie().expect("this client has no session cookie")
    }

    /// Sends a request and returns the status and JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("HTTP request failed");
        let status = resp.status().as_u16();
        let body = resp.json().await.expect("HTTP response is not JSON");
        (status, body)
    }

    async fn ok(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.request(method, path, body).await;
        assert_eq!(status, 200, "{path} answered {status}: {body}");
        body
    }

    /// `POST /login {"user": user}`.
    pub async fn login(&self, user: &str) -> Value {
        self.ok(
            reqwest::Method::POST,
            "/login",
            Some(json!({ "user": user })),
        )
        .await
    }

    /// `POST /logout`.
    pub async fn logout(&self) -> Value {
        self.ok(reqwest::Method::POST, "/logout", None).await
    }

    /// `GET /session`: `{"user": .., "count": N}`.
    pub async fn session(&self) -> Value {
        self.ok(reqwest::Method::GET, "/session", None).await
    }

    /// `POST /incr`: the new count.
    pub async fn incr(&self) -> i64 {
        self.ok(reqwest::Method::POST, "/incr", None).await["count"]
            .as_i64()
            .expect("count")
    }

    /// `POST /incr`, returning the transport error instead of panicking on it.
    pub async fn try_incr(&self) -> Result<Value, reqwest::Error> {
        self.client
            .post(format!("{}/incr", self.base))
            .send()
            .await?
            .json()
            .await
    }

    /// The session id the server reads from this client's cookie.
    pub async fn session_id(&self) -> Id {
        let body = self.ok(reqwest::Method::GET, "/session-id", None).await;
        body["id"]
            .as_str()
            .expect("this client has no session")
            .parse()
            .expect("an id")
    }
}

/// The transports `rust_socketio` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Websocket from the first request.
    Websocket,
    /// HTTP long-polling only.
    Polling,
    /// Handshake over polling, then upgraded to websocket (`TransportType::WebsocketUpgrade`).
    PollingUpgraded,
}

impl Transport {
    /// All three.
    pub const ALL: [Transport; 3] = [Self::Websocket, Self::Polling, Self::PollingUpgraded];

    fn rust_socketio(self) -> TransportType {
        match self {
            Self::Websocket => TransportType::Websocket,
            Self::Polling => TransportType::Polling,
            Self::PollingUpgraded => TransportType::WebsocketUpgrade,
        }
    }
}

/// A `rust_socketio` 0.6 client, connected (its CONNECT answered) to one namespace.
///
/// Acks are awaited one at a time: `rust_socketio` draws ack ids at random in `0..999` and
/// mishandles two outstanding acks with the same id, so bursts use [`RawSocket`].
pub struct SocketClient {
    client: SioClient,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
}

/// How a socket.io connection attempt ended, when it did not connect.
#[derive(Debug)]
pub enum ConnectFailure {
    /// The server answered CONNECT with `connect_error`; this is its message.
    Refused(String),
    /// Anything else (transport error, timeout).
    Other(String),
}

impl SocketClient {
    /// Connects to `ns` of `server` over `transport`, sending `cookie` in the handshake.
    pub async fn connect(
        server: &TestServer,
        ns: &str,
        transport: Transport,
        cookie: Option<&str>,
    ) -> Result<Self, ConnectFailure> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Value)>();
        let forward = |name: &'static str, tx: mpsc::UnboundedSender<(String, Value)>| {
            move |payload: Payload, _: SioClient| {
                let _ = tx.send((name.to_owned(), payload_value(payload)));
                async {}.boxed()
            }
        };
        let mut builder = ClientBuilder::new(format!("{}/", server.url()))
            .namespace(ns)
            .transport_type(transport.rust_socketio())
            .reconnect(false)
            .on(Event::Connect, forward("connect", tx.clone()))
            .on(Event::Close, forward("close", tx.clone()))
            .on(Event::Error, forward("error", tx.clone()))
            .on(
                session_runtime::GONE_EVENT,
                forward(session_runtime::GONE_EVENT, tx.clone()),
            );
        if let Some(cookie) = cookie {
            builder = builder.opening_header("Cookie", cookie);
        }
        let client = tokio::time::timeout(TIMEOUT, builder.connect())
            .await
            .map_err(|_| ConnectFailure::Other("timed out connecting".into()))?
            .map_err(|err| ConnectFailure::Other(err.to_string()))?;
        // `connect()` returns once CONNECT is sent; wait for the server's answer.
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(ConnectFailure::Other("no answer to CONNECT".into())),
                Ok(None) => return Err(ConnectFailure::Other("client stopped".into())),
                Ok(Some((name, _))) if name == "connect" => break,
                Ok(Some((name, value))) if name == "error" => {
                    let text = value.as_str().unwrap_or_default().to_owned();
                    if let Some(data) = text.strip_prefix("Received an ConnectError frame: ") {
                        let message = serde_json::from_str::<Value>(data)
                            .ok()
                            .and_then(|v| v["message"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| data.to_owned());
                        return Err(ConnectFailure::Refused(message));
                    }
                    // Transport noise (e.g. an engine.io error) is not an answer; keep waiting.
                }
                Ok(Some(_)) => {}
            }
        }
        Ok(Self {
            client,
            events: tokio::sync::Mutex::new(rx),
        })
    }

    /// Emits `event` with `args` and waits for its ack; panics after [`TIMEOUT`].
    pub async fn ack(&self, event: &str, args: Vec<Value>) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, Payload::Text(args), TIMEOUT, move |payload, _| {
                if let Some(tx) = tx.lock().unwrap().take() {
                    // rust_socketio hands an ack's argument list over as one JSON array.
                    let value = match payload_value(payload) {
                        Value::Array(args) => args.into_iter().next().unwrap_or(Value::Null),
                        other => other,
                    };
                    let _ = tx.send(value);
                }
                async {}.boxed()
            })
            .await
            .expect("emit failed");
        tokio::time::timeout(TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack for `{event}` within {TIMEOUT:?}"))
            .expect("ack callback dropped")
    }

    /// Emits `event` with `args` without asking for an ack.
    pub async fn emit(&self, event: &str, args: Vec<Value>) {
        self.client
            .emit(event, Payload::Text(args))
            .await
            .expect("emit failed");
    }

    /// Waits for the next event named `name` (`"close"`, `"error"`, [`session_runtime::GONE_EVENT`]),
    /// skipping others; `None` after [`TIMEOUT`].
    pub async fn next_event(&self, name: &str) -> Option<Value> {
        let mut rx = self.events.lock().await;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((n, v))) if n == name => return Some(v),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Disconnects.
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

/// The first argument of a payload (acks and events here carry one).
fn payload_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        Payload::Text(_) => Value::Null,
        #[allow(deprecated)]
        Payload::String(s) => Value::String(s),
        Payload::Binary(b) => json!(b.to_vec()),
    }
}

/// A minimal socket.io v4 client over one websocket, with sequential ack ids.
///
/// `rust_socketio` 0.6 draws each ack id at random in `0..999`, so 100 acks in flight on one
/// socket almost surely collide, and its ack table then calls the wrong callback or panics
/// on a stale index. This client speaks the same wire protocol (engine.io 4 over websocket,
/// socket.io 5 packets, JSON only) with ids 0, 1, 2, ..., so any number of events can be in
/// flight. `emit` sends at once and returns a future of the ack.
pub struct RawSocket {
    out: mpsc::UnboundedSender<Message>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next_id: AtomicU64,
    /// `""` for `/`, else `"/admin,"`.
    prefix: String,
    events: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
}

impl RawSocket {
    /// Connects to namespace `ns` of `server`, sending `cookie` in the handshake.
    pub async fn connect(
        server: &TestServer,
        ns: &str,
        cookie: Option<&str>,
    ) -> Result<Self, ConnectFailure> {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
        let mut request = url.into_client_request().unwrap();
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("Cookie", cookie.parse().expect("a header value"));
        }
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| ConnectFailure::Other("timed out opening the websocket".into()))?
            .map_err(|err| ConnectFailure::Other(err.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let prefix = if ns == "/" {
            String::new()
        } else {
            format!("{ns},")
        };

        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });

        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = oneshot::channel::<Result<(), String>>();
        {
            let pending = pending.clone();
            let out = out.clone();
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let mut connected = Some(connected_tx);
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    match text.as_bytes().first() {
                        Some(b'0') => {
                            // engine.io OPEN: now ask for the namespace.
                            let _ = out.send(Message::Text(format!("40{prefix}")));
                        }
                        Some(b'2') => {
                            let _ = out.send(Message::Text("3".into()));
                        }
                        Some(b'4') => {
                            let Some(packet) = SioPacket::parse(&text[1..], &prefix) else {
                                continue;
                            };
                            match packet.kind {
                                b'0' => {
                                    if let Some(tx) = connected.take() {
                                        let _ = tx.send(Ok(()));
                                    }
                                }
                                b'4' => {
                                    let message = packet.data["message"]
                                        .as_str()
                                        .unwrap_or_default()
                                        .to_owned();
                                    if let Some(tx) = connected.take() {
                                        let _ = tx.send(Err(message));
                                    }
                                }
                                b'1' => {
                                    let _ = events_tx.send(("disconnect".to_owned(), Value::Null));
                                }
                                b'2' => {
                                    let mut args = match packet.data {
                                        Value::Array(args) => args,
                                        _ => continue,
                                    };
                                    if args.is_empty() {
                                        continue;
                                    }
                                    let name =
                                        args.remove(0).as_str().unwrap_or_default().to_owned();
                                    let first = args.into_iter().next().unwrap_or(Value::Null);
                                    let _ = events_tx.send((name, first));
                                }
                                b'3' => {
                                    let first = match packet.data {
                                        Value::Array(args) => {
                                            args.into_iter().next().unwrap_or(Value::Null)
                                        }
                                        _ => Value::Null,
                                    };
                                    let waiter = packet
                                        .id
                                        .and_then(|id| pending.lock().unwrap().remove(&id));
                                    if let Some(tx) = waiter {
                                        let _ = tx.send(first);
                                    }
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
                let _ = events_tx.send(("close".to_owned(), Value::Null));
                // Dropping the senders wakes every waiter with an error instead of a hang.
                pending.lock().unwrap().clear();
            });
        }

        match tokio::time::timeout(TIMEOUT, connected_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(message))) => return Err(ConnectFailure::Refused(message)),
            Ok(Err(_)) => return Err(ConnectFailure::Other("connection closed".into())),
            Err(_) => return Err(ConnectFailure::Other("no answer to CONNECT".into())),
        }
        Ok(Self {
            out,
            pending,
            next_id: AtomicU64::new(0),
            prefix,
            events: tokio::sync::Mutex::new(events),
        })
    }

    /// Sends `event` with `args` now and returns a future of its ack (panics after
    /// [`TIMEOUT`]). Call it many times before awaiting to have many events in flight.
    pub fn emit(
        &self,
        event: &str,
        args: Vec<Value>,
    ) -> impl Future<Output = Value> + Send + 'static {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut packet = vec![json!(event)];
        packet.extend(args);
        let frame = format!("42{}{id}{}", self.prefix, Value::Array(packet));
        let sent = self.out.send(Message::Text(frame)).is_ok();
        let event = event.to_owned();
        async move {
            assert!(sent, "the socket is closed; `{event}` was not sent");
            match tokio::time::timeout(TIMEOUT, rx).await {
                Ok(Ok(value)) => value,
                Ok(Err(_)) => panic!("the socket closed before the ack of `{event}` #{id}"),
                Err(_) => panic!("no ack for `{event}` #{id} within {TIMEOUT:?}"),
            }
        }
    }

    /// Emits and waits for the ack.
    pub async fn ack(&self, event: &str, args: Vec<Value>) -> Value {
        self.emit(event, args).await
    }

    /// Waits for the next event named `name` (or `"disconnect"`, `"close"`), skipping others;
    /// `None` after [`TIMEOUT`].
    pub async fn next_event(&self, name: &str) -> Option<Value> {
        let mut rx = self.events.lock().await;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((n, v))) if n == name => return Some(v),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

/// One socket.io packet as it follows the engine.io MESSAGE type byte.
struct SioPacket {
    kind: u8,
    id: Option<u64>,
    data: Value,
}

impl SioPacket {
    /// Parses `<type>[<ns>,][<id>][<json>]`, keeping only packets of namespace `prefix`.
    fn parse(text: &str, prefix: &str) -> Option<Self> {
        let kind = *text.as_bytes().first()?;
        let mut rest = &text[1..];
        if rest.starts_with('/') {
            rest = rest.strip_prefix(prefix).filter(|_| !prefix.is_empty())?;
        } else if !prefix.is_empty() {
            return None;
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let id = rest[..digits].parse().ok();
        let rest = &rest[digits..];
        let data = if rest.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(rest).ok()?
        };
        Some(Self { kind, id, data })
    }
}

/// The `{"error": "..."}` message of an ack, or a panic saying it was not an error.
pub fn error_of(ack: &Value) -> &str {
    ack["error"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an error ack, got {ack}"))
}

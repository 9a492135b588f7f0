//! Login and logout shared by an axum app and its socket.io side.
//!
//! Speaks the protocol of `shared/bench-protocol.md`: HTTP routes and socket.io events read and
//! write the same tower-sessions cookie session, and neither ever undoes the other's changes.
//!
//! ```text
//! cargo run --example login_logout            # http://127.0.0.1:3000
//! PORT=8080 cargo run --example login_logout
//! ```
//!
//! Environment:
//! - `PORT`: the port on 127.0.0.1 (default 3000; `0` picks a free one). The server prints
//!   `listening on http://127.0.0.1:<port>` once it accepts connections.
//! - `SESSION_KEY`: 128 hex digits (64 bytes) that encrypt the session cookie. Without it a key
//!   is generated at start, so cookies do not survive a restart.
//! - `REDIS_URL`: `redis://host:port`, `redis-cluster://host:port?node=host:port&node=...` (a
//!   Redis Cluster) or `redis-sentinel://host:port?sentinelServiceName=NAME&node=host:port...`
//!   (the sentinels of a master). Sessions, per-session locks and socket.io broadcasts then
//!   live in that Redis (7 or later), so several processes serve the same users; they must
//!   share one `SESSION_KEY` (the demo refuses to start without one). Without it, everything
//!   stays in this process (`MemoryStore`).
//! - `DATABASE_URL`: `postgres://user:password@host:port/database`. The same, in that
//!   PostgreSQL (12 or later) instead of Redis: sessions in tower-sessions-sqlx-store's table,
//!   leases beside them, broadcasts through LISTEN/NOTIFY; a shared `SESSION_KEY` is required
//!   as with `REDIS_URL`. Set one of `REDIS_URL` and `DATABASE_URL`, not both.
//! - `SESSION_IDLE_SECS`: sessions expire after that many seconds without activity (an HTTP
//!   request or a socket event, `whoami` included; `Expiry::OnInactivity`). Unset: no expiry.
//! - `SESSION_LEASE_MS`: with `REDIS_URL` or `DATABASE_URL`, the lifetime of a session's lock
//!   (default 5000): how long other nodes wait for the sessions of a node that died.
//! - `SESSION_REPLICA_WAIT`: with `REDIS_URL`, acknowledge a write only once that many
//!   replicas have it (`WAIT`, 500 ms at most, else the write is answered as failed), so that a
//!   failover loses no acknowledged write. Unset: replication is asynchronous.
//! - `RUST_LOG`: log filter (default `info`).

use std::{env, fmt, net::SocketAddr, time::Duration};

use axum::{
    body::Bytes,
    extract::Request,
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
    Extension, Json, Router, ServiceExt,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use session_runtime::{
    http::{refresh_cookie, session_json, LockedSession},
    postgres::{PostgresAdapter, PostgresSessions},
    redis::{socketioxide_redis::FredAdapter, RedisSessions},
    scale::OwnRequestHead,
    users::Users,
    with_session, ReadOnlySocketSession, SessionError, SessionHandle, SocketSession,
    SocketSessions,
};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, Data, SocketRef},
    layer::SocketIoLayer,
    SocketIo, SocketIoBuilder,
};
use tower_sessions::{cookie::Key, Expiry, MemoryStore};

/// The demo page: a login form, buttons for every HTTP route and socket event, and a log.
const PAGE: &str = include_str!("login_logout/index.html");

/// Longest accepted user name, in characters.
const MAX_USER_CHARS: usize = 64;

/// socketioxide buffers 128 packets per socket by default; the protocol promises that a burst
/// of 200 concurrent events on one socket is acknowledged in full, so leave ample room.
const MAX_BUFFER_SIZE: usize = 1024;

/// The largest socket.io packet accepted, on every transport: 64 KiB is ample for this
/// protocol. engineioxide's defaults are 100 kB for polling and 64 MiB for websocket; a larger
/// packet closes that one connection (engine.io can't refuse a single packet) and nothing
/// else.
const MAX_PAYLOAD: usize = 64 << 10;

/// The body of `POST /login` and the payload of the `login` event: a JSON object whose `user`
/// is a valid name. Checked while deserialising, so HTTP and sockets refuse the same payloads.
#[derive(Debug, Deserialize)]
#[serde(try_from = "Map<String, Value>")]
struct LoginBody {
    user: String,
}

// By hand: a derived `Deserialize` would also take `["bob"]` for `{"user": "bob"}`.
impl TryFrom<Map<String, Value>> for LoginBody {
    type Error = String;

    fn try_from(mut body: Map<String, Value>) -> Result<Self, String> {
        match body.remove("user") {
            Some(Value::String(user)) => {
                check_user(&user)?;
                Ok(Self { user })
            }
            Some(_) => Err("invalid `user`: expected a string".into()),
            None => Err("missing field `user`".into()),
        }
    }
}

/// What the demo's handlers can fail with; acknowledged (or answered) as `{"error": "..."}`.
#[derive(Debug)]
enum DemoError {
    Session(SessionError),
    Overflow,
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(err) => err.fmt(f),
            Self::Overflow => f.write_str("`count` cannot grow any further"),
        }
    }
}

impl From<SessionError> for DemoError {
    fn from(err: SessionError) -> Self {
        Self::Session(err)
    }
}

/// The one rule for user names, shared by HTTP and sockets.
fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() {
        return Err("invalid `user`: expected a non-empty string".into());
    }
    if user.chars().count() > MAX_USER_CHARS {
        return Err(format!(
            "invalid `user`: expected at most {MAX_USER_CHARS} characters"
        ));
    }
    Ok(())
}

fn next_count(count: Option<i64>) -> Result<i64, DemoError> {
    count.unwrap_or(0).checked_add(1).ok_or(DemoError::Overflow)
}

// ---------------------------------------------------------------------------------------------
// socket.io events: every one goes through `#[with_session]`, which reloads the session, locks
// it for writers, saves after success and acknowledges after the save.

#[with_session(readonly)]
async fn whoami(session: ReadOnlySocketSession) -> Result<Value, DemoError> {
    Ok(json!({ "user": session.get::<String>("user")? }))
}

#[with_session(autosave)]
async fn incr(session: SocketSession) -> Result<i64, DemoError> {
    let count = next_count(session.get("count")?)?;
    session.insert("count", count)?;
    Ok(count)
}

#[with_session(autosave)]
async fn login(session: SocketSession, Data(body): Data<LoginBody>) -> Result<Value, DemoError> {
    // `LoginBody` has checked the name: a bad payload is refused before the body runs.
    session.insert("user", body.user)?;
    Ok(json!({ "ok": true }))
}

#[with_session(autosave)]
async fn logout(session: SocketSession) -> Result<Value, DemoError> {
    session.remove_value("user")?;
    Ok(json!({ "ok": true }))
}

/// `logout_everywhere`: ends every session of this session's user, on every node, this one
/// included; acks `{"ended": N}`. Every socket of those sessions is pushed `session:gone`
/// `{"reason": "logged out everywhere"}` first.
async fn logout_everywhere<A: Adapter>(handle: SessionHandle, ack: AckSender<A>) {
    let user = match handle
        .read()
        .await
        .and_then(|session| session.get::<String>("user"))
    {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(NOT_LOGGED_IN.to_owned()),
        Err(err) => Err(err.to_string()),
    };
    let answer = match user {
        Ok(user) => match handle.sessions().end_user_sessions(&user).await {
            Ok(ended) => json!({ "ended": ended }),
            Err(err) => json!({ "error": err.to_string() }),
        },
        Err(err) => json!({ "error": err }),
    };
    let _ = ack.send(&answer);
    handle.apply_gone_policy();
}

/// What the user routes and `logout_everywhere` answer a session without a user.
const NOT_LOGGED_IN: &str = "not logged in";

/// `shout` with any payload: every other socket on `/`, on every node, hears `shout` with it
/// (a broadcast through the adapter); acks `{"ok": true}`.
async fn shout<A: Adapter>(socket: SocketRef<A>, Data(data): Data<Value>, ack: AckSender<A>) {
    let answer = match socket.broadcast().emit("shout", &data).await {
        Ok(()) => json!({ "ok": true }),
        Err(err) => json!({ "error": err.to_string() }),
    };
    let _ = ack.send(&answer);
}

/// `sockets`: acks how many sockets `/` has on all nodes together (every node answers the
/// request through the adapter), or `{"error": ...}` if one does not answer in time.
async fn sockets<A: Adapter>(io: SocketIo<A>, ack: AckSender<A>) {
    let answer = match io.fetch_sockets().await {
        Ok(sockets) => json!(sockets.len()),
        Err(err) => json!({ "error": err.to_string() }),
    };
    let _ = ack.send(&answer);
}

// ---------------------------------------------------------------------------------------------
// HTTP routes. Those that write take `LockedSession`, the same per-session lock as the socket
// writers, so an HTTP increment never overwrites a socket's or the other way round.

/// An HTTP error with a JSON body.
struct HttpError(StatusCode, String);

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<tower_sessions::session::Error> for HttpError {
    fn from(err: tower_sessions::session::Error) -> Self {
        // The store's own text stays in the log: it may name hosts, ids or session data.
        tracing::error!(%err, "session store failed");
        Self(
            StatusCode::SERVICE_UNAVAILABLE,
            "session store failed".into(),
        )
    }
}

impl From<DemoError> for HttpError {
    fn from(err: DemoError) -> Self {
        let status = match err {
            DemoError::Overflow => StatusCode::CONFLICT,
            DemoError::Session(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self(status, err.to_string())
    }
}

/// `POST /login {"user": "alice"}`. The body is parsed by hand so that every bad body gets
/// the same 400 JSON answer (axum's `Json` answers 415 or 422 in plain text).
async fn http_login(session: LockedSession, body: Bytes) -> Result<Json<Value>, HttpError> {
    let LoginBody { user } = serde_json::from_slice(&body).map_err(|err| {
        HttpError(
            StatusCode::BAD_REQUEST,
            format!("invalid body: expected {{\"user\": \"<name>\"}}: {err}"),
        )
    })?;
    session.insert("user", &user).await?;
    if session.get::<i64>("count").await?.is_none() {
        session.insert("count", 0).await?;
    }
    // A new id on login, so an id planted before it is worthless afterwards.
    session.cycle_id().await?;
    Ok(Json(json!({ "user": user })))
}

/// `POST /logout`: deletes the record; every live socket of this session is told at once
/// (`session:gone`, see `app`) and finds it gone.
async fn http_logout(session: LockedSession) -> Result<Json<Value>, HttpError> {
    session.flush().await?;
    Ok(Json(json!({ "ok": true })))
}

/// `GET /session`: reads only, so it needs no lock.
async fn http_session(session: tower_sessions::Session) -> Result<Json<Value>, HttpError> {
    let user = session.get::<String>("user").await?;
    let count = session.get::<i64>("count").await?.unwrap_or(0);
    Ok(Json(json!({ "user": user, "count": count })))
}

impl From<SessionError> for HttpError {
    fn from(err: SessionError) -> Self {
        tracing::error!(error = %err.report(), "the user index failed");
        Self(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
    }
}

/// The user of this request's session, or 401.
async fn current_user(session: &tower_sessions::Session) -> Result<String, HttpError> {
    session
        .get::<String>("user")
        .await?
        .ok_or_else(|| HttpError(StatusCode::UNAUTHORIZED, NOT_LOGGED_IN.into()))
}

/// `GET /session/devices`: how many live sessions the user has, and how many sockets they
/// have connected, on every node.
async fn http_devices(
    Extension(sessions): Extension<SocketSessions>,
    session: tower_sessions::Session,
) -> Result<Json<Value>, HttpError> {
    let user = current_user(&session).await?;
    let live = sessions.user_sessions(&user).await?.len();
    let sockets = sessions.user_sockets(&user).await?;
    Ok(Json(json!({ "sessions": live, "sockets": sockets })))
}

/// `POST /logout/others`: ends every other session of the user; this one stays. A plain
/// `Session`, not `LockedSession`: the sessions it ends are fenced by their own locks, and
/// this one is not written.
async fn http_logout_others(
    Extension(sessions): Extension<SocketSessions>,
    session: tower_sessions::Session,
) -> Result<Json<Value>, HttpError> {
    let user = current_user(&session).await?;
    let Some(id) = session.id() else {
        return Err(HttpError(StatusCode::UNAUTHORIZED, NOT_LOGGED_IN.into()));
    };
    let ended = sessions.end_other_user_sessions(&user, id).await?;
    Ok(Json(json!({ "ended": ended })))
}

/// `POST /logout/everywhere`: ends every session of the user, this one included.
async fn http_logout_everywhere(
    Extension(sessions): Extension<SocketSessions>,
    session: tower_sessions::Session,
) -> Result<Json<Value>, HttpError> {
    let user = current_user(&session).await?;
    let ended = sessions.end_user_sessions(&user).await?;
    Ok(Json(json!({ "ended": ended })))
}

/// `POST /incr`.
async fn http_incr(session: LockedSession) -> Result<Json<Value>, HttpError> {
    let count = next_count(session.get("count").await?)?;
    session.insert("count", count).await?;
    Ok(Json(json!({ "count": count })))
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

// ---------------------------------------------------------------------------------------------

/// The cookie key from `SESSION_KEY`, or a fresh one unless the key must be shared.
/// `shared`: the variable that puts the sessions where several nodes share them.
fn cookie_key(shared: Option<&str>) -> Result<Key, String> {
    let Ok(hex) = env::var("SESSION_KEY") else {
        if let Some(var) = shared {
            return Err(format!(
                "`{var}` is set but `SESSION_KEY` is not: every node must read the \
                 cookies of the others, so give them all the same key, e.g. \
                 `SESSION_KEY=$(openssl rand -hex 64)`"
            ));
        }
        return Ok(Key::generate());
    };
    let hex = hex.trim();
    if hex.len() != 128 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("`SESSION_KEY` must be 128 hex digits (64 bytes)".into());
    }
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("checked hex digits"))
        .collect();
    Key::try_from(bytes.as_slice()).map_err(|err| format!("`SESSION_KEY`: {err}"))
}

/// Where several nodes share sessions, locks and broadcasts.
enum Backend {
    Redis(String),
    Postgres(String),
}

impl Backend {
    fn var(&self) -> &'static str {
        match self {
            Backend::Redis(_) => "REDIS_URL",
            Backend::Postgres(_) => "DATABASE_URL",
        }
    }
}

/// `REDIS_URL` or `DATABASE_URL`, or neither (one process, `MemoryStore`).
fn backend() -> Result<Option<Backend>, String> {
    match (env::var("REDIS_URL"), env::var("DATABASE_URL")) {
        (Ok(_), Ok(_)) => Err(
            "both `REDIS_URL` and `DATABASE_URL` are set: the sessions live in one of them".into(),
        ),
        (Ok(url), Err(_)) => Ok(Some(Backend::Redis(url))),
        (Err(_), Ok(url)) => Ok(Some(Backend::Postgres(url))),
        (Err(_), Err(_)) => Ok(None),
    }
}

fn port() -> Result<u16, String> {
    match env::var("PORT") {
        Ok(port) => port
            .trim()
            .parse()
            .map_err(|_| format!("`PORT` must be a port number, not {port:?}")),
        Err(_) => Ok(3000),
    }
}

fn lease() -> Result<Duration, String> {
    match env::var("SESSION_LEASE_MS") {
        Ok(ms) => match ms.trim().parse() {
            Ok(ms) if ms >= 30 => Ok(Duration::from_millis(ms)),
            _ => Err(format!(
                "`SESSION_LEASE_MS` must be a number of milliseconds, at least 30, not {ms:?}"
            )),
        },
        Err(_) => Ok(session_runtime::redis::DEFAULT_LEASE),
    }
}

/// `SESSION_REPLICA_WAIT`: the replicas a Redis write waits for, if any.
fn replica_wait() -> Result<Option<u32>, String> {
    match env::var("SESSION_REPLICA_WAIT") {
        Ok(n) => match n.trim().parse() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!(
                "`SESSION_REPLICA_WAIT` must be a number of replicas, at least 1, not {n:?}"
            )),
        },
        Err(_) => Ok(None),
    }
}

/// socket.io, before its adapter is chosen.
fn socket_io() -> SocketIoBuilder {
    SocketIo::builder()
        .max_buffer_size(MAX_BUFFER_SIZE)
        .max_payload(MAX_PAYLOAD as u64)
        .ws_max_message_size(MAX_PAYLOAD)
        // Idle sockets: tungstenite allocates this buffer per socket (4 096 by default). 512 B
        // saves 3.5 KB per idle socket at 15 000 sockets; on small events it cost 2 % of
        // throughput in one run, within this machine's noise (examples/bench/REPORT.md,
        // "Idle memory").
        .ws_read_buffer_size(512)
}

fn register<A: Adapter>(socket: SocketRef<A>) {
    socket.on("whoami", whoami);
    socket.on("incr", incr);
    socket.on("login", login);
    socket.on("logout", logout);
    socket.on("logout_everywhere", logout_everywhere);
    socket.on("shout", shout);
    socket.on("sockets", sockets);
}

/// The whole application on `sessions` and socket.io's layer, whatever its adapter.
fn app<A: Adapter>(
    key: Key,
    idle: Option<Expiry>,
    sessions: &SocketSessions,
    (sio_layer, io): (SocketIoLayer<A>, SocketIo<A>),
) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/login", post(http_login))
        .route("/logout", post(http_logout))
        .route("/session", get(http_session))
        .route("/incr", post(http_incr))
        .route("/get/session", session_json(&["user", "count"]))
        .route("/session/devices", get(http_devices))
        .route("/logout/others", post(http_logout_others))
        .route("/logout/everywhere", post(http_logout_everywhere))
        // What the page calls on `session:refresh`: a user active only over the socket keeps
        // the browser's cookie as long as the record.
        .route("/session/refresh", refresh_cookie())
        .layer(Extension(sessions.clone()))
        // No custom `.fallback(handler)`: axum turns it into `any(handler)`, and `.layer` then
        // wraps each HTTP method of it in its own socket.io service, each with its own engine,
        // so a polling client's GET and POST reach different engines ("Session ID unknown").
        .layer(sio_layer)
        // Outside the socket.io layer, in one call: the same-origin check (a page of another
        // site gets 403 before any session is loaded), the lock layer (HTTP writers keep the
        // session's lock until it is saved; every logout, rotation and expiry is pushed to the
        // session's sockets as `session:gone`) and the session layer.
        .layer(sessions.layer(io, |layer| {
            let layer = layer
                .with_private(key)
                // Plain http on localhost: a `Secure` cookie would never come back.
                .with_secure(false);
            match idle {
                Some(expiry) => layer.with_expiry(expiry),
                None => layer,
            }
        }))
}

/// `SESSION_IDLE_SECS=N`: sessions end after N seconds without an HTTP request or a socket
/// event.
fn idle() -> Result<Option<Expiry>, String> {
    match env::var("SESSION_IDLE_SECS") {
        Ok(secs) => match secs.trim().parse::<i64>() {
            Ok(secs) if secs > 0 => Ok(Some(Expiry::OnInactivity(
                tower_sessions::cookie::time::Duration::seconds(secs),
            ))),
            _ => Err(format!(
                "`SESSION_IDLE_SECS` must be a whole number of seconds, at least 1, not {secs:?}"
            )),
        },
        Err(_) => Ok(None),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let backend = backend()?;
    // Room names hash the session id under a key derived from the cookie key (below): nodes
    // that share `SESSION_KEY` name a session's room alike, so a logout on one node reaches
    // the sockets of every node.
    let key = cookie_key(backend.as_ref().map(Backend::var))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port()?));
    let idle = idle()?;
    let app = match backend {
        // Several nodes: sessions, locks and broadcasts in Redis.
        Some(Backend::Redis(url)) => {
            let mut redis = RedisSessions::connect(&url)
                .await
                .map_err(|err| format!("`REDIS_URL`: {err}"))?
                .with_lease(lease()?);
            if let Some(replicas) = replica_wait()? {
                redis = redis.with_replica_wait(replicas, Duration::from_millis(500));
            }
            let sessions = SocketSessions::new(redis.store())
                .with_locks(redis.locks())
                .with_room_key(key.master())
                .with_users(Users::key("user").with_index(redis.user_index()));
            let (sio_layer, io) = socket_io()
                .with_adapter::<FredAdapter<_>>(redis.adapter().await?)
                .build_layer();
            // Subscribed to the other nodes before serving.
            io.ns("/", sessions.handler(register)).await?;
            tracing::info!("sessions, locks and broadcasts in Redis");
            app(key, idle, &sessions, (sio_layer, io))
        }
        // Several nodes: sessions, locks and broadcasts in PostgreSQL.
        Some(Backend::Postgres(url)) => {
            let pg = PostgresSessions::connect(&url)
                .await
                .map_err(|err| format!("`DATABASE_URL`: {err}"))?
                .with_lease(lease()?);
            let sessions = SocketSessions::new(pg.store())
                .with_locks(pg.locks())
                .with_room_key(key.master())
                .with_users(Users::key("user").with_index(pg.user_index()));
            let (sio_layer, io) = socket_io()
                .with_adapter::<PostgresAdapter<_>>(pg.adapter())
                .build_layer();
            // Listening to the other nodes before serving.
            io.ns("/", sessions.handler(register)).await?;
            tracing::info!("sessions, locks and broadcasts in PostgreSQL");
            app(key, idle, &sessions, (sio_layer, io))
        }
        None => {
            // One process: the index of users' sessions in memory.
            let sessions = SocketSessions::new(MemoryStore::default())
                .with_room_key(key.master())
                .with_users(Users::key("user"));
            let (sio_layer, io) = socket_io().build_layer();
            io.ns("/", sessions.handler(register));
            app(key, idle, &sessions, (sio_layer, io))
        }
    };
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // Tests read this line to learn the port when `PORT=0`.
    println!("listening on http://{}", listener.local_addr()?);
    // Around the whole router: socketioxide keeps each socket's handshake head, whose URI and
    // header values would pin hyper's 16 KiB read buffer (about 7 KB of RSS per idle socket at
    // 15 000 sockets; examples/bench/REPORT.md, "Idle memory").
    let app = OwnRequestHead::new(app);
    axum::serve(listener, ServiceExt::<Request>::into_make_service(app))
        .with_graceful_shutdown(async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    Ok(())
}

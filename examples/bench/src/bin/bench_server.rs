//! The benchmark server: speaks the demo protocol (`bench-protocol.md`: `POST /login`,
//! `GET /session`, `POST /incr`, `POST /logout`, socket.io events `incr` and `whoami`) with
//! one handler variant and one store chosen on the command line, so that every variant runs
//! the same binary and the same HTTP, cookie and socket.io code path.
//!
//! ```text
//! cargo run --release -p session-bench --bin bench_server -- --variant autosave --store memory
//! ```
//!
//! - `--variant plain`: session-less ack handlers (the limit); no session attached to sockets.
//! - `--variant manual`: what a user writes today: `tower_sessions::Session::new` + `load` +
//!   `save` in every handler, no lock.
//! - `--variant autosave`: `incr` is `#[with_session(autosave)]`, `whoami` is
//!   `#[with_session(readonly)]`.
//! - `--idle-secs N`: sessions expire after N s without activity (`Expiry::OnInactivity`): one
//!   expiry timer per session with sockets, and socket events touch the record (keep-alive).
//! - `--store memory|moka|sqlite|redis|postgres`; `--store-latency-us N` delays every store operation by
//!   N µs (a networked store); `--workers N` sets tokio's worker threads; `--port P` (0: any).
//!   `--store redis` takes `REDIS_URL` and puts what one node of several would in it: the
//!   records, the per-session leases (`autosave`) and socket.io's adapter. `--store postgres`
//!   does the same in the PostgreSQL of `DATABASE_URL` (`session_runtime::postgres`).
//!
//! Scale knobs (`--bare`, `--max-buffer-size N`, `--ws-read-buffer N`, `--own-head`,
//! `--backlog N`): see
//! `src/scale_knobs.rs`.
//!
//! Every store operation is counted; `GET /_bench/stats` returns the counts (bench only, not
//! part of the protocol). The server prints `listening on 127.0.0.1:PORT` once it accepts.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{routing::get, Json};
use serde_json::{json, Value};
use session_runtime::{
    locks::{LocalSessionLocks, SessionLocks},
    postgres::{PostgresAdapter, PostgresSessions},
    redis::{socketioxide_redis::FredAdapter, RedisSessions},
    with_session, ReadOnlySocketSession, SessionError, SocketSession, SocketSessions,
};
// `DefinedAdapter` and `Spawnable` live in socketioxide's core: the same core, pinned by
// socketioxide's own version (one core in the lockfile).
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef},
    handler::ConnectHandler,
    SocketIo, SocketIoBuilder,
};
use socketioxide_core::adapter::{DefinedAdapter, Spawnable};
use tower_sessions::{
    session::{Id, Record},
    session_store, MemoryStore, SessionStore,
};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Variant {
    Plain,
    Manual,
    Autosave,
}

struct Args {
    variant: Variant,
    store: String,
    latency: Option<Duration>,
    workers: Option<usize>,
    port: u16,
    /// `--idle-secs N`: sessions expire after N seconds without activity.
    idle: Option<i64>,
    knobs: scale_knobs::Knobs,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        variant: Variant::Autosave,
        store: "memory".into(),
        latency: None,
        workers: None,
        port: 0,
        idle: None,
        knobs: Default::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("`{flag}` needs a value"));
        match flag.as_str() {
            "--variant" => {
                args.variant = match value()?.as_str() {
                    "plain" => Variant::Plain,
                    "manual" => Variant::Manual,
                    "autosave" => Variant::Autosave,
                    other => {
                        return Err(format!(
                            "unknown variant `{other}`: expected `plain`, `manual` or `autosave`"
                        ))
                    }
                }
            }
            "--store" => args.store = value()?,
            "--store-latency-us" => {
                let us: u64 = value()?.parse().map_err(|e| format!("{flag}: {e}"))?;
                args.latency = (us > 0).then(|| Duration::from_micros(us));
            }
            "--workers" => {
                args.workers = Some(value()?.parse().map_err(|e| format!("{flag}: {e}"))?)
            }
            "--port" => args.port = value()?.parse().map_err(|e| format!("{flag}: {e}"))?,
            "--idle-secs" => {
                let secs: i64 = value()?.parse().map_err(|e| format!("{flag}: {e}"))?;
                args.idle = (secs > 0).then_some(secs);
            }
            other if args.knobs.parse(other, &mut value)? => {}
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    Ok(args)
}

#[path = "../scale_knobs.rs"]
mod scale_knobs;

/// `pub`: the `bench_server_*alloc` binaries run this server under another allocator.
pub fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("bench_server: {err}");
            std::process::exit(2);
        }
    };
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = args.workers {
        rt.worker_threads(workers);
    }
    let rt = rt.enable_all().build().expect("tokio runtime");
    if let Err(err) = rt.block_on(run(args)) {
        eprintln!("bench_server: {err}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let local = || (LocalSessionLocks::default(), SocketIo::builder());
    match args.store.as_str() {
        "memory" => serve(MemoryStore::default(), local(), &args).await,
        "moka" => {
            serve(
                tower_sessions_moka_store::MokaStore::new(Some(1_000_000)),
                local(),
                &args,
            )
            .await
        }
        "redis" => {
            let url = std::env::var("REDIS_URL").map_err(|_| "`--store redis` needs REDIS_URL")?;
            let redis = RedisSessions::connect(&url).await?;
            let io = SocketIo::builder().with_adapter::<FredAdapter<_>>(redis.adapter().await?);
            serve(redis.store(), (redis.locks(), io), &args).await
        }
        "postgres" => {
            let url = std::env::var("DATABASE_URL")
                .map_err(|_| "`--store postgres` needs DATABASE_URL")?;
            let pg = PostgresSessions::connect(&url).await?;
            let io = SocketIo::builder().with_adapter::<PostgresAdapter<_>>(pg.adapter());
            serve(pg.store(), (pg.locks(), io), &args).await
        }
        "sqlite" => {
            use tower_sessions_sqlx_store::sqlx::sqlite;
            let path =
                std::env::temp_dir().join(format!("bench-sessions-{}.db", std::process::id()));
            let options = sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlite::SqliteSynchronous::Normal);
            let pool = sqlite::SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?;
            let store = tower_sessions_sqlx_store::SqliteStore::new(pool);
            store.migrate().await?;
            let out = serve(store, local(), &args).await;
            for suffix in ["", "-wal", "-shm"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(p);
            }
            out
        }
        other => Err(format!(
            "unknown store `{other}`: expected `memory`, `moka`, `sqlite`, `redis` or `postgres`"
        )
        .into()),
    }
}

/// Counts every store operation (and optionally delays it), so the report can show what one
/// event costs in store round trips.
#[derive(Clone, Debug)]
struct Counting<S> {
    inner: S,
    ops: Arc<Ops>,
    latency: Option<Duration>,
}

#[derive(Default, Debug)]
struct Ops {
    create: AtomicU64,
    save: AtomicU64,
    load: AtomicU64,
    delete: AtomicU64,
}

impl<S> Counting<S> {
    async fn op(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some(latency) = self.latency {
            tokio::time::sleep(latency).await;
        }
    }
}

#[async_trait::async_trait]
impl<S: SessionStore + Clone> SessionStore for Counting<S> {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.op(&self.ops.create).await;
        self.inner.create(record).await
    }
    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.op(&self.ops.save).await;
        self.inner.save(record).await
    }
    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.op(&self.ops.load).await;
        self.inner.load(id).await
    }
    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.op(&self.ops.delete).await;
        self.inner.delete(id).await
    }
}

async fn serve<S: SessionStore + Clone, A: Adapter + DefinedAdapter>(
    store: S,
    (locks, io): (impl SessionLocks, SocketIoBuilder<A>),
    args: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let store = Counting {
        inner: store,
        ops: Arc::default(),
        latency: args.latency,
    };
    let sessions = SocketSessions::new(store.clone()).with_locks(locks);
    let (sio_layer, io) = args
        .knobs
        .socket_io(
            // Bursts of hundreds of concurrent events per socket must not overflow the buffer.
            io.max_buffer_size(16_384),
        )
        .build_layer();

    match args.variant {
        Variant::Plain => {
            io.ns("/", connect_noop.with(register_plain)).spawn();
        }
        Variant::Manual => {
            let store = Arc::new(store.clone());
            io.ns(
                "/",
                connect_noop.with(move |socket: SocketRef<A>| {
                    let store = store.clone();
                    async move {
                        register_manual(&socket, store);
                        Ok::<(), Infallible>(())
                    }
                }),
            )
            .spawn();
        }
        Variant::Autosave => {
            io.ns(
                "/",
                sessions.handler(|socket: SocketRef<A>| {
                    socket.on("incr", incr);
                    socket.on("whoami", whoami);
                }),
            )
            .spawn();
        }
    }

    let ops = store.ops.clone();
    let app = session_workspace::protocol::http_routes()
        .route("/", get(|| async { "bench_server: see bench-protocol.md" }))
        .route(
            "/_bench/stats",
            get(move || {
                let ops = ops.clone();
                async move {
                    Json(json!({
                        "create": ops.create.load(Ordering::Relaxed),
                        "save": ops.save.load(Ordering::Relaxed),
                        "load": ops.load.load(Ordering::Relaxed),
                        "delete": ops.delete.load(Ordering::Relaxed),
                    }))
                }
            }),
        );
    let idle = args.idle;
    let stack = sessions.layer(io, move |layer| {
        let layer = layer.with_secure(false);
        match idle {
            // Expiry on: one timer per session, and socket events touch the record.
            Some(secs) => layer.with_expiry(tower_sessions::Expiry::OnInactivity(
                tower_sessions::cookie::time::Duration::seconds(secs),
            )),
            None => layer,
        }
    });
    let app = match (args.knobs.bare, args.knobs.own_head) {
        // Bare socketioxide: the handshake passes no session layer (HTTP routes still do).
        (true, _) => app.layer(stack).layer(sio_layer),
        (false, _) => app.layer(sio_layer).layer(stack),
    };

    let listener = args.knobs.listen(args.port)?;
    println!("listening on {}", listener.local_addr()?);
    if args.knobs.own_head {
        // Around the router, which keeps a copy of the URI (`OriginalUri`) before any layer.
        use axum::ServiceExt;
        use tower::Layer;
        let app = session_runtime::scale::OwnRequestHeadLayer.layer(app);
        axum::serve(
            listener,
            ServiceExt::<axum::extract::Request>::into_make_service(app),
        )
        .with_graceful_shutdown(shutdown())
        .await?;
    } else {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await?;
    }
    Ok(())
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn connect_noop<A: Adapter>(_: SocketRef<A>) {}

// ---------------------------------------------------------------------------------------------
// (a) session-less: the limit.

static PLAIN_COUNT: AtomicU64 = AtomicU64::new(0);

async fn register_plain<A: Adapter>(socket: SocketRef<A>) -> Result<(), Infallible> {
    socket.on("incr", async |ack: AckSender<A>| {
        let count = PLAIN_COUNT.fetch_add(1, Ordering::Relaxed) + 1;
        send(ack, &count);
    });
    socket.on("whoami", async |ack: AckSender<A>| {
        send(ack, &json!({ "user": Value::Null }));
    });
    Ok(())
}

fn send<A: Adapter>(ack: AckSender<A>, value: &impl serde::Serialize) {
    if let Err(err) = ack.send(value) {
        tracing::warn!(%err, "could not acknowledge");
    }
}

// ---------------------------------------------------------------------------------------------
// (b) hand-written reload/save, as a user writes it today: no lock, so concurrent events of
// one session lose updates.

fn register_manual<S: SessionStore + Clone, A: Adapter>(
    socket: &SocketRef<A>,
    store: Arc<Counting<S>>,
) {
    let incr_store = store.clone();
    socket.on(
        "incr",
        async move |socket: SocketRef<A>, ack: AckSender<A>| {
            let result = manual_session(&socket, incr_store).await;
            let answer = match result {
                Ok(session) => manual_incr(session).await,
                Err(err) => Err(err),
            };
            answer_with(ack, answer);
        },
    );
    socket.on(
        "whoami",
        async move |socket: SocketRef<A>, ack: AckSender<A>| {
            let answer = match manual_session(&socket, store).await {
                Ok(session) => session
                    .get::<String>("user")
                    .await
                    .map(|user| json!({ "user": user }))
                    .map_err(|e| e.to_string()),
                Err(err) => Err(err),
            };
            answer_with(ack, answer);
        },
    );
}

async fn manual_session<S: SessionStore + Clone, A: Adapter>(
    socket: &SocketRef<A>,
    store: Arc<Counting<S>>,
) -> Result<tower_sessions::Session, String> {
    let handshake = socket
        .req_parts()
        .extensions
        .get::<tower_sessions::Session>()
        .ok_or("no session layer")?;
    let session = tower_sessions::Session::new(handshake.id(), store, handshake.expiry());
    session.load().await.map_err(|e| e.to_string())?;
    Ok(session)
}

async fn manual_incr(session: tower_sessions::Session) -> Result<Value, String> {
    let count = session
        .get::<i64>("count")
        .await
        .map_err(|e| e.to_string())?
        .unwrap_or(0)
        + 1;
    session
        .insert("count", count)
        .await
        .map_err(|e| e.to_string())?;
    session.save().await.map_err(|e| e.to_string())?;
    Ok(json!(count))
}

fn answer_with<A: Adapter>(ack: AckSender<A>, answer: Result<Value, String>) {
    match answer {
        Ok(value) => send(ack, &value),
        Err(error) => send(ack, &json!({ "error": error })),
    }
}

// ---------------------------------------------------------------------------------------------
// (c) and (d): the runtime.

#[with_session(autosave)]
async fn incr(session: SocketSession) -> Result<i64, SessionError> {
    let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
    session.insert("count", count)?;
    Ok(count) // acknowledged after the save
}

#[with_session(readonly)]
async fn whoami(session: ReadOnlySocketSession) -> Result<Value, SessionError> {
    Ok(json!({ "user": session.get::<String>("user")? }))
}

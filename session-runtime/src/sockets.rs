//! Socket-side configuration: which store, which locks, and what to do with sockets that have
//! no session.

use std::{fmt, future::Future, marker::PhantomData, pin::Pin, sync::Arc};

use socketioxide::{
    adapter::Adapter,
    extract::SocketRef,
    handler::{ConnectHandler, ConnectMiddleware, Value},
    socket::Socket,
};
use tower_sessions::SessionStore;

use tower_sessions::session::Id;

use crate::{
    gone::{GonePush, RoomKey},
    http::SessionLockLayer,
    LocalSessionLocks, SessionError, SessionHandle, SessionLocks, Timeouts,
};

/// The event a socket receives, with `{"reason": "..."}`, when its session is gone.
///
/// Pushed at once to every socket of a session that an HTTP route logs out (`"logged out"`)
/// or rotates (`"rotated"`) through [`LockedSession`](crate::http::LockedSession), once the
/// store holds the change (see [`SessionLockLayer::push_gone`]). With [`OnGone::Disconnect`]
/// the socket is then disconnected, and a socket that finds its session gone at an event
/// receives it too (reason: the [`SessionError::Gone`] message) before it is disconnected.
///
/// ```
/// assert_eq!(session_runtime::GONE_EVENT, "session:gone");
/// ```
pub const GONE_EVENT: &str = "session:gone";

/// What becomes of a socket that finds its session gone (logged out over HTTP, expired, or
/// its id rotated).
///
/// Either way nothing is written back under the old id: the socket can't set a cookie, so
/// the client must reconnect after logging in again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnGone {
    /// The socket stays connected and anonymous: read-only handlers read an empty session,
    /// writers get [`SessionError::Gone`].
    #[default]
    KeepAnonymous,
    /// The socket receives `event` with `{"reason": "..."}` and is disconnected.
    Disconnect {
        /// The event name; [`GONE_EVENT`] by default.
        event: &'static str,
    },
}

impl OnGone {
    /// [`OnGone::Disconnect`] with the [`GONE_EVENT`] event.
    pub const fn disconnect() -> Self {
        OnGone::Disconnect { event: GONE_EVENT }
    }
}

/// The socket side of a tower-sessions setup: the store the `SessionManagerLayer` uses, the
/// per-session locks shared with HTTP routes, and the connection policy.
///
/// Register each namespace through [`SocketSessions::handler`]: it attaches the session and
/// registers your event handlers before the client is told it is connected, so no first event
/// is ever missed.
///
/// ```
/// use axum::{routing::get, Router};
/// use session_runtime::{with_session, Session, SessionError, SocketSessions};
/// use socketioxide::{extract::SocketRef, SocketIo};
/// use tower_sessions::{MemoryStore, SessionManagerLayer};
///
/// #[with_session(autosave)]
/// async fn incr(session: Session) -> Result<i64, SessionError> {
///     let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
///     session.insert("count", count)?;
///     Ok(count)
/// }
///
/// let store = MemoryStore::default();
/// let sessions = SocketSessions::new(store.clone());
///
/// let (sio_layer, io) = SocketIo::new_layer();
/// io.ns("/", sessions.handler(|socket: SocketRef| {
///     socket.on("incr", incr);
/// }));
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(sio_layer)
///     // Outside the socket.io layer, so the handshake request carries the session.
///     .layer(SessionManagerLayer::new(store));
/// ```
#[derive(Clone)]
pub struct SocketSessions {
    inner: Arc<Config>,
}

#[derive(Clone)]
struct Config {
    store: Arc<dyn SessionStore>,
    locks: Arc<dyn SessionLocks>,
    require_session: bool,
    on_gone: OnGone,
    timeouts: Timeouts,
    room_key: RoomKey,
}

impl fmt::Debug for SocketSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSessions")
            .field("store", &self.inner.store)
            .field("require_session", &self.inner.require_session)
            .field("on_gone", &self.inner.on_gone)
            .finish_non_exhaustive()
    }
}

impl SocketSessions {
    /// Uses `store`, the same store (a clone of it) that the `SessionManagerLayer` uses, with
    /// in-process [`LocalSessionLocks`].
    pub fn new(store: impl SessionStore) -> Self {
        Self {
            inner: Arc::new(Config {
                store: Arc::new(store),
                locks: Arc::new(LocalSessionLocks::default()),
                require_session: false,
                on_gone: OnGone::default(),
                timeouts: Timeouts::default(),
                room_key: RoomKey::random(),
            }),
        }
    }

    /// Replaces the per-session locks, e.g. with a distributed implementation.
    pub fn with_locks(mut self, locks: impl SessionLocks) -> Self {
        Arc::make_mut(&mut self.inner).locks = Arc::new(locks);
        self
    }

    /// Refuses connections whose handshake carries no session cookie, or one the store does
    /// not know: the client gets a `connect_error` saying so.
    ///
    /// ```
    /// # use session_runtime::SocketSessions;
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default()).require_session();
    /// ```
    pub fn require_session(mut self) -> Self {
        Arc::make_mut(&mut self.inner).require_session = true;
        self
    }

    /// Chooses what becomes of a socket that finds its session gone (default:
    /// [`OnGone::KeepAnonymous`]).
    ///
    /// ```
    /// # use session_runtime::{OnGone, SocketSessions};
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default()).on_gone(OnGone::disconnect());
    /// ```
    pub fn on_gone(mut self, policy: OnGone) -> Self {
        Arc::make_mut(&mut self.inner).on_gone = policy;
        self
    }

    /// Bounds every wait of the socket side and of [`LockedSession`](crate::http::LockedSession)
    /// (default: [`Timeouts::default`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use session_runtime::{SocketSessions, Timeouts};
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default())
    ///     .timeouts(Timeouts::default().store(Duration::from_millis(500)));
    /// ```
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        Arc::make_mut(&mut self.inner).timeouts = timeouts;
        self
    }

    /// Names the rooms of sessions with a key derived from `secret`. Several nodes sharing
    /// their sessions (e.g. over a Redis adapter) must use the same secret, or a logout on one
    /// node reaches no socket of another; the default, a random key per process, only does for
    /// one node. The cookie key (`Key::master()`) will do: the room key is derived from it
    /// under a label of its own.
    ///
    /// Each socket of a session joins the room `session:<hash>` in its namespace, where
    /// `<hash>` is 128 bits of HMAC-SHA256 of the session id under that key: room names leave
    /// the process (adapters publish them), so they never hold the id.
    ///
    /// # Panics
    ///
    /// If `secret` is shorter than 32 bytes.
    ///
    /// ```
    /// # use session_runtime::SocketSessions;
    /// # use tower_sessions::MemoryStore;
    /// // The same secret on every node, e.g. the cookie key's `master()`.
    /// let secret = [0x5e; 64];
    /// let sessions = SocketSessions::new(MemoryStore::default()).room_key(secret);
    /// ```
    pub fn room_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        Arc::make_mut(&mut self.inner).room_key = RoomKey::derive(secret.as_ref());
        self
    }

    /// The room every socket of session `id` joins, in each namespace: to reach all the
    /// sockets of one session, on every node (`io.of(ns)?.to(room).emit(..)`).
    ///
    /// ```
    /// # use session_runtime::SocketSessions;
    /// # use tower_sessions::{session::Id, MemoryStore};
    /// let sessions = SocketSessions::new(MemoryStore::default()).room_key([7; 32]);
    /// let id = Id::default();
    /// let room = sessions.room(id);
    /// assert!(room.starts_with("session:"));
    /// assert!(!room.contains(&id.to_string()));
    /// ```
    pub fn room(&self, id: Id) -> String {
        self.inner.room_key.room(id)
    }

    pub(crate) fn bounds(&self) -> &Timeouts {
        &self.inner.timeouts
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    /// The per-session locks.
    pub fn locks(&self) -> &Arc<dyn SessionLocks> {
        &self.inner.locks
    }

    pub(crate) fn policy_on_gone(&self) -> OnGone {
        self.inner.on_gone
    }

    /// The layer that lets HTTP routes take the same per-session locks as the sockets (see
    /// [`LockedSession`](crate::http::LockedSession)). Add
    /// [`push_gone`](SessionLockLayer::push_gone) to tell a session's sockets at once when a
    /// route logs it out or rotates its id.
    pub fn lock_layer(&self) -> SessionLockLayer {
        let push = GonePush::new(self.inner.room_key.clone(), self.inner.on_gone);
        SessionLockLayer::new(self.inner.locks.clone())
            .timeouts(self.inner.timeouts)
            .with_gone_push(push)
    }

    /// A connect middleware that attaches the session to each socket, for namespaces whose
    /// connect handler you write yourself.
    ///
    /// Prefer [`SocketSessions::handler`]: handlers registered in a connect *handler* run
    /// after the client is told it is connected and can miss its first events.
    ///
    /// ```
    /// # use session_runtime::SocketSessions;
    /// # use socketioxide::{extract::SocketRef, handler::ConnectHandler, SocketIo};
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default());
    /// let (_layer, io) = SocketIo::new_layer();
    /// io.ns("/", (async |_socket: SocketRef| {}).with(sessions.attach()));
    /// ```
    pub fn attach(&self) -> AttachSession {
        AttachSession {
            sessions: self.clone(),
        }
    }

    /// The connect handler of a namespace: attaches the session to each socket, then calls
    /// `register` to register its event handlers, all before the client is told it is
    /// connected. Middleware added with `.with(..)` runs after the session is attached.
    pub fn handler<F>(&self, register: F) -> SessionConnectHandler<F> {
        SessionConnectHandler {
            sessions: self.clone(),
            register,
            middleware: (),
        }
    }

    async fn attach_to<A: Adapter>(&self, socket: &Arc<Socket<A>>) -> Result<(), SessionError> {
        let Some(http) = socket
            .req_parts()
            .extensions
            .get::<tower_sessions::Session>()
        else {
            tracing::error!("the handshake request has no session: put `SessionManagerLayer` outside `SocketIoLayer`");
            return Err(SessionError::NoSessionLayer);
        };
        // The handshake's session caches its record forever: take only its id and expiry.
        let handle = SessionHandle::new(socket, http.id(), http.expiry(), self.clone());
        if self.inner.require_session && (handle.id().is_none() || !handle.read().await?.exists()) {
            tracing::debug!("refusing a socket without a valid session");
            return Err(SessionError::NoSession);
        }
        // Any id, even one the store lacks: joining costs no store call, and a logout of an
        // unknown id pushes to a room whose sockets have no session anyway.
        if let Some(id) = handle.id() {
            socket.join(self.room(id));
        }
        socket.extensions.insert(handle);
        Ok(())
    }
}

type MiddlewareFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(), Box<dyn fmt::Display + Send>>> + Send + 'a>>;

fn boxed_err(err: SessionError) -> Box<dyn fmt::Display + Send> {
    Box::new(err)
}

/// The connect middleware returned by [`SocketSessions::attach`].
#[derive(Clone, Debug)]
pub struct AttachSession {
    sessions: SocketSessions,
}

impl<A: Adapter> ConnectMiddleware<A, ()> for AttachSession {
    async fn call<'a>(
        &'a self,
        socket: Arc<Socket<A>>,
        _: &'a Option<Value>,
    ) -> Result<(), Box<dyn fmt::Display + Send>> {
        self.sessions.attach_to(&socket).await.map_err(boxed_err)
    }
}

/// The connect handler returned by [`SocketSessions::handler`].
///
/// Its `.with(middleware)` runs `middleware` after the session is attached and before the
/// event handlers are registered, so a middleware can read the session (e.g. a
/// `#[with_session(readonly, require = "user", connect)]` guard). As in socketioxide, the
/// middleware added last runs first.
#[derive(Clone, Debug)]
pub struct SessionConnectHandler<F, M = ()> {
    sessions: SocketSessions,
    register: F,
    middleware: M,
}

/// The user middleware of a [`SessionConnectHandler`], newest first.
#[doc(hidden)]
pub trait MiddlewareChain<A: Adapter>: Clone + Send + Sync + 'static {
    fn run<'a>(
        &'a self,
        socket: &'a Arc<Socket<A>>,
        auth: &'a Option<Value>,
    ) -> MiddlewareFuture<'a>;
}

impl<A: Adapter> MiddlewareChain<A> for () {
    fn run<'a>(&'a self, _: &'a Arc<Socket<A>>, _: &'a Option<Value>) -> MiddlewareFuture<'a> {
        Box::pin(async { Ok(()) })
    }
}

#[doc(hidden)]
pub struct Layered<Prev, M, T>(Prev, M, PhantomData<fn() -> T>);

impl<Prev: Clone, M: Clone, T> Clone for Layered<Prev, M, T> {
    fn clone(&self) -> Self {
        Layered(self.0.clone(), self.1.clone(), PhantomData)
    }
}

impl<A, Prev, M, T> MiddlewareChain<A> for Layered<Prev, M, T>
where
    A: Adapter,
    Prev: MiddlewareChain<A>,
    M: ConnectMiddleware<A, T> + Send + Sync + 'static,
    T: 'static,
{
    fn run<'a>(
        &'a self,
        socket: &'a Arc<Socket<A>>,
        auth: &'a Option<Value>,
    ) -> MiddlewareFuture<'a> {
        Box::pin(async move {
            self.1.call(socket.clone(), auth).await?;
            self.0.run(socket, auth).await
        })
    }
}

impl<A, F, M> ConnectHandler<A, ()> for SessionConnectHandler<F, M>
where
    A: Adapter,
    F: Fn(SocketRef<A>) + Clone + Send + Sync + 'static,
    M: MiddlewareChain<A>,
{
    fn call(&self, _: Arc<Socket<A>>, _: Option<Value>) {
        // Everything happened in `call_middleware`, before CONNECT was sent.
    }

    fn call_middleware<'a>(
        &'a self,
        socket: Arc<Socket<A>>,
        auth: &'a Option<Value>,
    ) -> MiddlewareFuture<'a> {
        Box::pin(async move {
            self.sessions.attach_to(&socket).await.map_err(boxed_err)?;
            self.middleware.run(&socket, auth).await?;
            (self.register)(SocketRef::from(socket));
            Ok(())
        })
    }

    fn with<M2, T2>(self, middleware: M2) -> impl ConnectHandler<A, ()>
    where
        M2: ConnectMiddleware<A, T2> + Send + Sync + 'static,
        T2: Send + Sync + 'static,
    {
        SessionConnectHandler {
            sessions: self.sessions,
            register: self.register,
            middleware: Layered(self.middleware, middleware, PhantomData),
        }
    }
}

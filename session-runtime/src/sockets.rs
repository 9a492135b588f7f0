//! Socket-side configuration: which store, which locks, and what to do with sockets that have
//! no session.

use std::{fmt, future::Future, marker::PhantomData, pin::Pin, sync::Arc};

use socketioxide::{
    adapter::Adapter,
    extract::SocketRef,
    handler::{ConnectHandler, ConnectMiddleware, Value},
    socket::Socket,
    SocketIo,
};
use tower_sessions::{service::CookieController, session::Id, SessionManagerLayer, SessionStore};

use crate::{
    gone::{Lifecycle, RoomKey, WatchedStore},
    http::{SessionLockLayer, Wired},
    locks::{LocalSessionLocks, SessionLocks},
    origin::OriginCheckLayer,
    users::Users,
    SessionError, SessionHandle, SessionStack, Timeouts,
};

/// The event a socket receives, with `{"reason": "..."}`, when its session is gone.
///
/// Pushed within a second to every socket of a session, on every node, whatever ended it:
/// `"logged out"` (`flush` in any HTTP route or socket handler), `"rotated"` (`cycle_id` in an
/// HTTP route) or `"expired"` (the record's expiry passed, idle sockets included). The sockets
/// then leave the session's room; with [`OnGone::Disconnect`] they are disconnected instead,
/// and a socket that finds its session gone at an event receives it too (reason: the
/// [`SessionError::Gone`] message) before it is disconnected.
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
///
/// ```
/// use session_runtime::{OnGone, SocketSessions};
/// use tower_sessions::MemoryStore;
///
/// // The client is told `session:gone` {"reason": ...}, then disconnected; it reconnects with
/// // its new cookie.
/// let sessions = SocketSessions::new(MemoryStore::default()).with_on_gone(OnGone::disconnect());
/// assert_eq!(OnGone::default(), OnGone::KeepAnonymous);
/// ```
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
    ///
    /// ```
    /// use session_runtime::{OnGone, GONE_EVENT};
    ///
    /// assert_eq!(OnGone::disconnect(), OnGone::Disconnect { event: GONE_EVENT });
    /// // Another event name, for a client that already listens to one:
    /// let custom = OnGone::Disconnect { event: "auth:expired" };
    /// ```
    pub const fn disconnect() -> Self {
        OnGone::Disconnect { event: GONE_EVENT }
    }
}

/// Which socket events keep a session alive under `Expiry::OnInactivity`.
///
/// An HTTP request that reads the session moves its expiry one inactivity window ahead (by a
/// save, or a touch of the [`activity`](crate::activity) layer). With
/// keep-alive, a socket event does the same, so that a user active only over the socket is not
/// logged out while chatting: at most once per quarter of the window per session (an event
/// that finds less than three quarters of the window left *touches* the record), under the
/// session's lock (or fenced lease), so a touch never overwrites a write nor brings back a
/// session that ended. An `autosave` event that saves anyway costs nothing extra. After a
/// touch the socket is sent [`REFRESH_EVENT`] so that the page can renew its cookie (see
/// [`http::refresh_cookie`](crate::http::refresh_cookie)).
///
/// ```
/// use session_runtime::{KeepAlive, SocketSessions};
/// use tower_sessions::MemoryStore;
///
/// let sessions = SocketSessions::new(MemoryStore::default()).with_keep_alive(KeepAlive::Writes);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeepAlive {
    /// Every event, `readonly` ones included (the default).
    #[default]
    Events,
    /// Only `autosave` events.
    Writes,
    /// No socket event extends the session: only HTTP requests do.
    Off,
}

/// The event a socket receives, without data, after one of its events extended the session's
/// expiry: the page answers with a request to
/// [`http::refresh_cookie`](crate::http::refresh_cookie) so the browser's cookie lasts as long
/// as the record.
///
/// ```
/// assert_eq!(session_runtime::REFRESH_EVENT, "session:refresh");
/// ```
pub const REFRESH_EVENT: &str = "session:refresh";

/// The socket side of a tower-sessions setup: the store, the per-session locks shared with
/// HTTP routes, the connection policy, and the one call that wires the HTTP side.
///
/// Register each namespace through [`SocketSessions::handler`]: it attaches the session and
/// registers your event handlers before the client is told it is connected, so no first event
/// is ever missed. Then [`SocketSessions::layer`] wraps the router (outside the socket.io
/// layer) with the origin check, the lock layer and the session layer, in that order.
///
/// ```
/// use axum::{routing::get, Router};
/// use session_runtime::{with_session, SessionError, SocketSession, SocketSessions};
/// use socketioxide::{extract::SocketRef, SocketIo};
/// use tower_sessions::MemoryStore;
///
/// #[with_session(autosave)]
/// async fn incr(session: SocketSession) -> Result<i64, SessionError> {
///     let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
///     session.insert("count", count)?;
///     Ok(count)
/// }
///
/// let sessions = SocketSessions::new(MemoryStore::default()); // any tower-sessions 0.14 store
///
/// let (sio_layer, io) = SocketIo::new_layer();
/// io.ns("/", sessions.handler(|socket: SocketRef| {
///     socket.on("incr", incr);
/// }));
///
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(sio_layer)
///     .layer(sessions.layer(io, |session_layer| session_layer.with_secure(false)));
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
    keep_alive: KeepAlive,
    users: Option<Users>,
    /// An `AxumLogin<B>`, type-erased: `SocketAuth<B>` takes it back by its type.
    #[cfg(feature = "axum-login")]
    login: Option<Arc<dyn std::any::Any + Send + Sync>>,
    /// Built from the fields above; rebuilt by the builders that change them.
    lifecycle: Arc<Lifecycle>,
}

impl Config {
    fn rebuild_lifecycle(&mut self) {
        self.lifecycle = Arc::new(Lifecycle::new(
            self.room_key.clone(),
            self.on_gone,
            self.store.clone(),
            self.users.clone(),
        ));
    }
}

impl fmt::Debug for SocketSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketSessions")
            .field("store", &self.inner.store)
            .field("require_session", &self.inner.require_session)
            .field("on_gone", &self.inner.on_gone)
            .field("keep_alive", &self.inner.keep_alive)
            .field("users", &self.inner.users.is_some())
            .finish_non_exhaustive()
    }
}

impl SocketSessions {
    /// Keeps sessions in `store` (any tower-sessions 0.14 store), with in-process
    /// [`LocalSessionLocks`](crate::locks::LocalSessionLocks). The session layer that
    /// [`SocketSessions::layer`] builds uses the same store: give it here only.
    ///
    /// ```
    /// use session_runtime::SocketSessions;
    /// use tower_sessions::MemoryStore;
    ///
    /// let sessions = SocketSessions::new(MemoryStore::default());
    /// ```
    pub fn new(store: impl SessionStore) -> Self {
        let store: Arc<dyn SessionStore> = Arc::new(store);
        let room_key = RoomKey::random();
        let lifecycle = Arc::new(Lifecycle::new(
            room_key.clone(),
            OnGone::default(),
            store.clone(),
            None,
        ));
        Self {
            inner: Arc::new(Config {
                store,
                locks: Arc::new(LocalSessionLocks::default()),
                require_session: false,
                on_gone: OnGone::default(),
                timeouts: Timeouts::default(),
                room_key,
                keep_alive: KeepAlive::default(),
                users: None,
                #[cfg(feature = "axum-login")]
                login: None,
                lifecycle,
            }),
        }
    }

    /// Replaces the per-session locks, e.g. with a distributed implementation (see
    /// [`locks`](crate::locks)).
    ///
    /// ```
    /// use session_runtime::{locks::LocalSessionLocks, SocketSessions};
    /// use tower_sessions::MemoryStore;
    ///
    /// let sessions =
    ///     SocketSessions::new(MemoryStore::default()).with_locks(LocalSessionLocks::default());
    /// ```
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
    /// let sessions = SocketSessions::new(MemoryStore::default()).with_session_required();
    /// ```
    pub fn with_session_required(mut self) -> Self {
        Arc::make_mut(&mut self.inner).require_session = true;
        self
    }

    /// Chooses what becomes of a socket whose session is gone (default:
    /// [`OnGone::KeepAnonymous`]).
    ///
    /// ```
    /// # use session_runtime::{OnGone, SocketSessions};
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default()).with_on_gone(OnGone::disconnect());
    /// ```
    pub fn with_on_gone(mut self, policy: OnGone) -> Self {
        let config = Arc::make_mut(&mut self.inner);
        config.on_gone = policy;
        config.rebuild_lifecycle();
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
    ///     .with_timeouts(Timeouts::default().with_store(Duration::from_millis(500)));
    /// ```
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        Arc::make_mut(&mut self.inner).timeouts = timeouts;
        self
    }

    /// Chooses which socket events extend a session's expiry (default: [`KeepAlive::Events`]).
    ///
    /// ```
    /// # use session_runtime::{KeepAlive, SocketSessions};
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default()).with_keep_alive(KeepAlive::Off);
    /// ```
    pub fn with_keep_alive(mut self, keep_alive: KeepAlive) -> Self {
        Arc::make_mut(&mut self.inner).keep_alive = keep_alive;
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
    /// let sessions = SocketSessions::new(MemoryStore::default()).with_room_key(secret);
    /// ```
    pub fn with_room_key(mut self, secret: impl AsRef<[u8]>) -> Self {
        let config = Arc::make_mut(&mut self.inner);
        config.room_key = RoomKey::derive(secret.as_ref());
        config.rebuild_lifecycle();
        self
    }

    /// Names where sessions keep their user and where the index of users' sessions lives
    /// (see [`users`](crate::users)): every socket also joins its user's room, and the
    /// user API ([`SocketSessions::user_sessions`], [`SocketSessions::end_user_sessions`], ...)
    /// answers. Costs one read of the record per connection, and index writes only when a
    /// session's user changes.
    ///
    /// ```
    /// # use session_runtime::{users::Users, SocketSessions};
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default()).with_users(Users::key("user"));
    /// ```
    pub fn with_users(mut self, users: Users) -> Self {
        let config = Arc::make_mut(&mut self.inner);
        config.users = Some(users);
        config.rebuild_lifecycle();
        self
    }

    /// The axum-login backend whose users socket handlers take with
    /// [`SocketAuth<B>`](crate::login::SocketAuth) (see the [`login`](crate::login) module).
    ///
    /// ```
    /// # #[derive(Clone)] struct Backend;
    /// # #[derive(Debug, Clone)] struct User;
    /// # impl axum_login::AuthUser for User { type Id = i64; fn id(&self) -> i64 { 0 } fn session_auth_hash(&self) -> &[u8] { &[] } }
    /// # impl axum_login::AuthnBackend for Backend { type User = User; type Credentials = (); type Error = std::convert::Infallible;
    /// #   async fn authenticate(&self, _: ()) -> Result<Option<User>, Self::Error> { Ok(None) }
    /// #   async fn get_user(&self, _: &i64) -> Result<Option<User>, Self::Error> { Ok(None) } }
    /// use session_runtime::{login::AxumLogin, users::Users, SocketSessions};
    /// use tower_sessions::MemoryStore;
    ///
    /// // The same backend the app's `AuthManagerLayerBuilder` got; users by axum-login's id.
    /// let sessions = SocketSessions::new(MemoryStore::default())
    ///     .with_users(Users::axum_login("axum-login.data"))
    ///     .with_axum_login(AxumLogin::new(Backend));
    /// ```
    #[cfg(feature = "axum-login")]
    #[cfg_attr(docsrs, doc(cfg(feature = "axum-login")))]
    pub fn with_axum_login<B>(mut self, login: crate::login::AxumLogin<B>) -> Self
    where
        B: axum_login::AuthnBackend + 'static,
    {
        Arc::make_mut(&mut self.inner).login = Some(Arc::new(login));
        self
    }

    #[cfg(feature = "axum-login")]
    pub(crate) fn axum_login<B: 'static>(&self) -> Option<&crate::login::AxumLogin<B>> {
        self.inner.login.as_ref()?.downcast_ref()
    }

    /// The room every socket of session `id` joins, in each namespace: to reach all the
    /// sockets of one session, on every node (`io.of(ns)?.to(room).emit(..)`).
    ///
    /// ```
    /// # use session_runtime::SocketSessions;
    /// # use tower_sessions::{session::Id, MemoryStore};
    /// let sessions = SocketSessions::new(MemoryStore::default()).with_room_key([7; 32]);
    /// let id = Id::default();
    /// let room = sessions.room(id);
    /// assert!(room.starts_with("session:"));
    /// assert!(!room.contains(&id.to_string()));
    /// ```
    pub fn room(&self, id: Id) -> String {
        self.inner.lifecycle.room(id)
    }

    pub(crate) fn bounds(&self) -> &Timeouts {
        &self.inner.timeouts
    }

    pub(crate) fn store(&self) -> &Arc<dyn SessionStore> {
        &self.inner.store
    }

    pub(crate) fn locks(&self) -> &Arc<dyn SessionLocks> {
        &self.inner.locks
    }

    pub(crate) fn lifecycle(&self) -> &Arc<Lifecycle> {
        &self.inner.lifecycle
    }

    pub(crate) fn keep_alive(&self) -> KeepAlive {
        self.inner.keep_alive
    }

    pub(crate) fn policy_on_gone(&self) -> OnGone {
        self.inner.on_gone
    }

    /// The whole HTTP side in one layer, to put **outside** the socket.io layer: the origin
    /// check (same origin; see [`SessionStack::with_origin_check`]), the lock layer that
    /// [`LockedSession`](crate::http::LockedSession) needs and that pushes every logout and
    /// rotation to the session's sockets through `io`, and the tower-sessions session layer
    /// on this store, configured by `configure` (cookie name, key, expiry, ...), in that
    /// order.
    ///
    /// ```
    /// use axum::Router;
    /// use session_runtime::SocketSessions;
    /// use socketioxide::{extract::SocketRef, SocketIo};
    /// use tower_sessions::{cookie::Key, Expiry, MemoryStore};
    ///
    /// let sessions = SocketSessions::new(MemoryStore::default());
    /// let (sio_layer, io) = SocketIo::new_layer();
    /// io.ns("/", sessions.handler(|_: SocketRef| {}));
    /// let idle = tower_sessions::cookie::time::Duration::minutes(30);
    /// let app: Router = Router::new().layer(sio_layer).layer(sessions.layer(io, |layer| {
    ///     layer
    ///         .with_private(Key::generate())
    ///         .with_expiry(Expiry::OnInactivity(idle))
    /// }));
    /// ```
    pub fn layer<A, C>(
        &self,
        io: SocketIo<A>,
        configure: impl FnOnce(
            SessionManagerLayer<WatchedStore>,
        ) -> SessionManagerLayer<WatchedStore, C>,
    ) -> SessionStack<C>
    where
        A: Adapter,
        C: CookieController,
    {
        SessionStack::new(
            OriginCheckLayer::same_origin(),
            self.lock_layer(io),
            configure(self.session_layer()),
            self.activity_layer(),
        )
    }

    /// The layer that makes an HTTP request that reads its session count as activity (an
    /// `OnInactivity` expiry extended by the rule socket events follow, under the session's
    /// lock, and the cookie sent again), for a stack assembled by hand (prefer
    /// [`SocketSessions::layer`], which includes it): put it **inside** the session layer.
    /// See [`activity`](crate::activity).
    ///
    /// ```
    /// use axum::Router;
    /// use session_runtime::SocketSessions;
    /// use socketioxide::SocketIo;
    /// use tower_sessions::MemoryStore;
    ///
    /// let sessions = SocketSessions::new(MemoryStore::default());
    /// let (sio_layer, io) = SocketIo::new_layer();
    /// let app: Router = Router::new()
    ///     .layer(sio_layer)
    ///     .layer(sessions.activity_layer())
    ///     .layer(sessions.session_layer())
    ///     .layer(sessions.lock_layer(io));
    /// ```
    pub fn activity_layer(&self) -> crate::activity::ActivityLayer {
        crate::activity::ActivityLayer::new(self.clone())
    }

    /// The tower-sessions layer on this store, for a stack assembled by hand (prefer
    /// [`SocketSessions::layer`]): configure it as usual and put it **outside** the socket.io
    /// layer and inside [`SocketSessions::lock_layer`].
    ///
    /// Its store is a [`WatchedStore`] around this one: every session a request ends is seen,
    /// and pushed by the lock layer.
    ///
    /// ```
    /// use axum::Router;
    /// use session_runtime::SocketSessions;
    /// use socketioxide::SocketIo;
    /// use tower_sessions::{cookie::Key, MemoryStore};
    ///
    /// let sessions = SocketSessions::new(MemoryStore::default());
    /// let (sio_layer, io) = SocketIo::new_layer();
    /// let app: Router = Router::new()
    ///     .layer(sio_layer)
    ///     .layer(sessions.session_layer().with_private(Key::generate()))
    ///     .layer(sessions.lock_layer(io));
    /// ```
    pub fn session_layer(&self) -> SessionManagerLayer<WatchedStore> {
        SessionManagerLayer::new(WatchedStore {
            inner: self.inner.store.clone(),
            lifecycle: self.inner.lifecycle.clone(),
            bounds: self.inner.timeouts,
        })
    }

    /// The lock layer, for a stack assembled by hand (prefer [`SocketSessions::layer`]): it
    /// lets HTTP routes take the same per-session locks as the sockets (see
    /// [`LockedSession`](crate::http::LockedSession)) and pushes through `io` every session a
    /// request ends. Put it **outside** the session layer.
    ///
    /// `io` is the server pushes go through; one `SocketSessions` serves one socket.io server
    /// (the first given wins).
    ///
    /// ```
    /// use axum::Router;
    /// use session_runtime::SocketSessions;
    /// use socketioxide::SocketIo;
    /// use tower_sessions::MemoryStore;
    ///
    /// let sessions = SocketSessions::new(MemoryStore::default());
    /// let (sio_layer, io) = SocketIo::new_layer();
    /// let app: Router = Router::new()
    ///     .layer(sio_layer)
    ///     .layer(sessions.session_layer())
    ///     .layer(sessions.lock_layer(io)); // outside the session layer
    /// ```
    pub fn lock_layer<A: Adapter>(&self, io: SocketIo<A>) -> SessionLockLayer {
        self.inner
            .lifecycle
            .push_through(io, self.inner.locks.clone());
        SessionLockLayer::new(
            self.inner.locks.clone(),
            self.inner.timeouts,
            self.inner.lifecycle.clone(),
        )
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
    ///
    /// ```
    /// # use session_runtime::SocketSessions;
    /// # use socketioxide::{extract::SocketRef, SocketIo};
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default());
    /// let (_layer, io) = SocketIo::new_layer();
    /// io.ns("/", sessions.handler(|socket: SocketRef| {
    ///     socket.on("ping", async || {});
    /// }));
    /// ```
    pub fn handler<F>(&self, register: F) -> SessionConnectHandler<F> {
        SessionConnectHandler {
            sessions: self.clone(),
            register,
            middleware: (),
        }
    }

    async fn attach_to<A: Adapter>(&self, socket: &Arc<Socket<A>>) -> Result<(), SessionError> {
        let parts = socket.req_parts();
        let Some(http) = parts.extensions.get::<tower_sessions::Session>() else {
            tracing::error!("the handshake request has no session: put `SocketSessions::layer` outside `SocketIoLayer`");
            return Err(SessionError::NoSessionLayer);
        };
        self.inner
            .lifecycle
            .check_wiring(parts.extensions.get::<Wired>().is_some());
        // The handshake's session caches its record forever: take only its id and expiry.
        let handle = SessionHandle::new(socket, http.id(), http.expiry(), self.clone());
        let tracking = self.inner.lifecycle.users();
        // One read serves both the requirement and the user's room.
        let session = match (
            self.inner.require_session || tracking.is_some(),
            handle.id(),
        ) {
            (true, Some(_)) => Some(handle.read().await?),
            _ => None,
        };
        if self.inner.require_session && !session.as_ref().is_some_and(|s| s.exists()) {
            tracing::debug!("refusing a socket without a valid session");
            return Err(SessionError::NoSession);
        }
        // Any id, even one the store lacks: joining costs no store call, and a logout of an
        // unknown id pushes to a room whose sockets have no session anyway.
        if let Some(id) = handle.id() {
            socket.join(self.room(id));
        }
        // Its user's room too. A store that fails above refuses the connection rather than
        // leave the socket out of its user's room.
        if let (Some(tracking), Some(session)) = (tracking, &session) {
            if let Some(user) = tracking.key_of(&session.0.state().data) {
                socket.join(user.room());
            }
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
///
/// ```
/// use session_runtime::{connect::AttachSession, SocketSessions};
/// use socketioxide::{extract::SocketRef, handler::ConnectHandler, SocketIo};
/// use tower_sessions::MemoryStore;
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let attach: AttachSession = sessions.attach();
/// let (_layer, io) = SocketIo::new_layer();
/// io.ns("/", (async |_socket: SocketRef| {}).with(attach));
/// ```
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
///
/// ```
/// use session_runtime::{connect::SessionConnectHandler, SocketSessions};
/// use socketioxide::{extract::SocketRef, SocketIo};
/// use tower_sessions::MemoryStore;
///
/// fn register(socket: SocketRef) {
///     socket.on("ping", async || {});
/// }
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let handler: SessionConnectHandler<fn(SocketRef)> = sessions.handler(register as fn(SocketRef));
/// let (_layer, io) = SocketIo::new_layer();
/// io.ns("/", handler);
/// ```
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

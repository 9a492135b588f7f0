//! The HTTP side in one layer: what [`SocketSessions::layer`](crate::SocketSessions::layer)
//! returns.

use std::fmt;

use tower::Layer;
use tower_sessions::{
    service::{CookieController, PlaintextCookie},
    SessionManagerLayer,
};

use crate::{
    activity::{ActivityLayer, ActivityService},
    gone::WatchedStore,
    http::{SessionLockLayer, SessionLockService},
    origin::{OriginCheck, OriginCheckLayer},
};

/// The service of the tower-sessions layer inside a [`SessionStack`].
type SessionService<S, C> = <SessionManagerLayer<WatchedStore, C> as Layer<S>>::Service;

/// The service a [`SessionStack`] wraps a router's routes in.
///
/// ```
/// use axum::Router;
/// use session_runtime::{SessionStackService, SocketSessions};
/// use socketioxide::SocketIo;
/// use tower::Layer;
/// use tower_sessions::MemoryStore;
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let (_sio_layer, io) = SocketIo::new_layer();
/// let service: SessionStackService<Router> = sessions.layer(io, |layer| layer).layer(Router::new());
/// ```
pub type SessionStackService<S, C = PlaintextCookie> =
    OriginCheck<SessionLockService<SessionService<ActivityService<S>, C>>>;

/// The origin check, the lock layer and the session layer, in the one order that works: made
/// by [`SocketSessions::layer`](crate::SocketSessions::layer), added to the router **outside**
/// the socket.io layer.
///
/// The order, outermost first, and why:
/// 1. [`OriginCheckLayer`]: a page of another site gets 403 before any session is loaded, on
///    every socket.io transport (the browser would send it the user's cookie).
/// 2. [`SessionLockLayer`]: an HTTP writer ([`LockedSession`](crate::http::LockedSession))
///    keeps the session's lock until the session layer has saved; then a logout or rotation
///    is pushed to the session's sockets.
/// 3. tower-sessions' `SessionManagerLayer`, on a [`WatchedStore`]: the socket.io handshake
///    carries the session (its id and expiry), and every delete is seen.
///
/// ```
/// use axum::Router;
/// use session_runtime::{SessionStack, SocketSessions};
/// use socketioxide::SocketIo;
/// use tower_sessions::{cookie::Key, service::PrivateCookie, MemoryStore};
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let (sio_layer, io) = SocketIo::new_layer();
/// // The cookie controller the closure chose is part of the type.
/// let stack: SessionStack<PrivateCookie> =
///     sessions.layer(io, |layer| layer.with_private(Key::generate()));
/// let app: Router = Router::new().layer(sio_layer).layer(stack);
/// ```
#[derive(Clone)]
pub struct SessionStack<C: CookieController = PlaintextCookie> {
    origin: OriginCheckLayer,
    locks: SessionLockLayer,
    session: SessionManagerLayer<WatchedStore, C>,
    activity: ActivityLayer,
}

impl<C: CookieController> fmt::Debug for SessionStack<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionStack")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl<C: CookieController> SessionStack<C> {
    pub(crate) fn new(
        origin: OriginCheckLayer,
        locks: SessionLockLayer,
        session: SessionManagerLayer<WatchedStore, C>,
        activity: ActivityLayer,
    ) -> Self {
        Self {
            origin,
            locks,
            session,
            activity,
        }
    }

    /// Replaces the origin check (default: [`OriginCheckLayer::same_origin`]), e.g. to also
    /// serve another front end.
    ///
    /// ```
    /// use axum::Router;
    /// use session_runtime::{origin::OriginCheckLayer, SocketSessions};
    /// use socketioxide::SocketIo;
    /// use tower_sessions::MemoryStore;
    ///
    /// let sessions = SocketSessions::new(MemoryStore::default());
    /// let (sio_layer, io) = SocketIo::new_layer();
    /// let stack = sessions
    ///     .layer(io, |layer| layer)
    ///     .with_origin_check(OriginCheckLayer::same_origin().with_allowed("https://admin.example.com"));
    /// let app: Router = Router::new().layer(sio_layer).layer(stack);
    /// ```
    pub fn with_origin_check(mut self, origin: OriginCheckLayer) -> Self {
        self.origin = origin;
        self
    }

    /// Serves socket.io requests from any origin. Only for apps whose sockets carry no
    /// browser credentials of value: any page the user visits could act as them.
    ///
    /// ```
    /// # use session_runtime::SocketSessions;
    /// # use socketioxide::SocketIo;
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default());
    /// let (_sio_layer, io) = SocketIo::new_layer();
    /// let stack = sessions.layer(io, |layer| layer).without_origin_check();
    /// ```
    pub fn without_origin_check(mut self) -> Self {
        self.origin = OriginCheckLayer::any_origin();
        self
    }
}

impl<S, C: CookieController> Layer<S> for SessionStack<C> {
    type Service = SessionStackService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        self.origin.layer(
            self.locks
                .layer(self.session.layer(self.activity.layer(inner))),
        )
    }
}

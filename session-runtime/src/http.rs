//! The HTTP side: let axum routes that write the session take the same per-session lock as
//! the sockets, so interleaved HTTP and socket writes lose nothing.
//!
//! [`SocketSessions::layer`](crate::SocketSessions::layer) puts the layer in place; routes
//! that write take [`LockedSession`]; [`session_json`] and [`refresh_cookie`] are ready routes.
//!
//! ```
//! use axum::{routing::post, Router};
//! use session_runtime::{http::{refresh_cookie, session_json, LockedSession}, SocketSessions};
//! use socketioxide::{extract::SocketRef, SocketIo};
//! use tower_sessions::MemoryStore;
//!
//! async fn logout(session: LockedSession) -> &'static str {
//!     // Pushed to the session's sockets as `session:gone` {"reason": "logged out"}.
//!     match session.flush().await {
//!         Ok(()) => "bye",
//!         Err(_) => "try again",
//!     }
//! }
//!
//! let sessions = SocketSessions::new(MemoryStore::default());
//! let (sio_layer, io) = SocketIo::new_layer();
//! io.ns("/", sessions.handler(|_: SocketRef| {}));
//! let app: Router = Router::new()
//!     .route("/logout", post(logout))
//!     .route("/get/session", session_json(&["user"]))
//!     .route("/session/refresh", refresh_cookie())
//!     .layer(sio_layer)
//!     .layer(sessions.layer(io, |layer| layer));
//! ```

use std::{
    fmt,
    future::Future,
    ops::Deref,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
};

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, Request, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post, MethodRouter},
};
use tower::{Layer, Service};
use tower_sessions::Session;

pub use crate::gone::WatchedStore;
use crate::{
    gone::{in_request_scope, push_request_ends, request_write_failed, Lifecycle, RequestEnds},
    locks::{SessionLockGuard, SessionLocks},
    SessionError, Timeouts,
};

/// Holds the lock a [`LockedSession`] took until the session layer has saved.
#[derive(Clone)]
pub(crate) struct LockSlot {
    locks: Arc<dyn SessionLocks>,
    timeouts: Timeouts,
    guard: Arc<Mutex<Option<SessionLockGuard>>>,
}

impl LockSlot {
    /// Whether a [`LockedSession`] of this request holds its session's lock.
    pub(crate) fn holds(&self) -> bool {
        self.guard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }
}

/// The tower layer that makes [`LockedSession`] work and pushes the end of a session to its
/// sockets. [`SocketSessions::layer`](crate::SocketSessions::layer) puts it in place; for a
/// stack assembled by hand, [`SocketSessions::lock_layer`](crate::SocketSessions::lock_layer)
/// makes it, and it goes **outside** `SessionManagerLayer`, so the lock is released only after
/// the session layer has saved.
///
/// Once the session layer has saved, a request that ended a session — `flush` (a logout) or
/// `cycle_id` (a rotation), in any route, through `tower_sessions::Session` or
/// [`LockedSession`] — pushes [`GONE_EVENT`](crate::GONE_EVENT)
/// `{"reason": "logged out" | "rotated"}` to every socket of that session, in every namespace,
/// through the socket.io adapter (so on every node); then the sockets'
/// [`OnGone`](crate::OnGone) policy applies. The push leaves before the response, so a client
/// that hears it and reloads sees the new state. It sees the deletes through the
/// [`WatchedStore`] of [`SocketSessions::session_layer`](crate::SocketSessions::session_layer).
///
/// ```
/// use axum::{routing::post, Router};
/// use session_runtime::{http::LockedSession, SocketSessions};
/// use socketioxide::{extract::SocketRef, SocketIo};
/// use tower_sessions::MemoryStore;
///
/// async fn incr(session: LockedSession) -> String {
///     let count = session.get::<i64>("count").await.ok().flatten().unwrap_or(0) + 1;
///     session.insert("count", count).await.ok();
///     count.to_string()
/// }
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let (sio_layer, io) = SocketIo::new_layer();
/// io.ns("/", sessions.handler(|_: SocketRef| {}));
/// // By hand, what `sessions.layer(io, |layer| layer)` does in one call:
/// let app: Router = Router::new()
///     .route("/incr", post(incr))
///     .layer(sio_layer)
///     .layer(sessions.session_layer())
///     .layer(sessions.lock_layer(io));
/// ```
#[derive(Clone)]
pub struct SessionLockLayer {
    locks: Arc<dyn SessionLocks>,
    timeouts: Timeouts,
    lifecycle: Arc<Lifecycle>,
}

impl SessionLockLayer {
    pub(crate) fn new(
        locks: Arc<dyn SessionLocks>,
        timeouts: Timeouts,
        lifecycle: Arc<Lifecycle>,
    ) -> Self {
        Self {
            locks,
            timeouts,
            lifecycle,
        }
    }
}

impl fmt::Debug for SessionLockLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLockLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for SessionLockLayer {
    type Service = SessionLockService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionLockService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`SessionLockLayer`].
///
/// Named for code that spells out the router's service type; the layer makes it:
///
/// ```
/// use axum::Router;
/// use session_runtime::{http::SessionLockService, SocketSessions};
/// use socketioxide::SocketIo;
/// use tower::Layer;
/// use tower_sessions::MemoryStore;
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let (_sio_layer, io) = SocketIo::new_layer();
/// let service: SessionLockService<Router> = sessions.lock_layer(io).layer(Router::new());
/// ```
#[derive(Clone)]
pub struct SessionLockService<S> {
    inner: S,
    layer: SessionLockLayer,
}

impl<S> fmt::Debug for SessionLockService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionLockService").finish_non_exhaustive()
    }
}

/// Put in the request's extensions by [`SessionLockService`]: the handshake of a socket that
/// carries it went through the lock layer, so logouts and rotations over HTTP reach it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wired;

impl<S, B> Service<Request<B>> for SessionLockService<S>
where
    S: Service<Request<B>>,
    S::Response: IntoResponse,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let slot = LockSlot {
            locks: self.layer.locks.clone(),
            timeouts: self.layer.timeouts,
            guard: Arc::default(),
        };
        req.extensions_mut().insert(slot.clone());
        req.extensions_mut().insert(Wired);
        let ends = Arc::<Mutex<RequestEnds>>::default();
        let response = in_request_scope(ends.clone(), self.inner.call(req));
        let lifecycle = self.layer.lifecycle.clone();
        Box::pin(async move {
            let response = response.await?;
            // The session layer inside has saved by now: other writers may go.
            let guard = slot
                .guard
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if guard.as_ref().is_some_and(SessionLockGuard::lost) {
                // The session layer's save was refused: its lease had lapsed, and a later
                // writer's data stands. Whatever the route answered did not happen, so nothing
                // is pushed either.
                let err = SessionError::LeaseLost;
                tracing::error!(error = %err.report(), "an HTTP write of the session was refused");
                return Ok(LockedSessionRejection::Session(err).into_response());
            }
            drop(guard);
            let response = response.into_response();
            let failed = request_write_failed(&ends);
            // What the request ended is pushed even if a later write failed (a rotation's
            // create: its sockets are logged out).
            push_request_ends(&lifecycle, &ends).await;
            if failed {
                // tower-sessions answers a bare 500 when its save fails; a store that failed
                // is worth trying again, as everywhere else: 503 and the error.
                let err = SessionError::Store(tower_sessions::session_store::Error::Backend(
                    "the session layer could not write the session".into(),
                ));
                tracing::error!(error = %err.report(), "an HTTP write of the session failed");
                return Ok(LockedSessionRejection::Session(err).into_response());
            }
            Ok(response)
        })
    }
}

/// A `tower_sessions::Session` whose per-session lock is held until the session layer has
/// saved it: an axum extractor for routes that write the session.
///
/// It reloads the record after taking the lock, so it never works on a stale copy. Needs
/// [`SessionLockLayer`] outside `SessionManagerLayer` (see its example). Routes that only
/// read can keep the plain `Session` extractor.
///
/// The lock is taken with the bound of [`Timeouts::with_lock`](crate::Timeouts::with_lock)
/// and the reload with that of [`Timeouts::with_store`](crate::Timeouts::with_store); a
/// failure answers 503 (see [`LockedSessionRejection`]). A request without a session id takes
/// no lock: there is no record to race on, and a new one gets a fresh id.
///
/// ```
/// use axum::{http::StatusCode, routing::post, Router};
/// use session_runtime::{http::LockedSession, SocketSessions};
/// use socketioxide::{extract::SocketRef, SocketIo};
/// use tower_sessions::MemoryStore;
///
/// async fn incr(session: LockedSession) -> Result<String, StatusCode> {
///     let failed = |_| StatusCode::INTERNAL_SERVER_ERROR;
///     let count = session.get::<i64>("count").await.map_err(failed)?.unwrap_or(0) + 1;
///     session.insert("count", count).await.map_err(failed)?;
///     Ok(count.to_string()) // the lock is released once the session layer has saved
/// }
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let (sio_layer, io) = SocketIo::new_layer();
/// io.ns("/", sessions.handler(|_: SocketRef| {}));
/// let app: Router = Router::new()
///     .route("/incr", post(incr))
///     .layer(sio_layer)
///     .layer(sessions.layer(io, |layer| layer));
/// ```
pub struct LockedSession(Session);

impl LockedSession {
    /// The session, unlocked once the response has been produced.
    ///
    /// The lock stays held until the session layer has saved, however the `Session` is
    /// passed on: e.g. to a helper that takes tower-sessions' type.
    ///
    /// ```
    /// use session_runtime::http::LockedSession;
    /// use tower_sessions::Session;
    ///
    /// async fn remember(session: &Session, page: &str) -> Result<(), tower_sessions::session::Error> {
    ///     session.insert("last_page", page).await
    /// }
    ///
    /// async fn visit(session: LockedSession) -> &'static str {
    ///     let session: Session = session.into_inner();
    ///     match remember(&session, "/docs").await {
    ///         Ok(()) => "noted",
    ///         Err(_) => "not noted",
    ///     }
    /// }
    /// ```
    pub fn into_inner(self) -> Session {
        self.0
    }
}

impl Deref for LockedSession {
    type Target = Session;
    fn deref(&self) -> &Session {
        &self.0
    }
}

impl fmt::Debug for LockedSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LockedSession").finish_non_exhaustive()
    }
}

/// Why [`LockedSession`] could not be extracted.
///
/// Its response is `{"error": "<message>"}` with the short message of
/// [`SessionError`]: 503 for a store, a lock or a lease failure, a timeout or a busy lock
/// (try again), 500 for a wiring mistake (logged at `error` with the fix). A route that wants
/// to answer otherwise takes `Result<LockedSession, LockedSessionRejection>`:
///
/// ```
/// use axum::{http::StatusCode, response::IntoResponse};
/// use session_runtime::http::{LockedSession, LockedSessionRejection};
///
/// async fn save(session: Result<LockedSession, LockedSessionRejection>) -> axum::response::Response {
///     match session {
///         Ok(_session) => StatusCode::NO_CONTENT.into_response(),
///         Err(LockedSessionRejection::Session(err)) => {
///             (StatusCode::SERVICE_UNAVAILABLE, err.to_string()).into_response()
///         }
///         Err(other) => other.into_response(),
///     }
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockedSessionRejection {
    /// The route is not behind `SessionManagerLayer`.
    #[error("`LockedSession` needs `SessionManagerLayer` on the route")]
    NoSessionLayer,
    /// The route is not behind [`SessionLockLayer`], or it is inside `SessionManagerLayer`.
    #[error("`LockedSession` needs `SessionLockLayer` outside `SessionManagerLayer`")]
    NoLockLayer,
    /// Taking the lock or reloading the record failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl IntoResponse for LockedSessionRejection {
    fn into_response(self) -> Response {
        // The client hears a short message; the log keeps the sources and the wiring hint.
        let (status, message) = match &self {
            Self::Session(
                err @ (SessionError::Store(_)
                | SessionError::TimedOut
                | SessionError::Busy
                | SessionError::LeaseLost
                | SessionError::Lock { .. }),
            ) => {
                tracing::error!(error = %err.report(), "`LockedSession` rejected the request");
                (StatusCode::SERVICE_UNAVAILABLE, err.to_string())
            }
            Self::Session(err) => {
                tracing::debug!(error = %err.report(), "`LockedSession` rejected the request");
                (StatusCode::INTERNAL_SERVER_ERROR, err.to_string())
            }
            Self::NoSessionLayer | Self::NoLockLayer => {
                tracing::error!(error = %self, "`LockedSession` rejected the request");
                let unavailable = SessionError::NoSessionLayer.to_string();
                (StatusCode::INTERNAL_SERVER_ERROR, unavailable)
            }
        };
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LockedSession {
    type Rejection = LockedSessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let session = parts
            .extensions
            .get::<Session>()
            .cloned()
            .ok_or(LockedSessionRejection::NoSessionLayer)?;
        let slot = parts
            .extensions
            .get::<LockSlot>()
            .cloned()
            .ok_or(LockedSessionRejection::NoLockLayer)?;
        // Without an id there is no record to race on: a new one gets a fresh id.
        if let Some(id) = session.id() {
            let guard = slot.timeouts.lock_wait(slot.locks.lock(id)).await?;
            *slot.guard.lock().unwrap_or_else(PoisonError::into_inner) = Some(guard);
            // Something before us may have read the record already; that copy is stale.
            slot.timeouts
                .store_call(async { session.load().await.map_err(SessionError::from_session) })
                .await?;
        }
        Ok(LockedSession(session))
    }
}

/// A ready `GET` route that answers the caller's own session as a JSON object, limited to
/// `keys`: for a page that wants to show what its sockets and routes did to the session.
///
/// Only the session of the request's own cookie is ever read (there is no id parameter), only
/// the listed keys leave the server, and nothing is written. Keys the session lacks are left
/// out; a request without a session gets `{}`. The answer is marked `Cache-Control: no-store`.
/// A store failure gets 503 `{"error": "..."}`.
///
/// ```
/// use axum::Router;
/// use session_runtime::http::session_json;
/// use tower_sessions::{MemoryStore, SessionManagerLayer};
///
/// // `GET /get/session` -> `{"user": "alice", "count": 3}`, never any other key.
/// let app: Router = Router::new()
///     .route("/get/session", session_json(&["user", "count"]))
///     .layer(SessionManagerLayer::new(MemoryStore::default()));
/// ```
pub fn session_json<S>(keys: &[&str]) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let keys: Arc<[Box<str>]> = keys.iter().map(|&key| Box::from(key)).collect();
    get(move |session: Session| async move {
        let mut out = serde_json::Map::new();
        for key in keys.iter() {
            match session.get_value(key).await {
                Ok(Some(value)) => {
                    out.insert(key.to_string(), value);
                }
                Ok(None) => {}
                Err(err) => return store_unavailable(err, "`session_json`"),
            }
        }
        no_store(StatusCode::OK, serde_json::Value::Object(out))
    })
}

/// The answer of the ready routes: JSON that no cache keeps (it is one user's session).
fn no_store(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

/// A ready route's answer to a failing store: 503 with the short message; the log keeps
/// the source.
fn store_unavailable(err: tower_sessions::session::Error, route: &str) -> Response {
    let err = SessionError::from_session(err);
    tracing::error!(%err, "could not read the session for {route}");
    no_store(
        StatusCode::SERVICE_UNAVAILABLE,
        serde_json::json!({ "error": err.to_string() }),
    )
}

/// A ready `POST` route that re-sends the session cookie with a fresh `Max-Age`: what a page
/// calls when its socket receives [`REFRESH_EVENT`](crate::REFRESH_EVENT).
///
/// tower-sessions sends the cookie only on a response that saves the session. A user active
/// only over the socket keeps the session alive in the store (socket events touch its expiry,
/// see [`KeepAlive`](crate::KeepAlive)), but the browser's cookie still expires one window
/// after the last HTTP save. After a socket event extends the expiry, the socket is sent
/// `session:refresh`; the page answers with this route, under the session's lock, and the
/// response carries the cookie again. A request without a live session changes nothing and
/// gets `{"refreshed": false}`; otherwise `{"refreshed": true}`.
///
/// ```
/// use axum::Router;
/// use session_runtime::{http::refresh_cookie, SocketSessions};
/// use socketioxide::{extract::SocketRef, SocketIo};
/// use tower_sessions::MemoryStore;
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let (sio_layer, io) = SocketIo::new_layer();
/// io.ns("/", sessions.handler(|_: SocketRef| {}));
/// // The page: `socket.on("session:refresh", () => fetch("/session/refresh", {method: "POST"}))`
/// let app: Router = Router::new()
///     .route("/session/refresh", refresh_cookie())
///     .layer(sio_layer)
///     .layer(sessions.layer(io, |layer| layer));
/// ```
pub fn refresh_cookie<S>() -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    post(|session: LockedSession| async move {
        // Any read makes tower-sessions resolve the record: a session the store no longer
        // holds loses its id here, and must not be given a new cookie (nor a new record).
        if let Err(err) = session.get_value("").await {
            return store_unavailable(err, "`refresh_cookie`");
        }
        let refreshed = session.id().is_some();
        if refreshed {
            // Marks the session modified without touching its data: the session layer saves
            // it (a new expiry in the store) and sends the cookie with a new `Max-Age`.
            session.set_expiry(session.expiry());
        }
        no_store(
            StatusCode::OK,
            serde_json::json!({ "refreshed": refreshed }),
        )
    })
}

//! Every HTTP request that reads its session is activity: with `Expiry::OnInactivity`, a
//! read-only request (no write, so tower-sessions would neither save nor send the cookie)
//! extends the record's expiry by the rule socket events follow (see
//! [`KeepAlive`](crate::KeepAlive)): at most once per quarter of the window, under the
//! session's lock (reloaded, so a write made meanwhile is kept and a session that ended is
//! not brought back), and the cookie is sent again with a new `Max-Age`.
//!
//! Not tower-sessions' `with_always_save(true)`: that writes the record as the request loaded
//! it, outside the lock, on every request.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::http::{Request, Response};
use tower::{Layer, Service};
use tower_sessions::{cookie::time::OffsetDateTime, session::Id, Expiry, Session};

use crate::{
    gone::{loaded_expiry, touched_in_request},
    http::LockSlot,
    locks::LeaseWrite,
    SessionError, SocketSessions,
};

/// The layer that makes a request that reads its session count as activity (see the
/// [module docs](self)). [`SocketSessions::layer`] puts it in place, inside the session layer;
/// a stack assembled by hand adds [`SocketSessions::activity_layer`] **inside** the session
/// layer.
///
/// ```
/// use axum::Router;
/// use session_runtime::SocketSessions;
/// use socketioxide::SocketIo;
/// use tower_sessions::{cookie::time::Duration, Expiry, MemoryStore};
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let (sio_layer, io) = SocketIo::new_layer();
/// let idle = Expiry::OnInactivity(Duration::minutes(30));
/// let app: Router = Router::new()
///     .layer(sio_layer)
///     .layer(sessions.activity_layer()) // inside the session layer
///     .layer(sessions.session_layer().with_expiry(idle))
///     .layer(sessions.lock_layer(io));
/// ```
#[derive(Clone)]
pub struct ActivityLayer {
    sessions: SocketSessions,
}

impl fmt::Debug for ActivityLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityLayer").finish_non_exhaustive()
    }
}

impl ActivityLayer {
    pub(crate) fn new(sessions: SocketSessions) -> Self {
        Self { sessions }
    }
}

impl<S> Layer<S> for ActivityLayer {
    type Service = ActivityService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ActivityService {
            inner,
            sessions: self.sessions.clone(),
        }
    }
}

/// The service of [`ActivityLayer`].
///
/// ```
/// use axum::Router;
/// use session_runtime::{activity::ActivityService, SocketSessions};
/// use tower::Layer;
/// use tower_sessions::MemoryStore;
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let service: ActivityService<Router> = sessions.activity_layer().layer(Router::new());
/// ```
#[derive(Clone)]
pub struct ActivityService<S> {
    inner: S,
    sessions: SocketSessions,
}

impl<S> fmt::Debug for ActivityService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActivityService").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ActivityService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let session = req.extensions().get::<Session>().cloned();
        let slot = req.extensions().get::<LockSlot>().cloned();
        let sessions = self.sessions.clone();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            if let Some(session) = session {
                // The session layer saves nothing after a server error either.
                if !response.status().is_server_error() {
                    activity(&sessions, &session, slot.as_ref()).await;
                }
            }
            Ok(response)
        })
    }
}

/// What a request that read `session` does to its expiry (see the [module docs](self)).
async fn activity(sessions: &SocketSessions, session: &Session, slot: Option<&LockSlot>) {
    let Some(Expiry::OnInactivity(window)) = session.expiry() else {
        return;
    };
    // A write moves the expiry anyway, with the cookie.
    if session.is_modified() {
        return;
    }
    let Some(id) = session.id() else {
        return;
    };
    // Only a request that read its session: the record's expiry is known without a load.
    let Some(at) = loaded_expiry(id) else {
        return;
    };
    if !due(at, window, OffsetDateTime::now_utc()) {
        return;
    }
    if slot.is_some_and(LockSlot::holds) {
        // A `LockedSession` route: the record was reloaded under the lock, which is still
        // held; the session layer's save is fenced and keeps what the route read.
        session.set_expiry(session.expiry());
        return;
    }
    match touch(sessions, id, window).await {
        Ok(Touch::Moved | Touch::Fresh) => {
            // The save is done: the session layer's own becomes a no-op, and it sends the
            // cookie with a new `Max-Age`.
            if touched_in_request(id) {
                session.set_expiry(session.expiry());
            }
        }
        Ok(Touch::Gone) => {}
        Err(err) => {
            // The answer stands; a later request or event touches it.
            tracing::warn!(error = %err.report(), "could not extend a session's expiry after an HTTP request");
        }
    }
}

/// Whether the expiry `at` was set more than a quarter of `window` ago: then activity (a
/// request here, a socket event in [`SessionHandle`](crate::SessionHandle)) moves it, at most
/// four times per window.
pub(crate) fn due(
    at: OffsetDateTime,
    window: tower_sessions::cookie::time::Duration,
    now: OffsetDateTime,
) -> bool {
    at < now + (window - window / 4)
}

enum Touch {
    Moved,
    /// Another request or event moved it meanwhile.
    Fresh,
    Gone,
}

/// Moves the expiry of `id` one `window` ahead, under its lock, if still due.
async fn touch(
    sessions: &SocketSessions,
    id: Id,
    window: tower_sessions::cookie::time::Duration,
) -> Result<Touch, SessionError> {
    let lifecycle = sessions.lifecycle();
    // One touch at a time per session: the one running now moves it.
    let Some(_claim) = lifecycle.start_touch(id) else {
        return Ok(Touch::Fresh);
    };
    let bounds = sessions.bounds();
    let mut guard = bounds.lock_wait(sessions.locks().lock(id)).await?;
    let now = OffsetDateTime::now_utc();
    let record = match guard.take_record() {
        Some(loaded) => loaded?,
        None => bounds.store_op(sessions.store().load(&id)).await?,
    };
    let Some(mut record) = record.filter(|r| r.expiry_date > now) else {
        return Ok(Touch::Gone);
    };
    if !due(record.expiry_date, window, now) {
        return Ok(Touch::Fresh);
    }
    record.expiry_date = now + window;
    match guard.into_lease() {
        // Written only if the lease still holds, and released, in one step.
        Ok(lease) => {
            bounds
                .store_call(lease.finish(LeaseWrite::Save(&record)))
                .await?
        }
        Err(_guard) => bounds.store_op(sessions.store().save(&record)).await?,
    }
    lifecycle.moved(id, record.expiry_date);
    Ok(Touch::Moved)
}

//! The per-socket session handle and the transactions it runs.

use std::{
    any::Any,
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
};

use futures_util::FutureExt as _;
use socketioxide::{adapter::Adapter, handler::FromMessageParts, socket::Socket};
use tower_sessions::{
    cookie::time::OffsetDateTime,
    session::{Expiry, Id, Record},
};

use crate::{
    gone::{Expires, ExpiryWatch, LOGGED_OUT},
    locks::{LeaseWrite, SessionLockGuard},
    session::Shared,
    users::Change,
    KeepAlive, OnGone, ReadOnlySocketSession, SessionError, SocketSession, SocketSessions,
    REFRESH_EVENT,
};

/// What the gone policy needs of a socket, with its adapter type erased.
pub(crate) trait SessionSocket: Send + Sync + 'static {
    fn end_gone_session(self: Arc<Self>, event: &str);

    /// Tells the client that its session's expiry moved, so it can renew its cookie.
    fn refresh(&self);
}

impl<A: Adapter> SessionSocket for Socket<A> {
    fn refresh(&self) {
        if let Err(err) = self.emit(REFRESH_EVENT, &()) {
            tracing::debug!(%err, "could not tell the client to refresh its cookie");
        }
    }

    fn end_gone_session(self: Arc<Self>, event: &str) {
        let reason = SessionError::Gone.to_string();
        if let Err(err) = self.emit(event, &serde_json::json!({ "reason": reason })) {
            tracing::debug!(%err, "could not tell the client its session is gone");
        }
        if let Err(err) = self.disconnect() {
            tracing::debug!(%err, "could not disconnect a socket whose session is gone");
        }
    }
}

/// One socket's access to its session: the id the handshake carried, the session layer's
/// expiry, and the shared store and locks.
///
/// It holds no session data: every transaction reloads the record. It is what
/// [`with_session`](crate::with_session) uses under the hood, and an extractor for handlers
/// written by hand:
///
/// ```
/// use session_runtime::{SessionError, SessionHandle};
/// use socketioxide::extract::AckSender;
///
/// async fn incr(handle: SessionHandle, ack: AckSender) {
///     let result = handle
///         .autosave(async |session| {
///             let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
///             session.insert("count", count)?;
///             Ok::<_, SessionError>(count)
///         })
///         .await;
///     // Saved (or not) before the client hears of it.
///     let sent = match result {
///         Ok(count) => ack.send(&count),
///         Err(err) => ack.send(&serde_json::json!({ "error": err.to_string() })),
///     };
///     if let Err(err) = sent {
///         tracing::warn!(%err, "could not acknowledge `incr`");
///     }
///     // After the answer: with `OnGone::Disconnect`, a gone session's socket is closed now.
///     handle.apply_gone_policy();
/// }
/// ```
#[derive(Clone)]
pub struct SessionHandle {
    inner: Arc<SocketState>,
}

struct SocketState {
    id: Option<Id>,
    expiry: Option<Expiry>,
    sessions: SocketSessions,
    /// Once a record is found missing it never comes back (ids are random), so later events
    /// skip the store.
    gone: AtomicBool,
    /// Weak: the handle lives in the socket's own extensions.
    socket: Weak<dyn SessionSocket>,
    /// This socket's share of its session's expiry timer on this node.
    _expiry: Option<ExpiryWatch>,
    /// The axum-login user this socket fetched last.
    #[cfg(feature = "axum-login")]
    auth: crate::login::Cache,
}

/// What a transaction writes once its body succeeded.
enum Write {
    Nothing,
    Save,
    Delete,
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("has_id", &self.inner.id.is_some())
            .field("gone", &self.inner.gone.load(Ordering::Relaxed))
            .finish()
    }
}

impl SessionHandle {
    pub(crate) fn new<A: Adapter>(
        socket: &Arc<Socket<A>>,
        id: Option<Id>,
        expiry: Option<Expiry>,
        sessions: SocketSessions,
    ) -> Self {
        let socket: Arc<dyn SessionSocket> = socket.clone();
        // Only a session with an expiry of its own has a timer: others live as long as the
        // store keeps them, and end by a logout, which is pushed anyway. All are known to the
        // node, for the sweep after its listener comes back.
        let watch = id.map(|id| {
            let expires = match expiry {
                Some(Expiry::OnInactivity(_)) => Expires::Unknown,
                Some(Expiry::AtDateTime(at)) => Expires::At(at),
                _ => Expires::Never,
            };
            sessions.lifecycle().watch(id, expires)
        });
        Self {
            inner: Arc::new(SocketState {
                id,
                expiry,
                sessions,
                gone: AtomicBool::new(false),
                socket: Arc::downgrade(&socket),
                _expiry: watch,
                #[cfg(feature = "axum-login")]
                auth: crate::login::Cache::default(),
            }),
        }
    }

    /// The handle attached to `socket`, if any.
    ///
    /// For code that holds the socket rather than extracting the handle, e.g. a task spawned
    /// from a handler.
    ///
    /// ```
    /// use session_runtime::SessionHandle;
    /// use socketioxide::extract::SocketRef;
    ///
    /// async fn on_ping(socket: SocketRef) {
    ///     let Some(handle) = SessionHandle::of(&socket) else {
    ///         return; // not registered through `SocketSessions::handler`
    ///     };
    ///     let user: Option<String> = match handle.read().await {
    ///         Ok(session) => session.get("user").ok().flatten(),
    ///         Err(_) => None,
    ///     };
    ///     socket.emit("pong", &user).ok();
    /// }
    /// ```
    pub fn of<A: Adapter>(socket: &Socket<A>) -> Option<Self> {
        socket.extensions.get::<Self>()
    }

    #[cfg(feature = "axum-login")]
    pub(crate) fn auth_cache(&self) -> &crate::login::Cache {
        &self.inner.auth
    }

    /// The session id the handshake carried, or `None` for a socket without a session cookie.
    ///
    /// ```
    /// use session_runtime::SessionHandle;
    ///
    /// async fn anonymous(handle: SessionHandle) -> bool {
    ///     handle.id().is_none()
    /// }
    /// ```
    pub fn id(&self) -> Option<Id> {
        self.inner.id
    }

    /// The [`SocketSessions`] this socket's session belongs to: for the user API inside a
    /// handler (e.g. [`SocketSessions::end_user_sessions`]).
    ///
    /// ```
    /// use session_runtime::{SessionError, SessionHandle};
    ///
    /// async fn devices(handle: SessionHandle) -> Result<usize, SessionError> {
    ///     let user: Option<String> = handle.read().await?.get("user")?;
    ///     match user {
    ///         Some(user) => Ok(handle.sessions().user_sessions(&user).await?.len()),
    ///         None => Ok(0),
    ///     }
    /// }
    /// ```
    pub fn sessions(&self) -> &SocketSessions {
        &self.inner.sessions
    }

    /// Whether this socket has found its session gone (logged out, expired, rotated).
    /// Once it has, every later transaction fails with [`SessionError::Gone`] without asking
    /// the store: ids are random, a record never comes back.
    ///
    /// ```
    /// use session_runtime::SessionHandle;
    /// use socketioxide::extract::SocketRef;
    ///
    /// async fn status(socket: SocketRef, handle: SessionHandle) {
    ///     let status = if handle.is_gone() { "log in again" } else { "ok" };
    ///     socket.emit("status", status).ok();
    /// }
    /// ```
    pub fn is_gone(&self) -> bool {
        self.inner.gone.load(Ordering::Acquire)
    }

    /// A fresh read-only copy of the session, as the store holds it now. No lock, no write.
    ///
    /// A socket without a session, or whose session is gone, reads an empty session
    /// ([`ReadOnlySocketSession::exists`] is `false`).
    ///
    /// ```
    /// use session_runtime::{SessionError, SessionHandle};
    ///
    /// async fn user_of(handle: SessionHandle) -> Result<Option<String>, SessionError> {
    ///     handle.read().await?.get("user")
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store fails to load the record,
    /// [`SessionError::TimedOut`] when it does not answer in time.
    pub async fn read(&self) -> Result<ReadOnlySocketSession, SessionError> {
        let record = self.load_at(OffsetDateTime::now_utc()).await?;
        Ok(ReadOnlySocketSession(Shared::new(
            self.inner.id,
            record.map(|r| r.data),
        )))
    }

    /// Runs `f` on a fresh, read-only copy of the session. Nothing is ever written.
    ///
    /// The copy is closed when `f` returns, so a clone kept by `f` cannot pass for a live one.
    ///
    /// ```
    /// use session_runtime::{SessionError, SessionHandle};
    /// use socketioxide::extract::AckSender;
    ///
    /// async fn whoami(handle: SessionHandle, ack: AckSender) {
    ///     let user = handle
    ///         .readonly(async |session| session.get::<String>("user"))
    ///         .await
    ///         .unwrap_or_else(|err: SessionError| Some(format!("error: {err}")));
    ///     ack.send(&user).ok();
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// `f`'s own errors, and the failures of [`SessionHandle::read`] converted into `E`.
    pub async fn readonly<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(ReadOnlySocketSession) -> Result<T, E>,
        E: From<SessionError>,
    {
        self.read_transaction(None, f).await?
    }

    /// Runs `f` as one transaction on the session: take the session's lock, reload the record,
    /// run `f`, save if `f` returned `Ok` and changed something, release the lock.
    ///
    /// ```
    /// use session_runtime::{SessionError, SessionHandle};
    /// use socketioxide::extract::{AckSender, Data};
    ///
    /// async fn rename(handle: SessionHandle, Data(name): Data<String>, ack: AckSender) {
    ///     let saved = handle
    ///         .autosave(async |session| session.insert("name", &name))
    ///         .await
    ///         .map_err(|err: SessionError| err.to_string());
    ///     ack.send(&saved.is_ok()).ok(); // after the save
    ///     handle.apply_gone_policy();
    /// }
    /// ```
    ///
    /// `f` returning `Err` (or panicking) writes nothing. A socket without a session gets
    /// [`SessionError::NoSession`]; a session that is gone gets [`SessionError::Gone`] and is
    /// never written back (then call [`SessionHandle::apply_gone_policy`] after acknowledging).
    ///
    /// # Errors
    ///
    /// `f`'s own errors, and, converted into `E`: [`SessionError::NoSession`],
    /// [`SessionError::Gone`], [`SessionError::Lock`] when the lock backend fails,
    /// [`SessionError::Busy`] when another writer holds the lock too long,
    /// [`SessionError::Store`] when the load or the save fails (nothing half-written),
    /// [`SessionError::TimedOut`] when the store does not answer in time,
    /// [`SessionError::HandlerTimedOut`] when `f` runs too long,
    /// [`SessionError::Panicked`] when `f` panicked, and `f`'s use of the session after it
    /// finished ([`SessionError::Closed`]).
    pub async fn autosave<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(SocketSession) -> Result<T, E>,
        E: From<SessionError>,
    {
        self.transaction(None, f).await?
    }

    /// The transaction behind `autosave`: the outer `Err` is a session failure, the inner
    /// `Err` the handler's own (which writes nothing).
    pub(crate) async fn transaction<T, E, F>(
        &self,
        require: Option<&str>,
        f: F,
    ) -> Result<Result<T, E>, SessionError>
    where
        F: AsyncFnOnce(SocketSession) -> Result<T, E>,
    {
        let id = self.inner.id.ok_or(SessionError::NoSession)?;
        if self.is_gone() {
            return Err(SessionError::Gone);
        }
        let (guard, record, now) = self.lock_and_load(id).await?;
        let Some(mut record) = record else {
            return Err(SessionError::Gone);
        };
        let tracking = self.inner.sessions.lifecycle().users();
        let user_before = tracking.and_then(|t| t.key_of(&record.data));
        let shared = Shared::new(Some(id), Some(std::mem::take(&mut record.data)));
        check_required(&shared, require)?;

        // Built in place: a named local would keep a second copy of the body's future in
        // this one's state.
        let bounded = self
            .inner
            .sessions
            .bounds()
            .body(AssertUnwindSafe(f(SocketSession(shared.clone()))).catch_unwind());
        let value = match bounded.await {
            Ok(Ok(Ok(value))) if !shared.state().end => value,
            Ok(Ok(result)) => {
                if shared.state().end {
                    shared.state().closed = true;
                    // Under the lock it holds: fenced like any write. Boxed, as every rare
                    // step of an event is: inline, a second write would enlarge every event.
                    let change = Change::between(user_before, None);
                    Box::pin(self.write(guard, id, &record, Write::Delete, false, change)).await?;
                }
                return Ok(result);
            }
            Ok(Err(panic)) => {
                tracing::error!(
                    panic = panic_message(&panic),
                    "session handler panicked; nothing saved"
                );
                return Err(SessionError::Panicked);
            }
            Err(timed_out) => {
                tracing::error!("session handler did not finish in time; nothing saved");
                return Err(timed_out);
            }
        };
        let touch = self.keeps_alive(true) && self.touch_due(&record, now);
        let mut change = None;
        let write = {
            let mut state = shared.state();
            state.closed = true;
            if let Some(err) = state.deferred_error.take() {
                return Err(err);
            }
            if state.delete {
                Write::Delete
            } else if state.modified || touch {
                if let Some(tracking) = tracking {
                    change = Change::between(user_before.clone(), tracking.key_of(&state.data));
                }
                record.data = std::mem::take(&mut state.data);
                record.expiry_date = expiry_date(self.inner.expiry, now);
                Write::Save
            } else {
                Write::Nothing
            }
        };
        if let Write::Delete = write {
            change = Change::between(user_before, None);
        }
        self.write(guard, id, &record, write, touch, change).await?;
        Ok(Ok(value))
    }

    /// The read-only counterpart of `transaction`: reload, check `require`, run `f`, then
    /// close the session so that a copy kept by `f` cannot be mistaken for a live one. An
    /// event that finds the session due for a touch extends it in the background, under the
    /// lock.
    pub(crate) async fn read_transaction<R, F>(
        &self,
        require: Option<&str>,
        f: F,
    ) -> Result<R, SessionError>
    where
        F: AsyncFnOnce(ReadOnlySocketSession) -> R,
    {
        let now = OffsetDateTime::now_utc();
        let record = self.load_at(now).await?;
        let touch = record
            .as_ref()
            .is_some_and(|r| self.keeps_alive(false) && self.touch_due(r, now));
        let session = ReadOnlySocketSession(Shared::new(self.inner.id, record.map(|r| r.data)));
        check_required(&session.0, require)?;
        let shared = session.0.clone();
        let out = self.inner.sessions.bounds().body(f(session)).await;
        let end = {
            let mut state = shared.state();
            state.closed = true;
            state.end
        };
        if end {
            Box::pin(self.end_now()).await?;
        }
        if touch {
            let handle = self.clone();
            tokio::spawn(async move {
                if let Err(err) = handle.touch().await {
                    tracing::debug!(error = %err.report(), "could not extend the session's expiry");
                }
            });
        }
        out
    }

    /// Ends the session out of a `readonly` event (which holds no lock): lock, reload, delete,
    /// as an `autosave` event that flushed it would.
    async fn end_now(&self) -> Result<(), SessionError> {
        let Some(id) = self.inner.id else {
            return Ok(());
        };
        let (guard, record, _) = self.lock_and_load(id).await?;
        let Some(record) = record else {
            return Ok(());
        };
        let tracking = self.inner.sessions.lifecycle().users();
        let change = Change::between(tracking.and_then(|t| t.key_of(&record.data)), None);
        self.write(guard, id, &record, Write::Delete, false, change)
            .await
    }

    /// Whether this kind of event (`write`: an `autosave` one) keeps the session alive.
    fn keeps_alive(&self, write: bool) -> bool {
        match self.inner.sessions.keep_alive() {
            KeepAlive::Events => true,
            KeepAlive::Writes => write,
            KeepAlive::Off => false,
        }
    }

    /// Whether a quarter of the inactivity window has passed since the record's expiry was
    /// last set: then an event moves it, at most four times per window.
    fn touch_due(&self, record: &Record, now: OffsetDateTime) -> bool {
        match self.inner.expiry {
            Some(Expiry::OnInactivity(window)) => {
                crate::activity::due(record.expiry_date, window, now)
            }
            _ => false,
        }
    }

    /// Extends the session's expiry as an HTTP request would, under the session's lock: a
    /// session that ended meanwhile is not brought back, and a write made meanwhile is kept.
    async fn touch(&self) -> Result<(), SessionError> {
        let Some(id) = self.inner.id else {
            return Ok(());
        };
        // One touch at a time per session: a burst of events needs one.
        let Some(_claim) = self.inner.sessions.lifecycle().start_touch(id) else {
            return Ok(());
        };
        let (guard, record, now) = self.lock_and_load(id).await?;
        let Some(mut record) = record.filter(|r| self.touch_due(r, now)) else {
            return Ok(());
        };
        record.expiry_date = expiry_date(self.inner.expiry, now);
        self.write(guard, id, &record, Write::Save, true, None)
            .await
    }

    /// Takes the session's lock (bounded) and loads the record with it; with the instant the
    /// lock was taken, the transaction's "now".
    async fn lock_and_load(
        &self,
        id: Id,
    ) -> Result<(SessionLockGuard, Option<Record>, OffsetDateTime), SessionError> {
        let sessions = &self.inner.sessions;
        let bounds = sessions.bounds();
        let mut lock = sessions.locks().lock(id);
        let mut waited = false;
        let guard = bounds
            .lock_wait(std::future::poll_fn(|cx| {
                let poll = lock.as_mut().poll(cx);
                waited |= poll.is_pending();
                poll
            }))
            .await;
        tracing::Span::current().record("lock_waited", waited);
        let mut guard = guard?;
        let now = OffsetDateTime::now_utc();
        // A lease beside the records loaded the record with the lock: no second round trip.
        let record = match guard.take_record() {
            Some(loaded) => self.found(loaded?, now),
            None => self.load_record(id, now).await?,
        };
        Ok((guard, record, now))
    }

    /// Writes what a transaction decided, through the lease if the lock is one (fenced: a
    /// lapsed lease writes nothing), and tells the session's sockets and timers.
    async fn write(
        &self,
        guard: SessionLockGuard,
        id: Id,
        record: &Record,
        write: Write,
        touched: bool,
        change: Option<Change>,
    ) -> Result<(), SessionError> {
        let sessions = &self.inner.sessions;
        let bounds = sessions.bounds();
        let lifecycle = sessions.lifecycle();
        let tracking = lifecycle.users().zip(change.as_ref());
        if let (Some((tracking, change)), Write::Save) = (tracking, &write) {
            // Before the record names its new user: the index never misses a live session.
            bounds
                .store_call(Box::pin(change.before(tracking, id)))
                .await?;
        }
        let lease_write = match write {
            // Dropping the guard releases the lock (a lease releases in the background).
            Write::Nothing => {
                tracing::trace!("session unchanged; nothing to save");
                return Ok(());
            }
            Write::Save => LeaseWrite::Save(record),
            Write::Delete => LeaseWrite::Delete,
        };
        match guard.into_lease() {
            // Written only if the lease still holds, and released, in one step.
            Ok(lease) => bounds.store_call(lease.finish(lease_write)).await?,
            Err(_guard) => match write {
                Write::Delete => bounds.store_op(sessions.store().delete(&id)).await?,
                _ => bounds.store_op(sessions.store().save(record)).await?,
            },
        }
        if let Some((tracking, change)) = tracking {
            Box::pin(change.after(tracking, id)).await;
        }
        if let Write::Delete = write {
            self.inner.gone.store(true, Ordering::Release);
            tracing::debug!("session deleted by a socket handler");
            let user = change.and_then(|change| change.old);
            Box::pin(lifecycle.ended(id, LOGGED_OUT, user.as_ref())).await;
            return Ok(());
        }
        if let Some(change) = &change {
            Box::pin(lifecycle.user_moved(id, change)).await;
        }
        tracing::debug!("session saved");
        // Only an inactivity window moves the expiry: any other kind stays where the timer
        // (if any) already has it, and telling the timers' task costs a wake-up per event.
        if let Some(Expiry::OnInactivity(_)) = self.inner.expiry {
            lifecycle.moved(id, record.expiry_date);
        }
        if touched {
            if let Some(socket) = self.inner.socket.upgrade() {
                socket.refresh();
            }
        }
        Ok(())
    }

    /// The record as of `now`: `None` without a session, or once it is gone.
    async fn load_at(&self, now: OffsetDateTime) -> Result<Option<Record>, SessionError> {
        let Some(id) = self.inner.id else {
            return Ok(None);
        };
        if self.is_gone() {
            return Ok(None);
        }
        self.load_record(id, now).await
    }

    async fn load_record(
        &self,
        id: Id,
        now: OffsetDateTime,
    ) -> Result<Option<Record>, SessionError> {
        let sessions = &self.inner.sessions;
        let record = sessions
            .bounds()
            .store_op(sessions.store().load(&id))
            .await?;
        Ok(self.found(record, now))
    }

    /// What a load found: a record not yet expired, or `None` (the session is gone).
    fn found(&self, record: Option<Record>, now: OffsetDateTime) -> Option<Record> {
        // Not every store filters expired records on load.
        let record = record.filter(|r| r.expiry_date > now);
        if record.is_none() && !self.inner.gone.swap(true, Ordering::AcqRel) {
            tracing::debug!("session record not found: the session is gone");
        }
        record
    }

    /// Applies the [`OnGone`] policy if this socket's session is gone: with
    /// [`OnGone::Disconnect`], the client receives the policy's event and is disconnected.
    ///
    /// `#[with_session]` calls it after acknowledging. A hand-written handler calls it after its
    /// own acknowledgement, so the client hears why before the socket closes (see the example
    /// on [`SessionHandle`]). Does nothing while the session exists.
    ///
    /// ```
    /// use session_runtime::SessionHandle;
    /// use socketioxide::extract::AckSender;
    ///
    /// async fn touch(handle: SessionHandle, ack: AckSender) {
    ///     let result = handle.autosave(async |session| session.insert("seen", true)).await;
    ///     ack.send(&result.is_ok()).ok();
    ///     handle.apply_gone_policy(); // the client has its answer: now it may be disconnected
    /// }
    /// ```
    pub fn apply_gone_policy(&self) {
        if !self.is_gone() {
            return;
        }
        if let OnGone::Disconnect { event } = self.inner.sessions.policy_on_gone() {
            if let Some(socket) = self.inner.socket.upgrade() {
                socket.end_gone_session(event);
            }
        }
    }
}

fn check_required(shared: &Shared, require: Option<&str>) -> Result<(), SessionError> {
    match require {
        Some(key) if !shared.state().data.contains_key(key) => {
            Err(SessionError::Missing(key.to_owned()))
        }
        _ => Ok(()),
    }
}

/// The same rule as tower-sessions, so a socket's save sets the expiry HTTP's would. `now` is
/// the transaction's start: the handler's run time does not count as activity.
fn expiry_date(expiry: Option<Expiry>, now: OffsetDateTime) -> OffsetDateTime {
    match expiry {
        Some(Expiry::OnInactivity(duration)) => now.saturating_add(duration),
        Some(Expiry::AtDateTime(at)) => at,
        Some(Expiry::OnSessionEnd) | None => {
            now.saturating_add(tower_sessions::cookie::time::Duration::weeks(2))
        }
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("<non-string panic>")
}

/// Hands a handler its socket's session handle.
///
/// Fails with [`SessionError::NotAttached`] when the namespace was not registered through
/// [`SocketSessions::handler`] or [`SocketSessions::attach`]; socketioxide then skips the
/// handler (and logs it), so prefer [`with_session`](crate::with_session), which answers
/// the client with that error instead.
impl<A: Adapter> FromMessageParts<A> for SessionHandle {
    type Error = SessionError;

    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut socketioxide::handler::Value,
        _: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        Self::of(s).ok_or(SessionError::NotAttached)
    }
}

//! Bounds on every wait: a hung store, a stuck lock holder or a handler that never finishes
//! gets the client an answer instead of silence, and never holds a session's lock for ever.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use futures_util::{FutureExt as _, TryFutureExt as _};
use tokio::time::Sleep;

use tower_sessions::session_store;

use crate::SessionError;

/// How long the runtime waits, per event, before answering the client with an error.
///
/// | wait | default | on expiry |
/// |---|---|---|
/// | a store operation (load, save, delete) | 3 s | [`SessionError::TimedOut`] |
/// | the session's lock, behind another writer | 3 s | [`SessionError::Busy`] |
/// | the handler's body (from reload to its answer) | 30 s | [`SessionError::HandlerTimedOut`] |
///
/// With the defaults an `autosave` event is answered within 3 + 3 + 30 + 3 s at the most, and
/// within 9 s when the store hangs (lock, load and save each give up after 3 s) whatever the
/// handler does. Whatever expires, nothing is written and the lock is released; the next
/// event tries again, so the session works as soon as the store does. A save that times out
/// may still land if the store was only slow: the client is told it failed, and the next
/// reload shows what the store holds.
///
/// ```
/// use std::time::Duration;
/// use session_runtime::{SocketSessions, Timeouts};
/// use tower_sessions::MemoryStore;
///
/// let sessions = SocketSessions::new(MemoryStore::default()).with_timeouts(
///     Timeouts::default()
///         .with_store(Duration::from_secs(1))
///         .with_lock(Duration::from_secs(2))
///         .with_handler(None), // handlers that may legitimately run long
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    store: Duration,
    lock: Duration,
    handler: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            store: Duration::from_secs(3),
            lock: Duration::from_secs(3),
            handler: Some(Duration::from_secs(30)),
        }
    }
}

impl Timeouts {
    /// The bound on each store operation (load, save, delete).
    ///
    /// On expiry: [`SessionError::TimedOut`] (HTTP 503). Default 3 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_runtime::Timeouts;
    ///
    /// let timeouts = Timeouts::default().with_store(Duration::from_millis(500));
    /// ```
    pub fn with_store(mut self, limit: Duration) -> Self {
        self.store = limit;
        self
    }

    /// The bound on waiting for a session's lock held by another writer.
    ///
    /// On expiry: [`SessionError::Busy`] (HTTP 503). Default 3 s; it also caps a burst of
    /// events on one session (those queued behind more work than this are answered `busy`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_runtime::Timeouts;
    ///
    /// let timeouts = Timeouts::default().with_lock(Duration::from_secs(10)); // long bursts
    /// ```
    pub fn with_lock(mut self, limit: Duration) -> Self {
        self.lock = limit;
        self
    }

    /// The bound on a handler's body, or `None` for none. Without one, a body that never
    /// finishes keeps its session's lock (other writers of that session get
    /// [`SessionError::Busy`]) and its client waits for ever.
    ///
    /// ```
    /// use std::time::Duration;
    /// use session_runtime::Timeouts;
    ///
    /// let short = Timeouts::default().with_handler(Some(Duration::from_secs(5)));
    /// let unbounded = Timeouts::default().with_handler(None);
    /// ```
    pub fn with_handler(mut self, limit: Option<Duration>) -> Self {
        self.handler = limit;
        self
    }

    /// How long a write may be on its way after the index of users gained its session: two
    /// bounded store calls and a margin for the clocks of other nodes.
    pub(crate) fn in_flight(&self) -> Duration {
        self.store * 3 + Duration::from_secs(1)
    }

    /// A store operation, bounded.
    pub(crate) fn store_op<T>(
        &self,
        op: impl Future<Output = session_store::Result<T>>,
    ) -> impl Future<Output = Result<T, SessionError>> {
        self.store_call(op.map_err(SessionError::Store))
    }

    /// A store operation that already speaks [`SessionError`] (a lease's write, a
    /// tower-sessions reload), bounded.
    pub(crate) fn store_call<T>(
        &self,
        op: impl Future<Output = Result<T, SessionError>>,
    ) -> impl Future<Output = Result<T, SessionError>> {
        Bounded::new(Some(self.store), op).map(|out| out.unwrap_or(Err(SessionError::TimedOut)))
    }

    /// A wait for a session's lock, bounded.
    pub(crate) fn lock_wait<T>(
        &self,
        wait: impl Future<Output = Result<T, SessionError>>,
    ) -> impl Future<Output = Result<T, SessionError>> {
        Bounded::new(Some(self.lock), wait).map(|out| out.unwrap_or(Err(SessionError::Busy)))
    }

    /// A handler's body, bounded if a bound is set.
    pub(crate) fn body<F: Future>(
        &self,
        body: F,
    ) -> impl Future<Output = Result<F::Output, SessionError>> {
        Bounded::new(self.handler, body).map(|out| out.map_err(|_| SessionError::HandlerTimedOut))
    }
}

pin_project_lite::pin_project! {
    /// `op` within `limit` (`None`: unbounded), the timer started only if `op` does not finish
    /// at its first poll.
    ///
    /// Most operations of an in-memory store, an uncontended lock and most handlers' bodies
    /// finish there, and a timer costs a clock read and a handle on the runtime each time; no
    /// timer could cut a poll short anyway, so the bound is the same: `limit` from the first
    /// time `op` waits. The timer is boxed: it is only made for an operation that waits (a
    /// network round trip, next to which an allocation is nothing), and inline it would
    /// enlarge every event's future, which is copied each time its task is spawned and run.
    struct Bounded<F> {
        #[pin]
        op: F,
        limit: Option<Duration>,
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F> Bounded<F> {
    fn new(limit: Option<Duration>, op: F) -> Self {
        Self {
            op,
            limit,
            timer: None,
        }
    }
}

/// A bound passed.
struct Elapsed;

impl<F: Future> Future for Bounded<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.op.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        let Some(limit) = *this.limit else {
            return Poll::Pending;
        };
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).map(|()| Err(Elapsed))
    }
}

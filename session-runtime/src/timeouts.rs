//! Bounds on every wait: a hung store, a stuck lock holder or a handler that never finishes
//! gets the client an answer instead of silence, and never holds a session's lock for ever.

use std::{future::Future, time::Duration};

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
    pub(crate) async fn store_op<T>(
        &self,
        op: impl Future<Output = session_store::Result<T>>,
    ) -> Result<T, SessionError> {
        self.store_call(async { op.await.map_err(SessionError::Store) })
            .await
    }

    /// A store operation that already speaks [`SessionError`] (a lease's write, a
    /// tower-sessions reload), bounded.
    pub(crate) async fn store_call<T>(
        &self,
        op: impl Future<Output = Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        tokio::time::timeout(self.store, op)
            .await
            .unwrap_or(Err(SessionError::TimedOut))
    }

    /// A wait for a session's lock, bounded.
    pub(crate) async fn lock_wait<T>(
        &self,
        wait: impl Future<Output = Result<T, SessionError>>,
    ) -> Result<T, SessionError> {
        tokio::time::timeout(self.lock, wait)
            .await
            .unwrap_or(Err(SessionError::Busy))
    }

    /// A handler's body, bounded if a bound is set.
    pub(crate) async fn body<F: Future>(&self, body: F) -> Result<F::Output, SessionError> {
        match self.handler {
            Some(limit) => tokio::time::timeout(limit, body)
                .await
                .map_err(|_| SessionError::HandlerTimedOut),
            None => Ok(body.await),
        }
    }
}

//! Per-session locks: writers of one session run one at a time.
//!
//! The runtime takes these locks for you: `autosave` handlers and HTTP routes that take
//! [`LockedSession`](crate::http::LockedSession) hold their session's lock from the reload to
//! the save. This module is for choosing or writing a backend: [`LocalSessionLocks`] (the
//! default) serialises the writers of one process; a backend for several nodes implements
//! [`SessionLocks`], and, if it keeps the records too, hands out [`SessionLease`]s that fence
//! every write (as the `redis` feature's `RedisSessionLocks` does).
//!
//! ```
//! use session_runtime::{locks::LocalSessionLocks, SocketSessions};
//! use tower_sessions::MemoryStore;
//!
//! // What `SocketSessions::new` uses anyway; a distributed backend goes here.
//! let sessions = SocketSessions::new(MemoryStore::default()).with_locks(LocalSessionLocks::default());
//! ```

use std::{
    any::Any,
    collections::{hash_map::Entry, HashMap, VecDeque},
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::oneshot;

use tower_sessions::{
    session::{Id, Record},
    SessionStore,
};

use crate::SessionError;

/// A boxed future, as returned by [`SessionLocks::lock`].
///
/// ```
/// use session_runtime::locks::{LockFuture, SessionLockGuard, SessionLocks};
/// use tower_sessions::session::Id;
///
/// /// No mutual exclusion at all: only for tests that want to see lost updates.
/// struct NoLocks;
///
/// impl SessionLocks for NoLocks {
///     fn lock(&self, _id: Id) -> LockFuture<'_> {
///         Box::pin(async { Ok(SessionLockGuard::new(())) })
///     }
/// }
/// ```
pub type LockFuture<'a> =
    Pin<Box<dyn Future<Output = Result<SessionLockGuard, SessionError>> + Send + 'a>>;

/// Mutual exclusion per session id.
///
/// Writers of one session (autosave socket handlers, HTTP routes that take
/// [`LockedSession`](crate::http::LockedSession)) hold the session's lock from reload to save,
/// so no update is lost. [`LocalSessionLocks`] serialises the writers of one process; a
/// distributed backend (e.g. Redis) implements this trait to serialise writers across nodes.
///
/// ```
/// use session_runtime::locks::{LocalSessionLocks, SessionLocks};
/// use tower_sessions::session::{Id, Record};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let locks = LocalSessionLocks::default();
/// let id = Id::default();
/// let guard = locks.lock(id).await.unwrap();
/// assert_eq!(locks.len(), 1);
/// drop(guard); // releases the lock; the entry goes away with its last user
/// assert_eq!(locks.len(), 0);
/// # }
/// ```
pub trait SessionLocks: Send + Sync + 'static {
    /// Waits until the lock of `id` is free and takes it. Dropping the guard releases it.
    ///
    /// # Errors
    ///
    /// [`SessionError::Lock`] when the backend cannot take the lock, with the backend's own
    /// error as its source (never the id in the message: it reaches clients).
    fn lock(&self, id: Id) -> LockFuture<'_>;

    /// Ends session `id` for good, fenced: deletes its record from `store` so that no holder
    /// of its lock, now or later, writes it back. Used by
    /// [`SocketSessions::end_user_sessions`](crate::SocketSessions::end_user_sessions).
    ///
    /// The default takes the lock, waiting for the current holder, and deletes under it: right
    /// for locks of one process, whose holders cannot be paused apart from the caller. A lease
    /// backend overrides it to delete the record *and* the lease in one step, at once: a
    /// holder that is paused or cut off then finds its lease gone and writes nothing.
    ///
    /// # Errors
    ///
    /// [`SessionError::Lock`] when the lock cannot be taken, [`SessionError::Store`] when the
    /// delete fails (the session then still stands).
    ///
    /// ```
    /// use session_runtime::locks::{LocalSessionLocks, SessionLocks};
    /// use tower_sessions::{session::{Id, Record}, MemoryStore, SessionStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::default();
    /// let mut record = Record {
    ///     id: Id::default(),
    ///     data: Default::default(),
    ///     expiry_date: tower_sessions::cookie::time::OffsetDateTime::now_utc()
    ///         + tower_sessions::cookie::time::Duration::hours(1),
    /// };
    /// store.create(&mut record).await.unwrap();
    /// LocalSessionLocks::default().end(record.id, &store).await.unwrap();
    /// assert!(store.load(&record.id).await.unwrap().is_none());
    /// # }
    /// ```
    fn end<'a>(&'a self, id: Id, store: &'a dyn SessionStore) -> LeaseFuture<'a> {
        Box::pin(async move {
            let _held = self.lock(id).await?;
            store.delete(&id).await.map_err(SessionError::Store)
        })
    }

    /// Ticks each time this backend's listener for the other nodes' messages is back (connected
    /// and subscribed again) after an outage, during which their messages, pushes of
    /// `session:gone` among them, were lost. [`SocketSessions`](crate::SocketSessions) then
    /// checks the sessions of this node's sockets against the store ([`SessionLocks::live`])
    /// and pushes those that ended meanwhile.
    ///
    /// The default, `None`, is right for locks of one process: no message crosses nodes.
    ///
    /// ```
    /// use session_runtime::locks::{LocalSessionLocks, SessionLocks};
    ///
    /// assert!(LocalSessionLocks::default().listener_returns().is_none());
    /// ```
    fn listener_returns(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }

    /// Whether each of `ids` (in order) still has a record in `store` that has not expired, in
    /// as few round trips as the backend allows: the check after
    /// [`SessionLocks::listener_returns`]. The default loads the records, concurrently.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the store cannot answer.
    ///
    /// ```
    /// use session_runtime::locks::{LocalSessionLocks, SessionLocks};
    /// use tower_sessions::{session::{Id, Record}, MemoryStore, SessionStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = MemoryStore::default();
    /// let mut record = Record {
    ///     id: Id::default(),
    ///     data: Default::default(),
    ///     expiry_date: tower_sessions::cookie::time::OffsetDateTime::now_utc()
    ///         + tower_sessions::cookie::time::Duration::hours(1),
    /// };
    /// store.create(&mut record).await.unwrap();
    /// let locks = LocalSessionLocks::default();
    /// let live = locks.live(&[record.id, Id::default()], &store).await;
    /// assert_eq!(live.unwrap(), [true, false]);
    /// # }
    /// ```
    fn live<'a>(&'a self, ids: &'a [Id], store: &'a dyn SessionStore) -> LiveFuture<'a> {
        Box::pin(async move {
            let now = tower_sessions::cookie::time::OffsetDateTime::now_utc();
            let loads = ids.iter().map(|id| store.load(id));
            let records = futures_util::future::try_join_all(loads)
                .await
                .map_err(SessionError::Store)?;
            Ok(records
                .into_iter()
                .map(|record| record.is_some_and(|r| r.expiry_date > now))
                .collect())
        })
    }
}

/// What a backend's [`SessionLocks::listener_returns`] hands out: ticked when its listener is
/// back, and when the database answers this node's locks again after it could not reach them
/// (its messages may have been lost in that time even if the listener never noticed).
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) struct Returns {
    ticks: tokio::sync::watch::Sender<u64>,
    unreachable: std::sync::atomic::AtomicBool,
}

#[cfg(any(feature = "redis", feature = "postgres"))]
impl Returns {
    pub(crate) fn new() -> Self {
        Self {
            ticks: tokio::sync::watch::Sender::new(0),
            unreachable: Default::default(),
        }
    }

    pub(crate) fn sender(&self) -> tokio::sync::watch::Sender<u64> {
        self.ticks.clone()
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.ticks.subscribe()
    }

    /// The database did not answer a lock of this node.
    pub(crate) fn failed(&self) {
        self.unreachable
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The database answered a lock of this node: a tick if it had not before.
    pub(crate) fn answered(&self) {
        if self.unreachable.load(std::sync::atomic::Ordering::Relaxed)
            && self
                .unreachable
                .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            self.ticks.send_modify(|round| *round += 1);
        }
    }
}

/// A boxed future, as returned by [`SessionLocks::live`]: one answer per id.
pub type LiveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<bool>, SessionError>> + Send + 'a>>;

/// Proof that a session's lock is held; dropping it releases the lock.
///
/// ```
/// use session_runtime::locks::{LocalSessionLocks, SessionLocks};
/// use tower_sessions::session::Id;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let locks = LocalSessionLocks::default();
/// let guard = locks.lock(Id::default()).await.unwrap();
/// assert_eq!(locks.len(), 1);
/// drop(guard);
/// assert!(locks.is_empty());
/// # }
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SessionLockGuard(Held);

enum Held {
    /// Released by dropping it.
    Plain(#[allow(dead_code)] Box<dyn Any + Send>),
    /// A lease beside the records: loads with the lock, writes fenced by it.
    Lease(Box<dyn SessionLease>),
}

impl SessionLockGuard {
    /// Wraps whatever releases the lock when dropped (for [`SessionLocks`] implementations).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use session_runtime::locks::SessionLockGuard;
    /// use tokio::sync::Semaphore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // One permit per session: the permit released when the guard drops.
    /// let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
    /// let guard = SessionLockGuard::new(permit);
    /// # drop(guard); }
    /// ```
    pub fn new(release_on_drop: impl Any + Send) -> Self {
        Self(Held::Plain(Box::new(release_on_drop)))
    }

    /// Wraps a lease held on the backend that also keeps the records (see [`SessionLease`]);
    /// dropping the guard drops the lease, which must then release itself.
    ///
    /// ```
    /// use session_runtime::locks::{LeaseFuture, LeaseWrite, SessionLease, SessionLockGuard};
    ///
    /// struct MyLease;
    ///
    /// impl SessionLease for MyLease {
    ///     fn finish(self: Box<Self>, _write: LeaseWrite<'_>) -> LeaseFuture<'_> {
    ///         Box::pin(async { Ok(()) }) // write if still ours, then release: one step
    ///     }
    /// }
    ///
    /// let guard = SessionLockGuard::with_lease(MyLease);
    /// ```
    pub fn with_lease(lease: impl SessionLease) -> Self {
        Self(Held::Lease(Box::new(lease)))
    }

    /// The record the lease loaded as it was taken, if any (once).
    pub(crate) fn take_record(&mut self) -> Option<Result<Option<Record>, SessionError>> {
        match &mut self.0 {
            Held::Lease(lease) => lease.take_record(),
            Held::Plain(_) => None,
        }
    }

    /// The lease, for a transaction that writes through it instead of the store.
    pub(crate) fn into_lease(self) -> Result<Box<dyn SessionLease>, Self> {
        match self.0 {
            Held::Lease(lease) => Ok(lease),
            plain => Err(Self(plain)),
        }
    }

    /// Whether a write made through the store while this lock was held was refused because
    /// the lease had lapsed.
    pub(crate) fn lost(&self) -> bool {
        match &self.0 {
            Held::Lease(lease) => lease.lost(),
            Held::Plain(_) => false,
        }
    }
}

impl fmt::Debug for SessionLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionLockGuard")
    }
}

/// A boxed future, as returned by [`SessionLease::finish`] (a whole implementation is on
/// [`SessionLease`]).
///
/// ```
/// use session_runtime::locks::LeaseFuture;
///
/// fn released() -> LeaseFuture<'static> {
///     Box::pin(async { Ok(()) })
/// }
/// ```
pub type LeaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SessionError>> + Send + 'a>>;

/// What a transaction writes as it gives its lease back (see [`SessionLease::finish`]).
///
/// ```
/// use session_runtime::locks::LeaseWrite;
///
/// fn describe(write: LeaseWrite<'_>) -> &'static str {
///     match write {
///         LeaseWrite::Nothing => "release only",
///         LeaseWrite::Save(_record) => "save the record, if the lease is still ours",
///         LeaseWrite::Delete => "delete the record, if the lease is still ours",
///         _ => "unknown", // the enum is non-exhaustive
///     }
/// }
/// assert_eq!(describe(LeaseWrite::Nothing), "release only");
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum LeaseWrite<'a> {
    /// Nothing: the session did not change.
    Nothing,
    /// This record, under its id; a record deleted meanwhile is not recreated.
    Save(&'a Record),
    /// Delete the record.
    Delete,
}

/// A session's lock held as a *lease* on the backend that also keeps the session records
/// (e.g. one Redis), so that the lock can be taken with the record's load, given back with its
/// write, and every write checked against it.
///
/// A lease has a bounded lifetime: a holder that is paused or cut off for longer than that
/// loses it, and another writer may take it. [`SessionLease::finish`] therefore writes only if
/// the lease is still the holder's, in one step on the backend (*fencing*): a late holder gets
/// [`SessionError::LeaseLost`], never a stale success. [`LocalSessionLocks`] are not leases.
///
/// The runtime uses it as an `autosave` transaction does: [`take_record`](Self::take_record)
/// right after the lock is taken, instead of the store's load; then
/// [`finish`](Self::finish) with what to write, instead of the store's save or delete and the
/// release. A lease dropped without `finish` (the transaction failed or was cancelled) must
/// release itself.
///
/// ```
/// use session_runtime::{
///     locks::{LeaseFuture, LeaseWrite, SessionLease, SessionLockGuard},
///     SessionError,
/// };
///
/// /// A lease on a backend that can't load with the lock: the runtime loads through the store.
/// struct MyLease;
///
/// impl SessionLease for MyLease {
///     fn finish(self: Box<Self>, write: LeaseWrite<'_>) -> LeaseFuture<'_> {
///         Box::pin(async move {
///             // One step on the backend: write only if the lease is still ours, release it.
///             match write {
///                 LeaseWrite::Nothing | LeaseWrite::Save(_) | LeaseWrite::Delete => Ok(()),
///                 _ => Err(SessionError::LeaseLost),
///             }
///         })
///     }
/// }
///
/// let guard = SessionLockGuard::with_lease(MyLease);
/// ```
pub trait SessionLease: Send + 'static {
    /// The record as the backend held it when the lease was taken (`Ok(None)`: no record),
    /// or `None` if the lease did not load it. Called at most once, right after the lock is
    /// taken.
    fn take_record(&mut self) -> Option<Result<Option<Record>, SessionError>> {
        None
    }

    /// Writes `write` if the lease is still the holder's and releases it, as one step.
    ///
    /// # Errors
    ///
    /// [`SessionError::LeaseLost`] when the lease lapsed (nothing is written),
    /// [`SessionError::Store`] when the backend fails.
    fn finish(self: Box<Self>, write: LeaseWrite<'_>) -> LeaseFuture<'_>;

    /// Whether a write made through the store while the lease was held was refused because
    /// the lease had lapsed (the HTTP side writes through the store: its answer then becomes
    /// an error instead of a success).
    fn lost(&self) -> bool {
        false
    }
}

const SHARDS: usize = 16;

/// Per locked id: the writers waiting for it, in arrival order. An id has an entry exactly
/// while someone holds its lock.
type Shard = Mutex<HashMap<Id, VecDeque<oneshot::Sender<LocalGuard>>>>;

/// In-process [`SessionLocks`]: one async mutex per session id that has a holder or a waiter.
///
/// An entry lives only while someone holds or awaits it, so memory stays flat however many
/// sessions come and go. The table is sharded to keep unrelated sessions from contending.
///
/// ```
/// use session_runtime::locks::{LocalSessionLocks, SessionLocks};
/// use tower_sessions::session::{Id, Record};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let locks = LocalSessionLocks::default();
/// let id = Id::default();
/// let first = locks.lock(id).await.unwrap();
/// // A second writer of the same session waits for the first.
/// let second = tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock(id)).await;
/// assert!(second.is_err());
/// drop(first);
/// let _second = locks.lock(id).await.unwrap();
/// # }
/// ```
#[derive(Clone, Default)]
pub struct LocalSessionLocks {
    inner: Arc<LocalLocksInner>,
}

#[derive(Default)]
struct LocalLocksInner {
    shards: [Shard; SHARDS],
}

impl LocalLocksInner {
    fn shard(&self, id: &Id) -> &Shard {
        // Ids are random: their low bits spread sessions over the shards without hashing
        // twice. A chosen id only picks its own shard; the map inside still hashes with a
        // random key.
        &self.shards[(id.0 as u64 as usize) % SHARDS]
    }

    fn lock_shard(
        &self,
        id: &Id,
    ) -> std::sync::MutexGuard<'_, HashMap<Id, VecDeque<oneshot::Sender<LocalGuard>>>> {
        self.shard(id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl LocalSessionLocks {
    /// How many sessions currently have a holder or a waiter.
    ///
    /// ```
    /// use session_runtime::locks::{LocalSessionLocks, SessionLocks};
    /// use tower_sessions::session::Id;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let locks = LocalSessionLocks::default();
    /// let (a, b) = (locks.lock(Id::default()).await.unwrap(), locks.lock(Id::default()).await.unwrap());
    /// assert_eq!(locks.len(), 2);
    /// drop((a, b));
    /// assert_eq!(locks.len(), 0);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// True when no session is locked or awaited.
    ///
    /// ```
    /// use session_runtime::locks::LocalSessionLocks;
    ///
    /// assert!(LocalSessionLocks::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for LocalSessionLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalSessionLocks")
            .field("len", &self.len())
            .finish()
    }
}

/// The lock of one id, held. Dropping it hands the lock to the first waiter still waiting,
/// or removes the id's entry when there is none. It travels to that waiter through a
/// oneshot channel, so a waiter cancelled after the hand-over releases it in turn when the
/// channel drops it.
struct LocalGuard {
    held: Option<(Arc<LocalLocksInner>, Id)>,
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        let Some((locks, id)) = self.held.take() else {
            return;
        };
        let mut baton = LocalGuard {
            held: Some((locks.clone(), id)),
        };
        let mut shard = locks.lock_shard(&id);
        // One lookup for both the hand-over and the removal.
        let Entry::Occupied(mut waiters) = shard.entry(id) else {
            baton.held = None;
            return;
        };
        while let Some(next) = waiters.get_mut().pop_front() {
            match next.send(baton) {
                Ok(()) => return,
                // That waiter gave up: try the next one.
                Err(back) => baton = back,
            }
        }
        waiters.remove();
        drop(shard);
        // Disarmed: the lock is free and nobody waits.
        baton.held = None;
    }
}

impl SessionLocks for LocalSessionLocks {
    fn lock(&self, id: Id) -> LockFuture<'_> {
        let mut shard = self.inner.lock_shard(&id);
        let waiting = match shard.entry(id) {
            Entry::Vacant(entry) => {
                entry.insert(VecDeque::new());
                drop(shard);
                // Built now, not at the first poll: a future dropped unpolled must release.
                let guard = LocalGuard {
                    held: Some((self.inner.clone(), id)),
                };
                return Box::pin(async move { Ok(SessionLockGuard::new(guard)) });
            }
            Entry::Occupied(mut entry) => {
                let (tx, rx) = oneshot::channel();
                entry.get_mut().push_back(tx);
                rx
            }
        };
        drop(shard);
        Box::pin(async move {
            let guard = waiting.await.map_err(|_| SessionError::Lock {
                source: "the lock table was dropped".into(),
            })?;
            Ok(SessionLockGuard::new(guard))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn uncontended_lock_future_dropped_unpolled_releases_the_lock() {
        let locks = LocalSessionLocks::default();
        let id = Id::default();
        drop(locks.lock(id));
        assert_eq!(locks.len(), 0);
        let guard = tokio::time::timeout(std::time::Duration::from_secs(5), locks.lock(id))
            .await
            .expect("the lock was left held by a future that never ran");
        drop(guard);
        assert!(locks.is_empty());
    }

    #[tokio::test]
    async fn waiters_get_the_lock_in_arrival_order_and_skip_cancelled_ones() {
        let locks = LocalSessionLocks::default();
        let id = Id::default();
        let first = locks.lock(id).await.unwrap();
        let second = locks.lock(id);
        let third = locks.lock(id);
        drop(second); // gives up before its turn
        drop(first);
        let third = tokio::time::timeout(std::time::Duration::from_secs(5), third)
            .await
            .expect("the lock was handed to a cancelled waiter and lost")
            .unwrap();
        assert_eq!(locks.len(), 1);
        drop(third);
        assert!(locks.is_empty());
    }
}

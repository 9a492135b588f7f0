//! Per-session locks: writers of one session run one at a time.

use std::{
    any::Any,
    collections::{hash_map::Entry, HashMap, VecDeque},
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::sync::oneshot;

use tower_sessions::session::Id;

use crate::SessionError;

/// A boxed future, as returned by [`SessionLocks::lock`].
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
/// use session_runtime::{LocalSessionLocks, SessionLocks};
/// use tower_sessions::session::Id;
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
}

/// Proof that a session's lock is held; dropping it releases the lock.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SessionLockGuard(#[allow(dead_code)] Box<dyn Any + Send>);

impl SessionLockGuard {
    /// Wraps whatever releases the lock when dropped (for [`SessionLocks`] implementations).
    pub fn new(release_on_drop: impl Any + Send) -> Self {
        Self(Box::new(release_on_drop))
    }
}

impl fmt::Debug for SessionLockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionLockGuard")
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
/// use session_runtime::{LocalSessionLocks, SessionLocks};
/// use tower_sessions::session::Id;
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
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// True when no session is locked or awaited.
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
        let Some(waiters) = shard.get_mut(&id) else {
            baton.held = None;
            return;
        };
        while let Some(next) = waiters.pop_front() {
            match next.send(baton) {
                Ok(()) => return,
                // That waiter gave up: try the next one.
                Err(back) => baton = back,
            }
        }
        shard.remove(&id);
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

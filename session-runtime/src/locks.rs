//! Per-session locks: writers of one session run one at a time.

use std::{
    any::Any,
    collections::HashMap,
    fmt,
    future::Future,
    hash::{BuildHasher, RandomState},
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
};

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

/// Per id: the async mutex and how many claims (waiters plus the holder) it has.
type Shard = Mutex<HashMap<Id, (Arc<tokio::sync::Mutex<()>>, usize)>>;

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
    hasher: RandomState,
    shards: [Shard; SHARDS],
}

impl LocalLocksInner {
    fn shard(&self, id: &Id) -> &Shard {
        &self.shards[self.hasher.hash_one(id) as usize % SHARDS]
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

/// A claim on one id's entry, held by a waiter and then by the holder. Its drop, whether the
/// lock was taken or the wait was cancelled, removes the entry once nobody else claims it.
struct Claim {
    locks: Arc<LocalLocksInner>,
    id: Id,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut shard = self
            .locks
            .shard(&self.id)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Claims are counted under the shard lock rather than read off `Arc::strong_count`,
        // because a cancelled wait may drop its mutex clone after its claim.
        if let Some((_, claims)) = shard.get_mut(&self.id) {
            *claims -= 1;
            if *claims == 0 {
                shard.remove(&self.id);
            }
        }
    }
}

struct LocalGuard {
    // Field order matters: the mutex is released before the claim counts what is left.
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _claim: Claim,
}

impl SessionLocks for LocalSessionLocks {
    fn lock(&self, id: Id) -> LockFuture<'_> {
        let mutex = {
            let mut shard = self
                .inner
                .shard(&id)
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let (mutex, claims) = shard.entry(id).or_default();
            *claims += 1;
            mutex.clone()
        };
        let claim = Claim {
            locks: self.inner.clone(),
            id,
        };
        Box::pin(async move {
            let guard = mutex.lock_owned().await;
            Ok(SessionLockGuard::new(LocalGuard {
                _guard: guard,
                _claim: claim,
            }))
        })
    }
}

//! [`RedisSessionLocks`]: per-session leases in Redis that fence every write made under them.

use std::{
    fmt,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use fred::{
    clients::Client,
    interfaces::{ClientLike, KeysInterface as _},
};
use tokio::{sync::watch, task::JoinHandle};
use tower_sessions::{
    session::{Id, Record},
    SessionStore,
};

use super::{
    backend,
    replicas::{self, ReplicaWait},
    scripts::{Acquired, Op, Turns},
    store::{decode, encode, unix_ms},
    Held, Keys, Shared,
};
use crate::{
    locks::{
        LeaseFuture, LeaseWrite, LiveFuture, LocalSessionLocks, LockFuture, SessionLease,
        SessionLockGuard, SessionLocks,
    },
    SessionError,
};

/// The first pause before asking again for a lease another node holds; it doubles up to
/// [`LONGEST_PAUSE`], and never outlasts what is left of the lease.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(16);

/// Nodes waiting for one lease take turns: a node waits at most 20 ms (plus the holder's
/// transaction) while another node's writers go on; its turn lapses 100 ms after it last
/// asked, well past its longest pause.
const TURNS: Turns = Turns {
    patience_ms: 20,
    lifetime_ms: 100,
};

/// The per-session locks of a [`RedisSessions`](super::RedisSessions): leases in Redis (see
/// the [module docs](super)), taken by every node's writers of a session in turn.
///
/// A lease is taken with the record's load, in one script, and given back with the record's
/// write, in another, which writes only if the lease is still the holder's: a holder whose
/// lease lapsed gets [`SessionError::LeaseLost`] and changes nothing.
///
/// ```no_run
/// use session_runtime::{redis::RedisSessions, SocketSessions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?;
/// let sessions = SocketSessions::new(redis.store()).with_locks(redis.locks());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSessionLocks {
    shared: Arc<Shared>,
    /// Writers of one process queue here first: one of them at a time asks Redis.
    local: LocalSessionLocks,
    lease: Duration,
    replicas: Option<ReplicaWait>,
}

impl fmt::Debug for RedisSessionLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionLocks")
            .field("lease", &self.lease)
            .field("waiting_here", &self.local.len())
            .finish()
    }
}

impl RedisSessionLocks {
    pub(crate) fn new(shared: Arc<Shared>, lease: Duration, replicas: Option<ReplicaWait>) -> Self {
        Self {
            shared,
            local: LocalSessionLocks::default(),
            lease,
            replicas,
        }
    }

    /// The lease's lifetime.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use session_runtime::redis::RedisSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?;
    /// assert_eq!(redis.with_lease(Duration::from_secs(2)).locks().lease(), Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lease_ms(&self) -> u64 {
        millis(self.lease)
    }

    /// Asks for the lease until it is `token`'s; returns the record read with it.
    async fn acquire(&self, keys: &Keys, token: &str) -> Result<Option<Vec<u8>>, SessionError> {
        let mut pause = FIRST_PAUSE;
        loop {
            let client = self.shared.client();
            if !client.is_connected() {
                self.shared.returns.failed();
                // fred would queue the script until it reconnects: fail now instead.
                return Err(SessionError::Lock {
                    source: "not connected to Redis".into(),
                });
            }
            let attempt = Attempt::arm(&self.shared, client, keys, token);
            let reply = self
                .shared
                .scripts
                .acquire(
                    client,
                    keys,
                    (token, &self.shared.node),
                    self.lease_ms(),
                    TURNS,
                )
                .await;
            match reply {
                Ok(_) => self.shared.returns.answered(),
                Err(_) => self.shared.returns.failed(),
            }
            match reply {
                Ok(Acquired::Taken(record)) => {
                    attempt.disarm();
                    return Ok(record);
                }
                Ok(Acquired::Held(left_ms)) => {
                    attempt.disarm();
                    let left = Duration::from_millis(left_ms.max(1));
                    tokio::time::sleep(jittered(pause).min(left)).await;
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
                // The script may have run: the armed attempt releases what it may have taken.
                Err(err) => {
                    return Err(SessionError::Lock {
                        source: Box::new(err),
                    })
                }
            }
        }
    }
}

/// A lease's lifetime as the scripts take it: whole milliseconds, at least one.
fn millis(lease: Duration) -> u64 {
    lease.as_millis().max(1) as u64
}

/// `pause`, plus up to half of it at random, so that nodes waiting for one lease do not ask
/// in step.
fn jittered(pause: Duration) -> Duration {
    let half = pause.as_micros() as u64 / 2;
    pause + Duration::from_micros((Id::default().0 as u64) % (half + 1))
}

impl SessionLocks for RedisSessionLocks {
    /// Ticks each time the subscriber of an adapter from
    /// [`RedisSessions::adapter`](super::RedisSessions::adapter) has reconnected and
    /// subscribed again, and when Redis answers this node's leases again after failing them.
    fn listener_returns(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.returns.subscribe())
    }

    /// One pipeline of `EXISTS`, one per record (Redis drops expired records itself); on a
    /// Cluster each goes to its slot's node.
    fn live<'a>(&'a self, ids: &'a [Id], _: &'a dyn SessionStore) -> LiveFuture<'a> {
        Box::pin(async move {
            let failed = |err| SessionError::Store(backend(err));
            let pipeline = self.shared.client().pipeline();
            for id in ids {
                let () = pipeline.exists(Keys::of(id).record).await.map_err(failed)?;
            }
            pipeline
                .try_all::<i64>()
                .await
                .into_iter()
                .map(|found| found.map(|n| n > 0).map_err(failed))
                .collect()
        })
    }

    /// Deletes the record and the lease in one command, at once: a holder, even one paused
    /// meanwhile, then finds its lease gone and writes nothing.
    fn end<'a>(&'a self, id: Id, _: &'a dyn SessionStore) -> LeaseFuture<'a> {
        Box::pin(async move {
            let keys = Keys::of(&id);
            let failed = |err| SessionError::Store(backend(err));
            super::users::end(&self.shared, &keys)
                .await
                .map_err(failed)?;
            replicas::after_write(self.replicas, self.shared.client(), &keys.record)
                .await
                .map_err(failed)
        })
    }

    fn lock(&self, id: Id) -> LockFuture<'_> {
        let local = self.local.lock(id);
        Box::pin(async move {
            let local = local.await?;
            // 128 random bits, never reused.
            let token = Id::default().to_string();
            let keys = Keys::of(&id);
            let record = self.acquire(&keys, &token).await?;
            let held = Arc::new(Held {
                token,
                lost: Default::default(),
            });
            self.shared.held().insert(id, held.clone());
            let renewal = tokio::spawn(renew_while_held(
                self.shared.clone(),
                keys.clone(),
                held.token.clone(),
                self.lease,
            ));
            Ok(SessionLockGuard::with_lease(RedisLease {
                shared: self.shared.clone(),
                id,
                keys,
                held,
                record: Some(record),
                replicas: self.replicas,
                renewal,
                local: Some(local),
                released: false,
            }))
        })
    }
}

/// Renews the lease every third of its lifetime until aborted (by its holder's finish or
/// drop) or until it finds the lease gone.
async fn renew_while_held(shared: Arc<Shared>, keys: Keys, token: String, lease: Duration) {
    let lease_ms = millis(lease);
    loop {
        tokio::time::sleep(lease / 3).await;
        match shared
            .scripts
            .renew(shared.client(), &keys, &token, lease_ms)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "a session's lease lapsed while its holder ran; its write will be refused"
                );
                return;
            }
            Err(err) => tracing::warn!(%err, "could not renew a session's lease"),
        }
    }
}

/// An acquire script in flight. If it is dropped armed (the waiter gave up, or the reply was
/// lost), the script may still have taken the lease: it releases that token in the
/// background, on the same connection, so it runs after the attempt.
struct Attempt {
    release: Option<(Arc<Shared>, Client, Keys, String)>,
}

impl Attempt {
    fn arm(shared: &Arc<Shared>, client: &Client, keys: &Keys, token: &str) -> Self {
        Self {
            release: Some((
                shared.clone(),
                client.clone(),
                keys.clone(),
                token.to_owned(),
            )),
        }
    }

    fn disarm(mut self) {
        self.release = None;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some((shared, client, keys, token)) = self.release.take() {
            release_later(shared, client, keys, token, None);
        }
    }
}

/// Gives `token`'s lease back in the background, on `client` (so after what that connection
/// already carries), then drops `after`. Without a runtime the lease lapses by itself.
fn release_later(
    shared: Arc<Shared>,
    client: Client,
    keys: Keys,
    token: String,
    after: Option<SessionLockGuard>,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        if let Err(err) = shared
            .scripts
            .write(&client, &keys, &token, Op::None, true)
            .await
        {
            tracing::warn!(%err, "could not release a session's lease; it lapses by itself");
        }
        drop(after);
    });
}

/// A lease held (see [`SessionLease`]).
struct RedisLease {
    shared: Arc<Shared>,
    id: Id,
    keys: Keys,
    held: Arc<Held>,
    /// The record read with the lease, until the transaction takes it.
    record: Option<Option<Vec<u8>>>,
    replicas: Option<ReplicaWait>,
    renewal: JoinHandle<()>,
    /// The process's own lock, kept until the lease is given back.
    local: Option<SessionLockGuard>,
    /// Given back (or found lost): nothing left to release.
    released: bool,
}

impl SessionLease for RedisLease {
    fn take_record(&mut self) -> Option<Result<Option<Record>, SessionError>> {
        let raw = self.record.take()?;
        Some(
            raw.as_deref()
                .map(decode)
                .transpose()
                .map_err(SessionError::Store),
        )
    }

    fn finish(mut self: Box<Self>, write: LeaseWrite<'_>) -> LeaseFuture<'_> {
        Box::pin(async move {
            let value;
            let changes = !matches!(write, LeaseWrite::Nothing);
            let op = match write {
                LeaseWrite::Nothing => Op::None,
                LeaseWrite::Delete => Op::Delete,
                LeaseWrite::Save(record) => {
                    value = encode(record)?;
                    Op::Save {
                        value: &value,
                        expires_at_ms: unix_ms(record.expiry_date),
                    }
                }
            };
            self.renewal.abort();
            let client = self.shared.client();
            let written = self
                .shared
                .scripts
                .write(client, &self.keys, &self.held.token, op, true)
                .await;
            match written {
                Ok(true) => {
                    self.released = true;
                    let replicas = self.replicas.filter(|_| changes);
                    replicas::after_write(replicas, client, &self.keys.record)
                        .await
                        .map_err(|err| SessionError::Store(backend(err)))
                }
                Ok(false) => {
                    self.released = true;
                    Err(SessionError::LeaseLost)
                }
                // Unknown whether the script ran: dropping releases the token anyway, which
                // is harmless if it did.
                Err(err) => Err(SessionError::Store(backend(err))),
            }
        })
    }

    fn lost(&self) -> bool {
        self.held.lost.load(Ordering::Acquire)
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        self.renewal.abort();
        {
            let mut held = self.shared.held();
            if held
                .get(&self.id)
                .is_some_and(|entry| Arc::ptr_eq(entry, &self.held))
            {
                held.remove(&self.id);
            }
        }
        let local = self.local.take();
        if self.released {
            return;
        }
        // Released in the background; this process's next writer of the session waits for it.
        release_later(
            self.shared.clone(),
            self.shared.client().clone(),
            self.keys.clone(),
            self.held.token.clone(),
            local,
        );
    }
}

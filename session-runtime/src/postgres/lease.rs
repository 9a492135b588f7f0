//! [`PostgresSessionLocks`]: per-session leases in PostgreSQL that fence every write made
//! under them (the functions are in `schema.sql`, with the invariants they keep).

use std::{
    fmt,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};
use tower_sessions::{
    cookie::time::OffsetDateTime,
    session::{Id, Record},
    SessionStore,
};

use super::{
    backend,
    sql::{decode, encode, write, Op},
    Held, Shared,
};
use crate::{
    locks::{
        LeaseFuture, LeaseWrite, LiveFuture, LocalSessionLocks, LockFuture, SessionLease,
        SessionLockGuard, SessionLocks,
    },
    SessionError,
};

/// Nodes waiting for one lease take turns (as on Redis): a node waits at most 20 ms (plus the
/// holder's transaction) while another node's writers go on; its turn lapses 100 ms after it
/// last asked.
const PATIENCE: Duration = Duration::from_millis(20);
const TURN_LIFETIME: Duration = Duration::from_millis(100);

/// The per-session locks of a [`PostgresSessions`](super::PostgresSessions): leases in the
/// database (see the [module docs](super)), taken by every node's writers of a session in
/// turn.
///
/// A lease is taken with the record's load, in one call, and given back with the record's
/// write, in another, which writes only if the lease is still the holder's: a holder whose
/// lease lapsed gets [`SessionError::LeaseLost`] and changes nothing.
///
/// ```no_run
/// use session_runtime::{postgres::PostgresSessions, SocketSessions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?;
/// let sessions = SocketSessions::new(pg.store()).with_locks(pg.locks());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresSessionLocks {
    shared: Arc<Shared>,
    /// Writers of one process queue here first: one of them at a time asks the database.
    local: LocalSessionLocks,
    lease: Duration,
}

impl fmt::Debug for PostgresSessionLocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSessionLocks")
            .field("lease", &self.lease)
            .field("waiting_here", &self.local.len())
            .finish()
    }
}

impl PostgresSessionLocks {
    pub(crate) fn new(shared: Arc<Shared>, lease: Duration) -> Self {
        Self {
            shared,
            local: LocalSessionLocks::default(),
            lease,
        }
    }

    /// The lease's lifetime.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use session_runtime::postgres::PostgresSessions;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?;
    /// assert_eq!(pg.with_lease(Duration::from_secs(2)).locks().lease(), Duration::from_secs(2));
    /// # Ok(()) }
    /// ```
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Asks for the lease until it is `token`'s; returns the record read with it. Between
    /// asks, waits for the holder's release (a notification) or what the database said to.
    async fn acquire(&self, id: &Id, token: &str) -> Result<Option<Vec<u8>>, SessionError> {
        let waiter = self.shared.wakes.waiter();
        loop {
            let asked = ask(&self.shared, id, token, millis(self.lease), waiter.tag()).await;
            match &asked {
                Ok(_) => self.shared.returns.answered(),
                Err(_) => self.shared.returns.failed(),
            }
            match asked {
                Ok((true, _, record)) => return Ok(record),
                Ok((false, wait_ms, _)) => {
                    let wait = Duration::from_millis(wait_ms.max(1) as u64);
                    waiter.wait(&self.shared.pool, wait).await;
                }
                Err(err) => return Err(SessionError::Lock { source: err }),
            }
        }
    }
}

/// What `session_acquire` answers: taken, milliseconds left, the record.
type Answer = (bool, i64, Option<Vec<u8>>);

/// Calls `session_acquire` in a task of its own: if the waiter gives up meanwhile (a bound,
/// a closed socket), the task still sees the answer, and gives back a lease it took. Released
/// from the waiter's side instead, the release could reach the database before the call it
/// undoes (both wait for a paused database), and the lease would stay taken by nobody for
/// its whole lifetime.
async fn ask(
    shared: &Arc<Shared>,
    id: &Id,
    token: &str,
    lease_ms: i64,
    wake: &str,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    let (shared, id, token, wake) = (shared.clone(), *id, token.to_owned(), wake.to_owned());
    tokio::spawn(async move {
        let reply: Result<Answer, _> = sqlx::query_as(
            r#"SELECT taken, wait_ms, data
               FROM "tower_sessions"."session_acquire"($1, $2, $3, $4, $5, $6, $7)"#,
        )
        .bind(id.to_string())
        .bind(&token)
        .bind(lease_ms)
        .bind(&shared.node)
        .bind(&wake)
        .bind(millis(PATIENCE))
        .bind(millis(TURN_LIFETIME))
        .fetch_one(&shared.pool)
        .await;
        if let Err(Ok((true, _, _))) = answer.send(reply) {
            if let Err(err) = write(&shared.pool, &id, &token, Op::None, true).await {
                tracing::warn!(%err, "could not release a session's lease; it lapses by itself");
            }
        }
    });
    match answered.await {
        Ok(reply) => Ok(reply?),
        Err(_) => Err("the lease's call ended without an answer".into()),
    }
}

/// A lease's lifetime as the functions take it: whole milliseconds, at least one.
fn millis(lease: Duration) -> i64 {
    lease.as_millis().clamp(1, i64::MAX as u128) as i64
}

impl SessionLocks for PostgresSessionLocks {
    /// Ticks each time the listener of an adapter from
    /// [`PostgresSessions::adapter`](super::PostgresSessions::adapter) is back after its
    /// connection died, and when the database answers this node's leases again after failing
    /// them.
    fn listener_returns(&self) -> Option<watch::Receiver<u64>> {
        Some(self.shared.returns.subscribe())
    }

    /// One statement for all of `ids`.
    fn live<'a>(&'a self, ids: &'a [Id], _: &'a dyn SessionStore) -> LiveFuture<'a> {
        Box::pin(async move {
            let wanted: Vec<String> = ids.iter().map(Id::to_string).collect();
            let found: Vec<String> = sqlx::query_scalar(
                r#"SELECT id FROM "tower_sessions"."session"
                WHERE id = ANY($1) AND expiry_date > $2"#,
            )
            .bind(&wanted)
            .bind(OffsetDateTime::now_utc())
            .fetch_all(&self.shared.pool)
            .await
            .map_err(|err| SessionError::Store(backend(err)))?;
            let found: std::collections::HashSet<String> = found.into_iter().collect();
            Ok(wanted.iter().map(|id| found.contains(id)).collect())
        })
    }

    /// Deletes the lease and the record in one statement, at once: a holder, even one paused
    /// meanwhile, then finds its lease gone and writes nothing.
    fn end<'a>(&'a self, id: Id, _: &'a dyn SessionStore) -> LeaseFuture<'a> {
        Box::pin(async move {
            super::users::end(&self.shared, &id)
                .await
                .map_err(|err| SessionError::Store(backend(err)))
        })
    }

    fn lock(&self, id: Id) -> LockFuture<'_> {
        let local = self.local.lock(id);
        Box::pin(async move {
            let local = local.await?;
            // 128 random bits, never reused.
            let token = Id::default().to_string();
            let record = self.acquire(&id, &token).await?;
            let held = Arc::new(Held {
                token,
                lost: Default::default(),
            });
            self.shared.held().insert(id, held.clone());
            let renewal = tokio::spawn(renew_while_held(
                self.shared.clone(),
                id,
                held.token.clone(),
                self.lease,
            ));
            Ok(SessionLockGuard::with_lease(PostgresLease {
                shared: self.shared.clone(),
                id,
                held,
                record: Some(record),
                renewal,
                local: Some(local),
                released: false,
            }))
        })
    }
}

/// Renews the lease every third of its lifetime until aborted (by its holder's finish or
/// drop) or until it finds the lease gone.
async fn renew_while_held(shared: Arc<Shared>, id: Id, token: String, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let renewed = sqlx::query(
            r#"UPDATE "tower_sessions"."session_lease"
               SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
               WHERE id = $1 AND token = $2 AND expires_at > clock_timestamp()"#,
        )
        .bind(id.to_string())
        .bind(&token)
        .bind(millis(lease))
        .execute(&shared.pool)
        .await;
        match renewed {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) => {
                tracing::warn!(
                    "a session's lease lapsed while its holder ran; its write will be refused"
                );
                return;
            }
            Err(err) => tracing::warn!(%err, "could not renew a session's lease"),
        }
    }
}

/// Gives `token`'s lease back in the background, then drops `after`. Without a runtime the
/// lease lapses by itself.
fn release_later(shared: Arc<Shared>, id: Id, token: String, after: Option<SessionLockGuard>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        if let Err(err) = write(&shared.pool, &id, &token, Op::None, true).await {
            tracing::warn!(%err, "could not release a session's lease; it lapses by itself");
        }
        drop(after);
    });
}

/// A lease held (see [`SessionLease`]).
struct PostgresLease {
    shared: Arc<Shared>,
    id: Id,
    held: Arc<Held>,
    /// The record read with the lease, until the transaction takes it.
    record: Option<Option<Vec<u8>>>,
    renewal: JoinHandle<()>,
    /// The process's own lock, kept until the lease is given back.
    local: Option<SessionLockGuard>,
    /// Given back (or found lost): nothing left to release.
    released: bool,
}

impl SessionLease for PostgresLease {
    fn take_record(&mut self) -> Option<Result<Option<Record>, SessionError>> {
        let raw = self.record.take()?;
        Some(
            raw.as_deref()
                .map(decode)
                .transpose()
                .map_err(SessionError::Store),
        )
    }

    fn finish(mut self: Box<Self>, write_back: LeaseWrite<'_>) -> LeaseFuture<'_> {
        Box::pin(async move {
            let data;
            let op = match write_back {
                LeaseWrite::Nothing => Op::None,
                LeaseWrite::Delete => Op::Delete,
                LeaseWrite::Save(record) => {
                    data = encode(record)?;
                    Op::Save {
                        data: &data,
                        expiry: record.expiry_date,
                    }
                }
            };
            self.renewal.abort();
            match write(&self.shared.pool, &self.id, &self.held.token, op, true).await {
                Ok(true) => {
                    self.released = true;
                    Ok(())
                }
                Ok(false) => {
                    self.released = true;
                    Err(SessionError::LeaseLost)
                }
                // Unknown whether the call committed: dropping releases the token anyway,
                // which is harmless if it did.
                Err(err) => Err(SessionError::Store(backend(err))),
            }
        })
    }

    fn lost(&self) -> bool {
        self.held.lost.load(Ordering::Acquire)
    }
}

impl Drop for PostgresLease {
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
        release_later(self.shared.clone(), self.id, self.held.token.clone(), local);
    }
}

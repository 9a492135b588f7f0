//! [`RedisSessionStore`]: tower-sessions-redis-store's records, with writes fenced by the
//! leases this process holds.

use std::{fmt, sync::Arc};

use fred::clients::{Client, Pool};
use tower_sessions::{
    session::{Id, Record},
    session_store, SessionStore,
};
use tower_sessions_redis_store::RedisStore;

use super::{
    backend,
    replicas::{self, ReplicaWait},
    scripts::Op,
    Held, Keys, Shared,
};

/// The session store of a [`RedisSessions`](super::RedisSessions): records exactly as
/// [`tower_sessions_redis_store::RedisStore`] keeps them (key = the bare session id, value =
/// MessagePack of the `Record`, `EXAT` expiry), so either can read what the other wrote.
///
/// Loads and creates are the inner store's. A save or a delete of a session whose lease this
/// process holds (an HTTP route that took [`LockedSession`](crate::http::LockedSession), whose
/// session layer saves at the end of the request) is one script that writes only if the lease
/// is still the writer's; a refused write fails, and the lock layer answers 503. Other writes
/// are the inner store's.
///
/// ```no_run
/// use session_runtime::redis::RedisSessions;
/// use tower_sessions::SessionManagerLayer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?;
/// let layer = SessionManagerLayer::new(redis.store());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisSessionStore {
    inner: RedisStore<Pool>,
    shared: Arc<Shared>,
    replicas: Option<ReplicaWait>,
}

impl fmt::Debug for RedisSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSessionStore").finish_non_exhaustive()
    }
}

impl RedisSessionStore {
    pub(crate) fn new(shared: Arc<Shared>, replicas: Option<ReplicaWait>) -> Self {
        Self {
            inner: RedisStore::new(shared.pool.clone()),
            shared,
            replicas,
        }
    }

    /// The inner store's write `write` of `id`'s record, followed by a wait for the replicas
    /// (on the same connection) when asked for.
    async fn unfenced<F, Fut>(&self, id: &Id, write: F) -> session_store::Result<()>
    where
        F: FnOnce(RedisStore<Client>) -> Fut,
        Fut: std::future::Future<Output = session_store::Result<()>>,
    {
        let client = self.shared.client().clone();
        write(RedisStore::new(client.clone())).await?;
        replicas::after_write(self.replicas, &client, &id.to_string())
            .await
            .map_err(backend)
    }

    /// `op` on `id`'s record, fenced by `held`.
    async fn fenced(&self, id: &Id, held: &Held, op: Op<'_>) -> session_store::Result<()> {
        let client = self.shared.client();
        let keys = Keys::of(id);
        let written = self
            .shared
            .scripts
            .write(client, &keys, &held.token, op, false)
            .await
            .map_err(backend)?;
        if !written {
            held.lost.store(true, std::sync::atomic::Ordering::Release);
            return Err(session_store::Error::Backend(
                "the session's lease lapsed before the write; nothing written".into(),
            ));
        }
        replicas::after_write(self.replicas, client, &keys.record)
            .await
            .map_err(backend)
    }
}

/// The record as tower-sessions-redis-store encodes it.
pub(crate) fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    rmp_serde::to_vec(record).map_err(|err| session_store::Error::Encode(err.to_string()))
}

/// A record as tower-sessions-redis-store decodes it.
pub(crate) fn decode(bytes: &[u8]) -> session_store::Result<Record> {
    rmp_serde::from_slice(bytes).map_err(|err| session_store::Error::Decode(err.to_string()))
}

#[async_trait::async_trait]
impl SessionStore for RedisSessionStore {
    /// A new id: `SET NX` (a fresh random id needs no lease).
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        if self.replicas.is_none() {
            return self.inner.create(record).await;
        }
        // `create` may change the id: wait on the one it wrote.
        let client = self.shared.client().clone();
        RedisStore::new(client.clone()).create(record).await?;
        replicas::after_write(self.replicas, &client, &record.id.to_string())
            .await
            .map_err(backend)
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self.shared.holding(&record.id) {
            Some(held) => {
                let value = encode(record)?;
                let op = Op::Save {
                    value: &value,
                    expires_at: record.expiry_date.unix_timestamp(),
                };
                self.fenced(&record.id, &held, op).await
            }
            None if self.replicas.is_none() => self.inner.save(record).await,
            None => {
                self.unfenced(&record.id, |store| async move { store.save(record).await })
                    .await
            }
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.inner.load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self.shared.holding(id) {
            Some(held) => self.fenced(id, &held, Op::Delete).await,
            None if self.replicas.is_none() => self.inner.delete(id).await,
            None => {
                self.unfenced(id, |store| async move { store.delete(id).await })
                    .await
            }
        }
    }
}

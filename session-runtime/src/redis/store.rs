//! [`RedisSessionStore`]: tower-sessions-redis-store's records, with writes fenced by the
//! leases this process holds.

use std::{fmt, sync::Arc};

use fred::{
    clients::Pool,
    interfaces::KeysInterface,
    types::{Expiration, SetOptions},
};
use tower_sessions::{
    cookie::time::OffsetDateTime,
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

/// The session store of a [`RedisSessions`](super::RedisSessions): records as
/// [`tower_sessions_redis_store::RedisStore`] keeps them (key = the bare session id, value =
/// MessagePack of the `Record`), so either can read what the other wrote, with one difference:
/// the key's expiry is the record's own to the millisecond (`PXAT`), where
/// tower-sessions-redis-store rounds it down to the second (`EXAT`), which ends a session up to
/// 1 s before its time.
///
/// Loads and deletes are the inner store's. A save or a delete of a session whose lease this
/// process holds (an HTTP route that took [`LockedSession`](crate::http::LockedSession), whose
/// session layer saves at the end of the request) is one script that writes only if the lease
/// is still the writer's; a refused write fails, and the lock layer answers 503. Other writes
/// are plain `SET`s (`NX` for a new id, `XX` for a save, so a record deleted meanwhile is not
/// brought back).
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

    /// Writes `record` unfenced: `SET … NX` (`new`) or `XX`, `PXAT` its expiry; whether it was
    /// written. Followed by a wait for the replicas (on the same connection) when asked for.
    async fn set(&self, record: &Record, new: bool) -> session_store::Result<bool> {
        let client = self.shared.client();
        let key = record.id.to_string();
        let condition = if new { SetOptions::NX } else { SetOptions::XX };
        let written: Option<String> = client
            .set(
                &key,
                encode(record)?.as_slice(),
                Some(Expiration::PXAT(unix_ms(record.expiry_date))),
                Some(condition),
                false,
            )
            .await
            .map_err(backend)?;
        if written.is_some() {
            replicas::after_write(self.replicas, client, &key)
                .await
                .map_err(backend)?;
        }
        Ok(written.is_some())
    }

    /// The inner store's delete of `id`'s record, followed by a wait for the replicas (on the
    /// same connection) when asked for.
    async fn unfenced_delete(&self, id: &Id) -> session_store::Result<()> {
        let client = self.shared.client().clone();
        RedisStore::new(client.clone()).delete(id).await?;
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

/// `at` in Unix milliseconds, as `PXAT` takes it.
pub(crate) fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
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
    /// A new id: `SET NX` (a fresh random id needs no lease), drawn again on a collision.
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        while !self.set(record, true).await? {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        match self.shared.holding(&record.id) {
            Some(held) => {
                let value = encode(record)?;
                let op = Op::Save {
                    value: &value,
                    expires_at_ms: unix_ms(record.expiry_date),
                };
                self.fenced(&record.id, &held, op).await
            }
            None => self.set(record, false).await.map(drop),
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.inner.load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self.shared.holding(id) {
            Some(held) => self.fenced(id, &held, Op::Delete).await,
            None if self.replicas.is_none() => self.inner.delete(id).await,
            None => self.unfenced_delete(id).await,
        }
    }
}

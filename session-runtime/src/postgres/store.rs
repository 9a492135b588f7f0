//! [`PostgresSessionStore`]: tower-sessions-sqlx-store's records, with writes fenced by the
//! leases this process holds.

use std::{fmt, sync::Arc};

use tower_sessions::{
    session::{Id, Record},
    session_store, SessionStore,
};

use super::{
    backend,
    sql::{encode, write, Op},
    Held, Shared,
};

/// The session store of a [`PostgresSessions`](super::PostgresSessions): records exactly as
/// [`tower_sessions_sqlx_store::PostgresStore`] keeps them (`"tower_sessions"."session"`: the
/// id, MessagePack of the `Record`, its expiry), so either can read what the other wrote and
/// an app switches between them without logging anyone out.
///
/// Loads, creates and unfenced deletes are PostgresStore's. A save or a delete of a session
/// whose lease this process holds (an HTTP route that took
/// [`LockedSession`](crate::http::LockedSession), whose session layer saves at the end of the
/// request) is one call that writes only if the lease is still the writer's; a refused write
/// fails, and the lock layer answers 503. Other saves are one `UPDATE`: unlike
/// PostgresStore's upsert, a save never brings back a session deleted meanwhile (a logout on
/// another node racing a request that read the session before it).
///
/// ```no_run
/// use session_runtime::postgres::PostgresSessions;
/// use tower_sessions::SessionManagerLayer;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?;
/// let layer = SessionManagerLayer::new(pg.store());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresSessionStore {
    shared: Arc<Shared>,
}

impl fmt::Debug for PostgresSessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresSessionStore")
            .finish_non_exhaustive()
    }
}

impl PostgresSessionStore {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// `op` on `id`'s record, fenced by `held`.
    async fn fenced(&self, id: &Id, held: &Held, op: Op<'_>) -> session_store::Result<()> {
        let written = write(&self.shared.pool, id, &held.token, op, false)
            .await
            .map_err(backend)?;
        if !written {
            held.lost.store(true, std::sync::atomic::Ordering::Release);
            return Err(session_store::Error::Backend(
                "the session's lease lapsed before the write; nothing written".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SessionStore for PostgresSessionStore {
    /// A new id: PostgresStore's (a fresh random id needs no lease).
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.shared.records.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = encode(record)?;
        match self.shared.holding(&record.id) {
            Some(held) => {
                let op = Op::Save {
                    data: &data,
                    expiry: record.expiry_date,
                };
                self.fenced(&record.id, &held, op).await
            }
            None => {
                sqlx::query(
                    r#"UPDATE "tower_sessions"."session" SET data = $2, expiry_date = $3
                       WHERE id = $1"#,
                )
                .bind(record.id.to_string())
                .bind(data)
                .bind(record.expiry_date)
                .execute(&self.shared.pool)
                .await
                .map_err(backend)?;
                Ok(())
            }
        }
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.shared.records.load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        match self.shared.holding(id) {
            Some(held) => self.fenced(id, &held, Op::Delete).await,
            None => self.shared.records.delete(id).await,
        }
    }
}

//! What both the store and the locks write: the record's encoding and the call to
//! `session_write` (`schema.sql`), which writes a record only for its lease's holder.

use sqlx::PgPool;
use tower_sessions::{
    cookie::time::OffsetDateTime,
    session::{Id, Record},
    session_store,
};

/// The record as tower-sessions-sqlx-store encodes it.
pub(crate) fn encode(record: &Record) -> session_store::Result<Vec<u8>> {
    rmp_serde::to_vec(record).map_err(|err| session_store::Error::Encode(err.to_string()))
}

/// A record as tower-sessions-sqlx-store decodes it.
pub(crate) fn decode(bytes: &[u8]) -> session_store::Result<Record> {
    rmp_serde::from_slice(bytes).map_err(|err| session_store::Error::Decode(err.to_string()))
}

/// What [`write`] does to the record.
pub(crate) enum Op<'a> {
    None,
    Save {
        data: &'a [u8],
        expiry: OffsetDateTime,
    },
    Delete,
}

/// `session_write`: `op` on `id`'s record if `token` holds its lease, releasing it if asked;
/// whether the lease was `token`'s.
pub(crate) async fn write(
    pool: &PgPool,
    id: &Id,
    token: &str,
    op: Op<'_>,
    release: bool,
) -> Result<bool, sqlx::Error> {
    let (name, data, expiry) = match op {
        Op::None => ("none", None, None),
        Op::Save { data, expiry } => ("save", Some(data), Some(expiry)),
        Op::Delete => ("delete", None, None),
    };
    sqlx::query_scalar(r#"SELECT "tower_sessions"."session_write"($1, $2, $3, $4, $5, $6)"#)
        .bind(id.to_string())
        .bind(token)
        .bind(name)
        .bind(release)
        .bind(data)
        .bind(expiry)
        .fetch_one(pool)
        .await
}

/// Removes the leases that lapsed (their holders died or were cut off before releasing
/// them) and the turns of nodes that stopped asking; how many leases.
pub(crate) async fn delete_lapsed(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        r#"WITH turns AS (
               DELETE FROM "tower_sessions"."session_turn" WHERE lapses_at < clock_timestamp())
           DELETE FROM "tower_sessions"."session_lease" WHERE expires_at < clock_timestamp()"#,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

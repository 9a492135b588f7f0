//! [`PostgresUserIndex`]: the index of users' sessions in PostgreSQL, one row per session.

use std::{fmt, sync::Arc};

use tower_sessions::session::Id;

use super::{backend, Shared};
use crate::{
    users::{IndexFuture, Member, UserIndex, UserKey},
    SessionError,
};

/// The index of users' sessions of a [`PostgresSessions`](super::PostgresSessions), for
/// [`Users::with_index`](crate::users::Users::with_index): the table
/// `"tower_sessions"."session_user"` (created by
/// [`PostgresSessions::migrate`](super::PostgresSessions::migrate)), one row per session of a
/// user, its primary key `(user_key, id)`. Every call is one statement.
///
/// Rows are written only when a session's user changes (a login, a logout, a rotation), so
/// events that leave the user as it is cost no statement here; every read checks each row
/// against its record (see [`users`](crate::users)).
///
/// ```no_run
/// use session_runtime::{postgres::PostgresSessions, users::Users, SocketSessions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pg = PostgresSessions::connect("postgres://app@127.0.0.1/app").await?;
/// let sessions = SocketSessions::new(pg.store())
///     .with_locks(pg.locks())
///     .with_users(Users::key("user").with_index(pg.user_index()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresUserIndex {
    shared: Arc<Shared>,
}

impl fmt::Debug for PostgresUserIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresUserIndex").finish_non_exhaustive()
    }
}

impl PostgresUserIndex {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

fn failed(err: sqlx::Error) -> SessionError {
    SessionError::Store(backend(err))
}

impl UserIndex for PostgresUserIndex {
    fn add<'a>(&'a self, user: &'a UserKey, id: Id, stamp: i64) -> IndexFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                r#"INSERT INTO "tower_sessions"."session_user" (user_key, id, stamp)
                   VALUES ($1, $2, $3)
                   ON CONFLICT (user_key, id) DO UPDATE SET stamp = excluded.stamp"#,
            )
            .bind(user.as_str())
            .bind(id.to_string())
            .bind(stamp)
            .execute(&self.shared.pool)
            .await
            .map_err(failed)?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, user: &'a UserKey, id: Id, stamp: Option<i64>) -> IndexFuture<'a, ()> {
        Box::pin(async move {
            sqlx::query(
                r#"DELETE FROM "tower_sessions"."session_user"
                   WHERE user_key = $1 AND id = $2 AND ($3::bigint IS NULL OR stamp = $3)"#,
            )
            .bind(user.as_str())
            .bind(id.to_string())
            .bind(stamp)
            .execute(&self.shared.pool)
            .await
            .map_err(failed)?;
            Ok(())
        })
    }

    fn members<'a>(&'a self, user: &'a UserKey) -> IndexFuture<'a, Vec<Member>> {
        Box::pin(async move {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                r#"SELECT id, stamp FROM "tower_sessions"."session_user" WHERE user_key = $1"#,
            )
            .bind(user.as_str())
            .fetch_all(&self.shared.pool)
            .await
            .map_err(failed)?;
            Ok(rows
                .into_iter()
                .filter_map(|(id, stamp)| {
                    Some(Member {
                        id: id.parse().ok()?,
                        stamp,
                    })
                })
                .collect())
        })
    }
}

/// Deletes `id`'s lease and record in one statement.
pub(crate) async fn end(shared: &Shared, id: &Id) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"WITH lease AS (DELETE FROM "tower_sessions"."session_lease" WHERE id = $1)
           DELETE FROM "tower_sessions"."session" WHERE id = $1"#,
    )
    .bind(id.to_string())
    .execute(&shared.pool)
    .await?;
    Ok(())
}

//! [`RedisUserIndex`]: the index of users' sessions in Redis, one sorted set per user.

use std::{fmt, sync::Arc};

use fred::{
    interfaces::{KeysInterface as _, SortedSetsInterface as _},
    types::{scripts::Script, Value},
};
use tower_sessions::session::Id;

use super::Shared;
use crate::{
    users::{IndexFuture, Member, UserIndex, UserKey},
    SessionError,
};

/// Removes a member only if its score is still the stamp it was read with (it was not added
/// again since). KEYS[1] the user's set; ARGV[1] the session id; ARGV[2] the stamp.
const REMOVE_IF_STAMP: &str = r"
local stamp = redis.call('ZSCORE', KEYS[1], ARGV[1])
if stamp and tonumber(stamp) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
";

/// The index of users' sessions of a [`RedisSessions`](super::RedisSessions), for
/// [`Users::with_index`](crate::users::Users::with_index): a sorted set per user,
/// `session-runtime:users:{<hash>}`, whose members are session ids scored by the instant
/// each was added (Unix milliseconds). Every call is one command on the user's key alone: on a
/// Redis Cluster each user's set lives in its own slot, and nothing spans two.
///
/// The set is written only when a session's user changes (a login, a logout, a rotation), so
/// events that leave the user as it is cost no command here. A member whose record Redis
/// expired on its own stays until the next read of that user, which checks every member
/// against its record and never counts it (see [`users`](crate::users)).
///
/// ```no_run
/// use session_runtime::{redis::RedisSessions, users::Users, SocketSessions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let redis = RedisSessions::connect("redis://127.0.0.1:6379").await?;
/// let sessions = SocketSessions::new(redis.store())
///     .with_locks(redis.locks())
///     .with_users(Users::key("user").with_index(redis.user_index()));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisUserIndex {
    shared: Arc<Shared>,
    remove_if_stamp: Arc<Script>,
}

impl fmt::Debug for RedisUserIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUserIndex").finish_non_exhaustive()
    }
}

impl RedisUserIndex {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            remove_if_stamp: Arc::new(Script::from_lua(REMOVE_IF_STAMP)),
        }
    }

    /// The Redis key of `user`'s set. The hash tag is the whole hash: one slot per user.
    pub(crate) fn key(user: &UserKey) -> String {
        format!("session-runtime:users:{{{}}}", user.as_str())
    }
}

fn failed(err: fred::error::Error) -> SessionError {
    SessionError::Store(super::backend(err))
}

impl UserIndex for RedisUserIndex {
    fn add<'a>(&'a self, user: &'a UserKey, id: Id, stamp: i64) -> IndexFuture<'a, ()> {
        Box::pin(async move {
            let _: i64 = self
                .shared
                .client()
                .zadd(
                    Self::key(user),
                    None,
                    None,
                    false,
                    false,
                    (stamp as f64, id.to_string()),
                )
                .await
                .map_err(failed)?;
            Ok(())
        })
    }

    fn remove<'a>(&'a self, user: &'a UserKey, id: Id, stamp: Option<i64>) -> IndexFuture<'a, ()> {
        Box::pin(async move {
            let client = self.shared.client();
            let key = Self::key(user);
            let _: i64 = match stamp {
                None => client.zrem(key, id.to_string()).await,
                Some(stamp) => {
                    self.remove_if_stamp
                        .evalsha_with_reload(
                            client,
                            vec![key],
                            vec![Value::from(id.to_string()), Value::from(stamp)],
                        )
                        .await
                }
            }
            .map_err(failed)?;
            Ok(())
        })
    }

    fn members<'a>(&'a self, user: &'a UserKey) -> IndexFuture<'a, Vec<Member>> {
        Box::pin(async move {
            let scored: Vec<(String, f64)> = self
                .shared
                .client()
                .zrange(Self::key(user), 0, -1, None, false, None, true)
                .await
                .map_err(failed)?;
            Ok(scored
                .into_iter()
                .filter_map(|(id, stamp)| {
                    // Not ours if it does not parse: skip it rather than fail every read.
                    let id = id.parse().ok()?;
                    Some(Member {
                        id,
                        stamp: stamp as i64,
                    })
                })
                .collect())
        })
    }
}

/// Deletes `id`'s record and lease in one command (both in the record's slot).
pub(crate) async fn end(shared: &Shared, keys: &super::Keys) -> Result<(), fred::error::Error> {
    let _: i64 = shared
        .client()
        .del(vec![keys.record.clone(), keys.lease.clone()])
        .await?;
    Ok(())
}

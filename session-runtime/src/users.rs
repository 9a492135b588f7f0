//! Users, not only sessions: which user a session belongs to, an index of every session of a
//! user, and the rooms that reach all of that user's sockets.
//!
//! Name once where a session keeps its user ([`Users::key`], [`Users::from_fn`], or with the
//! `axum-login` feature [`Users::axum_login`]) and give it to
//! [`SocketSessions::with_users`](crate::SocketSessions::with_users). From then on:
//! - every socket also joins its user's room ([`SocketSessions::user_room`]), and moves when its
//!   session's user changes (a login or logout over HTTP or over a socket);
//! - the [`UserIndex`] knows every session of a user, on every node that shares it;
//! - [`SocketSessions::user_sessions`], [`SocketSessions::user_sockets`],
//!   [`SocketSessions::end_user_sessions`] and [`SocketSessions::end_other_user_sessions`]
//!   answer "which devices are signed in", and "log out everywhere" or "log out my other
//!   devices".
//!
//! ```
//! use session_runtime::{users::Users, SocketSessions};
//! use tower_sessions::MemoryStore;
//!
//! // The demo keeps its user as the session value `"user"`; one process: the index in memory.
//! let sessions = SocketSessions::new(MemoryStore::default()).with_users(Users::key("user"));
//! ```
//!
//! # Exact, whatever the churn
//!
//! The index is written only when a session's user changes: a login adds the session to its
//! user's entry *before* the record is written, and a logout, a rotation or a change of user
//! removes it *after* the record is deleted or rewritten. So at every instant the index holds
//! every live session of the user; an entry may outlive its session only for the moment
//! between the record's write and the removal, or until the next read after a store expired
//! the record on its own (Redis expiry). Reads never count such an entry: each one is checked
//! against its record (loaded concurrently: one round trip on Redis and PostgreSQL) and
//! removed if the record is gone, expired, or belongs to another user now. Events that do not
//! change the user cost nothing here.
//!
//! [`SocketSessions::user_room`]: crate::SocketSessions::user_room
//! [`SocketSessions::user_sessions`]: crate::SocketSessions::user_sessions
//! [`SocketSessions::user_sockets`]: crate::SocketSessions::user_sockets
//! [`SocketSessions::end_user_sessions`]: crate::SocketSessions::end_user_sessions
//! [`SocketSessions::end_other_user_sessions`]: crate::SocketSessions::end_other_user_sessions

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
};

use serde_json::Value;
use tower_sessions::{cookie::time::OffsetDateTime, session::Id};

use crate::{
    gone::{RoomKey, LOGGED_OUT_EVERYWHERE},
    SessionError, SocketSessions,
};

/// What a room of a user starts with; the rest is 32 hex digits.
const USER_ROOM_PREFIX: &str = "user:";

/// Domain separation from session rooms, which hash under the same key.
const USER_LABEL: &[u8] = b"session-runtime user\0";

/// The boxed future of a [`UserIndex`] operation.
pub type IndexFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SessionError>> + Send + 'a>>;

/// A user as the index and the rooms know it: 128 bits of HMAC-SHA256 of the user's id under
/// the room key, in hex. Index keys and room names leave the process (Redis keys, adapter
/// messages), so they never hold the user's own id.
///
/// ```
/// use session_runtime::{users::Users, SocketSessions};
/// use tower_sessions::MemoryStore;
///
/// let sessions = SocketSessions::new(MemoryStore::default())
///     .with_room_key([7; 32])
///     .with_users(Users::key("user"));
/// let room = sessions.user_room("alice");
/// assert!(room.starts_with("user:") && !room.contains("alice"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct UserKey(String);

impl UserKey {
    /// The 32 hex digits.
    ///
    /// ```
    /// # use session_runtime::users::{MemoryUserIndex, UserIndex};
    /// // Index backends use it to name their entries, e.g. Redis keys `users:{<hex>}`.
    /// fn key_of(user: &session_runtime::users::UserKey) -> String {
    ///     format!("users:{{{}}}", user.as_str())
    /// }
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn of(key: &RoomKey, user: &str) -> Self {
        Self(key.hex(&[USER_LABEL, user.as_bytes()]))
    }

    /// The socket.io room of this user.
    pub(crate) fn room(&self) -> String {
        format!("{USER_ROOM_PREFIX}{}", self.0)
    }

    /// Whether `room` is the room of some user.
    pub(crate) fn is_user_room(room: &str) -> bool {
        room.starts_with(USER_ROOM_PREFIX)
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserKey({})", self.0)
    }
}

/// Where a session keeps its user: read from the record's data, on every node alike.
type UserOf = Arc<dyn Fn(&HashMap<String, Value>) -> Option<String> + Send + Sync>;

/// Who a session's user is, and where the index of users' sessions lives.
///
/// ```
/// use session_runtime::{users::{MemoryUserIndex, Users}, SocketSessions};
/// use tower_sessions::MemoryStore;
///
/// // The user is the session value "user" (a string or a number).
/// let by_key = Users::key("user");
/// // Or anything computed from the record's data.
/// let by_fn = Users::from_fn(|data| {
///     data.get("account")?.get("email")?.as_str().map(str::to_owned)
/// });
/// // Several nodes share one index: e.g. `RedisSessions::user_index()`.
/// let sessions = SocketSessions::new(MemoryStore::default())
///     .with_users(by_key.with_index(MemoryUserIndex::default()));
/// ```
#[derive(Clone)]
pub struct Users {
    pub(crate) of: UserOf,
    pub(crate) index: Arc<dyn UserIndex>,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users").finish_non_exhaustive()
    }
}

impl Users {
    /// The user is the session value under `key`: a string, or a number (taken as its
    /// decimal text). Anything else, or no value, is no user. The index is in memory
    /// ([`MemoryUserIndex`]): right for one process; several nodes give a shared one with
    /// [`Users::with_index`].
    ///
    /// ```
    /// # use session_runtime::users::Users;
    /// let users = Users::key("user");
    /// ```
    pub fn key(key: &'static str) -> Self {
        Self::from_fn(move |data| user_text(data.get(key)?))
    }

    /// The user is what `user_of` reads from the record's data (`None`: no user). It runs on
    /// every write that may change the user and on every read of the index, so keep it cheap
    /// and the same on every node.
    ///
    /// ```
    /// # use session_runtime::users::Users;
    /// let users = Users::from_fn(|data| data.get("uid")?.as_u64().map(|uid| uid.to_string()));
    /// ```
    pub fn from_fn(
        user_of: impl Fn(&HashMap<String, Value>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            of: Arc::new(user_of),
            index: Arc::new(MemoryUserIndex::default()),
        }
    }

    /// The user of axum-login 0.18: the `user_id` it keeps under its data key
    /// (`"axum-login.data"` unless the app chose another with `with_data_key`). Reading the
    /// user needs no feature of this crate; the `axum-login` feature's `login` module gives
    /// handlers the user itself.
    ///
    /// ```
    /// use session_runtime::{users::Users, SocketSessions};
    /// use tower_sessions::MemoryStore;
    ///
    /// let sessions = SocketSessions::new(MemoryStore::default())
    ///     .with_users(Users::axum_login("axum-login.data"));
    /// ```
    pub fn axum_login(data_key: &'static str) -> Self {
        Self::from_fn(move |data| user_text(data.get(data_key)?.get("user_id")?))
    }

    /// Keeps the index in `index`: one every node shares (Redis, PostgreSQL) when sessions
    /// are served by several.
    ///
    /// ```
    /// # use session_runtime::users::{MemoryUserIndex, Users};
    /// let users = Users::key("user").with_index(MemoryUserIndex::default());
    /// ```
    pub fn with_index(mut self, index: impl UserIndex) -> Self {
        self.index = Arc::new(index);
        self
    }

    /// The user of a record's data.
    pub(crate) fn user_of(&self, data: &HashMap<String, Value>) -> Option<String> {
        (self.of)(data)
    }
}

fn user_text(value: &Value) -> Option<String> {
    match value {
        Value::String(user) if !user.is_empty() => Some(user.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One session in a user's entry of a [`UserIndex`]: its id, and the stamp it was added with.
///
/// ```
/// use session_runtime::users::Member;
/// use tower_sessions::session::Id;
///
/// let member = Member { id: Id::default(), stamp: 1_767_225_600_000 };
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The session.
    pub id: Id,
    /// When it was added, in Unix milliseconds, as given to [`UserIndex::add`].
    pub stamp: i64,
}

/// The index of every session of each user, shared by every node that serves them.
///
/// The runtime keeps it (see [the module](self)): [`UserIndex::add`] before the record that
/// names the user is written, [`UserIndex::remove`] after the record is gone or names another
/// user, and it checks every member it reads against its record. An implementation needs no
/// transactions of its own; each call must be atomic on its own.
///
/// ```
/// use session_runtime::users::{MemoryUserIndex, UserIndex};
///
/// let index: &dyn UserIndex = &MemoryUserIndex::default();
/// ```
pub trait UserIndex: Send + Sync + 'static {
    /// Adds session `id` to `user`'s entry with `stamp` (Unix milliseconds, now), replacing
    /// the stamp if it is there already.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the backend fails; the record is then not written.
    fn add<'a>(&'a self, user: &'a UserKey, id: Id, stamp: i64) -> IndexFuture<'a, ()>;

    /// Removes session `id` from `user`'s entry (nothing if it is not there); with `stamp`,
    /// only if its entry still has that stamp (it was not added again since it was read).
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the backend fails; the entry is then removed by a later
    /// read that finds its record gone.
    fn remove<'a>(&'a self, user: &'a UserKey, id: Id, stamp: Option<i64>) -> IndexFuture<'a, ()>;

    /// Every session in `user`'s entry, live or not: the runtime checks each against its
    /// record.
    ///
    /// # Errors
    ///
    /// [`SessionError::Store`] when the backend fails.
    fn members<'a>(&'a self, user: &'a UserKey) -> IndexFuture<'a, Vec<Member>>;
}

/// The index of one process, in memory: right when one node serves every socket and route
/// (whatever the session store).
///
/// ```
/// use session_runtime::users::{MemoryUserIndex, Users};
///
/// let users = Users::key("user").with_index(MemoryUserIndex::default());
/// ```
#[derive(Debug, Default)]
pub struct MemoryUserIndex {
    entries: Mutex<HashMap<UserKey, HashMap<Id, i64>>>,
}

impl MemoryUserIndex {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<UserKey, HashMap<Id, i64>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many session ids the index holds, over all users (live or not).
    ///
    /// ```
    /// use session_runtime::users::MemoryUserIndex;
    ///
    /// assert_eq!(MemoryUserIndex::default().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.entries().values().map(HashMap::len).sum()
    }

    /// Whether the index holds no session id.
    ///
    /// ```
    /// use session_runtime::users::MemoryUserIndex;
    ///
    /// assert!(MemoryUserIndex::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl UserIndex for MemoryUserIndex {
    fn add<'a>(&'a self, user: &'a UserKey, id: Id, stamp: i64) -> IndexFuture<'a, ()> {
        self.entries()
            .entry(user.clone())
            .or_default()
            .insert(id, stamp);
        Box::pin(std::future::ready(Ok(())))
    }

    fn remove<'a>(&'a self, user: &'a UserKey, id: Id, stamp: Option<i64>) -> IndexFuture<'a, ()> {
        let mut entries = self.entries();
        if let Some(ids) = entries.get_mut(user) {
            if stamp.is_none() || ids.get(&id) == stamp.as_ref() {
                ids.remove(&id);
            }
            if ids.is_empty() {
                entries.remove(user);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn members<'a>(&'a self, user: &'a UserKey) -> IndexFuture<'a, Vec<Member>> {
        let members = self
            .entries()
            .get(user)
            .map(|ids| {
                ids.iter()
                    .map(|(&id, &stamp)| Member { id, stamp })
                    .collect()
            })
            .unwrap_or_default();
        Box::pin(std::future::ready(Ok(members)))
    }
}

/// What the runtime keeps of [`Users`]: the reader, the index and the key of the rooms.
pub(crate) struct Tracking {
    pub(crate) users: Users,
    pub(crate) key: RoomKey,
}

impl Tracking {
    pub(crate) fn key_for(&self, user: &str) -> UserKey {
        UserKey::of(&self.key, user)
    }

    pub(crate) fn key_of(&self, data: &HashMap<String, Value>) -> Option<UserKey> {
        self.users
            .user_of(data)
            .map(|user| UserKey::of(&self.key, &user))
    }

    pub(crate) fn index(&self) -> &dyn UserIndex {
        &*self.users.index
    }
}

/// Now, in Unix milliseconds: the stamp of index entries.
pub(crate) fn now_ms() -> i64 {
    let now = OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A session's user before and after a write, when it changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) old: Option<UserKey>,
    pub(crate) new: Option<UserKey>,
}

impl Change {
    pub(crate) fn between(old: Option<UserKey>, new: Option<UserKey>) -> Option<Self> {
        (old != new).then_some(Self { old, new })
    }

    /// Before the record is written: the new user's entry gains the session.
    pub(crate) async fn before(&self, tracking: &Tracking, id: Id) -> Result<(), SessionError> {
        match &self.new {
            Some(new) => tracking.index().add(new, id, now_ms()).await,
            None => Ok(()),
        }
    }

    /// After the record is written (or deleted): the old user's entry loses the session.
    pub(crate) async fn after(&self, tracking: &Tracking, id: Id) {
        if let Some(old) = &self.old {
            if let Err(err) = tracking.index().remove(old, id, None).await {
                tracing::warn!(error = %err.report(), "could not take a session out of its old user's index; the next read will");
            }
        }
    }
}

/// The user API: every session of a user, on every node that shares the index.
impl SocketSessions {
    fn tracking(&self) -> Result<&Arc<Tracking>, SessionError> {
        self.lifecycle().users().ok_or(SessionError::NoUsers)
    }

    /// The room every socket of `user`'s sessions joins, in each namespace: to reach all of
    /// them on every node (`io.of(ns)?.to(room).emit(..)`). `user:` and 32 hex digits of a
    /// keyed hash: never the user's id.
    ///
    /// ```
    /// # use session_runtime::{users::Users, SocketSessions};
    /// # use tower_sessions::MemoryStore;
    /// let sessions = SocketSessions::new(MemoryStore::default()).with_users(Users::key("user"));
    /// assert_ne!(sessions.user_room("alice"), sessions.user_room("bob"));
    /// ```
    pub fn user_room(&self, user: &str) -> String {
        self.lifecycle().user_key(user).room()
    }

    /// The live sessions of `user`: every session whose record names that user now, on every
    /// node sharing the index, and no other (none expired, logged out, rotated or another
    /// user's). One read of the index and one concurrent load of each member's record.
    ///
    /// ```
    /// use session_runtime::{users::Users, SocketSessions};
    /// use tower_sessions::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let sessions = SocketSessions::new(MemoryStore::default()).with_users(Users::key("user"));
    /// assert!(sessions.user_sessions("alice").await.unwrap().is_empty());
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::NoUsers`] without [`SocketSessions::with_users`];
    /// [`SessionError::Store`] or [`SessionError::TimedOut`] when the index or the store fails.
    pub async fn user_sessions(&self, user: &str) -> Result<Vec<Id>, SessionError> {
        let tracking = self.tracking()?;
        self.live_sessions(tracking, &tracking.key_for(user)).await
    }

    /// How many sockets `user`'s sessions have, on every node (the adapter asks them all),
    /// in every namespace.
    ///
    /// ```
    /// use session_runtime::{users::Users, SocketSessions};
    /// use socketioxide::{extract::SocketRef, SocketIo};
    /// use tower_sessions::MemoryStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let sessions = SocketSessions::new(MemoryStore::default()).with_users(Users::key("user"));
    /// let (_layer, io) = SocketIo::new_layer();
    /// io.ns("/", sessions.handler(|_: SocketRef| {}));
    /// let _http = sessions.layer(io, |layer| layer);
    /// assert_eq!(sessions.user_sockets("alice").await.unwrap(), 0);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::NoUsers`] without [`SocketSessions::with_users`];
    /// [`SessionError::NoSessionLayer`] before [`SocketSessions::layer`] gave the server;
    /// [`SessionError::Adapter`] when the adapter could not ask every node.
    pub async fn user_sockets(&self, user: &str) -> Result<usize, SessionError> {
        self.tracking()?;
        let room = self.user_room(user);
        match self.lifecycle().count(room).await {
            None => Err(SessionError::NoSessionLayer),
            Some(counted) => counted.map_err(|err| SessionError::Adapter { source: err.into() }),
        }
    }

    /// Ends every session of `user` ("log out everywhere"): each record is deleted, fenced
    /// (a holder of its lock, even one paused meanwhile, writes nothing afterwards), and every
    /// socket of those sessions, on every node, is pushed [`GONE_EVENT`](crate::GONE_EVENT)
    /// with reason `"logged out everywhere"` within a second. Returns how many ended.
    ///
    /// ```
    /// use axum::{extract::State, Json};
    /// use session_runtime::{SessionError, SocketSessions};
    /// use tower_sessions::Session;
    ///
    /// async fn logout_everywhere(
    ///     State(sessions): State<SocketSessions>,
    ///     session: Session,
    /// ) -> Result<Json<usize>, String> {
    ///     let user: Option<String> = session.get("user").await.map_err(|e| e.to_string())?;
    ///     let user = user.ok_or("logged out")?;
    ///     let ended = sessions.end_user_sessions(&user).await.map_err(|e| e.to_string())?;
    ///     Ok(Json(ended))
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::NoUsers`] without [`SocketSessions::with_users`]; a store, index or
    /// lock failure of any session (the others are ended all the same).
    pub async fn end_user_sessions(&self, user: &str) -> Result<usize, SessionError> {
        self.end_sessions_of(user, None).await
    }

    /// Ends every session of `user` but `keep` ("log out my other devices"), as
    /// [`SocketSessions::end_user_sessions`] does; `keep`, usually the caller's own session,
    /// stays as it is. Returns how many ended.
    ///
    /// ```
    /// use session_runtime::SocketSessions;
    /// use tower_sessions::Session;
    ///
    /// async fn logout_others(sessions: SocketSessions, session: Session) -> Option<usize> {
    ///     let user: String = session.get("user").await.ok()??;
    ///     sessions.end_other_user_sessions(&user, session.id()?).await.ok()
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`SocketSessions::end_user_sessions`].
    pub async fn end_other_user_sessions(
        &self,
        user: &str,
        keep: Id,
    ) -> Result<usize, SessionError> {
        self.end_sessions_of(user, Some(keep)).await
    }

    async fn end_sessions_of(&self, user: &str, keep: Option<Id>) -> Result<usize, SessionError> {
        let tracking = self.tracking()?;
        let key = tracking.key_for(user);
        let ids = self.live_sessions(tracking, &key).await?;
        let ends = ids
            .into_iter()
            .filter(|id| Some(*id) != keep)
            .map(|id| self.end_one(tracking, &key, id));
        let results = futures_util::future::join_all(ends).await;
        let mut ended = Vec::with_capacity(results.len());
        let mut failure = None;
        for result in results {
            match result {
                Ok(id) => ended.push(id),
                Err(err) => failure = Some(err),
            }
        }
        // One push for them all, once every record is gone.
        self.lifecycle()
            .ended_all(&ended, LOGGED_OUT_EVERYWHERE, Some(&key))
            .await;
        match failure {
            Some(err) => Err(err),
            None => Ok(ended.len()),
        }
    }

    /// Ends session `id` of `key` in the store and the index; the caller pushes.
    async fn end_one(
        &self,
        tracking: &Tracking,
        key: &UserKey,
        id: Id,
    ) -> Result<Id, SessionError> {
        let bounds = self.bounds();
        bounds
            .store_call(self.locks().end(id, &**self.store()))
            .await?;
        if let Err(err) = tracking.index().remove(key, id, None).await {
            tracing::warn!(error = %err.report(), "could not take an ended session out of its user's index; the next read will");
        }
        Ok(id)
    }

    /// The members of `key`'s entry whose record names that user now. Members found stale
    /// are removed, unless they were added so recently that their record may still be on its
    /// way (the index gains a session before its record is written).
    async fn live_sessions(
        &self,
        tracking: &Tracking,
        key: &UserKey,
    ) -> Result<Vec<Id>, SessionError> {
        let bounds = self.bounds();
        let members = bounds.store_call(tracking.index().members(key)).await?;
        let now = OffsetDateTime::now_utc();
        let checks = members.into_iter().map(|member| async move {
            let record = bounds.store_op(self.store().load(&member.id)).await?;
            let live = record.is_some_and(|r| {
                r.expiry_date > now && tracking.key_of(&r.data).as_ref() == Some(key)
            });
            Ok::<_, SessionError>((member, live))
        });
        let checked = futures_util::future::try_join_all(checks).await?;
        let settled = now_ms() - i64::try_from(bounds.in_flight().as_millis()).unwrap_or(i64::MAX);
        let mut live = Vec::with_capacity(checked.len());
        for (member, is_live) in checked {
            if is_live {
                live.push(member.id);
            } else if member.stamp < settled {
                let removed = tracking.index().remove(key, member.id, Some(member.stamp));
                if let Err(err) = removed.await {
                    tracing::debug!(error = %err.report(), "could not take a stale session out of its user's index");
                }
            }
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_depend_on_the_key_and_never_show_the_user() {
        let key = RoomKey::derive(&[7; 64]);
        let alice = UserKey::of(&key, "alice");
        assert_eq!(alice, UserKey::of(&RoomKey::derive(&[7; 64]), "alice"));
        assert_ne!(alice, UserKey::of(&RoomKey::derive(&[8; 64]), "alice"));
        assert_ne!(alice, UserKey::of(&key, "bob"));
        assert_eq!(alice.as_str().len(), 32);
        assert!(alice.room().starts_with(USER_ROOM_PREFIX) && !alice.room().contains("alice"));
    }

    #[test]
    fn users_are_strings_or_numbers() {
        let users = Users::key("user");
        let data = |v: Value| HashMap::from([("user".to_owned(), v)]);
        assert_eq!(users.user_of(&data("alice".into())), Some("alice".into()));
        assert_eq!(users.user_of(&data(42.into())), Some("42".into()));
        assert_eq!(users.user_of(&data("".into())), None);
        assert_eq!(users.user_of(&data(Value::Null)), None);
        assert_eq!(users.user_of(&HashMap::new()), None);
    }
}

//! The session a handler works on: a fresh copy of the record, written back by its wrapper.

use std::{
    collections::HashMap,
    fmt,
    ops::{Deref, DerefMut},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;
use tower_sessions::session::Id;

use crate::SessionError;

pub(crate) type Data = HashMap<String, Value>;

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) data: Data,
    pub(crate) modified: bool,
    pub(crate) delete: bool,
    /// Set when the handler's transaction ends: later writes would be silently lost.
    pub(crate) closed: bool,
    /// A failure that surfaced where it could not be returned (a `SessionData` drop).
    pub(crate) deferred_error: Option<SessionError>,
    /// The session must end when the handler returns, whatever it returns: its credentials
    /// no longer hold (the axum-login check).
    pub(crate) end: bool,
}

/// What a handler's wrapper and the handler share: the record as loaded, and what became of it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: Option<Id>,
    /// False when the store had no record: no cookie, an unknown id, or a session that is gone.
    pub(crate) exists: bool,
    pub(crate) state: Mutex<State>,
}

impl Shared {
    pub(crate) fn new(id: Option<Id>, data: Option<Data>) -> Arc<Self> {
        Arc::new(Self {
            id,
            exists: data.is_some(),
            state: Mutex::new(State {
                data: data.unwrap_or_default(),
                modified: false,
                delete: false,
                closed: false,
                deferred_error: None,
                end: false,
            }),
        })
    }

    /// Ends the session once the handler returns (see `State::end`).
    #[cfg_attr(not(feature = "axum-login"), allow(dead_code))]
    pub(crate) fn end_on_mismatch(&self) {
        self.state().end = true;
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        // A panicking handler cannot leave the map half-updated: every write is one call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        let state = self.state();
        state
            .data
            .get(key)
            .map(|v| T::deserialize(v))
            .transpose()
            .map_err(|source| SessionError::Serde {
                key: key.to_owned(),
                source,
            })
    }

    fn write<R>(&self, f: impl FnOnce(&mut State) -> R) -> Result<R, SessionError> {
        let mut state = self.state();
        if state.closed {
            return Err(SessionError::Closed);
        }
        Ok(f(&mut state))
    }
}

fn to_value(key: &str, value: impl Serialize) -> Result<Value, SessionError> {
    serde_json::to_value(value).map_err(|source| SessionError::Serde {
        key: key.to_owned(),
        source,
    })
}

/// The read methods of both session types. Each example is written for the type it is shown
/// on (`$ty`, in a handler of mode `$mode`), so that it compiles as shown.
macro_rules! read_methods {
    ($ty:literal, $mode:literal) => {
        /// The session's id, or `None` when the socket has no session. Keep it to yourself:
        /// whoever holds the id holds the session.
        ///
        /// ```
        #[doc = concat!("use session_runtime::{with_session, ", $ty, "};")]
        ///
        #[doc = concat!("#[with_session(", $mode, ")]")]
        #[doc = concat!("async fn has_session(session: ", $ty, ") -> bool {")]
        ///     session.id().is_some()
        /// }
        /// ```
        pub fn id(&self) -> Option<Id> {
            self.0.id
        }

        /// Whether the store held the record when the handler started. `false` for a socket
        /// without a session cookie, with an unknown one, or whose session is gone; such a
        /// session reads as empty.
        ///
        /// ```
        #[doc = concat!("use session_runtime::{with_session, ", $ty, "};")]
        ///
        #[doc = concat!("#[with_session(", $mode, ")]")]
        #[doc = concat!("async fn status(session: ", $ty, ") -> &'static str {")]
        ///     if session.exists() { "live" } else { "no session, or gone" }
        /// }
        /// ```
        pub fn exists(&self) -> bool {
            self.0.exists
        }

        /// Reads and deserialises the value under `key`.
        ///
        /// ```
        #[doc = concat!("use session_runtime::{with_session, ", $ty, ", SessionError};")]
        ///
        #[doc = concat!("#[with_session(", $mode, ")]")]
        #[doc = concat!("async fn whoami(session: ", $ty, ") -> Result<Option<String>, SessionError> {")]
        ///     session.get::<String>("user") // `Ok(None)`: no such key
        /// }
        /// ```
        ///
        /// # Errors
        ///
        /// [`SessionError::Serde`] when the value is not a `T` (the message names `key`; serde's
        /// text is the source).
        pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
            self.0.get(key)
        }

        /// The raw JSON value under `key`, whatever its shape.
        ///
        /// ```
        #[doc = concat!("use session_runtime::{with_session, ", $ty, "};")]
        ///
        #[doc = concat!("#[with_session(", $mode, ")]")]
        #[doc = concat!("async fn prefs(session: ", $ty, ") -> serde_json::Value {")]
        ///     session.get_value("prefs").unwrap_or_default() // `null` when absent
        /// }
        /// ```
        pub fn get_value(&self, key: &str) -> Option<Value> {
            self.0.state().data.get(key).cloned()
        }

        /// Whether `key` holds a value; no deserialisation.
        ///
        /// ```
        #[doc = concat!("use session_runtime::{with_session, ", $ty, "};")]
        ///
        #[doc = concat!("#[with_session(", $mode, ")]")]
        #[doc = concat!("async fn logged_in(session: ", $ty, ") -> bool {")]
        ///     session.contains_key("user")
        /// }
        /// ```
        pub fn contains_key(&self, key: &str) -> bool {
            self.0.state().data.contains_key(key)
        }

        /// Whether the session holds no value at all.
        ///
        /// ```
        #[doc = concat!("use session_runtime::{with_session, ", $ty, "};")]
        ///
        #[doc = concat!("#[with_session(", $mode, ")]")]
        #[doc = concat!("async fn blank(session: ", $ty, ") -> bool {")]
        ///     session.is_empty()
        /// }
        /// ```
        pub fn is_empty(&self) -> bool {
            self.0.state().data.is_empty()
        }
    };
}

/// A session a handler may write: a fresh copy of the store's record, saved by the
/// wrapper after the handler succeeds, and only if it changed.
///
/// Reads and writes work on memory and never touch the store, so they are synchronous. The
/// wrapper ([`with_session(autosave)`](crate::with_session) or
/// [`SessionHandle::autosave`](crate::SessionHandle::autosave)) holds the session's lock from
/// the reload to the save. Once the handler has finished, writes fail with
/// [`SessionError::Closed`] instead of being lost.
///
/// ```
/// use session_runtime::{with_session, SocketSession, SessionError};
///
/// #[with_session(autosave)]
/// async fn incr(session: SocketSession) -> Result<i64, SessionError> {
///     let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
///     session.insert("count", count)?;
///     Ok(count)
/// }
/// ```
#[derive(Clone)]
pub struct SocketSession(pub(crate) Arc<Shared>);

impl SocketSession {
    read_methods!("SocketSession", "autosave");

    /// Stores `value` under `key`.
    ///
    /// ```
    /// use session_runtime::{with_session, SessionError, SocketSession};
    /// use socketioxide::extract::Data;
    ///
    /// #[with_session(autosave)]
    /// async fn set_theme(session: SocketSession, Data(theme): Data<String>) -> Result<(), SessionError> {
    ///     session.insert("theme", theme)
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Serde`] when `value` does not serialise to JSON;
    /// [`SessionError::Closed`] once the handler has finished.
    pub fn insert(&self, key: &str, value: impl Serialize) -> Result<(), SessionError> {
        let value = to_value(key, value)?;
        self.insert_value(key, value).map(drop)
    }

    /// Stores a raw JSON value under `key`, returning the previous one. Storing the value
    /// already there does not mark the session modified.
    ///
    /// ```
    /// use session_runtime::{with_session, SessionError, SocketSession};
    /// use socketioxide::extract::Data;
    ///
    /// #[with_session(autosave)]
    /// async fn set_prefs(
    ///     session: SocketSession,
    ///     Data(prefs): Data<serde_json::Value>,
    /// ) -> Result<serde_json::Value, SessionError> {
    ///     let old = session.insert_value("prefs", prefs)?;
    ///     Ok(old.unwrap_or_default()) // answers the previous value
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Closed`] once the handler has finished.
    pub fn insert_value(&self, key: &str, value: Value) -> Result<Option<Value>, SessionError> {
        self.0.write(|state| {
            // An existing key is replaced in place: one lookup, no new `String`.
            if let Some(slot) = state.data.get_mut(key) {
                if *slot == value {
                    return Some(value);
                }
                state.modified = true;
                return Some(std::mem::replace(slot, value));
            }
            state.modified = true;
            state.data.insert(key.to_owned(), value)
        })
    }

    /// Removes the value under `key` and returns it, deserialised.
    ///
    /// ```
    /// use session_runtime::{with_session, SessionError, SocketSession};
    ///
    /// #[with_session(autosave)]
    /// async fn empty_cart(session: SocketSession) -> Result<usize, SessionError> {
    ///     let cart: Option<Vec<String>> = session.remove("cart")?;
    ///     Ok(cart.unwrap_or_default().len()) // how many items were dropped
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Serde`] when the removed value is not a `T` (it is removed all the
    /// same); [`SessionError::Closed`] once the handler has finished.
    pub fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        self.remove_value(key)?
            .map(T::deserialize)
            .transpose()
            .map_err(|source| SessionError::Serde {
                key: key.to_owned(),
                source,
            })
    }

    /// Removes the raw JSON value under `key` and returns it.
    ///
    /// ```
    /// use session_runtime::{with_session, SessionError, SocketSession};
    ///
    /// #[with_session(autosave)]
    /// async fn take_flash(session: SocketSession) -> Result<serde_json::Value, SessionError> {
    ///     Ok(session.remove_value("flash")?.unwrap_or_default()) // shown once, then gone
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Closed`] once the handler has finished.
    pub fn remove_value(&self, key: &str) -> Result<Option<Value>, SessionError> {
        self.0.write(|state| {
            let old = state.data.remove(key);
            state.modified |= old.is_some();
            old
        })
    }

    /// Removes every value; the record stays (use [`SocketSession::flush`] to end the session).
    ///
    /// ```
    /// use session_runtime::{with_session, SessionError, SocketSession};
    ///
    /// #[with_session(autosave)]
    /// async fn reset(session: SocketSession) -> Result<(), SessionError> {
    ///     session.clear() // the session lives on, empty
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Closed`] once the handler has finished.
    pub fn clear(&self) -> Result<(), SessionError> {
        self.0.write(|state| {
            state.modified |= !state.data.is_empty();
            state.data.clear();
        })
    }

    /// Ends the session, as tower-sessions' `Session::flush` does: when the handler succeeds,
    /// its record is deleted from the store (in place of the save), and every socket and
    /// browser holding its id then finds it gone (a logout). An `Err` or a panic deletes
    /// nothing.
    ///
    /// ```
    /// use session_runtime::{with_session, SocketSession, SessionError};
    ///
    /// #[with_session(autosave)]
    /// async fn logout_everywhere(session: SocketSession) -> Result<(), SessionError> {
    ///     session.flush()
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Closed`] once the handler has finished.
    pub fn flush(&self) -> Result<(), SessionError> {
        self.0.write(|state| state.delete = true)
    }

    /// Whether the handler changed something that the wrapper will write back.
    /// Storing the value a key already holds changes nothing, so the save is skipped.
    ///
    /// ```
    /// use session_runtime::{with_session, SessionError, SocketSession};
    ///
    /// #[with_session(autosave)]
    /// async fn set_one(session: SocketSession) -> Result<bool, SessionError> {
    ///     session.insert("count", 1)?;
    ///     let changed = session.is_modified(); // false if `count` was 1 already
    ///     Ok(changed)
    /// }
    /// ```
    pub fn is_modified(&self) -> bool {
        let state = self.0.state();
        state.modified || state.delete
    }

    /// A read-only view of the same session.
    ///
    /// For helpers that only read, so they can be shared by `readonly` and `autosave` handlers.
    ///
    /// ```
    /// use session_runtime::{with_session, ReadOnlySocketSession, SessionError, SocketSession};
    ///
    /// fn user(session: &ReadOnlySocketSession) -> Result<Option<String>, SessionError> {
    ///     session.get("user")
    /// }
    ///
    /// #[with_session(autosave)]
    /// async fn visit(session: SocketSession) -> Result<Option<String>, SessionError> {
    ///     session.insert("visited", true)?;
    ///     user(&session.read_only())
    /// }
    /// ```
    pub fn read_only(&self) -> ReadOnlySocketSession {
        ReadOnlySocketSession(self.0.clone())
    }
}

impl fmt::Debug for SocketSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug(&self.0, "SocketSession", f)
    }
}

fn debug(shared: &Shared, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    // Values may be secrets: show keys only.
    let state = shared.state();
    let mut keys: Vec<_> = state.data.keys().collect();
    keys.sort();
    f.debug_struct(name)
        .field("id", &shared.id.map(|_| "<redacted>"))
        .field("exists", &shared.exists)
        .field("keys", &keys)
        .field("modified", &state.modified)
        .finish()
}

/// A session a handler may only read: a fresh copy of the store's record, never written back.
///
/// [`with_session(readonly)`](crate::with_session) hands this type to the body, so a write is
/// a compile error rather than a silent no-op. Taking it costs one store load and no lock.
///
/// ```
/// use session_runtime::{with_session, ReadOnlySocketSession, SessionError};
///
/// #[with_session(readonly)]
/// async fn whoami(session: ReadOnlySocketSession) -> Result<serde_json::Value, SessionError> {
///     Ok(serde_json::json!({ "user": session.get::<String>("user")? }))
/// }
/// ```
///
/// ```compile_fail
/// # use session_runtime::ReadOnlySocketSession;
/// fn write(session: ReadOnlySocketSession) {
///     session.insert("user", "mallory"); // error: a `readonly` session cannot be written
/// }
/// ```
#[derive(Clone)]
pub struct ReadOnlySocketSession(pub(crate) Arc<Shared>);

impl ReadOnlySocketSession {
    read_methods!("ReadOnlySocketSession", "readonly");
}

/// The write methods of [`SocketSession`], present only so that a write through a read-only session
/// fails with one clear error (the bound never holds) instead of "no method named `insert`".
/// The higher-ranked bound is not "trivially false", so the definitions compile.
#[doc(hidden)]
#[allow(missing_docs, unused_variables)]
impl ReadOnlySocketSession {
    pub fn insert(&self, key: &str, value: impl Serialize) -> Result<(), SessionError>
    where
        for<'a> &'a Self: crate::__private::WritableSession,
    {
        unreachable!("a `ReadOnlySocketSession` is never writable")
    }

    pub fn insert_value(&self, key: &str, value: Value) -> Result<Option<Value>, SessionError>
    where
        for<'a> &'a Self: crate::__private::WritableSession,
    {
        unreachable!("a `ReadOnlySocketSession` is never writable")
    }

    pub fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError>
    where
        for<'a> &'a Self: crate::__private::WritableSession,
    {
        unreachable!("a `ReadOnlySocketSession` is never writable")
    }

    pub fn remove_value(&self, key: &str) -> Result<Option<Value>, SessionError>
    where
        for<'a> &'a Self: crate::__private::WritableSession,
    {
        unreachable!("a `ReadOnlySocketSession` is never writable")
    }

    pub fn clear(&self) -> Result<(), SessionError>
    where
        for<'a> &'a Self: crate::__private::WritableSession,
    {
        unreachable!("a `ReadOnlySocketSession` is never writable")
    }

    pub fn flush(&self) -> Result<(), SessionError>
    where
        for<'a> &'a Self: crate::__private::WritableSession,
    {
        unreachable!("a `ReadOnlySocketSession` is never writable")
    }
}

impl fmt::Debug for ReadOnlySocketSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug(&self.0, "ReadOnlySocketSession", f)
    }
}

/// A typed value bound to one session key: deserialised before the handler runs and written
/// back into the session when the handler is done with it, so the autosave wrapper saves it
/// if it changed.
///
/// A missing key reads as `T::default()` (use `Option<T>` to tell "absent" apart). With
/// [`with_session(autosave, key = "...")`](crate::with_session) the macro binds it for you.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use session_runtime::{with_session, SessionData, SessionError};
///
/// #[derive(Default, Serialize, Deserialize)]
/// struct Cart {
///     items: Vec<String>,
/// }
///
/// #[with_session(autosave, key = "cart")]
/// async fn add(mut cart: SessionData<Cart>) -> Result<usize, SessionError> {
///     cart.items.push("tea".into());
///     Ok(cart.items.len())
/// }
/// ```
pub struct SessionData<T: Serialize> {
    value: T,
    key: &'static str,
    session: Arc<Shared>,
}

impl<T: Serialize + DeserializeOwned + Default> SessionData<T> {
    /// Binds `key` of `session`: reads it now (a missing key gives `T::default()`) and
    /// writes it back into `session` when dropped.
    ///
    /// What `#[with_session(autosave, key = "...")]` does for you; by hand, e.g. for two keys
    /// in one handler:
    ///
    /// ```
    /// use session_runtime::{with_session, SessionData, SessionError, SocketSession};
    ///
    /// #[with_session(autosave)]
    /// async fn visit(session: SocketSession) -> Result<u64, SessionError> {
    ///     let mut visits = SessionData::<u64>::bind(&session, "visits")?;
    ///     let mut pages = SessionData::<Vec<String>>::bind(&session, "pages")?;
    ///     *visits += 1;
    ///     pages.push("/chat".into());
    ///     Ok(*visits) // both written back as they drop, then saved
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// [`SessionError::Serde`] when the value under `key` is not a `T`.
    pub fn bind(session: &SocketSession, key: &'static str) -> Result<Self, SessionError> {
        Ok(Self {
            value: session.get(key)?.unwrap_or_default(),
            key,
            session: session.0.clone(),
        })
    }
}

impl<T: Serialize> SessionData<T> {
    /// The session key this value is bound to.
    ///
    /// ```
    /// use session_runtime::{with_session, SessionData};
    ///
    /// #[with_session(autosave, key = "visits")]
    /// async fn visit(mut visits: SessionData<u64>) -> String {
    ///     *visits += 1;
    ///     format!("{} = {}", visits.key(), *visits) // "visits = 1"
    /// }
    /// ```
    pub fn key(&self) -> &'static str {
        self.key
    }
}

impl<T: Serialize> Drop for SessionData<T> {
    fn drop(&mut self) {
        let value = match to_value(self.key, &self.value) {
            Ok(value) => value,
            Err(err) => {
                // Drop cannot return the error: park it so the wrapper fails the save.
                self.session.state().deferred_error.get_or_insert(err);
                return;
            }
        };
        if let Err(err) = SocketSession(self.session.clone()).insert_value(self.key, value) {
            tracing::warn!(key = self.key, %err, "`SessionData` dropped after its handler finished; its value is not saved");
        }
    }
}

impl<T: Serialize> Deref for SessionData<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T: Serialize> DerefMut for SessionData<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: Serialize + fmt::Debug> fmt::Debug for SessionData<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionData")
            .field("key", &self.key)
            .field("value", &self.value)
            .finish()
    }
}

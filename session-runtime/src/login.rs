//! The axum-login user inside socket handlers, re-checked on every event (feature
//! `axum-login`).
//!
//! Give the app's [`AuthnBackend`] to
//! [`SocketSessions::with_axum_login`](crate::SocketSessions::with_axum_login), then take a
//! [`SocketAuth<B>`] beside the session in any handler, `autosave` or `readonly`:
//!
//! ```
//! # mod app {
//! #     use axum_login::{AuthUser, AuthnBackend, UserId};
//! #     #[derive(Debug, Clone)]
//! #     pub struct User { pub id: i64, pub name: String, pub pw_hash: Vec<u8> }
//! #     impl AuthUser for User {
//! #         type Id = i64;
//! #         fn id(&self) -> i64 { self.id }
//! #         fn session_auth_hash(&self) -> &[u8] { &self.pw_hash }
//! #     }
//! #     #[derive(Clone, Default)]
//! #     pub struct Backend;
//! #     impl AuthnBackend for Backend {
//! #         type User = User;
//! #         type Credentials = ();
//! #         type Error = std::convert::Infallible;
//! #         async fn authenticate(&self, _: ()) -> Result<Option<User>, Self::Error> { Ok(None) }
//! #         async fn get_user(&self, _: &UserId<Self>) -> Result<Option<User>, Self::Error> { Ok(None) }
//! #     }
//! # }
//! # use app::Backend;
//! use session_runtime::{
//!     login::{AxumLogin, SocketAuth},
//!     with_session, ReadOnlySocketSession, SessionError, SocketSessions,
//! };
//! use tower_sessions::MemoryStore;
//!
//! #[with_session(readonly)]
//! async fn whoami(
//!     session: ReadOnlySocketSession,
//!     auth: SocketAuth<Backend>,
//! ) -> Result<Option<String>, SessionError> {
//!     Ok(auth.user(&session).await?.map(|user| user.name))
//! }
//!
//! let sessions = SocketSessions::new(MemoryStore::default())
//!     .with_axum_login(AxumLogin::new(Backend::default()));
//! ```
//!
//! # What is checked, and when `get_user` runs
//!
//! Each event reads axum-login's data (`user_id`, `auth_hash`) from the record the handler's
//! transaction just loaded: no store read of its own. The hash is compared, in constant time,
//! with [`AuthUser::session_auth_hash`] of the user, as axum-login does on every HTTP request.
//!
//! The user comes from [`AuthnBackend::get_user`], cached per socket. The cache is used while
//! the session's axum-login data is the one it was fetched for and it is younger than
//! [`AxumLogin::with_recheck`] (1 s unless set); otherwise `get_user` runs again. So a login,
//! a logout or a change of user on the session is seen at the next event, and a password
//! changed elsewhere (the user's hash changed in the backend) within the recheck interval.
//!
//! A mismatch ends the session, as axum-login flushes it over HTTP: the record is deleted
//! (fenced like any write), every socket of the session on every node is pushed
//! `session:gone` with reason `logged out`, and the event fails with
//! [`SessionError::Unauthenticated`]. A `user_id` that the backend no longer knows reads as
//! no user (`Ok(None)`), as in axum-login, without ending the session.

use std::{
    any::Any,
    fmt,
    marker::PhantomData,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

pub use axum_login::{AuthUser, AuthnBackend, UserId};
use serde::Deserialize;
use serde_json::Value;
use socketioxide::{adapter::Adapter, handler::FromMessageParts, socket::Socket};
use subtle::ConstantTimeEq as _;

use crate::{
    private_seal::Sealed, session::Shared, ReadOnlySocketSession, SessionError, SessionHandle,
    SocketSession,
};

/// axum-login's own data key, unless the app set another with `with_data_key`.
pub const DEFAULT_DATA_KEY: &str = "axum-login.data";

const DEFAULT_RECHECK: Duration = Duration::from_secs(1);

/// An axum-login backend, as socket handlers use it: give it to
/// [`SocketSessions::with_axum_login`](crate::SocketSessions::with_axum_login).
///
/// ```
/// # #[derive(Clone)] struct Backend;
/// # #[derive(Debug, Clone)] struct User;
/// # impl axum_login::AuthUser for User { type Id = i64; fn id(&self) -> i64 { 0 } fn session_auth_hash(&self) -> &[u8] { &[] } }
/// # impl axum_login::AuthnBackend for Backend { type User = User; type Credentials = (); type Error = std::convert::Infallible;
/// #   async fn authenticate(&self, _: ()) -> Result<Option<User>, Self::Error> { Ok(None) }
/// #   async fn get_user(&self, _: &i64) -> Result<Option<User>, Self::Error> { Ok(None) } }
/// use std::time::Duration;
/// use session_runtime::login::AxumLogin;
///
/// // As the app's `AuthManagerLayerBuilder::new(backend, session_layer).with_data_key(..)`.
/// let login = AxumLogin::new(Backend)
///     .with_data_key("auth")
///     .with_recheck(Duration::from_millis(250));
/// ```
pub struct AxumLogin<B> {
    pub(crate) backend: B,
    pub(crate) data_key: &'static str,
    pub(crate) recheck: Duration,
}

impl<B: AuthnBackend> AxumLogin<B> {
    /// `backend` with axum-login's default data key and a recheck every second.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            data_key: DEFAULT_DATA_KEY,
            recheck: DEFAULT_RECHECK,
        }
    }

    /// The session key axum-login keeps its data under: the same as the app gave
    /// `AuthManagerLayerBuilder::with_data_key`.
    pub fn with_data_key(mut self, data_key: &'static str) -> Self {
        self.data_key = data_key;
        self
    }

    /// How long a socket trusts the user it fetched while the session's axum-login data stays
    /// the same; `Duration::ZERO` calls `get_user` on every event.
    pub fn with_recheck(mut self, every: Duration) -> Self {
        self.recheck = every;
        self
    }
}

impl<B> fmt::Debug for AxumLogin<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AxumLogin")
            .field("data_key", &self.data_key)
            .field("recheck", &self.recheck)
            .finish_non_exhaustive()
    }
}

/// axum-login's session data as it serializes it (its `Data` type is private): the same
/// field names, so a login axum-login wrote is read here (tested against the real crate).
#[derive(Deserialize)]
struct Data<Id> {
    user_id: Option<Id>,
    auth_hash: Option<Vec<u8>>,
}

/// What a socket fetched last, for the axum-login data it was fetched for.
struct Cached<U> {
    data: Value,
    user: Option<U>,
    at: Instant,
}

/// The socket's cache, type-erased: one socket serves one backend type.
#[derive(Default)]
pub(crate) struct Cache(Mutex<Option<Box<dyn Any + Send + Sync>>>);

impl Cache {
    fn take<U: 'static>(&self) -> Option<Cached<U>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let cached = slot.take()?;
        cached.downcast::<Cached<U>>().ok().map(|boxed| *boxed)
    }

    fn put<U: Send + Sync + 'static>(&self, cached: Cached<U>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(cached));
    }
}

/// The sessions a handler can check a user against: the freshly loaded [`SocketSession`]
/// or [`ReadOnlySocketSession`].
pub trait LoadedSession: Sealed {}

// The seal is unnameable outside the crate, so `Shared` does not leak through it.
#[allow(private_interfaces)]
impl Sealed for SocketSession {
    fn shared(&self) -> &Shared {
        &self.0
    }
}

#[allow(private_interfaces)]
impl Sealed for ReadOnlySocketSession {
    fn shared(&self) -> &Shared {
        &self.0
    }
}

impl LoadedSession for SocketSession {}
impl LoadedSession for ReadOnlySocketSession {}

/// The axum-login user of a socket's session: an extractor, for handlers of either mode
/// (see the [module](self) for the rule it checks by).
///
/// ```
/// # #[derive(Clone)] struct Backend;
/// # #[derive(Debug, Clone)] struct User { name: String }
/// # impl axum_login::AuthUser for User { type Id = i64; fn id(&self) -> i64 { 0 } fn session_auth_hash(&self) -> &[u8] { &[] } }
/// # impl axum_login::AuthnBackend for Backend { type User = User; type Credentials = (); type Error = std::convert::Infallible;
/// #   async fn authenticate(&self, _: ()) -> Result<Option<User>, Self::Error> { Ok(None) }
/// #   async fn get_user(&self, _: &i64) -> Result<Option<User>, Self::Error> { Ok(None) } }
/// use session_runtime::{login::SocketAuth, with_session, SessionError, SocketSession};
///
/// // Only a signed-in user may rename: the check and the write are one transaction.
/// #[with_session(autosave)]
/// async fn rename(session: SocketSession, auth: SocketAuth<Backend>) -> Result<String, SessionError> {
///     let user = auth.user(&session).await?.ok_or(SessionError::Unauthenticated)?;
///     session.insert("display_name", &user.name)?;
///     Ok(user.name)
/// }
/// ```
pub struct SocketAuth<B> {
    handle: Option<SessionHandle>,
    _backend: PhantomData<fn() -> B>,
}

impl<B> fmt::Debug for SocketAuth<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketAuth").finish_non_exhaustive()
    }
}

impl<B> SocketAuth<B>
where
    B: AuthnBackend + 'static,
    B::User: 'static,
{
    /// The session's authenticated user, checked against the backend: `None` when nobody is
    /// logged in (or the backend no longer knows the user).
    ///
    /// # Errors
    ///
    /// [`SessionError::Unauthenticated`] when the session's auth hash no longer matches the
    /// user's (the session is ended and pushed gone), [`SessionError::Serde`] when axum-login's
    /// data cannot be read, [`SessionError::Backend`] when `get_user` fails,
    /// [`SessionError::NoAuthBackend`] without
    /// [`SocketSessions::with_axum_login`](crate::SocketSessions::with_axum_login) for `B`, and
    /// [`SessionError::NotAttached`] on a socket the runtime does not manage.
    pub async fn user(
        &self,
        session: &impl LoadedSession,
    ) -> Result<Option<B::User>, SessionError> {
        let handle = self.handle.as_ref().ok_or(SessionError::NotAttached)?;
        let login = handle
            .sessions()
            .axum_login::<B>()
            .ok_or(SessionError::NoAuthBackend)?;
        let shared = session.shared();
        let Some(raw) = shared.state().data.get(login.data_key).cloned() else {
            return Ok(None);
        };
        let data: Data<UserId<B>> =
            serde_json::from_value(raw.clone()).map_err(|source| SessionError::Serde {
                key: login.data_key.to_owned(),
                source,
            })?;
        let Some(user_id) = data.user_id else {
            return Ok(None);
        };
        let cache = handle.auth_cache();
        let user = match cache.take::<B::User>() {
            Some(cached) if cached.data == raw && cached.at.elapsed() < login.recheck => {
                cached.user
            }
            _ => login
                .backend
                .get_user(&user_id)
                .await
                .map_err(|err| SessionError::Backend {
                    source: Box::new(err),
                })?,
        };
        let Some(user) = user else {
            cache.put::<B::User>(Cached {
                data: raw,
                user: None,
                at: Instant::now(),
            });
            return Ok(None);
        };
        let verified = data
            .auth_hash
            .as_ref()
            .is_some_and(|hash| hash.ct_eq(user.session_auth_hash()).into());
        if !verified {
            // Ended by the transaction once the body returns: it holds the session's lock.
            shared.end_on_mismatch();
            return Err(SessionError::Unauthenticated);
        }
        cache.put(Cached {
            data: raw,
            user: Some(user.clone()),
            at: Instant::now(),
        });
        Ok(Some(user))
    }
}

/// Infallible: a socket the runtime does not manage gets [`SessionError::NotAttached`] from
/// [`SocketAuth::user`], so the handler still answers.
impl<A: Adapter, B: Send + Sync + 'static> FromMessageParts<A> for SocketAuth<B> {
    type Error = std::convert::Infallible;

    fn from_message_parts(
        s: &Arc<Socket<A>>,
        _: &mut socketioxide::handler::Value,
        _: &Option<i64>,
    ) -> Result<Self, Self::Error> {
        Ok(Self {
            handle: SessionHandle::of(s),
            _backend: PhantomData,
        })
    }
}

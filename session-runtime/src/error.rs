//! The one error type of the runtime.

use std::{error::Error as StdError, fmt};

/// Everything that can go wrong around a socket's session.
///
/// The `Display` of every variant is short, stable and safe to show a client: the generated
/// wrappers of [`with_session`](crate::with_session) acknowledge it as `{"error": "<message>"}`
/// and HTTP rejections answer it. It never holds a session id or a backend's own text (which
/// may hold ids, hosts or session data): those stay in the error's
/// [`source`](std::error::Error::source), which the runtime logs with [`tracing`] (see
/// [`SessionError::report`]).
///
/// ```
/// use session_runtime::SessionError;
/// use tower_sessions::session_store;
///
/// let err = SessionError::from(session_store::Error::Backend("redis at 10.0.0.7: timeout".into()));
/// assert_eq!(err.to_string(), "session store failed"); // what the client is told
/// assert!(err.report().contains("10.0.0.7"));          // what the log says
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The handshake carried no session cookie, or one the session layer could not read.
    #[error("no session: the connection carried no valid session cookie")]
    NoSession,

    /// The record no longer exists in the store: logged out, expired, or its id was rotated.
    /// Nothing is ever written back under its id.
    #[error("the session is gone (logged out, expired or rotated): log in again")]
    Gone,

    /// A `require = "key"` guard found no value under `key`.
    #[error("the session has no `{0}`")]
    Missing(String),

    /// The handshake request carried no `tower_sessions::Session`: the session layer is
    /// missing or inside the socket.io layer. Put `SessionManagerLayer` outside
    /// `SocketIoLayer` (the runtime logs this hint when it happens).
    #[error("the session is unavailable: no session layer")]
    NoSessionLayer,

    /// The socket has no session attached: it was not registered through
    /// [`SocketSessions::handler`](crate::SocketSessions::handler) or
    /// [`SocketSessions::attach`](crate::SocketSessions::attach).
    #[error("the session is unavailable: not attached to this socket")]
    NotAttached,

    /// The session was used after its handler finished; such writes would be lost, so they fail.
    #[error("the session was used after its handler finished: writes would be lost")]
    Closed,

    /// A value could not be turned into JSON or back. The message names the key; serde's own
    /// text, which may quote the stored value, is the source.
    #[error("session value `{key}` could not be (de)serialised")]
    Serde {
        /// The session key.
        key: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },

    /// The session store failed; nothing was written.
    #[error("session store failed")]
    Store(#[from] tower_sessions::session_store::Error),

    /// A store operation did not finish within the store bound
    /// ([`Timeouts::with_store`](crate::Timeouts::with_store)): nothing was written (a save
    /// that was only slow may still land; the next reload shows it).
    #[error("session store timed out")]
    TimedOut,

    /// Another writer held the session's lock for longer than the lock bound
    /// ([`Timeouts::with_lock`](crate::Timeouts::with_lock)); nothing ran. Try again.
    #[error("the session is busy: try again")]
    Busy,

    /// The handler's body ran longer than the handler bound
    /// ([`Timeouts::with_handler`](crate::Timeouts::with_handler)); it was stopped, nothing
    /// was written and the lock was released.
    #[error("the handler did not finish in time; nothing was saved")]
    HandlerTimedOut,

    /// The per-session lock could not be taken (a lock backend failed).
    #[error("could not lock the session")]
    Lock {
        /// What the lock backend said.
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },

    /// The session's lock was a lease that lapsed before the write (its holder was paused,
    /// or cut off from the lock backend, for longer than the lease) and another writer may have
    /// taken it since: nothing was written. Try again.
    #[error("the session's lock lapsed; nothing was saved: try again")]
    LeaseLost,

    /// The handler panicked; nothing was written.
    #[error("the handler panicked; nothing was saved")]
    Panicked,

    /// A user API was called on a [`SocketSessions`](crate::SocketSessions) built without
    /// [`with_users`](crate::SocketSessions::with_users).
    #[error("users are not set up: call `SocketSessions::with_users`")]
    NoUsers,

    /// The session's credentials no longer hold (axum-login: its auth hash is not the
    /// user's, e.g. the password changed on another device): the session was ended.
    #[error("not authenticated: the session's credentials changed; log in again")]
    Unauthenticated,

    /// `login::SocketAuth` (feature `axum-login`) was used on a
    /// [`SocketSessions`](crate::SocketSessions) without an axum-login backend of that type.
    #[error("no axum-login backend: call `SocketSessions::with_axum_login`")]
    NoAuthBackend,

    /// The authentication backend failed (axum-login's `get_user`).
    #[error("the authentication backend failed")]
    Backend {
        /// What the backend said.
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },

    /// The socket.io adapter could not reach every node (counting a user's sockets).
    #[error("could not reach every node")]
    Adapter {
        /// What the adapter said.
        #[source]
        source: Box<dyn StdError + Send + Sync + 'static>,
    },
}

impl SessionError {
    pub(crate) fn from_session(err: tower_sessions::session::Error) -> Self {
        match err {
            tower_sessions::session::Error::Store(err) => Self::Store(err),
            // Not produced by a load, but named for what it would be: the record as a whole.
            tower_sessions::session::Error::SerdeJson(source) => Self::Serde {
                key: "<record>".to_owned(),
                source,
            },
        }
    }

    /// The whole error for a log: its message, then each source's, joined by `: `.
    ///
    /// Unlike `Display`, this may hold a backend's text: keep it out of answers to clients.
    ///
    /// ```
    /// use session_runtime::SessionError;
    ///
    /// let err = SessionError::Lock { source: "the lock table was dropped".into() };
    /// assert_eq!(err.report(), "could not lock the session: the lock table was dropped");
    /// ```
    pub fn report(&self) -> String {
        Report(self).to_string()
    }

    /// Whether this failure says something is wrong with the server (its store, its lock
    /// backend, its wiring, a handler that hangs) rather than with the client's session: logged
    /// at `error`, the others at `debug`.
    pub(crate) fn is_server_fault(&self) -> bool {
        matches!(
            self,
            Self::NoSessionLayer
                | Self::NotAttached
                | Self::Store(_)
                | Self::TimedOut
                | Self::HandlerTimedOut
                | Self::Lock { .. }
                | Self::LeaseLost
                | Self::NoUsers
                | Self::NoAuthBackend
                | Self::Backend { .. }
                | Self::Adapter { .. }
        )
    }
}

/// An error and its chain of sources, for logs.
struct Report<'a>(&'a (dyn StdError + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(err) = source {
            write!(f, ": {err}")?;
            source = err.source();
        }
        Ok(())
    }
}

//! The one error type of the runtime.

use tower_sessions::session::Id;

/// Everything that can go wrong around a socket's session.
///
/// Every variant has a message meant for people: the generated wrappers of
/// [`with_session`](crate::with_session) acknowledge it as `{"error": "<message>"}`.
///
/// ```
/// use session_runtime::SessionError;
///
/// let err = SessionError::Gone;
/// assert_eq!(err.to_string(), "the session is gone (logged out, expired or rotated): log in again");
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
    /// missing or inside the socket.io layer.
    #[error("no session layer: put `SessionManagerLayer` outside `SocketIoLayer`")]
    NoSessionLayer,

    /// The socket has no session attached: it was not registered through
    /// [`SocketSessions::handler`](crate::SocketSessions::handler) or
    /// [`SocketSessions::attach`](crate::SocketSessions::attach).
    #[error(
        "no session is attached to this socket: register its namespace with \
         `SocketSessions::handler` or add `SocketSessions::attach` as connect middleware"
    )]
    NotAttached,

    /// The session was used after its handler finished; such writes would be lost, so they fail.
    #[error("the session was used after its handler finished: writes would be lost")]
    Closed,

    /// A value could not be turned into JSON or back.
    #[error("session value `{key}` could not be (de)serialised: {source}")]
    Serde {
        /// The session key.
        key: String,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },

    /// The session store failed; nothing was written.
    #[error("session store failed: {0}")]
    Store(#[from] tower_sessions::session_store::Error),

    /// The per-session lock could not be taken (a distributed lock backend failed).
    #[error("could not lock session {id}: {reason}")]
    Lock {
        /// The session whose lock failed.
        id: Id,
        /// What the lock backend said.
        reason: String,
    },

    /// The handler panicked; nothing was written.
    #[error("the handler panicked; nothing was saved")]
    Panicked,
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
}

//! Fresh, locked, transactional [tower-sessions] sessions inside [socketioxide] handlers.
//!
//! An axum app keeps its login in a tower-sessions cookie session; its socket.io side runs on
//! socketioxide. This crate gives every socket.io handler that same session:
//!
//! - **Fresh**: each handler reloads the record from the store, so it sees what HTTP wrote a
//!   moment ago, never the handshake's cached copy.
//! - **Locked**: writers of one session (across sockets, and HTTP routes that take
//!   [`http::LockedSession`]) hold a per-session lock from reload to save: no lost updates.
//! - **Transactional**: changes are saved once, after the handler succeeds, only if something
//!   changed; an error or a panic saves nothing. The acknowledgement goes out after the save.
//! - **Gone means gone**: a session logged out, expired or rotated over HTTP is never written
//!   back by a socket.
//!
//! ```
//! use axum::Router;
//! use session_runtime::{with_session, ReadOnlySocketSession, SocketSession, SessionError, SocketSessions};
//! use socketioxide::{extract::SocketRef, SocketIo};
//! use tower_sessions::{MemoryStore, SessionManagerLayer};
//!
//! #[with_session(autosave)]
//! async fn incr(session: SocketSession) -> Result<i64, SessionError> {
//!     let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
//!     session.insert("count", count)?;
//!     Ok(count) // acknowledged after the save
//! }
//!
//! #[with_session(readonly)]
//! async fn whoami(session: ReadOnlySocketSession) -> Result<Option<String>, SessionError> {
//!     session.get("user")
//! }
//!
//! let store = MemoryStore::default();
//! let sessions = SocketSessions::new(store.clone());
//! let (sio_layer, io) = SocketIo::new_layer();
//! io.ns("/", sessions.handler(|socket: SocketRef| {
//!     socket.on("incr", incr);
//!     socket.on("whoami", whoami);
//! }));
//! let app: Router = Router::new()
//!     .layer(sio_layer)
//!     .layer(SessionManagerLayer::new(store)); // outside the socket.io layer
//! ```
//!
//! [tower-sessions]: https://docs.rs/tower-sessions/0.14
//! [socketioxide]: https://docs.rs/socketioxide/0.18
#![warn(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs (nightly, `--cfg docsrs`): items behind a feature say which one. Stable ignores it.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod error;
mod gone;
mod handle;
pub mod http;
pub mod locks;
pub mod origin;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod scale;
mod session;
mod sockets;
mod stack;
mod timeouts;

pub use error::SessionError;
pub use handle::SessionHandle;
pub use session::{ReadOnlySocketSession, SessionData, SocketSession};
#[doc(inline)]
pub use session_macros::with_session;
pub use sockets::{KeepAlive, OnGone, SocketSessions, GONE_EVENT, REFRESH_EVENT};
pub use stack::{SessionStack, SessionStackService};
pub use timeouts::Timeouts;

/// The connect handler and middleware that [`SocketSessions::handler`] and
/// [`SocketSessions::attach`] return: named here for code that stores them.
pub mod connect {
    pub use crate::sockets::{AttachSession, SessionConnectHandler};
}

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// Runs the examples of [`with_session`]'s documentation as this crate's doctests: they need
/// this crate, which the macro crate cannot depend on.
#[cfg(doctest)]
#[doc = include_str!("../../session-macros/src/with_session.md")]
pub struct WithSessionDocs;

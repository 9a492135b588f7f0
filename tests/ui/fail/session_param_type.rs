//! The session parameter missing, or of a type the mode does not take: each is refused with
//! the type to use, and the handler still registers, so nothing else is reported.

#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, ReadOnlySocketSession, SocketSession};
use socketioxide::extract::SocketRef;

#[with_session(autosave)]
async fn no_session(_socket: SocketRef) {}

#[with_session(autosave)]
async fn read_only_in_autosave(_session: ReadOnlySocketSession) {}

#[with_session(readonly)]
async fn writable_in_readonly(_session: SocketSession) {}

#[with_session(autosave)]
async fn tower_session(_session: tower_sessions::Session) {}

fn main() {
    support::serve_each!(no_session, read_only_in_autosave, writable_in_readonly, tower_session);
}

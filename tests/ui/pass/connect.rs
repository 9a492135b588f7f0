//! `connect` turns a readonly handler into a connect middleware that can refuse the socket.
use std::fmt;

use session_runtime::{with_session, ReadOnlySocketSession, SocketSessions};
use socketioxide::{adapter::Adapter, extract::SocketRef, handler::ConnectHandler, SocketIo};
use tower_sessions::MemoryStore;

#[derive(Debug)]
struct Banned;

impl fmt::Display for Banned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this account is banned")
    }
}

#[with_session(readonly, require = "user", connect)]
async fn members_only<A: Adapter>(
    _socket: SocketRef<A>,
    session: ReadOnlySocketSession,
) -> Result<(), Banned> {
    match session.get::<bool>("banned") {
        Ok(Some(true)) => Err(Banned),
        _ => Ok(()),
    }
}

#[with_session(readonly, connect)]
async fn log(session: ReadOnlySocketSession) {
    let _ = session.exists();
}

fn main() {
    let sessions = SocketSessions::new(MemoryStore::default());
    let (_layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        sessions
            .handler(|_socket: SocketRef| {})
            .with(members_only)
            .with(log),
    );
}

use session_runtime::{with_session, ReadOnlySession, SessionError, SocketSessions};
use socketioxide::{extract::SocketRef, SocketIo};
use tower_sessions::MemoryStore;

#[with_session(readonly)]
async fn login(session: ReadOnlySession) -> Result<(), SessionError> {
    session.insert("user", "mallory")?;
    Ok(())
}

fn main() {
    let sessions = SocketSessions::new(MemoryStore::default());
    let (_layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        sessions.handler(|socket: SocketRef| socket.on("login", login)),
    );
}

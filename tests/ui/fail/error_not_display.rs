use session_runtime::{with_session, Session, SocketSessions};
use socketioxide::{extract::SocketRef, SocketIo};
use tower_sessions::MemoryStore;

#[derive(Debug)]
struct Refused;

#[with_session(autosave)]
async fn incr(session: Session) -> Result<i64, Refused> {
    session.insert("count", 1).map_err(|_| Refused)?;
    Ok(1)
}

fn main() {
    let sessions = SocketSessions::new(MemoryStore::default());
    let (_layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        sessions.handler(|socket: SocketRef| socket.on("incr", incr)),
    );
}

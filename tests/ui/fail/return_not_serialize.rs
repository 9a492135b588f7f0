use session_runtime::{with_session, Session, SocketSessions};
use socketioxide::{extract::SocketRef, SocketIo};
use tower_sessions::MemoryStore;

struct Count(i64);

#[with_session(autosave)]
async fn incr(session: Session) -> Count {
    Count(session.get("count").ok().flatten().unwrap_or(0))
}

fn main() {
    let sessions = SocketSessions::new(MemoryStore::default());
    let (_layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        sessions.handler(|socket: SocketRef| socket.on("incr", incr)),
    );
}

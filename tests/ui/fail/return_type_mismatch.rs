use session_runtime::{with_session, Session, SocketSessions};
use socketioxide::{extract::SocketRef, SocketIo};
use tower_sessions::MemoryStore;

#[with_session(autosave)]
async fn incr(session: Session) -> i64 {
    let _ = session;
    "one"
}

fn main() {
    let sessions = SocketSessions::new(MemoryStore::default());
    let (_layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        sessions.handler(|socket: SocketRef| socket.on("incr", incr)),
    );
}

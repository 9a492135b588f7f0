//! Any socketioxide extractors, in any order around the session; a `()` handler keeps its
//! `AckSender`.
use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use serde::Deserialize;
use session_runtime::{with_session, ReadOnlySocketSession, SocketSession, SocketSessions};
use socketioxide::{
    extract::{AckSender, Data, Event, Extension, SocketRef, State},
    SocketIo,
};
use tower_sessions::MemoryStore;

#[derive(Clone, Default)]
struct Counter(Arc<AtomicU64>);

#[derive(Deserialize)]
struct Message {
    text: String,
}

#[with_session(autosave)]
async fn post(
    Event(event): Event,
    State(counter): State<Counter>,
    Data(message): Data<Message>,
    session: SocketSession,
    socket: SocketRef,
    ack: AckSender,
) {
    counter.0.fetch_add(1, Ordering::Relaxed);
    let sent = session.insert("last", &message.text).is_ok();
    socket.emit(event, &message.text).ok();
    ack.send(&sent).ok();
}

#[derive(Clone)]
struct Room(String);

#[with_session(readonly)]
async fn room(
    payload: socketioxide::extract::Data<serde_json::Value>,
    Extension(room): Extension<Room>,
    session: ReadOnlySocketSession,
    ack: AckSender,
) {
    let user: Option<String> = session.get("user").ok().flatten();
    ack.send(&(room.0, user, payload.0)).ok();
}

fn main() {
    let sessions = SocketSessions::new(MemoryStore::default());
    let (_layer, io) = SocketIo::builder()
        .with_state(Counter::default())
        .build_layer();
    io.ns(
        "/",
        sessions.handler(|socket: SocketRef| {
            socket.extensions.insert(Room("lobby".into()));
            socket.on("post", post);
            socket.on("room", room);
        }),
    );
}

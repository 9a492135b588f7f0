//! A handler generic over the adapter, registered on the default one.

#[path = "../support.rs"]
mod support;
use session_runtime::{with_session, SocketSession, SessionError};
use socketioxide::{adapter::Adapter, extract::SocketRef};

#[with_session(autosave)]
async fn incr<A: Adapter>(socket: SocketRef<A>, session: SocketSession) -> Result<i64, SessionError> {
    let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
    session.insert("count", count)?;
    socket.emit("count", &count).ok();
    Ok(count)
}

#[with_session(readonly)]
async fn count<A>(session: session_runtime::ReadOnlySocketSession, _socket: SocketRef<A>) -> i64
where
    A: Adapter,
{
    session.get("count").ok().flatten().unwrap_or(0)
}

fn main() {
    support::serve_each!(incr, count);
}

#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SocketSession, SessionError};

#[with_session(autosave)]
async fn incr(session: SocketSession) -> Result<i64, SessionError> {
    let count = ;
    session.insert("count", count)?;
    Ok(count)
}

fn main() {
    support::serve_each!(incr);
}

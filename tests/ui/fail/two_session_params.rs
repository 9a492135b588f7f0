#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SocketSession};

#[with_session(autosave)]
async fn incr(session: SocketSession, again: SocketSession) {
    let _ = (session, again);
}

fn main() {
    support::serve_each!(incr);
}

#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SocketSession};

#[with_session(autosave)]
async fn incr(session: SocketSession) -> i64 {
    let _ = session;
    "one"
}

fn main() {
    support::serve_each!(incr);
}

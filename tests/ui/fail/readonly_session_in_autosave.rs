#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, ReadOnlySocketSession};

#[with_session(autosave)]
async fn incr(session: ReadOnlySocketSession) {
    let _ = session;
}

fn main() {
    support::serve(|socket| socket.on("incr", incr));
}

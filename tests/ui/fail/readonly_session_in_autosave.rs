#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, ReadOnlySession};

#[with_session(autosave)]
async fn incr(session: ReadOnlySession) {
    let _ = session;
}

fn main() {
    support::serve(|socket| socket.on("incr", incr));
}

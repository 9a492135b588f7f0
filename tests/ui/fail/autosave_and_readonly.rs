#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SocketSession};

#[with_session(autosave, readonly)]
async fn incr(session: SocketSession) {
    let _ = session;
}

fn main() {
    support::serve(|socket| socket.on("incr", incr));
}

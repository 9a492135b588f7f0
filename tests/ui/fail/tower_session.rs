#[path = "../support.rs"]
mod support;

use session_runtime::with_session;
use tower_sessions::Session;

#[with_session(autosave)]
async fn incr(session: Session) {
    let _ = session;
}

fn main() {
    support::serve(|socket| socket.on("incr", incr));
}

#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, Session};

#[with_session(autosave)]
async fn incr(session: Session, again: Session) {
    let _ = (session, again);
}

fn main() {
    support::serve(|socket| socket.on("incr", incr));
}

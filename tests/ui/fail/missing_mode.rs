#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, Session};

#[with_session(require = "user")]
async fn incr(session: Session) {
    let _ = session;
}

fn main() {
    support::serve(|socket| socket.on("incr", incr));
}

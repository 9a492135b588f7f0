#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, Session};

#[with_session(readonly)]
async fn whoami(session: Session) {
    let _ = session;
}

fn main() {
    support::serve(|socket| socket.on("whoami", whoami));
}

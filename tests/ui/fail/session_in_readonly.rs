#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SocketSession};

#[with_session(readonly)]
async fn whoami(session: SocketSession) {
    let _ = session;
}

fn main() {
    support::serve(|socket| socket.on("whoami", whoami));
}

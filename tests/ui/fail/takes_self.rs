#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SocketSession};

struct Api;

impl Api {
    #[with_session(autosave)]
    async fn incr(&self, session: SocketSession) {
        let _ = session;
    }
}

fn main() {
    support::serve(|socket| socket.on("incr", Api::incr));
}

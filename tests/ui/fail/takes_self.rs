#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, Session};

struct Api;

impl Api {
    #[with_session(autosave)]
    async fn incr(&self, session: Session) {
        let _ = session;
    }
}

fn main() {
    support::serve(|socket| socket.on("incr", Api::incr));
}

use session_runtime::{with_session, SocketSession};

#[with_session(autosave, connect)]
async fn guard(session: SocketSession) {
    let _ = session;
}

fn main() {}

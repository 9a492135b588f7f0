use session_runtime::{with_session, Session};

#[with_session(autosave, connect)]
async fn guard(session: Session) {
    let _ = session;
}

fn main() {}

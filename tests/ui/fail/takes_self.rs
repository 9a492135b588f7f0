use session_runtime::{with_session, Session};

struct Api;

impl Api {
    #[with_session(autosave)]
    async fn incr(&self, session: Session) {
        let _ = session;
    }
}

fn main() {}

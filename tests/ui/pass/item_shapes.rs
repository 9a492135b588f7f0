//! Attributes, visibility, doc comments, inner attributes and associated functions survive.

#[path = "../support.rs"]
mod support;
use session_runtime::{with_session, ReadOnlySocketSession, SocketSession, SessionError};

mod handlers {
    use super::*;

    /// Documented, public, and used from another module.
    #[with_session(autosave)]
    #[allow(clippy::needless_return)]
    pub async fn touch(session: SocketSession) -> Result<(), SessionError> {
        #![allow(unused_mut)]
        let mut now = 1_u8;
        session.insert("touched", now)?;
        now += 1;
        let _ = now;
        return Ok(());
    }
}

struct Api;

impl Api {
    #[with_session(readonly)]
    pub(crate) async fn peek(session: ReadOnlySocketSession) -> bool {
        session.exists()
    }
}

fn main() {
    support::serve(|socket| {
        socket.on("touch", handlers::touch);
        socket.on("peek", Api::peek);
    });
}

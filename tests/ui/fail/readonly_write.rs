#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, ReadOnlySocketSession, SessionError};

#[with_session(readonly)]
async fn login(session: ReadOnlySocketSession) -> Result<(), SessionError> {
    session.insert("user", "mallory")?;
    Ok(())
}

fn main() {
    support::serve_each!(login);
}

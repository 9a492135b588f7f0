#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, ReadOnlySession, SessionError};

#[with_session(readonly)]
async fn login(session: ReadOnlySession) -> Result<(), SessionError> {
    session.insert("user", "mallory")?;
    Ok(())
}

fn main() {
    support::serve(|socket| socket.on("login", login));
}

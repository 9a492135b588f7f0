//! Every accepted return type: `()`, `T: Serialize`, `impl Serialize`, `Result<T, E>`,
//! `Result<impl Serialize, E>` and a `Result` alias (recognised by its name).

#[path = "../support.rs"]
mod support;
use serde::Serialize;
use session_runtime::{with_session, ReadOnlySocketSession, SocketSession, SessionError};

#[derive(Serialize)]
struct Profile {
    user: Option<String>,
}

#[with_session(readonly)]
async fn unit(session: ReadOnlySocketSession) {
    let _ = session.contains_key("user");
}

#[with_session(readonly)]
async fn value(session: ReadOnlySocketSession) -> Profile {
    Profile {
        user: session.get("user").ok().flatten(),
    }
}

#[with_session(readonly)]
async fn opaque(session: ReadOnlySocketSession) -> impl Serialize {
    session.get_value("user")
}

#[with_session(readonly)]
async fn result(session: ReadOnlySocketSession) -> Result<Profile, SessionError> {
    Ok(Profile {
        user: session.get("user")?,
    })
}

#[with_session(autosave)]
async fn opaque_result(session: SocketSession) -> Result<impl Serialize, SessionError> {
    session.insert("seen", true)?;
    Ok(vec![1, 2, 3])
}

mod answer {
    pub type Result<T> = std::result::Result<T, session_runtime::SessionError>;
}

#[with_session(autosave)]
async fn alias(session: SocketSession) -> answer::Result<bool> {
    Ok(session.is_modified())
}

fn main() {
    support::serve_each!(unit, value, opaque, result, opaque_result, alias);
}

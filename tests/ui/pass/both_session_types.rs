//! One file holds an HTTP route on tower-sessions' `Session` and a socket handler on ours,
//! both imported by name, no alias.

#[path = "../support.rs"]
mod support;

use axum::{routing::get, Router};
use session_runtime::{with_session, ReadOnlySocketSession, SessionError, SocketSession};
use tower_sessions::Session;

async fn http_count(session: Session) -> String {
    let count: Option<i64> = session.get("count").await.ok().flatten();
    count.unwrap_or(0).to_string()
}

#[with_session(autosave)]
async fn incr(session: SocketSession) -> Result<i64, SessionError> {
    let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
    session.insert("count", count)?;
    Ok(count)
}

#[with_session(readonly)]
async fn count(session: ReadOnlySocketSession) -> Result<i64, SessionError> {
    Ok(session.get::<i64>("count")?.unwrap_or(0))
}

fn main() {
    let _routes: Router = Router::new().route("/count", get(http_count));
    support::serve_each!(incr, count);
}

#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SocketSession};

#[derive(Debug)]
struct Refused;

#[with_session(autosave)]
async fn incr(session: SocketSession) -> Result<i64, Refused> {
    session.insert("count", 1).map_err(|_| Refused)?;
    Ok(1)
}

fn main() {
    support::serve_each!(incr);
}

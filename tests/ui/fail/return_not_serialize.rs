#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SocketSession};

struct Count(i64);

#[with_session(autosave)]
async fn incr(session: SocketSession) -> Count {
    Count(session.get("count").ok().flatten().unwrap_or(0))
}

fn main() {
    support::serve_each!(incr);
}

#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SocketSession};
use socketioxide::extract::AckSender;

#[with_session(autosave)]
async fn incr(session: SocketSession, ack: AckSender) -> i64 {
    let _ = (session, ack);
    1
}

fn main() {
    support::serve_each!(incr);
}

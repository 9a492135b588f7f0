#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, Session};
use socketioxide::extract::AckSender;

#[with_session(autosave)]
async fn incr(session: Session, ack: AckSender) -> i64 {
    let _ = (session, ack);
    1
}

fn main() {
    support::serve(|socket| socket.on("incr", incr));
}

#[path = "../support.rs"]
mod support;

use session_runtime::with_session;
use socketioxide::extract::SocketRef;

#[with_session(autosave)]
async fn incr(socket: SocketRef) {
    let _ = socket;
}

fn main() {
    support::serve(|socket| socket.on("incr", incr));
}

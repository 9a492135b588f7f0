use session_runtime::with_session;
use socketioxide::extract::SocketRef;

#[with_session(autosave)]
async fn incr(socket: SocketRef) {
    let _ = socket;
}

fn main() {}

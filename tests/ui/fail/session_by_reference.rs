#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, ReadOnlySocketSession};

#[with_session(readonly)]
async fn whoami(session: &ReadOnlySocketSession) {
    let _ = session;
}

fn main() {
    support::serve_each!(whoami);
}

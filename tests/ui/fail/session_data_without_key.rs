#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, SessionData};

#[with_session(autosave)]
async fn visit(visits: SessionData<u64>) {
    let _ = visits;
}

fn main() {
    support::serve_each!(visit);
}

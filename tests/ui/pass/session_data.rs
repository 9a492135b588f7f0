//! `key = "..."` binds a typed `SessionData<T>`; `require = "..."` guards either mode.

#[path = "../support.rs"]
mod support;
use serde::{Deserialize, Serialize};
use session_runtime::{with_session, ReadOnlySocketSession, SessionData};
use socketioxide::extract::Data;

#[derive(Default, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}

#[with_session(autosave, require = "user", key = "cart")]
async fn add(mut cart: SessionData<Cart>, Data(item): Data<String>) -> usize {
    cart.items.push(item);
    cart.items.len()
}

#[with_session(autosave, key = "visits")]
async fn visit(mut visits: session_runtime::SessionData<u64>) -> u64 {
    *visits += 1;
    *visits
}

#[with_session(readonly, require = "user")]
async fn whoami(session: ReadOnlySocketSession) -> Option<String> {
    session.get("user").ok().flatten()
}

fn main() {
    support::serve_each!(add, visit, whoami);
}

//! Misused options: each handler is refused for its attribute alone, and still registers (the
//! function is wrapped as its session type implies), so nothing else is reported.

#[path = "../support.rs"]
mod support;

use session_runtime::{with_session, ReadOnlySocketSession, SocketSession};

#[with_session(autosave, readonly)]
async fn both_modes(_session: SocketSession) {}

#[with_session(require = "user")]
async fn no_mode(_session: SocketSession) {}

#[with_session(autosave, lock)]
async fn unknown(_session: SocketSession) {}

#[with_session(readonly, require = "user", require = "admin")]
async fn twice(_session: ReadOnlySocketSession) {}

#[with_session(readonly, require = user)]
async fn not_a_string(_session: ReadOnlySocketSession) {}

fn main() {
    support::serve_each!(both_modes, no_mode, unknown, twice, not_a_string);
}

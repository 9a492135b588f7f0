//! What a fixture does with its handlers: registers them on `/` as an app would, so that a
//! handler the attribute mangled fails to register.

use session_runtime::SocketSessions;
use socketioxide::{extract::SocketRef, SocketIo};
use tower_sessions::MemoryStore;

/// Registers `register`'s handlers on namespace `/` of a socket.io server on `MemoryStore`.
pub fn serve(register: impl Fn(SocketRef) + Clone + Send + Sync + 'static) {
    let sessions = SocketSessions::new(MemoryStore::default());
    let (_layer, io) = SocketIo::new_layer();
    io.ns("/", sessions.handler(register));
}

/// Registers each handler under its own name, as [`serve`] does: `support::serve_each!(incr, count)`.
// Not every fixture registers its handlers this way.
#[allow(unused_macros)]
macro_rules! serve_each {
    ($($handler:ident),+ $(,)?) => {
        $crate::support::serve(|socket| {
            $(socket.on(stringify!($handler), $handler);)+
        })
    };
}
#[allow(unused_imports)]
pub(crate) use serve_each;

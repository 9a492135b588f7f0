use session_runtime::with_session;

#[with_session(autosave)]
struct Handler;

fn main() {}

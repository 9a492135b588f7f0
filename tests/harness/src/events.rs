//! The socket events of the [`TestServer`](crate::TestServer), written as users write them:
//! with `#[with_session]`. Registered on `/` (and the builder's extra namespace):
//!
//! | event | kind | effect | ack |
//! |---|---|---|---|
//! | `whoami` | readonly | - | `{"user": ..}` |
//! | `incr` | autosave | `count += 1` | the new count |
//! | `login` `{"user":..}` | autosave | sets `user` | `{"ok":true}` |
//! | `logout` | autosave | removes `user` | `{"ok":true}` |
//! | `peek` | autosave | reads `count`, writes nothing | `count` |
//! | `same` | autosave | writes `count` with the value it has | `count` |
//! | `delete` | autosave | `Session::flush` (ends the session) | `{"ok":true}` |
//! | `fail_after_write` | autosave | sets `count` to 1000, then returns `Err` | error |
//! | `panic_after_write` | autosave | sets `count` to 1000, then panics | error |
//! | `hold` | autosave | sets `held`, waits for [`HoldProbe::release`] | `{"ok":true}` |
//! | `spend` `N` | autosave, `require = "user"` | `balance -= N` (from 100); `Err` below 0 | the balance |
//! | `add` `"item"` | autosave, `key = "cart"` | pushes onto `cart.items` | the item count |
//! | `member` | readonly, `require = "user"` | - | the user's name |
//! | `note` `"text"` | autosave, acks by itself | sets `note` | `{"noted": true}` |
//! | `tally` `"early"` or other | autosave | sets `touched`; early: `tally` = 7; else reads `label` as a number through `?` | 7 or the number |
//!
//! [`members_only`] guards the connections of [`MEMBERS`](crate::server::MEMBERS).

use std::{
    fmt,
    sync::{atomic::AtomicUsize, Arc},
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use session_runtime::{
    with_session, ReadOnlySocketSession, SessionData, SessionError, SocketSession,
};
use session_workspace::protocol::parse_user;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, Data, SocketRef, State},
};
use tokio::sync::{Notify, Semaphore};

/// What a handler's body may fail with: a session error or its own.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Registers the events of this module's table on `socket`.
pub fn register(socket: &SocketRef) {
    socket.on("whoami", whoami);
    socket.on("incr", incr);
    socket.on("login", login);
    socket.on("logout", logout);
    socket.on("peek", peek);
    socket.on("same", same);
    socket.on("delete", delete);
    socket.on("fail_after_write", fail_after_write);
    socket.on("panic_after_write", panic_after_write);
    socket.on("hold", hold);
    socket.on("spend", spend);
    socket.on("add", add);
    socket.on("member", member);
    socket.on("note", note);
    socket.on("tally", tally);
}

#[with_session(readonly)]
async fn whoami(session: ReadOnlySocketSession) -> Result<Value, SessionError> {
    Ok(json!({ "user": session.get::<String>("user")? }))
}

/// Generic over the adapter, as a handler of a library would be.
#[with_session(autosave)]
async fn incr<A: Adapter>(
    _socket: SocketRef<A>,
    session: SocketSession,
) -> Result<i64, SessionError> {
    let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
    session.insert("count", count)?;
    Ok(count)
}

#[with_session(autosave)]
async fn login(session: SocketSession, Data(body): Data<Value>) -> Result<Value, BoxError> {
    let user = parse_user(&body)?;
    session.insert("user", &user)?;
    Ok(json!({ "ok": true }))
}

#[with_session(autosave)]
async fn logout(session: SocketSession) -> Result<Value, SessionError> {
    session.remove_value("user")?;
    Ok(json!({ "ok": true }))
}

#[with_session(autosave)]
async fn peek(session: SocketSession) -> Result<Option<i64>, SessionError> {
    session.get::<i64>("count")
}

#[with_session(autosave)]
async fn same(session: SocketSession) -> Result<Value, SessionError> {
    let count = session.get_value("count").unwrap_or(json!(0));
    session.insert_value("count", count.clone())?;
    Ok(count)
}

#[with_session(autosave)]
async fn delete(session: SocketSession) -> Result<Value, SessionError> {
    session.flush()?;
    Ok(json!({ "ok": true }))
}

#[with_session(autosave)]
async fn fail_after_write(session: SocketSession) -> Result<(), BoxError> {
    scribble(&session)?;
    Err("deliberate failure after writing".into())
}

#[with_session(autosave)]
async fn panic_after_write(session: SocketSession) -> Result<(), SessionError> {
    scribble(&session)?;
    panic!("deliberate panic after writing");
}

/// What a failing handler writes before it fails: none of it may reach the store.
pub(crate) fn scribble(session: &SocketSession) -> Result<(), SessionError> {
    session.insert("count", 1000)?;
    session.insert("user", "mallory")
}

/// Lets a test see inside the `hold` handler: it signals `entered` once it holds the
/// session's lock, then waits for a permit of `release`.
pub struct HoldProbe {
    /// Notified (one permit) each time a `hold` handler holds the lock.
    pub entered: Notify,
    /// One permit lets one waiting `hold` handler finish; starts with none.
    pub release: Semaphore,
}

impl Default for HoldProbe {
    fn default() -> Self {
        Self {
            entered: Notify::new(),
            release: Semaphore::new(0),
        }
    }
}

impl HoldProbe {
    /// Waits in the `hold` handler, holding the lock, until the test releases it.
    pub(crate) async fn hold(&self) {
        self.entered.notify_one();
        self.release
            .acquire()
            .await
            .expect("the probe's semaphore is never closed")
            .forget();
    }
}

#[with_session(autosave)]
async fn hold(
    State(probe): State<Arc<HoldProbe>>,
    session: SocketSession,
) -> Result<Value, SessionError> {
    session.insert("held", true)?;
    probe.hold().await;
    Ok(json!({ "ok": true }))
}

/// Counts the bodies of guarded handlers that ran (see [`crate::TestServer::runs`]).
#[derive(Clone, Default)]
pub struct Runs(pub(crate) Arc<AtomicUsize>);

impl Runs {
    fn count(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An error of the handler's own, refusing what the user asked for.
#[derive(Debug)]
pub struct Refused(pub &'static str);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl From<SessionError> for Refused {
    fn from(_: SessionError) -> Self {
        Refused("session error")
    }
}

/// Writes first, then may fail: a failure must save nothing.
#[with_session(autosave, require = "user")]
async fn spend(
    State(runs): State<Runs>,
    session: SocketSession,
    Data(amount): Data<i64>,
) -> Result<i64, Refused> {
    runs.count();
    let balance = session.get::<i64>("balance")?.unwrap_or(100) - amount;
    session.insert("balance", balance)?;
    if balance < 0 {
        return Err(Refused("not enough credit"));
    }
    Ok(balance)
}

/// The value of `cart`.
#[derive(Default, Serialize, Deserialize)]
pub struct Cart {
    /// What was added, in order.
    pub items: Vec<String>,
}

#[with_session(autosave, key = "cart")]
async fn add(mut cart: SessionData<Cart>, Data(item): Data<String>) -> usize {
    cart.items.push(item);
    cart.items.len()
}

#[with_session(readonly, require = "user")]
async fn member(session: ReadOnlySocketSession) -> Result<Option<String>, SessionError> {
    session.get("user")
}

/// Acknowledges by itself, before its save.
#[with_session(autosave)]
async fn note(session: SocketSession, ack: AckSender, Data(text): Data<String>) {
    let saved = session.insert("note", &text).is_ok();
    ack.send(&json!({ "noted": saved })).ok();
}

/// Writes, then leaves early or through `?`: the save and the ack run either way.
#[with_session(autosave)]
async fn tally(session: SocketSession, Data(step): Data<String>) -> Result<i64, SessionError> {
    session.insert("touched", true)?;
    if step == "early" {
        session.insert("tally", 7)?;
        return Ok(7);
    }
    // `label` holds a string in the tests: reading it as a number fails, and `?` leaves.
    let tally = session.get::<i64>("label")?.unwrap_or(0);
    Ok(tally)
}

/// The connect guard of [`MEMBERS`](crate::server::MEMBERS): a user, and not a banned one.
#[with_session(readonly, require = "user", connect)]
pub async fn members_only(session: ReadOnlySocketSession) -> Result<(), Refused> {
    match session.get::<bool>("banned") {
        Ok(Some(true)) => Err(Refused("this account is banned")),
        _ => Ok(()),
    }
}

//! The whole life of a session reaches its sockets: each socket of a session joins that
//! session's room, and whatever ends the session — a logout or an id rotation in any HTTP route
//! or socket handler, or the record's expiry — pushes [`GONE_EVENT`] to the room, on every node.
//!
//! Three sources, one push:
//! - **HTTP**: the session layer built by [`SocketSessions::layer`] keeps its records in a
//!   [`WatchedStore`], which sees every delete tower-sessions makes (`flush`, `cycle_id`). The
//!   lock layer around it tells a rotation (a delete, then a new record, in one request) from
//!   a logout, and pushes once the session layer has saved.
//! - **Sockets**: a transaction that deletes the session pushes once the delete is written.
//! - **Expiry**: each node keeps one timer per session that has sockets on it ([`Expiries`]);
//!   when it fires, the node reloads the record first, so a session another node extended is
//!   never pushed gone.
//!
//! And one catch-up: a push from another node is lost while this node's listener for their
//! messages is away (a reconnection). When it is back ([`SessionLocks::listener_returns`]),
//! [`Lifecycle::sweep`] checks the sessions of this node's sockets against the store and
//! pushes those that ended meanwhile.
//!
//! Room names travel to other nodes (a Redis adapter publishes them) and show up in the
//! adapter's room lists, so they carry a keyed hash of the session id, never the id itself:
//! whoever reads them can neither take over a session nor tell whether two rooms of different
//! keys belong to one session.
//!
//! [`SocketSessions::layer`]: crate::SocketSessions::layer

use std::{
    collections::{hash_map::Entry, HashMap, HashSet},
    fmt::{self, Write as _},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, OnceLock, PoisonError, Weak},
    time::Duration,
};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use socketioxide::{adapter::Adapter, SocketIo};
use tokio::sync::mpsc;
use tokio_util::time::{delay_queue, DelayQueue};
use tower_sessions::{
    cookie::time::OffsetDateTime,
    session::{Id, Record},
    session_store, SessionStore,
};

use crate::{
    locks::SessionLocks,
    users::{Change, Tracking, UserKey, Users},
    OnGone, SessionError, GONE_EVENT,
};

type HmacSha256 = Hmac<Sha256>;

/// What a room name starts with; the rest is 32 hex digits.
const ROOM_PREFIX: &str = "session:";

/// Domain separation: the secret given to `with_room_key` may be the cookie key, used
/// elsewhere for other things.
const ROOM_KEY_LABEL: &[u8] = b"session-runtime room key v1";

/// The shortest secret `with_room_key` takes: as long as the key it becomes.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// The protocol promises the push within 1 s; a broadcast that takes longer (a hung adapter)
/// has broken that promise, and holding the HTTP response for it helps nobody.
const PUSH_LIMIT: Duration = Duration::from_secs(1);

/// A push that could not be published to the other nodes is published again after this,
/// then after twice as long each time, up to [`REPUBLISH_LAST`], for [`REPUBLISH_FOR`].
const REPUBLISH_FIRST: Duration = Duration::from_millis(50);
const REPUBLISH_LAST: Duration = Duration::from_millis(400);
const REPUBLISH_FOR: Duration = Duration::from_secs(60);

/// A sweep asks the store about this many sessions at a time.
const SWEEP_BATCH: usize = 500;
/// A sweep's batch is asked this many times at most, the first pause 100 ms and doubling: the
/// store's connections may come back a little after the listener's.
const SWEEP_ATTEMPTS: u32 = 5;
const SWEEP_PAUSE: Duration = Duration::from_millis(100);

/// The reason pushed when a session is deleted (`flush`).
pub(crate) const LOGGED_OUT: &str = "logged out";
/// The reason pushed when a request deleted a session and created another (`cycle_id`).
pub(crate) const ROTATED: &str = "rotated";
/// The reason pushed when the record's expiry passed.
pub(crate) const EXPIRED: &str = "expired";
/// The reason pushed when every session of a user was ended at once.
pub(crate) const LOGGED_OUT_EVERYWHERE: &str = "logged out everywhere";

/// The key of the hash that names session rooms. Every node of a cluster must use the same.
#[derive(Clone)]
pub(crate) struct RoomKey([u8; 32]);

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomKey(..)")
    }
}

impl RoomKey {
    /// A key of this process only: enough while every socket and route live in it.
    pub(crate) fn random() -> Self {
        Self(rand::random())
    }

    /// Derives the key from `secret` (at least [`MIN_SECRET_LEN`] bytes).
    pub(crate) fn derive(secret: &[u8]) -> Self {
        assert!(
            secret.len() >= MIN_SECRET_LEN,
            "`with_room_key` needs a secret of at least {MIN_SECRET_LEN} bytes, got {}",
            secret.len()
        );
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(ROOM_KEY_LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    /// `session:<32 hex digits>`: 128 bits of HMAC-SHA256 of the id under this key.
    pub(crate) fn room(&self, id: Id) -> String {
        let mut room = String::with_capacity(ROOM_PREFIX.len() + 32);
        room.push_str(ROOM_PREFIX);
        self.write_hex(&mut room, &[&id.0.to_le_bytes()]);
        room
    }

    /// 128 bits of HMAC-SHA256 of `parts`, one after the other, in 32 hex digits.
    pub(crate) fn hex(&self, parts: &[&[u8]]) -> String {
        let mut hex = String::with_capacity(32);
        self.write_hex(&mut hex, parts);
        hex
    }

    fn write_hex(&self, out: &mut String, parts: &[&[u8]]) {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(part);
        }
        let digest = mac.finalize().into_bytes();
        for byte in &digest[..16] {
            write!(out, "{byte:02x}").expect("writing to a String never fails");
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How far a push goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Reach {
    /// Through the adapter: the sockets of every node (a logout is seen by one node only).
    AllNodes,
    /// This node's sockets (every node runs its own expiry timers).
    ThisNode,
}

/// Where a push goes: a socket.io server, its adapter type erased.
trait PushTarget: Send + Sync + 'static {
    /// Tells the sockets of every room of `rooms` (session rooms), in one adapter message
    /// per namespace for all of them. Each step through the adapter is bounded by
    /// [`PUSH_LIMIT`]. Returns whether the other nodes were reached: when they were not (the
    /// publish failed or hung), this node's sockets were told all the same.
    fn push<'a>(&'a self, rooms: Vec<String>, push: Push, reach: Reach) -> BoxFuture<'a, bool>;

    /// Whether a socket of this node is in `room`, in any namespace.
    fn has_local(&self, room: &str) -> bool;

    /// The sockets of session room `room`, on every node, leave room `leave` and join room
    /// `join`.
    fn move_rooms<'a>(
        &'a self,
        room: String,
        leave: Option<String>,
        join: Option<String>,
    ) -> BoxFuture<'a, ()>;

    /// How many sockets are in `room`, on every node, in every namespace.
    fn count<'a>(&'a self, room: String) -> BoxFuture<'a, Result<usize, String>>;
}

/// What to tell the sockets of a room, and what becomes of them.
#[derive(Clone, Debug)]
struct Push {
    event: &'static str,
    reason: &'static str,
    disconnect: bool,
    /// The room of the session's user, which its sockets leave too (`None`: no user known;
    /// on this node the sockets leave every user room they are in).
    user_room: Option<String>,
}

impl<A: Adapter> PushTarget for SocketIo<A> {
    fn push<'a>(&'a self, rooms: Vec<String>, push: Push, reach: Reach) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let data = serde_json::json!({ "reason": push.reason });
            let event = push.event;
            let select = |op: socketioxide::operators::BroadcastOperators<A>, reach| {
                let op = op.to(rooms.clone());
                match reach {
                    Reach::AllNodes => op,
                    Reach::ThisNode => op.local(),
                }
            };
            let mut reached = true;
            // Every namespace: a session's sockets may live in any of them.
            for op in self.nsps() {
                let ns = op.ns_path().to_owned();
                let mut reach = reach;
                if let Err(err) = bounded_step(select(op, reach).emit(event, &data)).await {
                    tracing::warn!(%ns, %err, "could not push `{event}` to a session's sockets");
                    if reach == Reach::AllNodes {
                        // The adapters publish to the other nodes before they deliver here, and
                        // give up on both when the publish fails: this node's sockets are told
                        // here, the other nodes by a publish again later.
                        reached = false;
                        reach = Reach::ThisNode;
                        if let Some(op) = self.of(&ns) {
                            let _ = select(op, reach).emit(event, &data).await;
                        }
                    }
                }
                // The emit consumed the namespace's operators.
                let Some(op) = self.of(&ns) else { continue };
                // The room stands for a session that no longer exists: its sockets leave it,
                // and their user's, so nothing later sent to either reaches them.
                let after = if push.disconnect {
                    let done = select(op, reach).disconnect();
                    bounded_step(async { done.await.map_err(|err| err.to_string()) }).await
                } else {
                    if reach == Reach::ThisNode && push.user_room.is_none() {
                        leave_user_rooms(op.clone().local().to(rooms.clone()).sockets());
                    }
                    let mut leave = rooms.clone();
                    leave.extend(push.user_room.clone());
                    bounded_step(select(op, reach).leave(leave)).await
                };
                if let Err(err) = after {
                    tracing::warn!(%ns, %err, "could not take a session's sockets out of its room");
                }
            }
            reached
        })
    }

    fn has_local(&self, room: &str) -> bool {
        self.nsps()
            .into_iter()
            .any(|op| !op.local().to(room.to_owned()).sockets().is_empty())
    }

    fn move_rooms<'a>(
        &'a self,
        room: String,
        leave: Option<String>,
        join: Option<String>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            for op in self.nsps() {
                let ns = op.ns_path().to_owned();
                let moved = async {
                    if let Some(leave) = &leave {
                        op.clone().to(room.clone()).leave(leave.clone()).await?;
                    }
                    if let Some(join) = &join {
                        op.clone().to(room.clone()).join(join.clone()).await?;
                    }
                    Ok::<_, A::Error>(())
                };
                if let Err(err) = moved.await {
                    tracing::warn!(%ns, %err, "could not move a session's sockets to their new user's room");
                }
            }
        })
    }

    fn count<'a>(&'a self, room: String) -> BoxFuture<'a, Result<usize, String>> {
        Box::pin(async move {
            let mut sockets = 0;
            for op in self.nsps() {
                let found = op.to(room.clone()).fetch_sockets().await;
                sockets += found.map_err(|err| err.to_string())?.len();
            }
            Ok(sockets)
        })
    }
}

/// This node's `sockets` leave every user room they are in (their session ended, and which
/// user it had is not known here).
/// One step of a push through the adapter, bounded by [`PUSH_LIMIT`]: why it failed, if it
/// did (a hung publish counts as failed).
async fn bounded_step<E: std::fmt::Display>(
    step: impl std::future::Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(PUSH_LIMIT, step).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {PUSH_LIMIT:?}")),
    }
}

fn leave_user_rooms<A: Adapter>(sockets: Vec<socketioxide::extract::SocketRef<A>>) {
    for socket in sockets {
        let rooms: Vec<_> = socket
            .rooms()
            .into_iter()
            .filter(|room| UserKey::is_user_room(room))
            .collect();
        if !rooms.is_empty() {
            socket.leave(rooms);
        }
    }
}

/// What a session's end and its expiry need, shared by the socket side, the lock layer and
/// the [`WatchedStore`]: the rooms' key, the policy, the server to push through, the expiry
/// timers and the sessions being touched.
pub(crate) struct Lifecycle {
    key: RoomKey,
    on_gone: OnGone,
    target: OnceLock<Arc<dyn PushTarget>>,
    /// The records, for the expiry check's reload.
    store: Arc<dyn SessionStore>,
    expiries: OnceLock<mpsc::UnboundedSender<Timer>>,
    /// Sessions whose expiry a socket event is extending now: one touch at a time.
    touching: Mutex<HashSet<Id>>,
    /// Who each session's user is, and the index of their sessions, if the app said.
    users: Option<Arc<Tracking>>,
    /// Set once the missing-wiring error has been logged.
    warned: std::sync::atomic::AtomicBool,
    /// The locks whose listener's returns start a sweep (see [`Lifecycle::sweep`]), given with
    /// the server to push through.
    sweeps: OnceLock<Arc<dyn SessionLocks>>,
    /// Set once the task that waits for those returns runs.
    sweeping: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lifecycle")
            .field("on_gone", &self.on_gone)
            .field("pushes", &self.target.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Lifecycle {
    pub(crate) fn new(
        key: RoomKey,
        on_gone: OnGone,
        store: Arc<dyn SessionStore>,
        users: Option<Users>,
    ) -> Self {
        Self {
            users: users.map(|users| {
                Arc::new(Tracking {
                    users,
                    key: key.clone(),
                })
            }),
            key,
            on_gone,
            target: OnceLock::new(),
            store,
            expiries: OnceLock::new(),
            touching: Mutex::default(),
            warned: Default::default(),
            sweeps: OnceLock::new(),
            sweeping: Default::default(),
        }
    }

    /// `user` as rooms and the index know it.
    pub(crate) fn user_key(&self, user: &str) -> UserKey {
        UserKey::of(&self.key, user)
    }

    /// Who sessions' users are, if the app said (`SocketSessions::with_users`).
    pub(crate) fn users(&self) -> Option<&Arc<Tracking>> {
        self.users.as_ref()
    }

    /// How many sockets are in `room` on every node; `None` without a server to ask.
    pub(crate) async fn count(&self, room: String) -> Option<Result<usize, String>> {
        let target = self.target.get()?;
        Some(
            tokio::time::timeout(PUSH_LIMIT, target.count(room))
                .await
                .unwrap_or_else(|_| Err(format!("no answer within {PUSH_LIMIT:?}"))),
        )
    }

    /// Session `id`'s user changed (`change`): its sockets, on every node, leave the old
    /// user's room and join the new one's.
    pub(crate) async fn user_moved(&self, id: Id, change: &Change) {
        let Some(target) = self.target.get() else {
            return;
        };
        let moved = target.move_rooms(
            self.room(id),
            change.old.as_ref().map(UserKey::room),
            change.new.as_ref().map(UserKey::room),
        );
        if tokio::time::timeout(PUSH_LIMIT, moved).await.is_err() {
            tracing::warn!("moving a session's sockets to their new user's room took over {PUSH_LIMIT:?}; gave up");
        }
    }

    pub(crate) fn room(&self, id: Id) -> String {
        self.key.room(id)
    }

    /// Pushes through `io` from now on, and sweeps this node's sessions each time the
    /// listener of `locks` comes back. The first server given wins: one `SocketSessions`
    /// serves one socket.io server.
    pub(crate) fn push_through<A: Adapter>(
        self: &Arc<Self>,
        io: SocketIo<A>,
        locks: Arc<dyn SessionLocks>,
    ) {
        if self.target.set(Arc::new(io)).is_err() {
            tracing::debug!("`SocketSessions` already pushes through a socket.io server");
            return;
        }
        let _ = self.sweeps.set(locks);
        if self.expiries.get().is_some() {
            self.start_sweeps();
        }
    }

    /// Starts, once, the task that asks for a sweep each time the listener of the locks
    /// comes back: from the first socket's timers, or from [`Lifecycle::push_through`] if
    /// sockets came first. Without a runtime here, the first socket starts it.
    fn start_sweeps(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        let Some(locks) = self.sweeps.get() else {
            return;
        };
        let Some(mut returns) = locks.listener_returns() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        returns.mark_unchanged();
        let lifecycle = Arc::downgrade(self);
        let locks = locks.clone();
        runtime.spawn(async move {
            while returns.changed().await.is_ok() {
                let Some(lifecycle) = lifecycle.upgrade() else {
                    return;
                };
                lifecycle.send(Timer::Sweep(locks.clone()));
            }
        });
    }

    /// Checks `ids`, the sessions with sockets on this node, against the store, and pushes
    /// those that ended to their sockets here. The listener for the other nodes' messages
    /// was away: a push of theirs meanwhile was lost, and the end it told of is found here
    /// instead, as an absent (or expired) record.
    async fn sweep(self: Arc<Self>, ids: Vec<Id>, locks: Arc<dyn SessionLocks>) {
        let mut gone = Vec::new();
        for batch in ids.chunks(SWEEP_BATCH) {
            let mut pause = SWEEP_PAUSE;
            let mut attempt = 1;
            let live = loop {
                let asked = tokio::time::timeout(PUSH_LIMIT * 3, locks.live(batch, &*self.store));
                let err = match asked.await {
                    Ok(Ok(live)) if live.len() == batch.len() => break live,
                    Ok(Ok(live)) => format!("{} answers for {} sessions", live.len(), batch.len()),
                    Ok(Err(err)) => err.to_string(),
                    Err(_) => format!("no answer within {:?}", PUSH_LIMIT * 3),
                };
                if attempt == SWEEP_ATTEMPTS {
                    tracing::warn!(%err, sessions = batch.len(), "could not check this node's sessions after the listener came back; pushes lost meanwhile stay lost");
                    return;
                }
                tracing::debug!(%err, attempt, "could not check this node's sessions; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            };
            gone.extend(
                batch
                    .iter()
                    .zip(live)
                    .filter_map(|(id, live)| (!live).then_some(*id)),
            );
        }
        tracing::info!(
            checked = ids.len(),
            ended = gone.len(),
            "checked this node's sessions after the listener for the other nodes came back"
        );
        for id in &gone {
            self.forget(*id);
        }
        self.push(&gone, LOGGED_OUT, Reach::ThisNode, None).await;
    }

    /// Reports, once, a wiring that leaves sockets deaf to the end of their session: no
    /// server to push through, or a handshake (`wired`: false) that did not pass the lock
    /// layer, so HTTP logouts on that path are not seen.
    pub(crate) fn check_wiring(&self, wired: bool) {
        let missing = match (wired, self.target.get().is_some()) {
            (true, true) => return,
            (false, _) => {
                "the socket.io handshake did not pass through `SocketSessions::layer` \
                           (or `lock_layer`), so logouts and rotations over HTTP reach no socket"
            }
            (true, false) => {
                "no socket.io server to push through: build the HTTP side with \
                              `SocketSessions::layer(io, ..)`"
            }
        };
        if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!("sockets are attached but {missing}");
        }
    }

    fn push_of(&self, reason: &'static str, user: Option<&UserKey>) -> Push {
        let user_room = user.map(UserKey::room);
        match self.on_gone {
            OnGone::KeepAnonymous => Push {
                event: GONE_EVENT,
                reason,
                disconnect: false,
                user_room,
            },
            OnGone::Disconnect { event } => Push {
                event,
                reason,
                disconnect: true,
                user_room,
            },
        }
    }

    /// Session `id` of `user` has ended (`reason`): tell its sockets on every node, then
    /// apply the policy (they leave the session's room and the user's, or are disconnected).
    /// Bounded: a hung adapter does not hold the caller.
    pub(crate) async fn ended(&self, id: Id, reason: &'static str, user: Option<&UserKey>) {
        self.ended_all(&[id], reason, user).await;
    }

    /// Sessions `ids`, all of `user`, have ended (`reason`): as [`Lifecycle::ended`], in one
    /// push for all. A push per session would send two adapter messages each, a burst that
    /// the other nodes' subscribers may not keep up with.
    pub(crate) async fn ended_all(&self, ids: &[Id], reason: &'static str, user: Option<&UserKey>) {
        for id in ids {
            self.forget(*id);
        }
        self.push(ids, reason, Reach::AllNodes, user).await;
    }

    async fn push(&self, ids: &[Id], reason: &'static str, reach: Reach, user: Option<&UserKey>) {
        if ids.is_empty() {
            return;
        }
        let Some(target) = self.target.get() else {
            self.check_wiring(true);
            return;
        };
        let push = self.push_of(reason, user);
        let event = push.event;
        let rooms: Vec<String> = ids.iter().map(|id| self.room(*id)).collect();
        if target.push(rooms.clone(), push.clone(), reach).await {
            tracing::debug!(reason, "pushed `{event}` to the session's sockets");
            return;
        }
        // This node's sockets were told, and left the rooms: a publish again reaches the
        // other nodes' only. Their listeners may be fine (this node alone lost the
        // database), so no sweep of theirs would find the end: publish until it goes out.
        let target = target.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let mut pause = REPUBLISH_FIRST;
            loop {
                tokio::time::sleep(pause).await;
                if target
                    .push(rooms.clone(), push.clone(), Reach::AllNodes)
                    .await
                {
                    tracing::info!(reason, waited = ?started.elapsed(), "published `{event}` to the other nodes after failing to");
                    return;
                }
                if started.elapsed() >= REPUBLISH_FOR {
                    tracing::warn!(reason, "could not publish `{event}` to the other nodes for {REPUBLISH_FOR:?}; gave up (their sockets learn the end at their next event)");
                    return;
                }
                pause = (pause * 2).min(REPUBLISH_LAST);
            }
        });
    }

    /// The expiry timers' task, started with the first socket.
    fn timers(self: &Arc<Self>) -> &mpsc::UnboundedSender<Timer> {
        if let Some(tx) = self.expiries.get() {
            return tx;
        }
        self.expiries.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let expiries = Expiries {
                lifecycle: Arc::downgrade(self),
                tx: tx.downgrade(),
                rx,
                sessions: HashMap::new(),
                queue: DelayQueue::new(),
            };
            tokio::spawn(expiries.run());
            tx
        });
        self.start_sweeps();
        self.expiries.get().expect("initialised above")
    }

    fn send(&self, timer: Timer) {
        if let Some(tx) = self.expiries.get() {
            // The task ends only with the lifecycle: nothing to do if it is gone.
            let _ = tx.send(timer);
        }
    }

    /// A socket of session `id` arrived on this node: its session is known here (for
    /// [`Lifecycle::sweep`]), and its expiry watched as `expires` says, until the returned
    /// guard drops.
    pub(crate) fn watch(self: &Arc<Self>, id: Id, expires: Expires) -> ExpiryWatch {
        let _ = self.timers().send(Timer::Watch(id, expires));
        ExpiryWatch {
            id,
            lifecycle: Arc::downgrade(self),
        }
    }

    /// The record of `id` now expires at `at` (a save on this node).
    pub(crate) fn moved(&self, id: Id, at: OffsetDateTime) {
        self.send(Timer::Moved(id, at));
    }

    /// Session `id` ended on this node: its timer goes.
    fn forget(&self, id: Id) {
        self.send(Timer::Forget(id));
    }

    /// Claims the touch of `id`, or `None` while another event touches it.
    pub(crate) fn start_touch(self: &Arc<Self>, id: Id) -> Option<TouchClaim> {
        let mut touching = self.touching.lock().unwrap_or_else(PoisonError::into_inner);
        touching.insert(id).then(|| TouchClaim {
            id,
            lifecycle: self.clone(),
        })
    }
}

/// Held while one event extends a session's expiry.
pub(crate) struct TouchClaim {
    id: Id,
    lifecycle: Arc<Lifecycle>,
}

impl Drop for TouchClaim {
    fn drop(&mut self) {
        self.lifecycle
            .touching
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// One socket's interest in its session's expiry; dropping it (the socket is gone) lets the
/// timer go with the session's last socket on this node.
pub(crate) struct ExpiryWatch {
    id: Id,
    lifecycle: Weak<Lifecycle>,
}

impl Drop for ExpiryWatch {
    fn drop(&mut self) {
        if let Some(lifecycle) = self.lifecycle.upgrade() {
            lifecycle.send(Timer::Unwatch(self.id));
        }
    }
}

/// When a watched session's record expires.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Expires {
    /// At this instant, as the settings say (`AtDateTime`).
    At(OffsetDateTime),
    /// When its record says (`OnInactivity`): the timer reloads it to learn when.
    Unknown,
    /// Not of itself (no expiry set): it ends by a logout, which is pushed anyway.
    Never,
}

/// What the timers' task is told.
enum Timer {
    Watch(Id, Expires),
    Unwatch(Id),
    Moved(Id, OffsetDateTime),
    Forget(Id),
    /// A check found the record alive until this instant (or gone: `None`).
    Checked(Id, Option<OffsetDateTime>),
    /// The listener of these locks came back: check every session watched here.
    Sweep(Arc<dyn SessionLocks>),
}

/// One session watched on this node.
struct Watched {
    sockets: u32,
    /// The queue's entry; `None` while a check runs.
    key: Option<delay_queue::Key>,
    /// When the record expires, as last seen; `None` before the first check.
    at: Option<OffsetDateTime>,
}

/// The expiry timers of one node: one entry per session that has sockets here, in one delay
/// queue, whatever the number of sockets.
struct Expiries {
    lifecycle: Weak<Lifecycle>,
    rx: mpsc::UnboundedReceiver<Timer>,
    tx: mpsc::WeakUnboundedSender<Timer>,
    sessions: HashMap<Id, Watched>,
    queue: DelayQueue<Id>,
}

impl Expiries {
    async fn run(mut self) {
        loop {
            tokio::select! {
                timer = self.rx.recv() => match timer {
                    Some(timer) => self.apply(timer),
                    None => return,
                },
                Some(fired) = std::future::poll_fn(|cx| self.queue.poll_expired(cx)) => {
                    let id = fired.into_inner();
                    if let Some(watched) = self.sessions.get_mut(&id) {
                        watched.key = None;
                        self.check(id);
                    }
                }
            }
        }
    }

    fn apply(&mut self, timer: Timer) {
        match timer {
            Timer::Watch(id, at) => match self.sessions.entry(id) {
                Entry::Occupied(mut entry) => entry.get_mut().sockets += 1,
                Entry::Vacant(entry) => {
                    entry.insert(Watched {
                        sockets: 1,
                        key: None,
                        at: None,
                    });
                    match at {
                        Expires::At(at) => self.schedule(id, at),
                        Expires::Unknown => self.check(id),
                        Expires::Never => {}
                    }
                }
            },
            Timer::Unwatch(id) => {
                if let Entry::Occupied(mut entry) = self.sessions.entry(id) {
                    entry.get_mut().sockets -= 1;
                    if entry.get().sockets == 0 {
                        if let Some(key) = entry.remove().key {
                            self.queue.remove(&key);
                        }
                    }
                }
            }
            Timer::Moved(id, at) => {
                if self.sessions.get(&id).is_some_and(|w| w.key.is_some()) {
                    self.schedule(id, at);
                }
            }
            Timer::Forget(id) => {
                if let Some(key) = self.sessions.remove(&id).and_then(|w| w.key) {
                    self.queue.remove(&key);
                }
            }
            Timer::Checked(id, Some(at)) => {
                if self.sessions.contains_key(&id) {
                    self.schedule(id, at);
                }
            }
            Timer::Checked(id, None) => {
                self.sessions.remove(&id);
            }
            Timer::Sweep(locks) => {
                if let Some(lifecycle) = self.lifecycle.upgrade() {
                    let ids = self.sessions.keys().copied().collect();
                    tokio::spawn(lifecycle.sweep(ids, locks));
                }
            }
        }
    }

    /// (Re)arms the timer of `id` for `at`.
    fn schedule(&mut self, id: Id, at: OffsetDateTime) {
        let Some(watched) = self.sessions.get_mut(&id) else {
            return;
        };
        watched.at = Some(at);
        let now = OffsetDateTime::now_utc();
        let left = (at - now).try_into().unwrap_or(Duration::ZERO);
        let when = tokio::time::Instant::now() + left;
        match &watched.key {
            Some(key) => self.queue.reset_at(key, when),
            None => watched.key = Some(self.queue.insert_at(id, when)),
        }
    }

    /// Reloads the record of `id` off this task, then pushes `expired` to this node's sockets
    /// if the record is gone, or re-arms the timer for its (maybe extended) expiry.
    fn check(&mut self, id: Id) {
        let (Some(lifecycle), Some(tx)) = (self.lifecycle.upgrade(), self.tx.upgrade()) else {
            return;
        };
        let was_alive = self.sessions.get(&id).is_some_and(|w| w.at.is_some());
        tokio::spawn(async move {
            let now = OffsetDateTime::now_utc();
            let loaded = tokio::time::timeout(PUSH_LIMIT * 3, lifecycle.store.load(&id)).await;
            let at = match loaded {
                Ok(Ok(record)) => record.map(|r| r.expiry_date).filter(|at| *at > now),
                // The store is away: look again shortly rather than declare the session gone.
                Ok(Err(_)) | Err(_) => {
                    tracing::debug!("could not reload a session for its expiry; retrying");
                    Some(now + Duration::from_secs(1))
                }
            };
            if at.is_none() && was_alive {
                let room = lifecycle.room(id);
                let target = lifecycle.target.get();
                if target.is_some_and(|t| t.has_local(&room)) {
                    lifecycle.push(&[id], EXPIRED, Reach::ThisNode, None).await;
                }
            }
            let _ = tx.send(Timer::Checked(id, at));
        });
    }
}

tokio::task_local! {
    /// What one HTTP request did to the store, seen by the [`WatchedStore`] and read by the
    /// lock layer once the session layer has saved.
    static REQUEST: Arc<Mutex<RequestEnds>>;
}

/// The deletes and creates of one request, and whether a write of it failed.
#[derive(Default, Debug)]
pub(crate) struct RequestEnds {
    /// Each session deleted, with its user (if any).
    deleted: Vec<(Id, Option<UserKey>)>,
    created: bool,
    failed: bool,
    /// The user of each record as the request loaded or last wrote it (with users on).
    users: HashMap<Id, Option<UserKey>>,
    /// Sessions whose user the request changed: their sockets move rooms after it.
    moves: Vec<(Id, Change)>,
    /// The record the request loaded last, and its expiry then.
    loaded: Option<(Id, OffsetDateTime)>,
    /// A session whose expiry the request already moved (`activity`): the session layer's
    /// save of it, there only to send the cookie, writes nothing.
    touched: Option<Id>,
}

/// The expiry of `id`'s record as this request loaded it, if it did.
pub(crate) fn loaded_expiry(id: Id) -> Option<OffsetDateTime> {
    REQUEST
        .try_with(|ends| {
            let ends = ends.lock().unwrap_or_else(PoisonError::into_inner);
            ends.loaded
                .filter(|(loaded, _)| *loaded == id)
                .map(|(_, at)| at)
        })
        .ok()
        .flatten()
}

/// Notes that this request moved the expiry of `id` already; false outside a request of the
/// lock layer (then nothing would keep the session layer's save from writing).
pub(crate) fn touched_in_request(id: Id) -> bool {
    in_request(|ends| ends.touched = Some(id))
}

/// Whether a write of the request's session failed (the session layer then answers a bare
/// 500 in place of the route's answer).
pub(crate) fn request_write_failed(ends: &Mutex<RequestEnds>) -> bool {
    ends.lock().unwrap_or_else(PoisonError::into_inner).failed
}

/// Runs `request` in a scope whose deletes are pushed by [`push_request_ends`] instead of at
/// once, so that a delete followed by a create (a rotation) is told apart from a logout.
pub(crate) async fn in_request_scope<F: Future>(
    ends: Arc<Mutex<RequestEnds>>,
    request: F,
) -> F::Output {
    REQUEST.scope(ends, request).await
}

/// Pushes what the request ended: every id it deleted, `rotated` if it also created a record;
/// then moves the sockets of sessions whose user it changed.
pub(crate) async fn push_request_ends(lifecycle: &Lifecycle, ends: &Mutex<RequestEnds>) {
    let RequestEnds {
        deleted,
        created,
        moves,
        ..
    } = std::mem::take(&mut *ends.lock().unwrap_or_else(PoisonError::into_inner));
    let reason = if created { ROTATED } else { LOGGED_OUT };
    for (id, user) in &deleted {
        lifecycle.ended(*id, reason, user.as_ref()).await;
    }
    for (id, change) in moves {
        if !deleted.iter().any(|(gone, _)| *gone == id) {
            lifecycle.user_moved(id, &change).await;
        }
    }
}

/// The session store of the session layer that [`SocketSessions::layer`] builds: the store
/// given to [`SocketSessions::new`], watched, so that every session an HTTP route ends
/// (`flush`, `cycle_id`, through `tower_sessions::Session` or
/// [`LockedSession`](crate::http::LockedSession)) is pushed to its sockets and every save
/// moves the session's expiry timer.
///
/// Made by [`SocketSessions::session_layer`] for setups that assemble the layers by hand.
/// Sessions HTTP routes end through another store (a session layer of your own on the inner
/// store) are not pushed: their sockets learn at their next event.
///
/// ```
/// use session_runtime::{http::WatchedStore, SocketSessions};
/// use tower_sessions::{MemoryStore, SessionManagerLayer};
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let session_layer: SessionManagerLayer<WatchedStore> = sessions.session_layer();
/// ```
///
/// [`SocketSessions::layer`]: crate::SocketSessions::layer
/// [`SocketSessions::new`]: crate::SocketSessions::new
/// [`SocketSessions::session_layer`]: crate::SocketSessions::session_layer
#[derive(Clone)]
pub struct WatchedStore {
    pub(crate) inner: Arc<dyn SessionStore>,
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// Bounds every call: a store whose client waits forever for a hung server (a paused
    /// PostgreSQL answers no statement) must not hold a plain `Session` route forever.
    pub(crate) bounds: crate::Timeouts,
}

impl fmt::Debug for WatchedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchedStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn in_request(f: impl FnOnce(&mut RequestEnds)) -> bool {
    REQUEST
        .try_with(|ends| f(&mut ends.lock().unwrap_or_else(PoisonError::into_inner)))
        .is_ok()
}

impl WatchedStore {
    /// The user of `id`'s record as it stands before a write: as this request loaded or last
    /// wrote it, or, if it has not, read from the store (only then an extra load).
    async fn user_before(
        &self,
        tracking: &Tracking,
        id: &Id,
    ) -> session_store::Result<Option<UserKey>> {
        let mut known = None;
        in_request(|ends| known = ends.users.get(id).cloned());
        if let Some(user) = known {
            return Ok(user);
        }
        let record = self.bounded(self.inner.load(id)).await?;
        Ok(record.and_then(|r| tracking.key_of(&r.data)))
    }

    /// Writes `record` with `write`, keeping the index of users in order around it: the new
    /// user gains the session before, the old one loses it after.
    async fn write_indexed<F>(
        &self,
        old: Option<UserKey>,
        record_id: Id,
        new: Option<UserKey>,
        write: F,
    ) -> session_store::Result<Id>
    where
        F: Future<Output = session_store::Result<Id>>,
    {
        let Some(tracking) = self.lifecycle.users() else {
            return write.await;
        };
        let change = Change::between(old, new.clone());
        if let Some(change) = &change {
            noted(
                change
                    .before(tracking, record_id)
                    .await
                    .map_err(store_error),
            )?;
        }
        let id = noted(write.await)?;
        if let Some(change) = change {
            if id != record_id {
                // The store chose another id (a collision): the index follows.
                let moved = Change::between(None, change.new.clone()).unwrap_or_default();
                noted(moved.before(tracking, id).await.map_err(store_error))?;
                Change::between(change.new.clone(), None)
                    .unwrap_or_default()
                    .after(tracking, record_id)
                    .await;
            }
            change.after(tracking, id).await;
            if !in_request(|ends| ends.moves.push((id, change.clone()))) {
                self.lifecycle.user_moved(id, &change).await;
            }
        }
        in_request(|ends| {
            ends.users.insert(id, new);
        });
        Ok(id)
    }

    /// `op`, or a store error once the store bound has passed.
    async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = session_store::Result<T>>,
    ) -> session_store::Result<T> {
        self.bounds
            .store_call(async { op.await.map_err(SessionError::Store) })
            .await
            .map_err(|err| match err {
                SessionError::Store(err) => err,
                other => session_store::Error::Backend(other.to_string()),
            })
    }
}

/// `written`, noting a failure in the request's scope (if any).
fn noted<T>(written: session_store::Result<T>) -> session_store::Result<T> {
    if written.is_err() {
        in_request(|ends| ends.failed = true);
    }
    written
}

fn store_error(err: SessionError) -> session_store::Error {
    match err {
        SessionError::Store(err) => err,
        other => session_store::Error::Backend(other.report()),
    }
}

#[async_trait::async_trait]
impl SessionStore for WatchedStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let new = self.lifecycle.users().and_then(|t| t.key_of(&record.data));
        let id = record.id;
        let write = async {
            self.bounded(self.inner.create(record)).await?;
            Ok(record.id)
        };
        // A new record: no user before it.
        let written = self.write_indexed(None, id, new, write).await;
        written?;
        in_request(|ends| ends.created = true);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let mut touched = false;
        in_request(|ends| touched = ends.touched.take_if(|id| *id == record.id).is_some());
        if touched {
            return Ok(());
        }
        let write = async {
            self.bounded(self.inner.save(record)).await?;
            Ok(record.id)
        };
        match self.lifecycle.users() {
            None => noted(write.await).map(drop)?,
            Some(tracking) => {
                let old = noted(self.user_before(tracking, &record.id).await)?;
                let new = tracking.key_of(&record.data);
                self.write_indexed(old, record.id, new, write).await?;
            }
        }
        self.lifecycle.moved(record.id, record.expiry_date);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let record = self.bounded(self.inner.load(id)).await?;
        if let Some(record) = &record {
            in_request(|ends| ends.loaded = Some((*id, record.expiry_date)));
        }
        if let Some(tracking) = self.lifecycle.users() {
            let user = record.as_ref().and_then(|r| tracking.key_of(&r.data));
            in_request(|ends| {
                ends.users.insert(*id, user);
            });
        }
        Ok(record)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        let user = match self.lifecycle.users() {
            Some(tracking) => noted(self.user_before(tracking, id).await)?,
            None => None,
        };
        noted(self.bounded(self.inner.delete(id)).await)?;
        if let (Some(tracking), Some(change)) =
            (self.lifecycle.users(), Change::between(user.clone(), None))
        {
            change.after(tracking, *id).await;
        }
        // Inside a request the lock layer pushes once the session layer has saved (and knows
        // whether a new record followed); elsewhere (a task of the app's) at once.
        let noted_here = in_request(|ends| {
            ends.users.insert(*id, None);
            ends.deleted.push((*id, user.clone()));
        });
        if !noted_here {
            self.lifecycle.ended(*id, LOGGED_OUT, user.as_ref()).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_depend_on_the_key_and_never_show_the_id() {
        let id = Id::default();
        let key = RoomKey::derive(&[7; 64]);
        let room = key.room(id);
        assert_eq!(room, RoomKey::derive(&[7; 64]).room(id), "nodes must agree");
        assert_ne!(room, RoomKey::derive(&[8; 64]).room(id));
        assert_ne!(room, key.room(Id::default()));
        assert_eq!(room.len(), ROOM_PREFIX.len() + 32);
        assert!(!room.contains(&id.to_string()) && !room.contains(&id.0.to_string()));
    }

    #[test]
    #[should_panic(expected = "at least 32 bytes")]
    fn a_short_secret_is_refused() {
        RoomKey::derive(b"too short");
    }
}

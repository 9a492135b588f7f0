//! Logout reaches every socket at once: each socket of a session joins that session's room,
//! and an HTTP request that logs the session out or rotates its id through
//! [`LockedSession`](crate::http::LockedSession) pushes [`GONE_EVENT`] to the room.
//!
//! Room names travel to other nodes (a Redis adapter publishes them) and show up in the
//! adapter's room lists, so they carry a keyed hash of the session id, never the id itself:
//! whoever reads them can neither take over a session nor tell whether two rooms of different
//! keys belong to one session.

use std::{
    fmt::{self, Write as _},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use socketioxide::{adapter::Adapter, SocketIo};
use tower_sessions::{session::Id, Session};

use crate::{OnGone, GONE_EVENT};

type HmacSha256 = Hmac<Sha256>;

/// What a room name starts with; the rest is 32 hex digits.
const ROOM_PREFIX: &str = "session:";

/// Domain separation: the secret given to `room_key` may be the cookie key, used elsewhere
/// for other things.
const ROOM_KEY_LABEL: &[u8] = b"session-runtime room key v1";

/// The shortest secret `room_key` takes: as long as the key it becomes.
pub(crate) const MIN_SECRET_LEN: usize = 32;

/// The protocol promises the push within 1 s; a broadcast that takes longer (a hung adapter)
/// has broken that promise, and holding the HTTP response for it helps nobody.
const PUSH_LIMIT: Duration = Duration::from_secs(1);

/// The reason pushed when the request ended without a session (`flush`).
pub(crate) const LOGGED_OUT: &str = "logged out";
/// The reason pushed when the request ended with another id (`cycle_id`).
pub(crate) const ROTATED: &str = "rotated";

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
            "`room_key` needs a secret of at least {MIN_SECRET_LEN} bytes, got {}",
            secret.len()
        );
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(ROOM_KEY_LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    /// `session:<32 hex digits>`: 128 bits of HMAC-SHA256 of the id under this key.
    pub(crate) fn room(&self, id: Id) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(&id.0.to_le_bytes());
        let digest = mac.finalize().into_bytes();
        let mut room = String::with_capacity(ROOM_PREFIX.len() + 32);
        room.push_str(ROOM_PREFIX);
        for byte in &digest[..16] {
            write!(room, "{byte:02x}").expect("writing to a String never fails");
        }
        room
    }
}

/// Where a push goes: a socket.io server, its adapter type erased.
trait PushTarget: Send + Sync + 'static {
    fn push<'a>(
        &'a self,
        room: String,
        event: &'static str,
        reason: &'static str,
        disconnect: bool,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

impl<A: Adapter> PushTarget for SocketIo<A> {
    fn push<'a>(
        &'a self,
        room: String,
        event: &'static str,
        reason: &'static str,
        disconnect: bool,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let data = serde_json::json!({ "reason": reason });
            // Every namespace: a session's sockets may live in any of them. Through the
            // adapter, so the sockets of other nodes hear it too.
            for op in self.nsps() {
                let ns = op.ns_path().to_owned();
                if let Err(err) = op.to(room.clone()).emit(event, &data).await {
                    tracing::warn!(%ns, %err, "could not push `{event}` to a session's sockets");
                }
                if !disconnect {
                    continue;
                }
                // The emit consumed the namespace's operators.
                let Some(op) = self.of(&ns) else { continue };
                if let Err(err) = op.to(room.clone()).disconnect().await {
                    tracing::warn!(%ns, %err, "could not disconnect a session's sockets");
                }
            }
        })
    }
}

/// The push half of [`SessionLockLayer`](crate::http::SessionLockLayer): the rooms' key and
/// the policy (from [`SocketSessions`](crate::SocketSessions)), and the server to push through
/// (from `push_gone`). Pushes only when it has both.
#[derive(Clone, Default)]
pub(crate) struct GonePush {
    rooms: Option<(RoomKey, OnGone)>,
    target: Option<Arc<dyn PushTarget>>,
}

impl GonePush {
    pub(crate) fn new(key: RoomKey, on_gone: OnGone) -> Self {
        Self {
            rooms: Some((key, on_gone)),
            target: None,
        }
    }

    pub(crate) fn through<A: Adapter>(mut self, io: SocketIo<A>) -> Self {
        if self.rooms.is_none() {
            tracing::warn!(
                "`push_gone` on a `SessionLockLayer` not made by `SocketSessions::lock_layer`: \
                 it does not know the sockets' rooms, so it pushes nothing"
            );
        }
        self.target = Some(Arc::new(io));
        self
    }

    /// A watch for one request.
    pub(crate) fn watch(&self) -> GoneWatch {
        GoneWatch {
            push: self.clone(),
            before: Arc::default(),
        }
    }
}

/// One request's view: the session a `LockedSession` took, with its id at that moment.
#[derive(Clone, Default)]
pub(crate) struct GoneWatch {
    push: GonePush,
    before: Arc<Mutex<Option<(Id, Session)>>>,
}

impl GoneWatch {
    /// Called by `LockedSession` once it holds the lock of `id`.
    pub(crate) fn watch(&self, id: Id, session: &Session) {
        if self.push.target.is_some() {
            *self.before.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((id, session.clone()));
        }
    }

    /// Called once the session layer has saved: pushes to the old id's room if the request
    /// ended without that id (logged out or rotated).
    pub(crate) async fn after_save(&self) {
        let Some((before, session)) = self
            .before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return;
        };
        let (Some((key, on_gone)), Some(target)) = (&self.push.rooms, &self.push.target) else {
            return;
        };
        let reason = match session.id() {
            None => LOGGED_OUT,
            Some(after) if after != before => ROTATED,
            Some(_) => return,
        };
        let (event, disconnect) = match *on_gone {
            OnGone::KeepAnonymous => (GONE_EVENT, false),
            OnGone::Disconnect { event } => (event, true),
        };
        let push = target.push(key.room(before), event, reason, disconnect);
        match tokio::time::timeout(PUSH_LIMIT, push).await {
            Ok(()) => tracing::debug!(reason, "pushed `{event}` to the session's sockets"),
            Err(_) => tracing::warn!(
                reason,
                "pushing `{event}` took over {PUSH_LIMIT:?}; gave up"
            ),
        }
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

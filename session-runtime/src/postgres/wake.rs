//! Wake-ups of the writers waiting for a lease another node holds: the release notifies the
//! tag each waiter left on the lease (`schema.sql`), and one `LISTEN` connection per
//! [`PostgresSessions`](super::PostgresSessions), opened at the first wait, wakes the waiter.
//! A notification can be lost (the connection died, or it came before the listener was in
//! place): waiters ask again after [`LONGEST_WAIT`] at most all the same.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use sqlx::PgPool;
use tokio::sync::Notify;
use tower_sessions::session::Id;

/// The channel of the releases' notifications.
const CHANNEL: &str = "tower_sessions_lease";

/// How long a waiter waits for a wake-up before asking again anyway.
pub(crate) const LONGEST_WAIT: Duration = Duration::from_millis(50);

/// The waiters of one process, by tag.
#[derive(Default)]
pub(crate) struct Wakes {
    waiting: Mutex<HashMap<String, Arc<Notify>>>,
    /// The listener, started at the first wait, aborted with the sessions.
    listener: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Drop for Wakes {
    fn drop(&mut self) {
        let listener = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = listener.take() {
            task.abort();
        }
    }
}

impl Wakes {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new waiter, with a random tag of its own (never a session id: any role of the
    /// database may listen to the channel). Cheap: nothing is asked of the database.
    pub(crate) fn waiter(self: &Arc<Self>) -> Waiter {
        let tag = Id::default().to_string();
        let notify = Arc::new(Notify::new());
        self.waiting().insert(tag.clone(), notify.clone());
        Waiter {
            wakes: self.clone(),
            tag,
            notify,
        }
    }

    /// Starts the listener if it is not running.
    fn listen(self: &Arc<Self>, pool: &PgPool) {
        let mut listener = self.listener.lock().unwrap_or_else(PoisonError::into_inner);
        if listener.is_none() {
            let task = tokio::spawn(listen(Arc::downgrade(self), pool.clone()));
            *listener = Some(task.abort_handle());
        }
    }

    fn wake(&self, tag: &str) {
        if let Some(notify) = self.waiting().get(tag) {
            notify.notify_one();
        }
    }

    /// After the listener was away: what it missed, each waiter asks again for.
    fn wake_all(&self) {
        for notify in self.waiting().values() {
            notify.notify_one();
        }
    }
}

/// A writer waiting for a lease (see [`Wakes::waiter`]).
pub(crate) struct Waiter {
    wakes: Arc<Wakes>,
    tag: String,
    notify: Arc<Notify>,
}

impl Waiter {
    /// The tag the release notifies.
    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }

    /// Waits until woken, or `at_most` (itself at most [`LONGEST_WAIT`]). A wake-up that came
    /// since the last wait ends this one at once.
    pub(crate) async fn wait(&self, pool: &PgPool, at_most: Duration) {
        self.wakes.listen(pool);
        let _ = tokio::time::timeout(at_most.min(LONGEST_WAIT), self.notify.notified()).await;
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.wakes.waiting().remove(&self.tag);
    }
}

/// Hears the releases until `wakes` is dropped, listening again after its connection died.
async fn listen(wakes: Weak<Wakes>, pool: PgPool) {
    let channels = [CHANNEL.to_owned()];
    loop {
        let mut listener = super::listen::listener(&pool, &channels).await;
        match wakes.upgrade() {
            Some(wakes) => wakes.wake_all(),
            None => return,
        }
        // Until the connection dies: what it would have heard meanwhile is lost.
        while let Ok(Some(notification)) = listener.try_recv().await {
            match wakes.upgrade() {
                Some(wakes) => wakes.wake(notification.payload()),
                None => return,
            }
        }
    }
}

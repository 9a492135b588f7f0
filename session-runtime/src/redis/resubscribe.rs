//! The adapter's subscriptions, restored after every reconnection of its subscriber.
//!
//! socketioxide-redis's fred driver subscribes with `SSUBSCRIBE` (shard channels) only. A
//! Redis that restarted, or a replica promoted after a failover, knows none of the
//! subscriptions of the connection that died. fred 10.1's own
//! `SubscriberClient::manage_subscriptions` cannot restore them: its `resubscribe_all` sends
//! `SUBSCRIBE` with the tracked plain channels first, an empty list here, which Redis refuses
//! (`ERR wrong number of arguments for 'subscribe' command`); the `?` after it returns before
//! the shard channels are subscribed again. Broadcasts then stop crossing nodes until a restart.
//!
//! So this task does it: on every reconnection (on a Cluster, one per node connected), each
//! tracked channel, pattern and shard channel is subscribed again, the kinds with none skipped,
//! and the whole round is retried with backoff until it succeeds (right after a failover the
//! new master may not take commands yet). Subscribing a connection to a channel it already
//! has is harmless.
//!
//! What was published while the connection was away is lost all the same: each restored round
//! ticks `returns`, and the sockets' side checks its sessions against the store for the ends
//! it missed (`SessionLocks::listener_returns`).

use std::time::Duration;

use fred::{
    clients::SubscriberClient,
    error::Error,
    interfaces::{EventInterface, PubsubInterface},
};
use tokio::sync::{broadcast::error::RecvError, watch};

/// The first pause before a failed round is tried again; it doubles up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// Spawns the task that restores `subscriber`'s subscriptions after each reconnection and then
/// ticks `returns`. It ends when the client's reconnection events end.
pub(crate) fn after_reconnections(subscriber: SubscriberClient, returns: watch::Sender<u64>) {
    let mut reconnections = subscriber.reconnect_rx();
    tokio::spawn(async move {
        loop {
            match reconnections.recv().await {
                // Lagged: reconnections were missed; one round covers them all.
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
            let mut pause = FIRST_PAUSE;
            let mut failed = 0u32;
            while let Err(err) = resubscribe(&subscriber).await {
                failed += 1;
                tracing::warn!(
                    %err,
                    failed,
                    "could not restore the socket.io adapter's subscriptions; trying again"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            if failed > 0 {
                tracing::info!(failed, "the socket.io adapter's subscriptions are restored");
            }
            returns.send_modify(|round| *round += 1);
        }
    });
}

/// Subscribes `subscriber` again to everything it tracks, skipping the kinds it has none of.
pub(crate) async fn resubscribe(subscriber: &SubscriberClient) -> Result<(), Error> {
    let channels: Vec<String> = strings(subscriber.tracked_channels());
    if !channels.is_empty() {
        subscriber.subscribe(channels).await?;
    }
    let patterns = strings(subscriber.tracked_patterns());
    if !patterns.is_empty() {
        subscriber.psubscribe(patterns).await?;
    }
    // One at a time: on a Cluster the channels of one command must share a hash slot.
    for channel in strings(subscriber.tracked_shard_channels()) {
        subscriber.ssubscribe(channel).await?;
    }
    Ok(())
}

fn strings<S: ToString>(set: impl IntoIterator<Item = S>) -> Vec<String> {
    set.into_iter().map(|s| s.to_string()).collect()
}

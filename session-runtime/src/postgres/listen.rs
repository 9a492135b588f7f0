//! [`ListenNotify`]: socketioxide-postgres's [`Driver`] on sqlx 0.8, whose listener listens
//! again after its connection dies.

use std::time::Duration;

use futures_util::stream::{self, BoxStream, StreamExt};
use socketioxide_postgres::drivers::{Driver, Notification};
use sqlx::{postgres::PgListener, PgPool};
use tokio::sync::watch;

/// Serialises the nodes creating the attachment table at start.
const INIT_LOCK: i64 = 0x005e_5510_e5a7_7ac4;

/// How long the listener waits before connecting again after its connection died.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// socketioxide-postgres's driver on the pool of a
/// [`PostgresSessions`](super::PostgresSessions) (see [`PostgresSessions::adapter`](super::PostgresSessions::adapter)):
/// `NOTIFY` and the attachment table through the pool, `LISTEN` on one connection of its own.
///
/// When that connection dies (the database restarted, the network failed), the listener
/// connects again every 100 ms until it can and listens to the same channels: what was
/// notified meanwhile is lost, what comes after is heard. Through
/// [`PostgresSessions::adapter`](super::PostgresSessions::adapter), its locks then hear of
/// the return, and the node pushes the session ends it missed.
///
/// ```no_run
/// use session_runtime::postgres::{
///     socketioxide_postgres::{PostgresAdapterConfig, PostgresAdapterCtr},
///     sqlx::PgPool,
///     ListenNotify, PostgresAdapter,
/// };
/// use socketioxide::SocketIo;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = PgPool::connect("postgres://app@127.0.0.1/app").await?;
/// let config = PostgresAdapterConfig::new().with_payload_threshold(7_000);
/// let ctr = PostgresAdapterCtr::new_with_driver(ListenNotify::new(pool), config);
/// let (layer, io) = SocketIo::builder().with_adapter::<PostgresAdapter<_>>(ctr).build_layer();
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ListenNotify {
    pool: PgPool,
    /// Ticked each time a listener is back after its connection died.
    returns: watch::Sender<u64>,
}

impl ListenNotify {
    /// A driver on `pool`.
    ///
    /// ```no_run
    /// use session_runtime::postgres::{sqlx::PgPool, ListenNotify};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let driver = ListenNotify::new(PgPool::connect("postgres://app@127.0.0.1/app").await?);
    /// # Ok(()) }
    /// ```
    pub fn new(pool: PgPool) -> Self {
        Self::ticking(pool, watch::Sender::new(0))
    }

    /// A driver on `pool` that ticks `returns` each time a listener is back: what was
    /// notified meanwhile may be lost (see `SessionLocks::listener_returns`).
    pub(crate) fn ticking(pool: PgPool, returns: watch::Sender<u64>) -> Self {
        Self { pool, returns }
    }
}

/// A notification heard by [`ListenNotify`].
///
/// ```
/// use session_runtime::postgres::{socketioxide_postgres::drivers::Notification, Notice};
///
/// fn show(notice: &Notice) -> String {
///     format!("{}: {} bytes", notice.channel(), notice.payload().len())
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Notice {
    channel: String,
    payload: String,
}

impl Notification for Notice {
    fn channel(&self) -> &str {
        &self.channel
    }

    fn payload(&self) -> &str {
        &self.payload
    }
}

/// A listener on `channels`, connecting again until it can.
pub(super) async fn listener(pool: &PgPool, channels: &[String]) -> PgListener {
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(pool).await?;
            listener
                .listen_all(channels.iter().map(String::as_str))
                .await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match connected {
            Ok(listener) => return listener,
            Err(err) => {
                tracing::warn!(%err, ?channels, "could not listen; trying again");
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

impl Driver for ListenNotify {
    type Error = sqlx::Error;
    type Notification = Notice;
    type NotificationStream = BoxStream<'static, Notice>;

    async fn init(&self, table: &str) -> Result<(), Self::Error> {
        // One transaction: nodes starting together would race `CREATE TABLE IF NOT EXISTS`.
        sqlx::raw_sql(&format!(
            r#"BEGIN;
            SELECT pg_advisory_xact_lock({INIT_LOCK});
            CREATE TABLE IF NOT EXISTS "{table}" (
                id bigserial UNIQUE,
                created_at timestamptz DEFAULT now(),
                payload bytea
            );
            COMMIT;"#
        ))
        .execute(&self.pool)
        .await
        .map(drop)
    }

    async fn listen(&self, channels: &[&str]) -> Result<Self::NotificationStream, Self::Error> {
        let channels: Vec<String> = channels.iter().map(|c| (*c).to_owned()).collect();
        // The first connection's failure is the caller's; later ones are retried.
        let mut first = PgListener::connect_with(&self.pool).await?;
        first
            .listen_all(channels.iter().map(String::as_str))
            .await?;
        let (pool, returns) = (self.pool.clone(), self.returns.clone());
        let notices = stream::unfold(first, move |mut listener| {
            let (pool, channels, returns) = (pool.clone(), channels.clone(), returns.clone());
            async move {
                loop {
                    match listener.recv().await {
                        Ok(heard) => {
                            let notice = Notice {
                                channel: heard.channel().to_owned(),
                                payload: heard.payload().to_owned(),
                            };
                            return Some((notice, listener));
                        }
                        // sqlx reconnects by itself after some errors only (not after a
                        // reset connection): start over with a new listener.
                        Err(err) => {
                            tracing::warn!(%err, "lost the connection listening for the other nodes");
                            drop(listener);
                            tokio::time::sleep(RECONNECT_PAUSE).await;
                            listener = self::listener(&pool, &channels).await;
                            tracing::info!("listening for the other nodes again");
                            returns.send_modify(|round| *round += 1);
                        }
                    }
                }
            }
        });
        Ok(notices.boxed())
    }

    async fn notify(&self, channel: &str, message: &str) -> Result<(), Self::Error> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(message)
            .execute(&self.pool)
            .await
            .map(drop)
    }

    async fn push_attachment(&self, table: &str, attachment: &[u8]) -> Result<i64, Self::Error> {
        sqlx::query_scalar(&format!(
            r#"INSERT INTO "{table}" (payload) VALUES ($1) RETURNING id"#
        ))
        .bind(attachment)
        .fetch_one(&self.pool)
        .await
    }

    async fn get_attachment(&self, table: &str, id: i64) -> Result<Vec<u8>, Self::Error> {
        sqlx::query_scalar(&format!(r#"SELECT payload FROM "{table}" WHERE id = $1"#))
            .bind(id)
            .fetch_one(&self.pool)
            .await
    }

    async fn cleanup_attachments(
        &self,
        table: &str,
        interval: Duration,
    ) -> Result<(), Self::Error> {
        sqlx::query(&format!(
            r#"DELETE FROM "{table}" WHERE created_at < now() - $1 * interval '1 millisecond'"#
        ))
        .bind(interval.as_millis().min(i64::MAX as u128) as i64)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    async fn close(&self, _channels: &[&str]) -> Result<(), Self::Error> {
        // Each adapter's listener is its own connection; dropping its stream unlistens it.
        Ok(())
    }
}

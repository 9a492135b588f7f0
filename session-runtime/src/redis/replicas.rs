//! Waiting for replicas before a write is acknowledged ([`RedisSessions::with_replica_wait`](super::RedisSessions::with_replica_wait)).

use std::time::Duration;

use fred::{
    clients::Client,
    error::{Error, ErrorKind},
    interfaces::{ClientLike, ServerInterface},
    types::{config::Options, ClusterHash},
    util::redis_keyslot,
};

/// `WAIT replicas timeout` after every write of a record.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReplicaWait {
    pub(crate) replicas: u32,
    pub(crate) timeout: Duration,
}

impl ReplicaWait {
    /// Waits until `replicas` replicas have every write `client` sent so far. `WAIT` counts the
    /// writes of its own connection, so it goes on the client that wrote, and, on a Cluster,
    /// to the node of `key`'s slot: the connection that carried the write.
    pub(crate) async fn after_write(&self, client: &Client, key: &str) -> Result<(), Error> {
        let options = Options {
            cluster_hash: Some(ClusterHash::Custom(redis_keyslot(key.as_bytes()))),
            // Past the wait's own bound, which Redis answers.
            timeout: Some(self.timeout + Duration::from_secs(1)),
            ..Options::default()
        };
        let acked: i64 = client
            .with_options(&options)
            .wait(self.replicas.into(), self.timeout.as_millis().max(1) as i64)
            .await?;
        if acked < i64::from(self.replicas) {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "written, but {acked} of {} replicas had the write after {:?}: not \
                     acknowledged (a failover now could lose it)",
                    self.replicas, self.timeout
                ),
            ));
        }
        Ok(())
    }
}

/// Waits for `wait`'s replicas, if any, after a write on `client`.
pub(crate) async fn after_write(
    wait: Option<ReplicaWait>,
    client: &Client,
    key: &str,
) -> Result<(), Error> {
    match wait {
        Some(wait) => wait.after_write(client, key).await,
        None => Ok(()),
    }
}

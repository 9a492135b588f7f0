//! The Lua scripts of the lease, one file each (`scripts/*.lua`, where the invariant each one
//! keeps is written), called by `EVALSHA` and loaded again after a Redis restart forgot them.

use fred::{
    clients::Client,
    error::Error,
    types::{scripts::Script, FromValue, Value},
};

use super::Keys;

/// What [`Scripts::acquire`] found.
pub(crate) enum Acquired {
    /// The lease is ours; the record as it was (MessagePack), or `None`.
    Taken(Option<Vec<u8>>),
    /// Another token holds it, or another node's turn is next: ask again in at most this
    /// many milliseconds.
    Held(u64),
}

/// What [`Scripts::write`] does to the record.
pub(crate) enum Op<'a> {
    None,
    Save { value: &'a [u8], expires_at_ms: i64 },
    Delete,
}

/// How nodes take turns at a lease (see `scripts/acquire.lua`).
#[derive(Clone, Copy)]
pub(crate) struct Turns {
    /// How long a waiting node lets the others go first.
    pub(crate) patience_ms: u64,
    /// How long a turn outlives its node's last ask.
    pub(crate) lifetime_ms: u64,
}

pub(crate) struct Scripts {
    acquire: Script,
    write: Script,
    renew: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            acquire: Script::from_lua(include_str!("scripts/acquire.lua")),
            write: Script::from_lua(include_str!("scripts/write.lua")),
            renew: Script::from_lua(include_str!("scripts/renew.lua")),
        }
    }
}

impl Scripts {
    /// `SCRIPT LOAD`s every script, so the first calls cost one round trip each.
    pub(crate) async fn load(&self, client: &Client) -> Result<(), Error> {
        for script in [&self.acquire, &self.write, &self.renew] {
            script.load(client).await?;
        }
        Ok(())
    }

    /// `acquire.lua`: takes the lease for `token` of `node` and reads the record.
    pub(crate) async fn acquire(
        &self,
        client: &Client,
        keys: &Keys,
        (token, node): (&str, &str),
        lifetime_ms: u64,
        turns: Turns,
    ) -> Result<Acquired, Error> {
        let reply: Vec<Value> = self
            .acquire
            .evalsha_with_reload(
                client,
                vec![keys.record.clone(), keys.lease.clone(), keys.turn.clone()],
                vec![
                    Value::from(token),
                    Value::from(lifetime_ms as i64),
                    Value::from(node),
                    Value::from(turns.patience_ms as i64),
                    Value::from(turns.lifetime_ms as i64),
                ],
            )
            .await?;
        let mut reply = reply.into_iter();
        let (Some(taken), Some(second)) = (reply.next(), reply.next()) else {
            return Err(unexpected("acquire.lua"));
        };
        match taken.as_i64() {
            Some(1) => Ok(Acquired::Taken(if second.is_null() {
                None
            } else {
                Some(
                    second
                        .into_owned_bytes()
                        .ok_or_else(|| unexpected("acquire.lua"))?,
                )
            })),
            Some(0) => Ok(Acquired::Held(second.as_i64().unwrap_or(0).max(0) as u64)),
            _ => Err(unexpected("acquire.lua")),
        }
    }

    /// `write.lua`: `op` if `token` holds the lease, then releases it if `release`. `false`
    /// when the lease was not `token`'s (nothing written).
    pub(crate) async fn write(
        &self,
        client: &Client,
        keys: &Keys,
        token: &str,
        op: Op<'_>,
        release: bool,
    ) -> Result<bool, Error> {
        let release = Value::from(if release { "1" } else { "0" });
        let args = match op {
            Op::None => vec![Value::from(token), Value::from("none"), release],
            Op::Delete => vec![Value::from(token), Value::from("delete"), release],
            Op::Save {
                value,
                expires_at_ms,
            } => vec![
                Value::from(token),
                Value::from("save"),
                release,
                Value::Bytes(value.to_vec().into()),
                Value::from(expires_at_ms),
            ],
        };
        let written: i64 = call(&self.write, client, keys, args).await?;
        Ok(written == 1)
    }

    /// `renew.lua`: extends `token`'s lease to `lifetime_ms` from now; `false` when it is not
    /// `token`'s any more.
    pub(crate) async fn renew(
        &self,
        client: &Client,
        keys: &Keys,
        token: &str,
        lifetime_ms: u64,
    ) -> Result<bool, Error> {
        let renewed: i64 = self
            .renew
            .evalsha_with_reload(
                client,
                vec![keys.lease.clone()],
                vec![Value::from(token), Value::from(lifetime_ms as i64)],
            )
            .await?;
        Ok(renewed == 1)
    }
}

/// `EVALSHA` with the record and the lease as keys; `SCRIPT LOAD` and again on `NOSCRIPT`.
async fn call<R: FromValue>(
    script: &Script,
    client: &Client,
    keys: &Keys,
    args: Vec<Value>,
) -> Result<R, Error> {
    script
        .evalsha_with_reload(client, vec![keys.record.clone(), keys.lease.clone()], args)
        .await
}

fn unexpected(script: &str) -> Error {
    Error::new(
        fred::error::ErrorKind::Parse,
        format!("unexpected reply from {script}"),
    )
}

//! The events of [`crate::events`] written by hand with [`SessionHandle`], as a user without
//! the attribute would, on the namespace [`HAND_WRITTEN`]: the attribute is the recommended
//! path, but the extractor it builds on is public API and keeps its own tests.
//!
//! Each handler acknowledges after its transaction returned, then applies the `OnGone`
//! policy, as `#[with_session]` generates it. Same names, same acks: `whoami`, `incr`,
//! `login`, `logout`, `peek`, `same`, `delete`, `fail_after_write`, `panic_after_write`,
//! `hold`.

use std::{fmt, sync::Arc};

use serde_json::{json, Value};
use session_runtime::{SessionError, SessionHandle};
use session_workspace::protocol::parse_user;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};

use crate::events::{scribble, BoxError, HoldProbe};

/// The namespace of the hand-written handlers.
pub const HAND_WRITTEN: &str = "/hand-written";

/// Acknowledges after the transaction returned: `value`, or `{"error": "..."}`; then applies
/// the `OnGone` policy, as a hand-written handler must (after the ack, so the client hears why).
fn reply<T: serde::Serialize, E: fmt::Display>(
    handle: &SessionHandle,
    ack: AckSender,
    result: Result<T, E>,
) {
    let answer = match result {
        Ok(value) => json!(value),
        Err(err) => json!({ "error": err.to_string() }),
    };
    if let Err(err) = ack.send(&answer) {
        // Never silent: a lost ack shows up as a client timeout, this says why.
        tracing::warn!(%err, "could not send an acknowledgement");
    }
    handle.apply_gone_policy();
}

/// Registers the hand-written events on `socket`.
pub fn register(socket: &SocketRef) {
    socket.on("whoami", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .readonly(async |session| {
                Ok::<_, SessionError>(json!({ "user": session.get::<String>("user")? }))
            })
            .await;
        reply(&handle, ack, result);
    });
    socket.on("incr", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| {
                let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
                session.insert("count", count)?;
                Ok::<_, SessionError>(count)
            })
            .await;
        reply(&handle, ack, result);
    });
    socket.on(
        "login",
        async |handle: SessionHandle, TryData(body): TryData<Value>, ack: AckSender| {
            let user = match body
                .map_err(|err| format!("invalid payload: {err}"))
                .and_then(|body| parse_user(&body))
            {
                Ok(user) => user,
                Err(message) => return reply::<(), _>(&handle, ack, Err(message)),
            };
            let result = handle
                .autosave(async |session| {
                    session.insert("user", &user)?;
                    Ok::<_, SessionError>(json!({ "ok": true }))
                })
                .await;
            reply(&handle, ack, result);
        },
    );
    socket.on("logout", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| {
                session.remove_value("user")?;
                Ok::<_, SessionError>(json!({ "ok": true }))
            })
            .await;
        reply(&handle, ack, result);
    });
    socket.on("peek", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| Ok::<_, SessionError>(session.get::<i64>("count")?))
            .await;
        reply(&handle, ack, result);
    });
    socket.on("same", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| {
                let count = session.get_value("count").unwrap_or(json!(0));
                session.insert_value("count", count.clone())?;
                Ok::<_, SessionError>(count)
            })
            .await;
        reply(&handle, ack, result);
    });
    socket.on("delete", async |handle: SessionHandle, ack: AckSender| {
        let result = handle
            .autosave(async |session| {
                session.flush()?;
                Ok::<_, SessionError>(json!({ "ok": true }))
            })
            .await;
        reply(&handle, ack, result);
    });
    // One handler for both: they differ only in how the body fails after writing.
    for event in ["fail_after_write", "panic_after_write"] {
        socket.on(
            event,
            async |handle: SessionHandle, Event(name): Event, ack: AckSender| {
                let result = handle
                    .autosave(async |session| {
                        scribble(&session)?;
                        if name == "panic_after_write" {
                            panic!("deliberate panic after writing");
                        }
                        Err::<(), BoxError>("deliberate failure after writing".into())
                    })
                    .await;
                reply(&handle, ack, result);
            },
        );
    }
    socket.on(
        "hold",
        async |handle: SessionHandle, State(probe): State<Arc<HoldProbe>>, ack: AckSender| {
            let result = handle
                .autosave(async |session| {
                    session.insert("held", true)?;
                    probe.hold().await;
                    Ok::<_, SessionError>(json!({ "ok": true }))
                })
                .await;
            reply(&handle, ack, result);
        },
    );
}

//! What `#[with_session]` expands to. Not a public API: it may change in any release.

use std::{any::Any, convert::Infallible, fmt::Display, sync::Arc};

use serde::Serialize;
use serde_json::value::RawValue;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, Event},
    handler::{FromConnectParts, FromMessageParts, Value},
    socket::Socket,
};
use tracing::Instrument as _;

pub use socketioxide::extract::TryData;

use crate::{ReadOnlySocketSession, SessionData, SessionError, SessionHandle, SocketSession};

type AckFn = Box<dyn FnOnce(&RawValue) -> Result<(), String> + Send + Sync>;

/// How a handler's body ended, decided before anything is saved.
pub enum Outcome {
    /// Success: save, then acknowledge with this value. Serialised before the save, so a value
    /// that cannot be serialised fails the handler instead of saving unannounced.
    Ack(Box<RawValue>),
    /// Success of a handler that acknowledges by itself: save, then nothing.
    Silent,
    /// Failure: save nothing, acknowledge `{"error": message}`.
    Fail(String),
}

/// Never implemented: bounds the write methods of `ReadOnlySocketSession`, so that writing through
/// one is a compile error saying so.
#[diagnostic::on_unimplemented(
    message = "a `readonly` session cannot be written",
    label = "this writes to a `ReadOnlySocketSession`",
    note = "declare the handler `#[with_session(autosave)]` and take `SocketSession` to write the session"
)]
pub trait WritableSession {}

/// What a handler may return: its value is the acknowledgement.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the answer of a `#[with_session]` handler: it is not `Serialize`",
    label = "the acknowledgement is serialised from this type",
    note = "a handler returns `()` (it acknowledges by itself), a `T: Serialize`, or a `Result<T, E>` with `T: Serialize` and `E: Display`",
    note = "a `Result` is recognised by its name: an alias of `Result` must be named `Result`"
)]
pub trait AckValue: Serialize {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> AckValue for T {}

/// What a handler's `Err` may hold: its `Display` is the acknowledged error.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the error of a `#[with_session]` handler: it is not `Display`",
    label = "the error is acknowledged as `{{\"error\": \"<its Display>\"}}`",
    note = "a handler returns `()` (it acknowledges by itself), a `T: Serialize`, or a `Result<T, E>` with `T: Serialize` and `E: Display`"
)]
pub trait AckError: Display {}

#[diagnostic::do_not_recommend]
impl<E: Display + ?Sized> AckError for E {}

/// `-> T`
pub fn value<T: AckValue>(value: T) -> Outcome {
    match serde_json::value::to_raw_value(&value) {
        Ok(v) => Outcome::Ack(v),
        Err(err) => Outcome::Fail(format!(
            "the handler's answer could not be serialised: {err}"
        )),
    }
}

/// `-> Result<T, E>`
pub fn result<T: AckValue, E: AckError + 'static>(result: Result<T, E>) -> Outcome {
    match result {
        Ok(v) => value(v),
        Err(err) => {
            // The runtime's own error, passed on with `?`: the client hears its message, the
            // log gets its sources too.
            if let Some(err) = (&err as &dyn Any).downcast_ref::<SessionError>() {
                log_failure(err, "session handler failed; nothing saved");
            }
            Outcome::Fail(err.to_string())
        }
    }
}

/// A session failure for the log: the whole chain of sources, at `error` for a fault of the
/// server's (store, lock backend, wiring) and `debug` for the client's own.
fn log_failure(err: &SessionError, what: &str) {
    if err.is_server_fault() {
        tracing::error!(error = %err.report(), "{what}");
    } else {
        tracing::debug!(error = %err.report(), "{what}");
    }
}

/// `-> ()`
pub fn unit(_: ()) -> Outcome {
    Outcome::Silent
}

/// Reads `key` of an autosave session into a typed binding.
pub fn bind<T>(session: &SocketSession, key: &'static str) -> Result<SessionData<T>, Outcome>
where
    T: Serialize + serde::de::DeserializeOwned + Default,
{
    SessionData::bind(session, key).map_err(|err| Outcome::Fail(err.to_string()))
}

/// Everything a generated wrapper needs of the event: the socket's session handle and a way
/// to acknowledge, with the adapter type erased so generated code never names it.
pub struct EventContext {
    /// `None` when the namespace was not registered through `SocketSessions`.
    handle: Option<SessionHandle>,
    ack: Option<AckFn>,
    /// Every log line of the event, its failure's included, is recorded inside it.
    span: tracing::Span,
}

impl<A: Adapter> FromMessageParts<A> for EventContext {
    type Error = Infallible;

    fn from_message_parts(
        s: &Arc<Socket<A>>,
        v: &mut Value,
        ack_id: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let ack = ack_id.map(|_| {
            let Ok(sender) = AckSender::<A>::from_message_parts(s, v, ack_id);
            Box::new(move |value: &RawValue| sender.send(value).map_err(|err| err.to_string()))
                as AckFn
        });
        // Never the session id: logs travel further than the session store.
        let span = tracing::info_span!(
            "with_session",
            ns = s.ns(),
            event = tracing::field::Empty,
            lock_waited = tracing::field::Empty,
        );
        // The event name costs a copy: only for a span that is recorded.
        if !span.is_disabled() {
            if let Ok(Event(name)) = Event::from_message_parts(s, v, ack_id) {
                span.record("event", name.as_str());
            }
        }
        Ok(Self {
            handle: SessionHandle::of(s),
            ack,
            span,
        })
    }
}

/// `{"error": message}`.
fn error_answer(message: &str) -> Box<RawValue> {
    #[derive(Serialize)]
    struct ErrorAnswer<'a> {
        error: &'a str,
    }
    serde_json::value::to_raw_value(&ErrorAnswer { error: message })
        .expect("a struct of one string always serialises")
}

impl EventContext {
    /// `#[with_session(autosave)]`: lock, reload, body, save if changed, unlock, acknowledge.
    pub async fn autosave<F>(mut self, require: Option<&'static str>, body: F)
    where
        F: AsyncFnOnce(SocketSession) -> Outcome,
    {
        let Some(handle) = self.handle.take() else {
            return self.finish(None, Err(SessionError::NotAttached));
        };
        // Boxed, so that the event's task holds a pointer and not the whole transaction:
        // spawning the task and running it copy its future about a dozen times per event. (Under
        // 1 KiB, the allocator serves it from its per-thread cache.)
        let result = Box::pin(
            handle
                .transaction(require, async |session| match body(session).await {
                    Outcome::Fail(message) => Err(message),
                    done => Ok(done),
                })
                .instrument(self.span.clone()),
        )
        .await;
        let outcome = match result {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(message)) => Ok(Outcome::Fail(message)),
            Err(err) => Err(err),
        };
        self.finish(Some(&handle), outcome);
    }

    /// `#[with_session(readonly)]`: reload, body, acknowledge. No lock, no write.
    pub async fn readonly<F>(mut self, require: Option<&'static str>, body: F)
    where
        F: AsyncFnOnce(ReadOnlySocketSession) -> Outcome,
    {
        let Some(handle) = self.handle.take() else {
            return self.finish(None, Err(SessionError::NotAttached));
        };
        // Boxed for the reason `autosave`'s transaction is.
        let outcome = Box::pin(
            handle
                .read_transaction(require, body)
                .instrument(self.span.clone()),
        )
        .await;
        self.finish(Some(&handle), outcome);
    }

    /// A payload that did not deserialise: nothing runs, the client hears why.
    pub fn reject(self, err: impl Display) {
        self.finish(None, Ok(Outcome::Fail(format!("invalid payload: {err}"))));
    }

    fn finish(self, handle: Option<&SessionHandle>, outcome: Result<Outcome, SessionError>) {
        let _entered = self.span.enter();
        let answer = match outcome {
            Ok(Outcome::Ack(value)) => Some(value),
            Ok(Outcome::Silent) => None,
            Ok(Outcome::Fail(message)) => {
                tracing::debug!(%message, "session handler failed; nothing saved");
                Some(error_answer(&message))
            }
            Err(err) => {
                // The client hears the short message; the log keeps the sources.
                log_failure(&err, "session handler did not run");
                Some(error_answer(&err.to_string()))
            }
        };
        if let (Some(answer), Some(ack)) = (answer, self.ack) {
            if let Err(err) = ack(&answer) {
                tracing::warn!(%err, "could not send the acknowledgement (is `max_buffer_size` large enough?)");
            }
        }
        if let Some(handle) = handle {
            handle.apply_gone_policy();
        }
    }
}

/// What a `connect` handler may return.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the result of a `#[with_session(connect)]` handler",
    label = "a connect handler returns `Result<(), E>` with `E: Display`, or `()`",
    note = "`Err(e)` refuses the connection with `e` as the client's `connect_error`"
)]
pub trait ConnectOutcome {
    /// `Err` carries the refusal's message.
    fn into_refusal(self) -> Result<(), String>;
}

impl ConnectOutcome for () {
    fn into_refusal(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: AckError> ConnectOutcome for Result<(), E> {
    fn into_refusal(self) -> Result<(), String> {
        self.map_err(|err| err.to_string())
    }
}

/// `connect` handlers' `-> Result<(), E>` or `-> ()`.
pub fn connect_result<T: ConnectOutcome>(outcome: T) -> Result<(), String> {
    outcome.into_refusal()
}

/// Why a connection was refused: its message is the client's `connect_error`.
#[derive(Debug)]
pub struct ConnectRefusal(String);

impl Display for ConnectRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a generated connect middleware needs: the socket's session handle. The session must be
/// attached before this middleware runs.
pub struct ConnectContext {
    handle: Option<SessionHandle>,
}

impl<A: Adapter> FromConnectParts<A> for ConnectContext {
    type Error = Infallible;

    fn from_connect_parts(s: &Arc<Socket<A>>, _: &Option<Value>) -> Result<Self, Infallible> {
        Ok(Self {
            handle: SessionHandle::of(s),
        })
    }
}

impl ConnectContext {
    /// `#[with_session(readonly, connect)]`: reload, check `require`, body; any failure
    /// refuses the connection.
    pub async fn readonly<F>(
        self,
        require: Option<&'static str>,
        body: F,
    ) -> Result<(), ConnectRefusal>
    where
        F: AsyncFnOnce(ReadOnlySocketSession) -> Result<(), String>,
    {
        let refuse = |message: String| {
            tracing::debug!(%message, "connection refused by a session guard");
            ConnectRefusal(message)
        };
        let handle = self
            .handle
            .ok_or_else(|| refuse(SessionError::NotAttached.to_string()))?;
        handle
            .read_transaction(require, body)
            .await
            .map_err(|err| refuse(err.to_string()))?
            .map_err(refuse)
    }
}

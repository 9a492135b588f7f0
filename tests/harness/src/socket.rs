//! [`SocketClient`]: the `rust_socketio` 0.6 client, connected to one namespace over one of
//! the [`Transport`]s (websocket, polling, or polling upgraded to websocket).
//!
//! It waits for the server's answer to CONNECT, so a refusal (`connect_error`) is a
//! [`ConnectFailure::Refused`] with the server's message; events the server pushes
//! (`session:gone`, `close`) are read with [`SocketClient::next_event`].
//!
//! Acks are awaited one at a time: `rust_socketio` draws ack ids at random in `0..999` and
//! mishandles two outstanding acks with the same id, so bursts use
//! [`RawSocket`](crate::RawSocket).
//!
//! ```no_run
//! use serde_json::json;
//! use session_harness::{SocketClient, Transport};
//!
//! # async fn scenario(url: &str, cookie: &str) {
//! let socket = SocketClient::connect(url, "/", Transport::Polling, Some(cookie)).await.unwrap();
//! assert_eq!(socket.ack("incr", vec![]).await, json!(1));
//! # }
//! ```

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::FutureExt;
use rust_socketio::{
    asynchronous::{Client as SioClient, ClientBuilder},
    Event, Payload, TransportType,
};
use serde_json::{json, Value};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tower_sessions::cookie::time::OffsetDateTime;

use crate::TIMEOUT;

/// The transports `rust_socketio` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Websocket from the first request.
    Websocket,
    /// HTTP long-polling only.
    Polling,
    /// Handshake over polling, then upgraded to websocket (`TransportType::WebsocketUpgrade`).
    PollingUpgraded,
}

impl Transport {
    /// All three.
    pub const ALL: [Transport; 3] = [Self::Websocket, Self::Polling, Self::PollingUpgraded];

    fn rust_socketio(self) -> TransportType {
        match self {
            Self::Websocket => TransportType::Websocket,
            Self::Polling => TransportType::Polling,
            Self::PollingUpgraded => TransportType::WebsocketUpgrade,
        }
    }
}

/// A `rust_socketio` 0.6 client, connected (its CONNECT answered) to one namespace.
pub struct SocketClient {
    client: SioClient,
    events: Inbox,
}

/// How a socket.io connection attempt ended, when it did not connect.
#[derive(Debug)]
pub enum ConnectFailure {
    /// The server answered CONNECT with `connect_error`; this is its message.
    Refused(String),
    /// Anything else (transport error, timeout).
    Other(String),
}

/// The server's refusal message of a connection attempt that must have been refused
/// (`connect_error`); panics, saying what happened instead, otherwise.
///
/// ```no_run
/// # async fn scenario(url: &str) {
/// use session_harness::{socket::refusal, RawSocket};
///
/// let message = refusal(RawSocket::connect(url, "/", None).await);
/// assert!(message.contains("no session"));
/// # }
/// ```
pub fn refusal<T>(attempt: Result<T, ConnectFailure>) -> String {
    match attempt {
        Err(ConnectFailure::Refused(message)) => message,
        Err(other) => panic!("expected a connect_error, got {other:?}"),
        Ok(_) => panic!("expected a connect_error, but the socket connected"),
    }
}

impl SocketClient {
    /// Connects to `ns` of the server at `url` (`http://127.0.0.1:PORT`) over `transport`,
    /// sending `cookie` in the handshake.
    pub async fn connect(
        url: &str,
        ns: &str,
        transport: Transport,
        cookie: Option<&str>,
    ) -> Result<Self, ConnectFailure> {
        let (tx, events) = inbox();
        let forward = |name: &'static str, tx: EventTx| {
            move |payload: Payload, _: SioClient| {
                let _ = tx.send((name.to_owned(), payload_value(payload)));
                async {}.boxed()
            }
        };
        let mut builder = ClientBuilder::new(format!("{url}/"))
            .namespace(ns)
            .transport_type(transport.rust_socketio())
            .reconnect(false)
            .on(Event::Connect, forward("connect", tx.clone()))
            .on(Event::Close, forward("close", tx.clone()))
            .on(Event::Error, forward("error", tx.clone()))
            .on(
                session_runtime::GONE_EVENT,
                forward(session_runtime::GONE_EVENT, tx.clone()),
            )
            .on(
                session_runtime::REFRESH_EVENT,
                forward(session_runtime::REFRESH_EVENT, tx.clone()),
            );
        if let Some(cookie) = cookie {
            builder = builder.opening_header("Cookie", cookie);
        }
        let client = tokio::time::timeout(TIMEOUT, builder.connect())
            .await
            .map_err(|_| ConnectFailure::Other("timed out connecting".into()))?
            .map_err(|err| ConnectFailure::Other(err.to_string()))?;
        // `connect()` returns once CONNECT is sent; wait for the server's answer.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match events.recv_until(deadline).await {
                Err(_) => return Err(ConnectFailure::Other("no answer to CONNECT".into())),
                Ok(None) => return Err(ConnectFailure::Other("client stopped".into())),
                Ok(Some((name, _))) if name == "connect" => break,
                Ok(Some((name, value))) if name == "error" => {
                    let text = value.as_str().unwrap_or_default().to_owned();
                    if let Some(data) = text.strip_prefix("Received an ConnectError frame: ") {
                        let message = serde_json::from_str::<Value>(data)
                            .ok()
                            .and_then(|v| v["message"].as_str().map(str::to_owned))
                            .unwrap_or_else(|| data.to_owned());
                        return Err(ConnectFailure::Refused(message));
                    }
                    // Transport noise (e.g. an engine.io error) is not an answer; keep waiting.
                }
                Ok(Some(_)) => {}
            }
        }
        Ok(Self { client, events })
    }

    /// Emits `event` with `args` and waits for its ack; panics after [`TIMEOUT`].
    pub async fn ack(&self, event: &str, args: Vec<Value>) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        self.client
            .emit_with_ack(event, Payload::Text(args), TIMEOUT, move |payload, _| {
                if let Some(tx) = tx.lock().unwrap().take() {
                    // rust_socketio hands an ack's argument list over as one JSON array.
                    let value = match payload_value(payload) {
                        Value::Array(args) => args.into_iter().next().unwrap_or(Value::Null),
                        other => other,
                    };
                    let _ = tx.send(value);
                }
                async {}.boxed()
            })
            .await
            .expect("emit failed");
        tokio::time::timeout(TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack for `{event}` within {TIMEOUT:?}"))
            .expect("ack callback dropped")
    }

    /// Emits `event` with `args` without asking for an ack.
    pub async fn emit(&self, event: &str, args: Vec<Value>) {
        self.client
            .emit(event, Payload::Text(args))
            .await
            .expect("emit failed");
    }

    /// Waits for the next event named `name` (`"close"`, `"error"`, [`session_runtime::GONE_EVENT`]),
    /// skipping others; `None` after [`TIMEOUT`].
    pub async fn next_event(&self, name: &str) -> Option<Value> {
        self.events.next(name).await
    }

    /// [`SocketClient::next_event`] that gives up after `within` instead of [`TIMEOUT`].
    pub async fn next_event_within(&self, name: &str, within: Duration) -> Option<Value> {
        self.events.next_until(name, Instant::now() + within).await
    }

    /// Asserts that every one of `sockets` hears [`session_runtime::GONE_EVENT`] with `reason`
    /// before `deadline`; `what` names the step in a failure.
    pub async fn all_told_gone(sockets: &[Self], deadline: Instant, reason: &str, what: &str) {
        for (i, socket) in sockets.iter().enumerate() {
            let gone = socket
                .events
                .next_until(session_runtime::GONE_EVENT, deadline)
                .await;
            assert_eq!(
                gone,
                Some(json!({ "reason": reason })),
                "{what}: socket {i}: not told within the deadline"
            );
        }
    }

    /// Every event named `name` this client has received so far, read or not, with the
    /// wall-clock instant it arrived.
    pub fn heard(&self, name: &str) -> Vec<(Value, OffsetDateTime)> {
        self.events.heard(name)
    }

    /// Disconnects.
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

/// One event as a client received it.
type Received = (String, Value);

/// Every event a client received, with the instant it arrived.
type Log = Arc<Mutex<Vec<(String, Value, OffsetDateTime)>>>;

/// The sending half of an [`Inbox`]: logs each event as it arrives, then queues it.
#[derive(Clone)]
pub(crate) struct EventTx {
    tx: mpsc::UnboundedSender<Received>,
    log: Log,
}

impl EventTx {
    pub(crate) fn send(&self, (name, value): Received) -> Result<(), ()> {
        let at = OffsetDateTime::now_utc();
        self.log
            .lock()
            .unwrap()
            .push((name.clone(), value.clone(), at));
        self.tx.send((name, value)).map_err(|_| ())
    }
}

/// A new inbox and the sender its client's reader feeds.
pub(crate) fn inbox() -> (EventTx, Inbox) {
    let (tx, rx) = mpsc::unbounded_channel();
    let log = Log::default();
    let inbox = Inbox {
        rx: tokio::sync::Mutex::new(rx),
        log: log.clone(),
    };
    (EventTx { tx, log }, inbox)
}

/// What a client received from the server, as `(event name, first argument)`, read in order;
/// a log of all of it is kept apart, read or not.
pub(crate) struct Inbox {
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Received>>,
    log: Log,
}

impl Inbox {
    /// The next event received, `Ok(None)` once the client stopped, `Err` at `deadline`.
    async fn recv_until(
        &self,
        deadline: Instant,
    ) -> Result<Option<Received>, tokio::time::error::Elapsed> {
        tokio::time::timeout_at(deadline, self.rx.lock().await.recv()).await
    }

    /// The next event named `name`, skipping others; `None` after [`TIMEOUT`] or once the
    /// client stopped.
    pub(crate) async fn next(&self, name: &str) -> Option<Value> {
        self.next_until(name, Instant::now() + TIMEOUT).await
    }

    /// [`Inbox::next`] that gives up at `deadline`.
    pub(crate) async fn next_until(&self, name: &str, deadline: Instant) -> Option<Value> {
        let mut rx = self.rx.lock().await;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((n, v))) if n == name => return Some(v),
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every event named `name` received so far, with when it arrived.
    pub(crate) fn heard(&self, name: &str) -> Vec<(Value, OffsetDateTime)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, ..)| n == name)
            .map(|(_, v, at)| (v.clone(), *at))
            .collect()
    }
}

/// The first argument of a payload (acks and events here carry one).
fn payload_value(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        Payload::Text(_) => Value::Null,
        #[allow(deprecated)]
        Payload::String(s) => Value::String(s),
        Payload::Binary(b) => json!(b.to_vec()),
    }
}

//! [`RawSocket`]: a minimal socket.io v4 client over one websocket, with sequential ack ids,
//! for bursts of concurrent events.
//!
//! `rust_socketio` 0.6 draws each ack id at random in `0..999`, so 100 acks in flight on one
//! socket almost surely collide, and its ack table then calls the wrong callback or panics
//! on a stale index. This client speaks the same wire protocol (engine.io 4 over websocket,
//! socket.io 5 packets, JSON only) with ids 0, 1, 2, ..., so any number of events can be in
//! flight. [`RawSocket::emit`] sends at once and returns a future of the ack.
//!
//! ```no_run
//! use session_harness::RawSocket;
//!
//! # async fn scenario(url: &str, cookie: &str) {
//! let socket = RawSocket::connect(url, "/", Some(cookie)).await.unwrap();
//! let acks: Vec<_> = (0..100).map(|_| socket.emit("incr", vec![])).collect();
//! let acks = futures_util::future::join_all(acks).await; // 100 events in flight at once
//! # }
//! ```

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use tower_sessions::cookie::time::OffsetDateTime;

use crate::{
    socket::{inbox, Inbox},
    ConnectFailure, TIMEOUT,
};

/// A socket.io client over one websocket with sequential ack ids (see the module docs).
pub struct RawSocket {
    out: mpsc::UnboundedSender<Message>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next_id: AtomicU64,
    /// `""` for `/`, else `"/admin,"`.
    prefix: String,
    events: Inbox,
}

impl RawSocket {
    /// Connects to namespace `ns` of the server at `url` (`http://127.0.0.1:PORT`), sending
    /// `cookie` in the handshake.
    pub async fn connect(
        url: &str,
        ns: &str,
        cookie: Option<&str>,
    ) -> Result<Self, ConnectFailure> {
        let host = url.strip_prefix("http://").unwrap_or(url);
        let url = format!("ws://{host}/socket.io/?EIO=4&transport=websocket");
        let mut request = url.into_client_request().unwrap();
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("Cookie", cookie.parse().expect("a header value"));
        }
        let (ws, _) = tokio::time::timeout(TIMEOUT, tokio_tungstenite::connect_async(request))
            .await
            .map_err(|_| ConnectFailure::Other("timed out opening the websocket".into()))?
            .map_err(|err| ConnectFailure::Other(err.to_string()))?;
        let (mut sink, mut stream) = ws.split();
        let prefix = if ns == "/" {
            String::new()
        } else {
            format!("{ns},")
        };

        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(msg) = out_rx.recv().await {
                if sink.send(msg).await.is_err() {
                    break;
                }
            }
        });

        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let (events_tx, events) = inbox();
        let (connected_tx, connected_rx) = oneshot::channel::<Result<(), String>>();
        {
            let pending = pending.clone();
            let out = out.clone();
            let prefix = prefix.clone();
            tokio::spawn(async move {
                let mut connected = Some(connected_tx);
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    match text.as_bytes().first() {
                        Some(b'0') => {
                            // engine.io OPEN: now ask for the namespace.
                            let _ = out.send(Message::Text(format!("40{prefix}")));
                        }
                        Some(b'2') => {
                            let _ = out.send(Message::Text("3".into()));
                        }
                        Some(b'4') => {
                            let Some(packet) = SioPacket::parse(&text[1..], &prefix) else {
                                continue;
                            };
                            match packet.kind {
                                b'0' => {
                                    if let Some(tx) = connected.take() {
                                        let _ = tx.send(Ok(()));
                                    }
                                }
                                b'4' => {
                                    let message = packet.data["message"]
                                        .as_str()
                                        .unwrap_or_default()
                                        .to_owned();
                                    if let Some(tx) = connected.take() {
                                        let _ = tx.send(Err(message));
                                    }
                                }
                                b'1' => {
                                    let _ = events_tx.send(("disconnect".to_owned(), Value::Null));
                                }
                                b'2' => {
                                    let mut args = match packet.data {
                                        Value::Array(args) => args,
                                        _ => continue,
                                    };
                                    if args.is_empty() {
                                        continue;
                                    }
                                    let name =
                                        args.remove(0).as_str().unwrap_or_default().to_owned();
                                    let first = args.into_iter().next().unwrap_or(Value::Null);
                                    let _ = events_tx.send((name, first));
                                }
                                b'3' => {
                                    let first = match packet.data {
                                        Value::Array(args) => {
                                            args.into_iter().next().unwrap_or(Value::Null)
                                        }
                                        _ => Value::Null,
                                    };
                                    let waiter = packet
                                        .id
                                        .and_then(|id| pending.lock().unwrap().remove(&id));
                                    if let Some(tx) = waiter {
                                        let _ = tx.send(first);
                                    }
                                }
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
                let _ = events_tx.send(("close".to_owned(), Value::Null));
                // Dropping the senders wakes every waiter with an error instead of a hang.
                pending.lock().unwrap().clear();
            });
        }

        match tokio::time::timeout(TIMEOUT, connected_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(message))) => return Err(ConnectFailure::Refused(message)),
            Ok(Err(_)) => return Err(ConnectFailure::Other("connection closed".into())),
            Err(_) => return Err(ConnectFailure::Other("no answer to CONNECT".into())),
        }
        Ok(Self {
            out,
            pending,
            next_id: AtomicU64::new(0),
            prefix,
            events,
        })
    }

    /// Sends `event` with `args` now and returns a future of its ack (panics after
    /// [`TIMEOUT`]). Call it many times before awaiting to have many events in flight.
    pub fn emit(
        &self,
        event: &str,
        args: Vec<Value>,
    ) -> impl Future<Output = Value> + Send + 'static {
        self.emit_with_attachments(event, args, Vec::new())
    }

    /// [`RawSocket::emit`] of a binary event: `args` refer to the `attachments` with socket.io
    /// placeholders (`{"_placeholder": true, "num": N}`), and each attachment follows the
    /// packet as a binary websocket message.
    pub fn emit_with_attachments(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    ) -> impl Future<Output = Value> + Send + 'static {
        let event_name = event.to_owned();
        let ack = self.try_emit_with_attachments(event, args, attachments, TIMEOUT);
        async move {
            ack.await
                .unwrap_or_else(|failure| panic!("`{event_name}`: {failure}"))
        }
    }

    /// [`RawSocket::emit`] that gives up after `within` and says why instead of panicking:
    /// for clients that expect faults (a node killed or paused under them).
    pub fn try_emit(
        &self,
        event: &str,
        args: Vec<Value>,
        within: std::time::Duration,
    ) -> impl Future<Output = Result<Value, AckFailure>> + Send + 'static {
        self.try_emit_with_attachments(event, args, Vec::new(), within)
    }

    fn try_emit_with_attachments(
        &self,
        event: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
        within: std::time::Duration,
    ) -> impl Future<Output = Result<Value, AckFailure>> + Send + 'static {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut packet = vec![json!(event)];
        packet.extend(args);
        let kind = match attachments.len() {
            0 => "2".to_owned(),
            n => format!("5{n}-"),
        };
        let frame = format!("4{kind}{}{id}{}", self.prefix, Value::Array(packet));
        let mut sent = self.out.send(Message::Text(frame)).is_ok();
        for attachment in attachments {
            sent &= self.out.send(Message::Binary(attachment)).is_ok();
        }
        let pending = self.pending.clone();
        async move {
            if !sent {
                pending.lock().unwrap().remove(&id);
                return Err(AckFailure::NotSent);
            }
            match tokio::time::timeout(within, rx).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(_)) => Err(AckFailure::Closed { id }),
                Err(_) => {
                    pending.lock().unwrap().remove(&id);
                    Err(AckFailure::TimedOut { id, within })
                }
            }
        }
    }

    /// Sends `text` as one websocket message, unchecked: for payloads no client would send.
    pub fn send_raw(&self, text: String) -> bool {
        self.out.send(Message::Text(text)).is_ok()
    }

    /// Emits and waits for the ack.
    pub async fn ack(&self, event: &str, args: Vec<Value>) -> Value {
        self.emit(event, args).await
    }

    /// Waits for the next event named `name` (or `"disconnect"`, `"close"`), skipping others;
    /// `None` after [`TIMEOUT`].
    pub async fn next_event(&self, name: &str) -> Option<Value> {
        self.events.next(name).await
    }

    /// [`RawSocket::next_event`] that gives up after `within` instead of [`TIMEOUT`].
    pub async fn next_event_within(
        &self,
        name: &str,
        within: std::time::Duration,
    ) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        self.events.next_until(name, deadline).await
    }

    /// Every event named `name` this socket has received so far, read or not, with the
    /// wall-clock instant it arrived.
    pub fn heard(&self, name: &str) -> Vec<(Value, OffsetDateTime)> {
        self.events.heard(name)
    }
}

/// Why [`RawSocket::try_emit`] got no ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckFailure {
    /// The socket was closed before the event was sent: the server never saw it.
    NotSent,
    /// The socket closed after the event was sent and before its ack.
    Closed { id: u64 },
    /// No ack within the bound.
    TimedOut {
        id: u64,
        within: std::time::Duration,
    },
}

impl std::fmt::Display for AckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotSent => f.write_str("the socket is closed; the event was not sent"),
            Self::Closed { id } => write!(f, "the socket closed before the ack of #{id}"),
            Self::TimedOut { id, within } => write!(f, "no ack for #{id} within {within:?}"),
        }
    }
}

/// One socket.io packet as it follows the engine.io MESSAGE type byte.
struct SioPacket {
    kind: u8,
    id: Option<u64>,
    data: Value,
}

impl SioPacket {
    /// Parses `<type>[<ns>,][<id>][<json>]`, keeping only packets of namespace `prefix`.
    fn parse(text: &str, prefix: &str) -> Option<Self> {
        let kind = *text.as_bytes().first()?;
        let mut rest = &text[1..];
        if rest.starts_with('/') {
            rest = rest.strip_prefix(prefix).filter(|_| !prefix.is_empty())?;
        } else if !prefix.is_empty() {
            return None;
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let id = rest[..digits].parse().ok();
        let rest = &rest[digits..];
        let data = if rest.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(rest).ok()?
        };
        Some(Self { kind, id, data })
    }
}

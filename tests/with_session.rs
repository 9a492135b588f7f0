//! What `#[with_session]` handlers do at run time, through a real server (axum, socketioxide,
//! tower-sessions' `MemoryStore` on 127.0.0.1) and a real `rust_socketio` client: the ack
//! comes after the save, `Err` saves nothing, `require` and bad payloads stop the handler
//! before anything runs, `SessionData` is written back, and `connect` refuses sockets.

use std::{
    str::FromStr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use axum::{routing::post, Router};
use futures_util::FutureExt;
use rust_socketio::{
    asynchronous::{Client, ClientBuilder},
    Event, Payload,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use session_runtime::{
    with_session, ReadOnlySession, Session, SessionData, SessionError, SocketSessions,
};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, Data, SocketRef, State},
    handler::ConnectHandler,
    SocketIo,
};
use tokio::sync::{mpsc, oneshot};
use tower_sessions::{
    session::{Id, Record},
    session_store, MemoryStore, SessionManagerLayer, SessionStore,
};

const TIMEOUT: Duration = Duration::from_secs(15);

/// `MemoryStore`, counting what reaches it.
#[derive(Clone, Debug, Default)]
struct CountingStore {
    inner: MemoryStore,
    loads: Arc<AtomicUsize>,
    saves: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl SessionStore for CountingStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.inner.create(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save(record).await
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id).await
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.inner.delete(id).await
    }
}

/// How many handler bodies ran: a guard that stops a handler must leave it unchanged.
#[derive(Clone, Default)]
struct Runs(Arc<AtomicUsize>);

impl Runs {
    fn count(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[with_session(autosave)]
async fn incr<A: Adapter>(_socket: SocketRef<A>, session: Session) -> Result<i64, SessionError> {
    let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
    session.insert("count", count)?;
    Ok(count)
}

#[derive(Debug)]
struct Refused(&'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl From<SessionError> for Refused {
    fn from(_: SessionError) -> Self {
        Refused("session error")
    }
}

/// Writes first, then may fail: a failure must save nothing.
#[with_session(autosave, require = "user")]
async fn spend(
    State(runs): State<Runs>,
    session: Session,
    Data(amount): Data<i64>,
) -> Result<i64, Refused> {
    runs.count();
    let balance = session.get::<i64>("balance")?.unwrap_or(100) - amount;
    session.insert("balance", balance)?;
    if balance < 0 {
        return Err(Refused("not enough credit"));
    }
    Ok(balance)
}

#[derive(Default, Serialize, Deserialize)]
struct Cart {
    items: Vec<String>,
}

#[with_session(autosave, key = "cart")]
async fn add(mut cart: SessionData<Cart>, Data(item): Data<String>) -> usize {
    cart.items.push(item);
    cart.items.len()
}

#[with_session(readonly, require = "user")]
async fn whoami(session: ReadOnlySession) -> Result<Option<String>, SessionError> {
    session.get("user")
}

/// Acknowledges by itself.
#[with_session(autosave)]
async fn note(session: Session, ack: AckSender, Data(text): Data<String>) {
    let saved = session.insert("note", &text).is_ok();
    ack.send(&json!({ "noted": saved })).ok();
}

/// Writes, then leaves early or through `?`: the save and the ack run either way.
#[with_session(autosave)]
async fn tally(session: Session, Data(step): Data<String>) -> Result<i64, SessionError> {
    session.insert("touched", true)?;
    if step == "early" {
        session.insert("tally", 7)?;
        return Ok(7);
    }
    // `label` holds a string: reading it as a number fails, and `?` leaves the body.
    let tally = session.get::<i64>("label")?.unwrap_or(0);
    Ok(tally)
}

/// Writes, then panics.
#[with_session(autosave)]
async fn explode(session: Session) -> Result<i64, SessionError> {
    session.insert("count", 1000)?;
    panic!("explode: a deliberate panic in a test handler");
}

#[with_session(readonly, require = "user", connect)]
async fn members_only(session: ReadOnlySession) -> Result<(), Refused> {
    match session.get::<bool>("banned") {
        Ok(Some(true)) => Err(Refused("this account is banned")),
        _ => Ok(()),
    }
}

struct Server {
    url: String,
    store: CountingStore,
    runs: Runs,
}

async fn start() -> Server {
    let store = CountingStore::default();
    let runs = Runs::default();
    let sessions = SocketSessions::new(store.clone());
    let (sio_layer, io) = SocketIo::builder().with_state(runs.clone()).build_layer();
    io.ns(
        "/",
        sessions.handler(|socket: SocketRef| {
            socket.on("incr", incr);
            socket.on("spend", spend);
            socket.on("add", add);
            socket.on("whoami", whoami);
            socket.on("note", note);
            socket.on("tally", tally);
            socket.on("explode", explode);
        }),
    );
    io.ns(
        "/members",
        sessions.handler(|_: SocketRef| {}).with(members_only),
    );
    // Test-only HTTP: `/set?key=value` writes `key` (a JSON value) into the caller's session.
    let router = Router::new()
        .route(
            "/set",
            post(
                async |session: tower_sessions::Session,
                       axum::extract::Query(q): axum::extract::Query<
                    std::collections::HashMap<String, String>,
                >| {
                    for (key, value) in q {
                        let value: Value = serde_json::from_str(&value).unwrap_or(json!(value));
                        session.insert(&key, value).await.expect("insert");
                    }
                },
            ),
        )
        .layer(sio_layer)
        .layer(SessionManagerLayer::new(store.clone()).with_secure(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Server { url, store, runs }
}

impl Server {
    /// A fresh session holding `values`; returns its cookie.
    async fn session(&self, values: &[(&str, &str)]) -> String {
        let response = reqwest::Client::new()
            .post(format!("{}/set", self.url))
            .query(values)
            .send()
            .await
            .expect("POST /set");
        let cookie = response
            .headers()
            .get("set-cookie")
            .expect("a session cookie")
            .to_str()
            .unwrap();
        cookie.split(';').next().unwrap().to_owned()
    }

    /// Writes `key` (a JSON value) into the session of `cookie` over HTTP.
    async fn set(&self, cookie: &str, key: &str, value: &str) {
        reqwest::Client::new()
            .post(format!("{}/set", self.url))
            .header("cookie", cookie)
            .query(&[(key, value)])
            .send()
            .await
            .expect("POST /set")
            .error_for_status()
            .expect("POST /set succeeds");
    }

    async fn record(&self, cookie: &str) -> Option<Value> {
        let id = Id::from_str(cookie.split_once('=').unwrap().1).unwrap();
        let record = self.store.inner.load(&id).await.unwrap()?;
        Some(serde_json::to_value(record.data).unwrap())
    }

    fn loads(&self) -> usize {
        self.store.loads.load(Ordering::SeqCst)
    }

    fn saves(&self) -> usize {
        self.store.saves.load(Ordering::SeqCst)
    }

    fn runs(&self) -> usize {
        self.runs.0.load(Ordering::SeqCst)
    }
}

struct Socket {
    client: Client,
}

impl Socket {
    /// Connects to `ns`; `Err` is the server's `connect_error` message.
    async fn connect(server: &Server, ns: &str, cookie: &str) -> Result<Self, String> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Result<(), String>>();
        let ok = tx.clone();
        let client = ClientBuilder::new(format!("{}/", server.url))
            .namespace(ns)
            .reconnect(false)
            .opening_header("Cookie", cookie)
            .on(Event::Connect, move |_, _| {
                let _ = ok.send(Ok(()));
                async {}.boxed()
            })
            .on(Event::Error, move |payload, _| {
                let text = match payload {
                    Payload::Text(values) => values
                        .first()
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_default(),
                    #[allow(deprecated)]
                    Payload::String(text) => text,
                    Payload::Binary(_) => String::new(),
                };
                if text.contains("ConnectError") {
                    let _ = tx.send(Err(text));
                }
                async {}.boxed()
            })
            .connect()
            .await
            .expect("transport connects");
        let answer = tokio::time::timeout(TIMEOUT, rx.recv())
            .await
            .expect("an answer to CONNECT")
            .expect("client running");
        answer.map(|()| Self { client })
    }

    async fn ack(&self, event: &str, args: Vec<Value>) -> Value {
        let (tx, rx) = oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        self.client
            .emit_with_ack(event, Payload::Text(args), TIMEOUT, move |payload, _| {
                let value = match payload {
                    Payload::Text(mut values) if !values.is_empty() => values.remove(0),
                    _ => Value::Null,
                };
                // rust_socketio hands an ack's arguments over as one array.
                let value = match value {
                    Value::Array(mut args) if !args.is_empty() => args.remove(0),
                    other => other,
                };
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(value);
                }
                async {}.boxed()
            })
            .await
            .expect("emit");
        tokio::time::timeout(TIMEOUT, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack for `{event}`"))
            .unwrap()
    }
}

#[tokio::test]
async fn the_ack_comes_after_the_save() {
    let server = start().await;
    let cookie = server.session(&[("count", "41")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();

    assert_eq!(socket.ack("incr", vec![]).await, json!(42));
    // The client heard 42: the store already holds it.
    assert_eq!(server.record(&cookie).await.unwrap()["count"], json!(42));
}

#[tokio::test]
async fn require_stops_the_handler_before_its_body() {
    let server = start().await;
    let cookie = server.session(&[("balance", "10")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();
    let saves = server.saves();

    assert_eq!(
        socket.ack("spend", vec![json!(5)]).await,
        json!({ "error": "the session has no `user`" })
    );
    assert_eq!(
        socket.ack("whoami", vec![]).await,
        json!({ "error": "the session has no `user`" })
    );
    assert_eq!(server.runs(), 0);
    assert_eq!(server.saves(), saves);
    assert_eq!(server.record(&cookie).await.unwrap()["balance"], json!(10));
}

#[tokio::test]
async fn an_err_saves_nothing() {
    let server = start().await;
    let cookie = server
        .session(&[("user", "\"alice\""), ("balance", "10")])
        .await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();

    assert_eq!(socket.ack("spend", vec![json!(4)]).await, json!(6));
    let saves = server.saves();
    // The body wrote -94 before returning `Err`: nothing of it reaches the store.
    assert_eq!(
        socket.ack("spend", vec![json!(100)]).await,
        json!({ "error": "not enough credit" })
    );
    assert_eq!(server.runs(), 2);
    assert_eq!(server.saves(), saves);
    assert_eq!(server.record(&cookie).await.unwrap()["balance"], json!(6));
}

#[tokio::test]
async fn readonly_never_writes() {
    let server = start().await;
    let cookie = server.session(&[("user", "\"alice\"")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();
    let saves = server.saves();

    assert_eq!(socket.ack("whoami", vec![]).await, json!("alice"));
    assert_eq!(server.saves(), saves);
}

#[tokio::test]
async fn a_bad_payload_is_answered_and_touches_nothing() {
    let server = start().await;
    let cookie = server.session(&[("user", "\"alice\"")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();
    let loads = server.loads();

    let answer = socket.ack("spend", vec![json!("a lot")]).await;
    let error = answer["error"].as_str().expect("an error ack");
    assert!(error.starts_with("invalid payload: "), "{error}");
    assert_eq!(server.runs(), 0);
    assert_eq!(
        server.loads(),
        loads,
        "a bad payload must not reach the store"
    );
}

#[tokio::test]
async fn session_data_is_written_back() {
    let server = start().await;
    let cookie = server.session(&[("user", "\"alice\"")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();

    assert_eq!(socket.ack("add", vec![json!("tea")]).await, json!(1));
    assert_eq!(socket.ack("add", vec![json!("milk")]).await, json!(2));
    assert_eq!(
        server.record(&cookie).await.unwrap()["cart"],
        json!({ "items": ["tea", "milk"] })
    );
}

#[tokio::test]
async fn session_data_that_does_not_read_fails_and_writes_nothing() {
    let server = start().await;
    let cookie = server.session(&[("cart", "42")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();
    let saves = server.saves();

    let answer = socket.ack("add", vec![json!("tea")]).await;
    let error = answer["error"].as_str().expect("an error ack");
    assert!(error.contains("`cart`"), "{error}");
    assert_eq!(server.saves(), saves);
    assert_eq!(server.record(&cookie).await.unwrap()["cart"], json!(42));
}

#[tokio::test]
async fn a_unit_handler_acknowledges_by_itself() {
    let server = start().await;
    let cookie = server.session(&[("user", "\"alice\"")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();

    assert_eq!(
        socket.ack("note", vec![json!("hello")]).await,
        json!({ "noted": true })
    );
    // Its save follows its own ack: wait for it, boundedly.
    let mut saved = None;
    for _ in 0..100 {
        saved = server.record(&cookie).await.unwrap().get("note").cloned();
        if saved.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(saved, Some(json!("hello")));
}

#[tokio::test]
async fn connect_refuses_sockets_that_fail_the_guard() {
    let server = start().await;
    let anonymous = server.session(&[("visits", "1")]).await;
    let banned = server
        .session(&[("user", "\"mallory\""), ("banned", "true")])
        .await;
    let member = server.session(&[("user", "\"alice\"")]).await;

    let refused = Socket::connect(&server, "/members", &anonymous).await.err();
    assert!(
        refused
            .as_deref()
            .is_some_and(|m| m.contains("the session has no `user`")),
        "{refused:?}"
    );
    let refused = Socket::connect(&server, "/members", &banned).await.err();
    assert!(
        refused
            .as_deref()
            .is_some_and(|m| m.contains("this account is banned")),
        "{refused:?}"
    );
    assert!(Socket::connect(&server, "/members", &member).await.is_ok());
}

#[tokio::test]
async fn every_event_reloads_what_http_wrote_in_between() {
    let server = start().await;
    let cookie = server.session(&[("count", "1")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();

    assert_eq!(socket.ack("incr", vec![]).await, json!(2));
    server.set(&cookie, "count", "100").await;
    assert_eq!(socket.ack("incr", vec![]).await, json!(101));
}

#[tokio::test]
async fn an_early_return_still_saves_before_the_ack() {
    let server = start().await;
    let cookie = server.session(&[("label", "\"ten\"")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();
    let saves = server.saves();

    assert_eq!(socket.ack("tally", vec![json!("early")]).await, json!(7));
    assert_eq!(server.saves(), saves + 1);
    let record = server.record(&cookie).await.unwrap();
    assert_eq!(
        (&record["tally"], &record["touched"]),
        (&json!(7), &json!(true))
    );
}

#[tokio::test]
async fn an_error_through_question_mark_saves_nothing_and_is_answered() {
    let server = start().await;
    let cookie = server.session(&[("label", "\"ten\"")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();
    let saves = server.saves();

    let answer = socket.ack("tally", vec![json!("late")]).await;
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("`label`"), "{answer}");
    assert_eq!(server.saves(), saves);
    // `touched` was written before the `?`: it never reached the store.
    assert_eq!(server.record(&cookie).await.unwrap().get("touched"), None);
}

#[tokio::test]
async fn a_panic_saves_nothing_is_answered_and_the_socket_goes_on() {
    let server = start().await;
    let cookie = server.session(&[("count", "5")]).await;
    let socket = Socket::connect(&server, "/", &cookie).await.unwrap();
    let saves = server.saves();

    assert_eq!(
        socket.ack("explode", vec![]).await,
        json!({ "error": "the handler panicked; nothing was saved" })
    );
    assert_eq!(server.saves(), saves);
    assert_eq!(server.record(&cookie).await.unwrap()["count"], json!(5));
    // The lock was released and the socket still works.
    assert_eq!(socket.ack("incr", vec![]).await, json!(6));
}

//! Your axum login session, fresh and safe, in every socket.io handler.
//!
//! An axum app keeps its login in a [tower-sessions] cookie session; its real-time side runs on
//! [socketioxide]. This crate gives every socket.io handler that same session, with one attribute
//! per handler and one call to wire the HTTP side:
//!
//! ```
//! use axum::Router;
//! use session_runtime::{with_session, ReadOnlySocketSession, SessionError, SocketSession, SocketSessions};
//! use socketioxide::{extract::SocketRef, SocketIo};
//! use tower_sessions::MemoryStore;
//!
//! #[with_session(autosave)]
//! async fn incr(session: SocketSession) -> Result<i64, SessionError> {
//!     let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
//!     session.insert("count", count)?;
//!     Ok(count) // acknowledged to the client after the save
//! }
//!
//! #[with_session(readonly)]
//! async fn whoami(session: ReadOnlySocketSession) -> Result<Option<String>, SessionError> {
//!     session.get("user") // fresh from the store, no lock, never written
//! }
//!
//! let sessions = SocketSessions::new(MemoryStore::default()); // any tower-sessions 0.14 store
//! let (sio_layer, io) = SocketIo::new_layer();
//! io.ns("/", sessions.handler(|socket: SocketRef| {
//!     socket.on("incr", incr);
//!     socket.on("whoami", whoami);
//! }));
//! let app: Router = Router::new()
//!     .layer(sio_layer)
//!     .layer(sessions.layer(io, |session_layer| session_layer)); // outside the socket.io layer
//! ```
//!
//! Versions: socketioxide 0.18, tower-sessions 0.14 (any of its stores), axum 0.8.
//!
//! This page is the manual: [the model](#the-model), [wiring](#wiring), [handlers](#handlers),
//! [HTTP routes](#http-routes), [what ends a session](#what-ends-a-session),
//! [users](#users), [several nodes](#several-nodes), [security](#security),
//! [failure and limits](#failure-and-limits), [feature flags](#feature-flags).
//!
//! # The model
//!
//! | | what it means | how |
//! |---|---|---|
//! | **Fresh** | each handler sees the record as the store holds it *now*: a change over HTTP is visible to the very next socket event | every invocation reloads the record; the handshake's cached copy gives only the session id and the expiry setting |
//! | **Locked** | writers of one session never lose each other's updates, across all sockets of that session and the HTTP routes that write it | a per-session lock ([`locks`]) held from reload to save, by `autosave` handlers and by routes taking [`http::LockedSession`]; `readonly` takes none; lock entries vanish when unused |
//! | **Transactional** | changes are written once, after the handler succeeds, only if something changed; an `Err` or a panic writes nothing; the client's acknowledgement comes after the save | the wrapper [`with_session`] generates (or [`SessionHandle::autosave`]) |
//! | **Gone means gone** | a session logged out, expired or rotated is never written back by a socket, under its id or a new one | a missing record is never saved; the socket stays anonymous or is disconnected ([`OnGone`]) |
//! | **Whole life pushed** | whatever ends a session — a logout or a rotation in any route or handler, or its expiry — reaches every socket of it, on every node, within a second | each socket joins its session's room; the end is pushed there as [`GONE_EVENT`] (see [What ends a session](#what-ends-a-session)) |
//!
//! The handler's session is a copy in memory: reads and writes on [`SocketSession`] are
//! synchronous and never touch the store; the wrapper loads before the body and saves after it.
//!
//! # Wiring
//!
//! ## The one call
//!
//! [`SocketSessions::new`] takes the store (any tower-sessions 0.14 store). Register each
//! namespace through [`SocketSessions::handler`]: it attaches the session to the socket and
//! registers your event handlers before the client hears CONNECT, so no first event is missed.
//! Then [`SocketSessions::layer`] builds the whole HTTP side — origin check, lock layer,
//! tower-sessions' session layer on the same store — as one [`SessionStack`], added **outside**
//! the socket.io layer. Its closure configures the session layer as tower-sessions would (cookie
//! name, key, expiry, `Secure`, ...):
//!
//! ```
//! use axum::{routing::post, Router};
//! use session_runtime::{
//!     http::{refresh_cookie, session_json, LockedSession},
//!     with_session, SessionError, SocketSession, SocketSessions,
//! };
//! use socketioxide::{extract::SocketRef, SocketIo};
//! use tower_sessions::{cookie::{time::Duration, Key}, Expiry, MemoryStore};
//!
//! #[with_session(autosave, require = "user")]
//! async fn incr(session: SocketSession) -> Result<i64, SessionError> {
//!     let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
//!     session.insert("count", count)?;
//!     Ok(count)
//! }
//!
//! async fn http_incr(session: LockedSession) -> Result<String, axum::http::StatusCode> {
//!     let failed = |_| axum::http::StatusCode::INTERNAL_SERVER_ERROR;
//!     let count = session.get::<i64>("count").await.map_err(failed)?.unwrap_or(0) + 1;
//!     session.insert("count", count).await.map_err(failed)?;
//!     Ok(count.to_string())
//! }
//!
//! let key = Key::generate(); // in production, the same key on every start and every node
//! let sessions = SocketSessions::new(MemoryStore::default()).with_room_key(key.master());
//! let (sio_layer, io) = SocketIo::builder()
//!     .max_buffer_size(1024) // the bursts you promise (see "Limits")
//!     .build_layer();
//! io.ns("/", sessions.handler(|socket: SocketRef| {
//!     socket.on("incr", incr);
//! }));
//! let app: Router = Router::new()
//!     .route("/incr", post(http_incr)) // same lock as the sockets
//!     .route("/get/session", session_json(&["user", "count"]))
//!     .route("/session/refresh", refresh_cookie())
//!     .layer(sio_layer)
//!     .layer(sessions.layer(io, |session_layer| {
//!         session_layer
//!             .with_private(key) // the socket side never needs the key
//!             .with_expiry(Expiry::OnInactivity(Duration::minutes(30)))
//!     }));
//! ```
//!
//! ## Layer order, and why
//!
//! The router's layers, innermost first (what [`SessionStack`] puts in place, around
//! `SocketIoLayer`):
//!
//! 1. socket.io's `SocketIoLayer`.
//! 2. The activity layer ([`activity::ActivityLayer`]), **inside** the session layer: a request
//!    that read its session without writing it extends an `OnInactivity` expiry, under the
//!    session's lock, and gets the cookie again (see [`activity`]).
//! 3. tower-sessions' `SessionManagerLayer`, **outside** socket.io: the socket.io handshake
//!    request then carries the session — over websocket, polling, and polling upgraded to
//!    websocket; under plain, signed and private cookies alike. The handshake's copy of the
//!    record is cached for ever, so the runtime keeps only its id and expiry setting and reloads
//!    for every event. Its store is a [`http::WatchedStore`], which sees every delete.
//! 4. The lock layer ([`http::SessionLockLayer`]), **outside** the session layer: a route taking
//!    [`http::LockedSession`] keeps the session's lock until tower-sessions has saved at the end
//!    of the request, and a request that ended a session is pushed to its sockets after that save.
//! 5. The origin check ([`origin::OriginCheckLayer`]), outermost: a page of another site gets 403
//!    before any session is loaded (see [Security](#security)).
//!
//! A socket whose handshake did not pass the lock layer still works, but HTTP logouts reach it
//! only at its next event; the runtime logs that wiring mistake once, at `error`.
//!
//! ## The pieces, for a stack assembled by hand
//!
//! [`SocketSessions::session_layer`], [`SocketSessions::lock_layer`] and
//! [`origin::OriginCheckLayer`] are the three layers [`SocketSessions::layer`] stacks; add them in
//! that order (each `.layer` wraps what is above it):
//!
//! ```
//! use axum::Router;
//! use session_runtime::{origin::OriginCheckLayer, SocketSessions};
//! use socketioxide::{extract::SocketRef, SocketIo};
//! use tower_sessions::MemoryStore;
//!
//! let sessions = SocketSessions::new(MemoryStore::default());
//! let (sio_layer, io) = SocketIo::new_layer();
//! io.ns("/", sessions.handler(|_: SocketRef| {}));
//! let app: Router = Router::new()
//!     .layer(sio_layer)
//!     .layer(sessions.session_layer().with_secure(false))
//!     .layer(sessions.lock_layer(io))
//!     .layer(OriginCheckLayer::same_origin().with_path("/socket.io"));
//! ```
//!
//! A namespace whose connect handler you write yourself takes the session from the middleware
//! [`SocketSessions::attach`] (`handler.with(sessions.attach())`); its event handlers are then
//! registered after CONNECT and can miss the client's first events. The [`connect`] module names
//! the types both return.
//!
//! ## Many idle sockets
//!
//! Two settings take an idle socket from about 32 KB to about 21 KB of server RSS and make a
//! reconnect storm cheaper per handshake (measured one at a time by the repository's benchmark,
//! at 15 000 sockets): socketioxide's `ws_read_buffer_size(512)` (per socket, default 4 096 B:
//! about 3.5 KB less, small events about as fast), and [`scale::OwnRequestHead`] around the whole
//! router, so that the handshake head socketioxide keeps for each socket no longer pins hyper's
//! 16 KiB read buffer:
//!
//! ```
//! use axum::{extract::Request, Router, ServiceExt};
//! use session_runtime::{scale::OwnRequestHead, SocketSessions};
//! use socketioxide::{extract::SocketRef, SocketIo};
//! use tower_sessions::MemoryStore;
//!
//! let sessions = SocketSessions::new(MemoryStore::default());
//! let (sio_layer, io) = SocketIo::builder().ws_read_buffer_size(512).build_layer();
//! io.ns("/", sessions.handler(|_: SocketRef| {}));
//! let router: Router = Router::new().layer(sio_layer).layer(sessions.layer(io, |layer| layer));
//! let app = OwnRequestHead::new(router);
//! // axum::serve(listener, ServiceExt::<Request>::into_make_service(app)).await?;
//! let _make_service = ServiceExt::<Request>::into_make_service(app);
//! ```
//!
//! The rest of an idle socket (about 12 KB of engine.io packet channel and tasks) sits in
//! engineioxide, where no setting reaches it. mimalloc and jemalloc hold more per socket than
//! glibc's malloc here.
//!
//! # Handlers
//!
//! ## The attribute
//!
//! [`with_session`] turns a plain `async fn` into a socketioxide event handler that runs one
//! transaction on the socket's session:
//!
//! | option | effect |
//! |---|---|
//! | `autosave` | lock → reload → body → save if modified → unlock → acknowledge. The body takes [`SocketSession`] |
//! | `readonly` | reload → body → acknowledge; no lock, never a write. The body takes [`ReadOnlySocketSession`], which has no write methods (writing is a compile error) |
//! | `require = "key"` | the body runs only if the session holds `key`; otherwise the client gets ``{"error": "the session has no `key`"}`` |
//! | `key = "name"` | the body takes [`SessionData<T>`] bound to `name`: deserialised before, written back after (`autosave`) |
//! | `connect` | with `readonly`: the function is a connect middleware (`.with(guard)`); an `Err` or a failed `require` refuses the socket with a `connect_error` |
//!
//! The return value is the acknowledgement, sent **after** the save: `-> T` (`T: Serialize`),
//! `-> Result<T, E>` (`E: Display`; `Err` is acknowledged `{"error": "<E's Display>"}` and saves
//! nothing), or `()` (the handler keeps its own `AckSender`). A `Data<T>` parameter that fails to
//! deserialise is acknowledged `{"error": "invalid payload: ..."}` and nothing runs. `?` and
//! `return` reach the save and the acknowledgement; a panic saves nothing and is acknowledged as
//! an error. Other parameters are socketioxide extractors in any order (`SocketRef<A>`, `Data<T>`,
//! `State<T>`, `Extension<T>`, `Event`, ...), and generic adapters work. Misuse is a single
//! compile error on the token at fault — taking tower-sessions' `Session` included, which is for
//! HTTP routes.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use session_runtime::{with_session, ReadOnlySocketSession, SessionData, SessionError, SocketSessions};
//! use socketioxide::{extract::{Data, SocketRef}, handler::ConnectHandler, SocketIo};
//! use tower_sessions::MemoryStore;
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Cart { items: Vec<String> }
//!
//! #[with_session(autosave, key = "cart", require = "user")]
//! async fn add(mut cart: SessionData<Cart>, Data(item): Data<String>) -> Result<usize, SessionError> {
//!     cart.items.push(item);
//!     Ok(cart.items.len())
//! }
//!
//! #[with_session(readonly, require = "user", connect)]
//! async fn logged_in_only(_session: ReadOnlySocketSession) -> Result<(), SessionError> {
//!     Ok(())
//! }
//!
//! let sessions = SocketSessions::new(MemoryStore::default());
//! let (_sio_layer, io) = SocketIo::new_layer();
//! io.ns("/shop", sessions.handler(|socket: SocketRef| {
//!     socket.on("add", add);
//! }).with(logged_in_only));
//! ```
//!
//! ## Written by hand: `SessionHandle`
//!
//! Without the attribute, [`SessionHandle`] (an extractor) runs the same transactions:
//! [`SessionHandle::autosave`], [`SessionHandle::readonly`] and [`SessionHandle::read`]. The
//! handler then acknowledges itself, after the transaction, and calls
//! [`SessionHandle::apply_gone_policy`] once the client has its answer:
//!
//! ```
//! use session_runtime::{SessionError, SessionHandle};
//! use socketioxide::extract::AckSender;
//!
//! async fn incr(handle: SessionHandle, ack: AckSender) {
//!     let result = handle
//!         .autosave(async |session| {
//!             let count = session.get::<i64>("count")?.unwrap_or(0) + 1;
//!             session.insert("count", count)?;
//!             Ok::<_, SessionError>(count)
//!         })
//!         .await;
//!     let answer = match result {
//!         Ok(count) => serde_json::json!(count),
//!         Err(err) => serde_json::json!({ "error": err.to_string() }),
//!     };
//!     ack.send(&answer).ok();
//!     handle.apply_gone_policy();
//! }
//! ```
//!
//! # HTTP routes
//!
//! Routes that **write** the session take [`http::LockedSession`] instead of
//! `tower_sessions::Session`: it takes the session's lock (bounded by [`Timeouts`]), reloads the
//! record, and keeps the lock until tower-sessions has saved at the end of the request, so HTTP
//! and socket writers never lose each other's updates. Routes that only read keep the plain
//! `Session`. Log in, log out and change privileges here (see [Security](#security)):
//!
//! ```
//! use axum::{http::StatusCode, routing::post, Router};
//! use session_runtime::{http::LockedSession, SocketSessions};
//! use socketioxide::{extract::SocketRef, SocketIo};
//! use tower_sessions::MemoryStore;
//!
//! async fn login(session: LockedSession) -> Result<(), StatusCode> {
//!     let failed = |_| StatusCode::INTERNAL_SERVER_ERROR;
//!     session.cycle_id().await.map_err(failed)?; // a new id: the old one's sockets hear "rotated"
//!     session.insert("user", "alice").await.map_err(failed)
//! }
//!
//! async fn logout(session: LockedSession) -> Result<(), StatusCode> {
//!     session.flush().await.map_err(|_| StatusCode::INTERNAL_SERVER_ERROR) // "logged out"
//! }
//!
//! let sessions = SocketSessions::new(MemoryStore::default());
//! let (sio_layer, io) = SocketIo::new_layer();
//! io.ns("/", sessions.handler(|_: SocketRef| {}));
//! let app: Router = Router::new()
//!     .route("/login", post(login))
//!     .route("/logout", post(logout))
//!     .layer(sio_layer)
//!     .layer(sessions.layer(io, |layer| layer));
//! ```
//!
//! Two ready routes: [`http::session_json`] answers the caller's own session as JSON, limited to an
//! allow-list of keys (for a page showing what its sockets did), and [`http::refresh_cookie`]
//! re-sends the cookie for a session kept alive by its sockets (see
//! [Keep-alive and the cookie](#keep-alive-and-the-cookie)).
//!
//! A route that writes through the plain `Session` is not serialised with the sockets: it can
//! overwrite a concurrent socket update (tower-sessions saves the whole record at the end of the
//! request).
//!
//! # What ends a session
//!
//! Three things end a session, and each is pushed to the session's sockets:
//!
//! | what | where | reason pushed |
//! |---|---|---|
//! | a logout: `flush` | any HTTP route (`LockedSession` or plain `Session`), or [`SocketSession::flush`] in an `autosave` handler | `"logged out"` |
//! | an id rotation: `cycle_id` | an HTTP route (a socket can't rotate, see [Security](#security)) | `"rotated"` |
//! | expiry | the record's expiry date passed (`Expiry::OnInactivity` or `Expiry::AtDateTime`), idle sockets included | `"expired"` |
//!
//! Each socket of a session joins the room [`SocketSessions::room`] in its namespace. When a
//! session ends, [`GONE_EVENT`] (`"session:gone"`) with `{"reason": "..."}` is pushed to that room
//! in every namespace, within a second, on every node (logouts and rotations through the
//! socket.io adapter; each node runs its own expiry timers, one per session that has sockets on
//! it, and reloads the record before pushing, so a session another node extended is never pushed
//! gone). An HTTP request pushes after tower-sessions has saved and before the response leaves, so
//! a client that hears the push and reloads sees the new state. Sessions without an expiry setting
//! (none, or `Expiry::OnSessionEnd`) have no timer: besides a logout or a rotation, they end when
//! the store drops them, which their sockets learn at their next event.
//!
//! Then the [`OnGone`] policy ([`SocketSessions::with_on_gone`]) applies:
//! [`OnGone::KeepAnonymous`] (the default) takes the sockets out of the room and leaves them
//! connected: `readonly` handlers read an empty session, writers get [`SessionError::Gone`].
//! [`OnGone::disconnect()`](OnGone::disconnect) disconnects them after the event; the client
//! reconnects with its new cookie. A socket that finds its session gone at one of its events gets
//! the error as its acknowledgement (and, under `Disconnect`, the event, then the disconnection).
//! [`SocketSessions::with_session_required`] refuses sockets without a valid session at the
//! handshake, with a `connect_error`.
//!
//! ```
//! use session_runtime::{OnGone, SocketSessions};
//! use tower_sessions::MemoryStore;
//!
//! let sessions = SocketSessions::new(MemoryStore::default())
//!     .with_on_gone(OnGone::disconnect())
//!     .with_session_required();
//! ```
//!
//! ## Keep-alive and the cookie
//!
//! Under `Expiry::OnInactivity`, a user active only over the socket must not be logged out while
//! chatting. Every HTTP request that reads the session is activity (the [`activity`] layer,
//! part of [`SocketSessions::layer`]). With [`KeepAlive::Events`] (the default; [`SocketSessions::with_keep_alive`]), a socket
//! event moves the record's expiry one window ahead as an HTTP request would — at most once per
//! quarter of the window per session, under the session's lock, so it never overwrites a write nor
//! brings back a session that ended. [`KeepAlive::Writes`] counts only `autosave` events,
//! [`KeepAlive::Off`] none.
//!
//! The store's record then outlives the browser's cookie, whose `Max-Age` was set by the last HTTP
//! response that saved the session: no socket can set a cookie. So after a touch the socket
//! receives [`REFRESH_EVENT`] (`"session:refresh"`, no data), and the page answers with a request
//! to [`http::refresh_cookie`], whose response carries the cookie with a fresh `Max-Age`:
//!
//! ```js
//! socket.on("session:refresh", () => fetch("/session/refresh", { method: "POST" }));
//! ```
//!
//! # Users
//!
//! [`SocketSessions::with_users`] names where a session keeps its user ([`users::Users`]):
//! each socket then also joins its user's room, an index keeps every session of each user
//! (in memory, or shared by the nodes: `RedisSessions::user_index`,
//! `PostgresSessions::user_index`), and [`SocketSessions::user_sessions`],
//! [`SocketSessions::user_sockets`], [`SocketSessions::end_user_sessions`] and
//! [`SocketSessions::end_other_user_sessions`] answer "which devices are signed in", "log out
//! everywhere" and "log out my other devices", pushed to every socket on every node. The
//! [`users`] module documents why the index is exact whatever the churn. With the
//! `axum-login` feature, handlers take the axum-login user, re-checked on every event
//! (`login::SocketAuth`; the `login` module states when `get_user` runs).
//!
//! # Several nodes
//!
//! With the `redis` feature, every process of an app keeps its sessions, per-session locks (as
//! fenced leases) and socket.io broadcasts in one Redis — single, Sentinel or Cluster: take the
//! store and the locks from [`redis::RedisSessions`](redis/struct.RedisSessions.html) and the adapter from it too. Every rule of
//! [the model](#the-model) holds across nodes; the nodes must share the cookie key and the room key
//! ([`SocketSessions::with_room_key`], e.g. the cookie key's `master()`), or a logout on one node
//! reaches no socket of another. The [`redis`](redis/index.html) module documents the wiring, the lease, the
//! topologies, what a failover may lose, and the costs in round trips.
//!
//! With the `postgres` feature, the same three live in one PostgreSQL and nothing else:
//! [`postgres::PostgresSessions`](postgres/struct.PostgresSessions.html) gives the store (PostgresStore's own table, so an
//! app moves to it without logging anyone out), the leases and the socket.io adapter
//! (socketioxide-postgres, LISTEN/NOTIFY), on one sqlx pool. The
//! [`postgres`](postgres/index.html) module documents its wiring, lease and limits.
//!
//! # Security
//!
//! ## Cross-site sockets: the origin check
//!
//! A browser sends the session cookie with every request to the app's host, whichever page makes
//! it, so a page on another site can open a socket.io connection to the app and act as the
//! logged-in user (cross-site WebSocket hijacking; HTTP long-polling is as exposed). socket.io
//! servers don't check where a connection comes from, and a CORS layer only adds headers.
//! [`SocketSessions::layer`] therefore checks the `Origin` of every socket.io request (the
//! handshake, each polling request, the websocket upgrade) and refuses with `403`, logged at
//! `warn`, those that are not the app's own:
//!
//! - "The app's own" is the host the browser sent the request to (its `Host` header, port
//!   included), so it holds however the app is deployed.
//! - Requests without `Origin` (Node or Rust clients, `curl`) are served; browsers always send it
//!   on the websocket upgrade and on cross-origin requests.
//! - `Origin: null` (sandboxed frames, `file:` pages) is refused unless allowed.
//!
//! [`SessionStack::with_origin_check`] takes another [`origin::OriginCheckLayer`] (more allowed
//! origins, refusing requests without `Origin`), and [`SessionStack::without_origin_check`] turns
//! the check off, for apps whose sockets carry no credentials of value:
//!
//! ```
//! use axum::Router;
//! use session_runtime::{origin::OriginCheckLayer, SocketSessions};
//! use socketioxide::SocketIo;
//! use tower_sessions::MemoryStore;
//!
//! let sessions = SocketSessions::new(MemoryStore::default());
//! let (sio_layer, io) = SocketIo::new_layer();
//! let app: Router = Router::new().layer(sio_layer).layer(
//!     sessions.layer(io, |layer| layer).with_origin_check(
//!         OriginCheckLayer::same_origin()
//!             .with_allowed("https://admin.example.com") // exact scheme, host and port
//!             .with_allowed("https://*.example.com")     // any subdomain (not example.com itself)
//!             .with_missing_origin_refused(),            // browsers only
//!     ),
//! );
//! ```
//!
//! ## Why a socket can't rotate the session id
//!
//! A cookie is set by an HTTP response. A socket.io connection has had its last HTTP response (the
//! handshake, or the websocket upgrade) before any event runs, so no event can give the browser a
//! new cookie. [`SocketSession`] therefore has no `cycle_id`, and a socket can't carry a session to
//! a new id; [`SocketSession::flush`] ends the session (a logout) at save time.
//!
//! Rotating the id when privileges change is what defeats session fixation (an attacker who planted
//! or learned the pre-login id keeps nothing after the rotation). So:
//!
//! - **Log in, log out and change roles over HTTP**, calling tower-sessions' `cycle_id()` (or
//!   `flush()`) in a route that takes [`http::LockedSession`]. Every socket holding the old id
//!   is told `session:gone` and can never write that session back; the client reconnects with the
//!   new cookie.
//! - A socket handler *can* write a privilege (e.g. set `user`), but the id stays the same, so
//!   anyone holding that id gains the privilege too. Treat a socket login as a convenience for
//!   apps without fixation risk (ids that never leave the cookie, `HttpOnly`, `SameSite`, private
//!   cookies), or have the client follow it with an HTTP request that rotates.
//!
//! ## Cookies and what leaves the process
//!
//! - Keep tower-sessions' cookie defaults (`HttpOnly`, `SameSite=Strict`, `Secure`), and prefer
//!   signed or private cookies (`with_private(key)` in the closure of [`SocketSessions::layer`]);
//!   the socket side never needs the key. Turn `Secure` off only for plain HTTP on loopback.
//! - Room names leave the process (adapters publish them), so they never hold the session id:
//!   a room is `session:<hash>`, 128 bits of HMAC-SHA256 of the id under the room key, random per
//!   process unless [`SocketSessions::with_room_key`] sets it.
//! - What a client reads of a failure depends only on its kind: never a session id, never a
//!   store's or a lock backend's own text (see [below](#what-clients-read-and-what-the-log-keeps)).
//!   The session id is never logged.
//!
//! # Failure and limits
//!
//! ## Timeouts
//!
//! Every wait of the runtime is bounded ([`SocketSessions::with_timeouts`], which also bounds
//! [`http::LockedSession`]):
//!
//! | wait | default | on expiry the client reads |
//! |---|---|---|
//! | a store operation (load, save, delete) | 3 s ([`Timeouts::with_store`]) | `session store timed out` ([`SessionError::TimedOut`], HTTP 503) |
//! | the session's lock, held by another writer | 3 s ([`Timeouts::with_lock`]) | `the session is busy: try again` ([`SessionError::Busy`], HTTP 503) |
//! | the handler's body | 30 s, or none ([`Timeouts::with_handler`]) | `the handler did not finish in time; nothing was saved` ([`SessionError::HandlerTimedOut`]) |
//!
//! ```
//! use std::time::Duration;
//! use session_runtime::{SocketSessions, Timeouts};
//! use tower_sessions::MemoryStore;
//!
//! let sessions = SocketSessions::new(MemoryStore::default()).with_timeouts(
//!     Timeouts::default().with_store(Duration::from_secs(1)).with_lock(Duration::from_secs(2)),
//! );
//! ```
//!
//! With the defaults a client whose store hangs is answered within 9 s (lock, load and save give
//! up after 3 s each), whatever the handler does. Whatever expires or fails, the lock is released,
//! nothing is written by that event, and the next event reloads and tries again: the session works
//! as soon as the store does.
//!
//! ## What clients read, and what the log keeps
//!
//! A failure reaches the client as `{"error": "<message>"}` (an acknowledgement, a
//! `connect_error`, or an HTTP body from `LockedSession`), with a short message that depends only
//! on the kind of failure ([`SessionError`]'s `Display`):
//!
//! | [`SessionError`] | the client reads |
//! |---|---|
//! | `NoSession` | `no session: the connection carried no valid session cookie` |
//! | `Gone` | `the session is gone (logged out, expired or rotated): log in again` |
//! | `Missing(key)` | ``the session has no `key` `` |
//! | `Serde { key, .. }` | ``session value `key` could not be (de)serialised`` |
//! | `Store(_)` | `session store failed` (HTTP: 503) |
//! | `Lock { .. }` | `could not lock the session` (HTTP: 503) |
//! | `TimedOut` | `session store timed out` (HTTP: 503) |
//! | `Busy` | `the session is busy: try again` (HTTP: 503) |
//! | `LeaseLost` | `the session's lock lapsed; nothing was saved: try again` (HTTP: 503) |
//! | `HandlerTimedOut` | `the handler did not finish in time; nothing was saved` |
//! | `Panicked` | `the handler panicked; nothing was saved` |
//! | `Closed` | `the session was used after its handler finished: writes would be lost` |
//! | `NoSessionLayer`, `NotAttached` | `the session is unavailable: ...` (a wiring mistake, logged with the fix) |
//!
//! The whole error, its `#[source]` chain included ([`SessionError::report`]), goes to `tracing`
//! inside a `with_session` span with the fields `ns`, `event` and `lock_waited` (whether the writer
//! had to wait for the session's lock), at `error` for server faults (store, lock backend, wiring,
//! a handler that hangs) and `debug` for the client's own (gone, missing key).
//!
//! ## Store faults
//!
//! A store that fails (an error, not a hang) is acknowledged `session store failed`, and an HTTP
//! route taking `LockedSession` answers 503; nothing is half-written and no acknowledged update is
//! ever lost: the repository's tests run a store failing one call in three under a burst, on
//! MemoryStore, MokaStore and SQLite, and check the exact count after.
//!
//! ## Bad input and the packet limit
//!
//! Bad input is an error acknowledgement, never a panic: payloads of any JSON shape or nesting,
//! binary attachments, session records holding unexpected types, cookies of any length and
//! alphabet. Packets are capped by socketioxide's `max_payload` (polling) and
//! `ws_max_message_size` (websocket); size them for your events. engine.io can't refuse a single
//! packet, so an oversized one closes that connection (the client reconnects) and nothing else.
//!
//! ## Limits
//!
//! - A save that times out may still land if the store was only slow: the client is told it
//!   failed and the next reload shows what the store holds. Make your handlers' writes idempotent
//!   where that matters, or raise the store timeout.
//! - tower-sessions saves the HTTP session at the end of the request, outside this runtime: a
//!   failure there is tower-sessions' `500` with an empty body, and that save is not bounded by
//!   [`Timeouts`] (socket writers waiting for the lock behind it get `Busy` after 3 s).
//! - The lock bound also caps a burst: events that queue behind more than 3 s of work on one
//!   session are answered `busy` (nothing written) instead of waiting. 20 sockets × 25 concurrent
//!   `incr` on one session, on a store with 2 ms of latency, got 28 such answers of 500 in the
//!   benchmark; raise [`Timeouts::with_lock`] for bursts like that, knowing a hung store is then
//!   answered later (the lock, load and save bounds add up).
//! - A handler body that times out is dropped at its next `.await`; a body that blocks the thread
//!   without awaiting can't be stopped by any async timeout.
//! - Size socketioxide's `max_buffer_size` for the bursts you promise: the default (128 packets
//!   per socket) drops acknowledgements under a burst of 200 concurrent events.
//! - Keep `SessionManagerLayer::with_always_save` off (the default): with it, every polling
//!   request reloads and saves the whole record at its end, outside the session lock, and can
//!   overwrite a socket write made in between.
//! - Don't give the router a custom `.fallback(handler)` when socket.io rides on it as a layer:
//!   axum 0.8 turns it into `any(handler)`, each HTTP method then gets its own socket.io service
//!   with its own engine, and polling clients get `400 Session ID unknown` when their GET and POST
//!   reach different engines.
//! - [`locks::LocalSessionLocks`] (the default) serialises the writers of one process; several
//!   nodes need a distributed [`locks::SessionLocks`], such as [`redis::RedisSessions::locks`](redis/struct.RedisSessions.html#method.locks) or
//!   [`postgres::PostgresSessions::locks`](postgres/struct.PostgresSessions.html#method.locks).
//! - Writers that take no lock (a plain `Session` route that writes) are neither serialised nor,
//!   on Redis, fenced.
//! - With `Expiry::OnInactivity`, an HTTP request is activity when it reads its session (a
//!   write, or a read-only request through the [`activity`] layer); a request that never reads
//!   it (a static file) is not, as reading it only to touch it would cost a store read per
//!   request. Socket events are activity too ([`KeepAlive`]).
//! - On Redis a record's key expires at the record's own instant, to the millisecond (`PXAT`,
//!   Redis 6.2 or later); records written by tower-sessions-redis-store itself (`EXAT`, whole
//!   seconds) still load, and end up to 1 s early.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `redis` | off | the [`redis`](redis/index.html) module: sessions, per-session leases and socket.io broadcasts in one Redis (fred 10, tower-sessions-redis-store 0.16, socketioxide-redis 0.4.4), for several nodes |
//! | `postgres` | off | the [`postgres`](postgres/index.html) module: the same in one PostgreSQL (sqlx 0.8, tower-sessions-sqlx-store 0.15, socketioxide-postgres 0.2), for several nodes |
//! | `axum-login` | off | the `login` module: axum-login 0.18's user in socket handlers, re-checked on every event (`SocketAuth`, `AxumLogin`) |
//!
//! [tower-sessions]: https://docs.rs/tower-sessions/0.14
//! [socketioxide]: https://docs.rs/socketioxide/0.18
#![warn(missing_docs)]
#![forbid(unsafe_code)]
// docs.rs (nightly, `--cfg docsrs`): items behind a feature say which one. Stable ignores it.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod activity;
mod error;
mod gone;
mod handle;
pub mod http;
pub mod locks;
#[cfg(feature = "axum-login")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum-login")))]
pub mod login;
pub mod origin;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
pub mod scale;
mod session;
mod sockets;
mod stack;
mod timeouts;
pub mod users;

/// Keeps traits whose methods are the runtime's own from being implemented elsewhere.
#[cfg_attr(not(feature = "axum-login"), allow(dead_code))]
mod private_seal {
    // Unnameable outside the crate: `Shared` does not leak through it.
    #[allow(private_interfaces)]
    pub trait Sealed {
        /// The record a handler's transaction loaded.
        fn shared(&self) -> &crate::session::Shared;
    }
}

pub use error::SessionError;
pub use handle::SessionHandle;
pub use session::{ReadOnlySocketSession, SessionData, SocketSession};
#[doc(inline)]
pub use session_macros::with_session;
pub use sockets::{KeepAlive, OnGone, SocketSessions, GONE_EVENT, REFRESH_EVENT};
pub use stack::{SessionStack, SessionStackService};
pub use timeouts::Timeouts;

/// The connect handler and middleware that [`SocketSessions::handler`] and
/// [`SocketSessions::attach`] return: named here for code that stores them.
///
/// ```
/// use session_runtime::{connect::SessionConnectHandler, SocketSessions};
/// use socketioxide::extract::SocketRef;
/// use tower_sessions::MemoryStore;
///
/// fn register(socket: SocketRef) {
///     socket.on("ping", async || {});
/// }
///
/// /// Every namespace of the app, registered the same way.
/// fn namespace(sessions: &SocketSessions) -> SessionConnectHandler<fn(SocketRef)> {
///     sessions.handler(register as fn(SocketRef))
/// }
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let _handler = namespace(&sessions);
/// ```
pub mod connect {
    pub use crate::sockets::{AttachSession, SessionConnectHandler};
}

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

/// Runs the examples of [`with_session`]'s documentation as this crate's doctests: they need
/// this crate, which the macro crate cannot depend on.
#[cfg(doctest)]
#[doc = include_str!("../../session-macros/src/with_session.md")]
pub struct WithSessionDocs;

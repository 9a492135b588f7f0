//! The HTTP half of the demo protocol (`shared/bench-protocol.md`):
//!
//! | request | effect | response |
//! |---|---|---|
//! | `POST /login {"user":"alice"}` | sets `user`; `count` to 0 if absent; rotates the id | `{"user":"alice"}` |
//! | `POST /logout` | deletes the session | `{"ok":true}` |
//! | `GET /session` | reads | `{"user":..,"count":N}` |
//! | `POST /incr` | `count += 1` | `{"count":N}` |
//!
//! Writers take [`LockedSession`], so HTTP and socket writers of one session are serialised.
//! A bad body gets 400 and a failing store 503, both as `{"error": "..."}`.

use axum::{
    body::Bytes,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde_json::{json, Value};
use session_runtime::http::LockedSession;

/// The four protocol routes. Layer them with the socket.io layer and, outside it,
/// `SocketSessions::layer`.
///
/// ```
/// use session_runtime::SocketSessions;
/// use socketioxide::SocketIo;
/// use tower_sessions::MemoryStore;
///
/// let sessions = SocketSessions::new(MemoryStore::default());
/// let (sio_layer, io) = SocketIo::new_layer();
/// let app = session_workspace::protocol::http_routes()
///     .layer(sio_layer)
///     .layer(sessions.layer(io, |layer| layer.with_secure(false)));
/// # let _: axum::Router = app;
/// ```
pub fn http_routes() -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/session", get(read))
        .route("/incr", post(incr))
}

/// Validates a `{"user": "..."}` body as the protocol says: a non-empty string of at most 64
/// characters.
///
/// ```
/// use serde_json::json;
/// use session_workspace::protocol::parse_user;
///
/// assert_eq!(parse_user(&json!({ "user": "bob" })), Ok("bob".to_owned()));
/// assert!(parse_user(&json!({ "user": "" })).is_err());
/// assert!(parse_user(&json!(["bob"])).is_err());
/// ```
pub fn parse_user(body: &Value) -> Result<String, String> {
    match body.get("user") {
        Some(Value::String(user)) if !user.is_empty() && user.chars().count() <= 64 => {
            Ok(user.clone())
        }
        Some(_) => Err("`user` must be a non-empty string of at most 64 characters".into()),
        None => Err("expected a JSON object with a `user` field".into()),
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": message.to_string() }))).into_response()
}

fn answer(result: Result<Value, tower_sessions::session::Error>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(err) => {
            // The store's own text stays in the log: it may name hosts, ids or session data.
            tracing::error!(%err, "session store failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "session store failed")
        }
    }
}

async fn login(session: LockedSession, body: Bytes) -> Response {
    let user = match serde_json::from_slice::<Value>(&body)
        .map_err(|err| format!("the body is not JSON: {err}"))
        .and_then(|body| parse_user(&body))
    {
        Ok(user) => user,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    answer(
        async {
            session.insert("user", &user).await?;
            if session.get::<i64>("count").await?.is_none() {
                session.insert("count", 0).await?;
            }
            // Fixation defence: a login gets a new id; sockets holding the old one find it gone.
            session.cycle_id().await?;
            Ok(json!({ "user": user }))
        }
        .await,
    )
}

async fn logout(session: LockedSession) -> Response {
    answer(session.flush().await.map(|()| json!({ "ok": true })))
}

async fn read(session: tower_sessions::Session) -> Response {
    answer(
        async {
            let user = session.get::<String>("user").await?;
            let count = session.get::<i64>("count").await?.unwrap_or(0);
            Ok(json!({ "user": user, "count": count }))
        }
        .await,
    )
}

async fn incr(session: LockedSession) -> Response {
    answer(
        async {
            let count = session.get::<i64>("count").await?.unwrap_or(0) + 1;
            session.insert("count", count).await?;
            Ok(json!({ "count": count }))
        }
        .await,
    )
}

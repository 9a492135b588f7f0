//! The test server's HTTP routes beyond the demo protocol, and the middleware in front of
//! them.
//!
//! - Every route passes through [`read_user_first`], an auth-style middleware that reads the
//!   session first, so `LockedSession` must reload the stale copy it leaves behind.
//! - `GET /session-id` ([`session_id`]): the id the session layer read from the cookie,
//!   whatever the cookie mode, so a test can look the record up in the store.
//! - `POST /set?key=json&...` ([`set`]): writes values into the caller's session, so a test
//!   can start from any record (see [`Http::set`](crate::Http::set)).
//! - `POST /plain/logout` ([`plain_logout`]) and `POST /plain/rotate` ([`plain_rotate`]):
//!   `flush` and `cycle_id` through tower-sessions' own `Session`, without `LockedSession`, as
//!   an app that never heard of this runtime writes them.
//! - `POST /session/refresh`: the runtime's `session_runtime::http::refresh_cookie()`.

use std::collections::HashMap;

use axum::{
    extract::Query,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde_json::{json, Value};
use session_runtime::http::LockedSession;

/// 503, as the protocol's routes answer: the store's own text stays in the log.
fn unavailable(err: tower_sessions::session::Error) -> Response {
    tracing::error!(%err, "session store failed");
    let body = Json(json!({ "error": "session store failed" }));
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// Reads the session before every HTTP route runs, as an auth or logging middleware would:
/// the copy it loads is stale by the time a writer holds the lock.
pub async fn read_user_first(
    session: tower_sessions::Session,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Err(err) = session.get::<String>("user").await {
        return unavailable(err);
    }
    next.run(request).await
}

/// `GET /session-id`: `{"id": "..."}` or `{"id": null}`.
pub async fn session_id(session: tower_sessions::Session) -> Json<Value> {
    Json(json!({ "id": session.id().map(|id| id.to_string()) }))
}

/// `POST /set?key=value`: each value is JSON (`"\"alice\""`, `42`, `true`), or else a string.
pub async fn set(
    session: LockedSession,
    Query(values): Query<HashMap<String, String>>,
) -> Response {
    let session = session.into_inner();
    for (key, value) in values {
        let value: Value = serde_json::from_str(&value).unwrap_or(Value::String(value));
        if let Err(err) = session.insert(&key, value).await {
            return unavailable(err);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /plain/logout`: `tower_sessions::Session::flush`, no `LockedSession`; `{"ok": true}`.
pub async fn plain_logout(session: tower_sessions::Session) -> Response {
    match session.flush().await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(err) => unavailable(err),
    }
}

/// `POST /plain/rotate`: `tower_sessions::Session::cycle_id`, no `LockedSession`; `{"ok": true}`.
pub async fn plain_rotate(session: tower_sessions::Session) -> Response {
    match session.cycle_id().await {
        Ok(()) => Json(json!({ "ok": true })).into_response(),
        Err(err) => unavailable(err),
    }
}

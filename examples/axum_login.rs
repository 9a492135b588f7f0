//! axum-login's users inside socket.io handlers: log in over HTTP with axum-login, and every
//! socket event sees that user, re-checked against the backend (see `session_runtime::login`).
//!
//! ```text
//! cargo run --example axum_login            # http://127.0.0.1:3001 (PORT to change it)
//! ```
//!
//! Users in memory: `alice` / `wonderland`, `bob` / `builder`.
//! - `POST /login {"name", "password"}` → `{"user": name}`, or 401 `{"error": "bad credentials"}`
//! - `GET /me` → `{"user": name | null}`
//! - `POST /password {"password"}` → `{"user": name}`: this session stays signed in; every
//!   other session of the user fails its next check (over HTTP, as axum-login does, and on
//!   its sockets, which are pushed `session:gone`)
//! - `POST /logout` → `{"user": null}`
//! - socket events: `whoami` (readonly) → the user's name or `null`; `visits` (autosave) →
//!   a count kept in the session, for signed-in users only.

use std::{
    collections::HashMap,
    convert::Infallible,
    env, fmt,
    net::SocketAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, RwLock,
    },
};

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use axum_login::{AuthManager, AuthSession, AuthUser, AuthnBackend, UserId};
use serde::Deserialize;
use serde_json::json;
use session_runtime::{
    login::{AxumLogin, SocketAuth, DEFAULT_DATA_KEY},
    users::Users,
    with_session, ReadOnlySocketSession, SessionError, SocketSession, SocketSessions,
};
use sha2::{Digest as _, Sha256};
use socketioxide::{extract::SocketRef, SocketIo};
use subtle::ConstantTimeEq as _;
use tower_sessions::MemoryStore;

/// A user of the in-memory backend.
#[derive(Clone)]
pub struct User {
    id: i64,
    name: String,
    /// What axum-login compares with the session's copy: a password change invalidates every
    /// session that logged in before it. A real app keeps a slow password hash (argon2, e.g.
    /// with the `password-auth` crate); SHA-256 keeps this example small.
    pw_hash: Vec<u8>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AuthUser for User {
    type Id = i64;

    fn id(&self) -> i64 {
        self.id
    }

    fn session_auth_hash(&self) -> &[u8] {
        &self.pw_hash
    }
}

fn hash(password: &str) -> Vec<u8> {
    Sha256::digest(password.as_bytes()).to_vec()
}

/// Users in memory, and how often `get_user` was called (to watch the per-socket cache).
#[derive(Clone)]
pub struct Backend {
    users: Arc<RwLock<HashMap<i64, User>>>,
    get_user_calls: Arc<AtomicUsize>,
}

impl Default for Backend {
    fn default() -> Self {
        let users = [(1, "alice", "wonderland"), (2, "bob", "builder")]
            .into_iter()
            .map(|(id, name, password)| {
                let user = User {
                    id,
                    name: name.to_owned(),
                    pw_hash: hash(password),
                };
                (id, user)
            })
            .collect();
        Self {
            users: Arc::new(RwLock::new(users)),
            get_user_calls: Arc::default(),
        }
    }
}

impl Backend {
    /// Sets `id`'s password; the updated user, if it exists.
    fn set_password(&self, id: i64, password: &str) -> Option<User> {
        let mut users = self.users.write().unwrap_or_else(|e| e.into_inner());
        let user = users.get_mut(&id)?;
        user.pw_hash = hash(password);
        Some(user.clone())
    }

    /// How many times `get_user` ran.
    pub fn get_user_calls(&self) -> usize {
        self.get_user_calls.load(Ordering::Relaxed)
    }
}

/// `POST /login`'s body.
#[derive(Clone, Deserialize)]
pub struct Credentials {
    name: String,
    password: String,
}

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Credentials;
    type Error = Infallible;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, Infallible> {
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        let given = hash(&creds.password);
        Ok(users
            .values()
            .find(|user| user.name == creds.name && bool::from(user.pw_hash.ct_eq(&given)))
            .cloned())
    }

    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, Infallible> {
        self.get_user_calls.fetch_add(1, Ordering::Relaxed);
        let users = self.users.read().unwrap_or_else(|e| e.into_inner());
        Ok(users.get(id).cloned())
    }
}

type Auth = AuthSession<Backend>;

fn failed(err: impl fmt::Display) -> Response {
    tracing::error!(%err, "axum-login failed");
    let body = Json(json!({ "error": "the session could not be saved" }));
    (StatusCode::INTERNAL_SERVER_ERROR, body).into_response()
}

async fn login(mut auth: Auth, Json(creds): Json<Credentials>) -> Response {
    let user = match auth.authenticate(creds).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let body = Json(json!({ "error": "bad credentials" }));
            return (StatusCode::UNAUTHORIZED, body).into_response();
        }
        Err(err) => return failed(err),
    };
    match auth.login(&user).await {
        Ok(()) => Json(json!({ "user": user.name })).into_response(),
        Err(err) => failed(err),
    }
}

async fn me(auth: Auth) -> Json<serde_json::Value> {
    Json(json!({ "user": auth.user.map(|user| user.name) }))
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

async fn password(mut auth: Auth, Json(new): Json<NewPassword>) -> Response {
    let Some(user) = auth.user.clone() else {
        let body = Json(json!({ "error": "not logged in" }));
        return (StatusCode::UNAUTHORIZED, body).into_response();
    };
    let Some(user) = auth.backend.set_password(user.id, &new.password) else {
        return failed("the user vanished");
    };
    // This session takes the new hash; the user's other sessions keep the old one.
    match auth.login(&user).await {
        Ok(()) => Json(json!({ "user": user.name })).into_response(),
        Err(err) => failed(err),
    }
}

async fn logout(mut auth: Auth) -> Response {
    match auth.logout().await {
        Ok(_) => Json(json!({ "user": null })).into_response(),
        Err(err) => failed(err),
    }
}

/// The signed-in user's name, checked against the backend on this event.
#[with_session(readonly)]
async fn whoami(
    session: ReadOnlySocketSession,
    auth: SocketAuth<Backend>,
) -> Result<Option<String>, SessionError> {
    Ok(auth.user(&session).await?.map(|user| user.name))
}

/// A count in the session, for signed-in users: the check and the write are one transaction.
#[with_session(autosave)]
async fn visits(session: SocketSession, auth: SocketAuth<Backend>) -> Result<i64, String> {
    let user = auth.user(&session).await.map_err(|err| err.to_string())?;
    if user.is_none() {
        return Err("not logged in".to_owned());
    }
    let visits = session
        .get::<i64>("visits")
        .map_err(|e| e.to_string())?
        .unwrap_or(0)
        + 1;
    session
        .insert("visits", visits)
        .map_err(|e| e.to_string())?;
    Ok(visits)
}

/// The whole app on `backend`: HTTP routes under axum-login, and socket handlers that see
/// its users.
pub fn app(backend: Backend) -> Router {
    let sessions = SocketSessions::new(MemoryStore::default())
        // Each socket also joins its user's room, by axum-login's user id.
        .with_users(Users::axum_login(DEFAULT_DATA_KEY))
        .with_axum_login(AxumLogin::new(backend.clone()));
    let (sio_layer, io) = SocketIo::new_layer();
    io.ns(
        "/",
        sessions.handler(|socket: SocketRef| {
            socket.on("whoami", whoami);
            socket.on("visits", visits);
        }),
    );
    Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/password", post(password))
        .route("/logout", post(logout))
        // axum-login's service alone: the session layer is the runtime's, below.
        .layer(tower::layer::layer_fn(move |inner| {
            AuthManager::new(inner, backend.clone(), DEFAULT_DATA_KEY)
        }))
        .layer(sio_layer)
        // Plain http on localhost: a `Secure` cookie would never come back.
        .layer(sessions.layer(io, |layer| layer.with_secure(false)))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let port: u16 = match env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("`PORT` is not a port: {port:?}"))?,
        Err(_) => 3001,
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(Backend::default())).await?;
    Ok(())
}

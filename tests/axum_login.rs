//! The real axum-login (0.18) beside socket handlers, through `examples/axum_login.rs` served
//! on 127.0.0.1: a login made by axum-login over HTTP is the user a socket handler sees; the
//! per-socket cache spares `get_user` while the session's data is unchanged; a password
//! changed on another session is caught at the next event after the recheck interval (an
//! error ack, the session's sockets pushed gone, the session over HTTP ended too), in both
//! modes; bob is untouched.

#[allow(dead_code)]
#[path = "../examples/axum_login.rs"]
mod example;

use std::time::Duration;

use serde_json::json;
use session_harness::{error_of, Http, SocketClient, Transport};

async fn serve() -> (String, example::Backend) {
    let backend = example::Backend::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = example::app(backend.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, backend)
}

async fn login(url: &str, name: &str, password: &str) -> Http {
    let http = Http::new(url.to_owned());
    let body = json!({ "name": name, "password": password }).to_string();
    let (status, answer) = http.raw("POST", "/login", Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({ "user": name }));
    http
}

async fn socket(url: &str, http: &Http) -> SocketClient {
    SocketClient::connect(url, "/", Transport::Websocket, Some(&http.cookie_header()))
        .await
        .expect("socket")
}

/// `socket`'s next `event` is refused, the socket is pushed gone, and its session is ended
/// over HTTP too (`http` is signed out), not only refused.
async fn refused_and_ended(socket: &SocketClient, event: &str, http: &Http) {
    let refused = socket.ack(event, vec![]).await;
    assert!(
        error_of(&refused).starts_with("not authenticated"),
        "{event}: {refused}"
    );
    let gone = socket
        .next_event_within(session_runtime::GONE_EVENT, Duration::from_secs(1))
        .await
        .unwrap_or_else(|| panic!("{event}: the socket is pushed gone"));
    assert_eq!(gone, json!({ "reason": "logged out" }));
    let (_, me) = http.raw("GET", "/me", None).await;
    assert_eq!(me, json!({ "user": null }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_axum_login_user_in_socket_handlers_rechecked_and_a_password_change_caught() {
    let (url, backend) = serve().await;

    let (status, _) = Http::new(url.clone())
        .raw(
            "POST",
            "/login",
            Some(json!({ "name": "alice", "password": "nope" }).to_string()),
        )
        .await;
    assert_eq!(status, 401);

    let phone = login(&url, "alice", "wonderland").await;
    let laptop = login(&url, "alice", "wonderland").await;
    let tablet = login(&url, "alice", "wonderland").await;
    let bob = login(&url, "bob", "builder").await;
    let tablet_socket = socket(&url, &tablet).await;
    let phone_socket = socket(&url, &phone).await;
    let laptop_socket = socket(&url, &laptop).await;
    let bob_socket = socket(&url, &bob).await;

    // The user axum-login logged in over HTTP, in both modes.
    assert_eq!(phone_socket.ack("whoami", vec![]).await, json!("alice"));
    assert_eq!(phone_socket.ack("visits", vec![]).await, json!(1));
    assert_eq!(bob_socket.ack("whoami", vec![]).await, json!("bob"));

    // The cache: the session's axum-login data is unchanged, so `get_user` does not run on
    // each event (at most once more, should the recheck interval lapse meanwhile).
    let before = backend.get_user_calls();
    for _ in 0..10 {
        assert_eq!(phone_socket.ack("whoami", vec![]).await, json!("alice"));
    }
    let calls = backend.get_user_calls() - before;
    assert!(calls <= 1, "get_user ran {calls} times for 10 events");

    // The password changes on the laptop: its own session keeps working.
    let (status, answer) = laptop
        .raw(
            "POST",
            "/password",
            Some(json!({ "password": "looking-glass" }).to_string()),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(laptop_socket.ack("whoami", vec![]).await, json!("alice"));

    // After the recheck interval (1 s), the phone's next event is refused and its socket is
    // pushed gone.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    refused_and_ended(&phone_socket, "visits", &phone).await;
    // A `readonly` event holds no lock, yet ends the session alike.
    refused_and_ended(&tablet_socket, "whoami", &tablet).await;

    // The laptop and bob are untouched.
    assert_eq!(laptop_socket.ack("visits", vec![]).await, json!(1));
    assert_eq!(bob_socket.ack("whoami", vec![]).await, json!("bob"));
    let (_, me) = laptop.raw("GET", "/me", None).await;
    assert_eq!(me, json!({ "user": "alice" }));

    // A logout over HTTP through axum-login is pushed as any logout is.
    let (status, _) = bob.raw("POST", "/logout", None).await;
    assert_eq!(status, 200);
    let gone = bob_socket
        .next_event_within(session_runtime::GONE_EVENT, Duration::from_secs(1))
        .await
        .expect("bob's socket is pushed gone");
    assert_eq!(gone, json!({ "reason": "logged out" }));
}

//! The process half of the harness works as the multi-node and fault tests need: demo nodes
//! on free ports, real signals, a `redis-server` of the test's own, and no process outliving
//! its test, even one that panics.

use std::{process::Command, time::Duration};

use nix::{errno::Errno, sys::signal, unistd::Pid};
use session_harness::{DemoNode, Http, Process, RedisServer};

/// Whether a process with this id still exists (a zombie counts: it was not reaped).
fn exists(pid: u32) -> bool {
    signal::kill(Pid::from_raw(pid as i32), None) != Err(Errno::ESRCH)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_demo_nodes_run_side_by_side_on_free_ports() {
    let [a, b] = DemoNode::start_many::<2>(&[]);
    assert_ne!(a.url(), b.url());
    assert_ne!(a.process.pid(), b.process.pid());
    let alice = a.login("alice").await;
    assert_eq!(alice.http.incr().await, 1);
    // Each node keeps its own MemoryStore: without Redis, B knows nothing of A's session.
    let on_b = Http::with_cookie(b.url(), &alice.cookie());
    assert_eq!(on_b.session().await["user"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_node_answers_nothing_until_it_is_resumed() {
    let node = DemoNode::start(&[]);
    let alice = node.login("alice").await;
    let impatient =
        Http::with_cookie_and_timeout(node.url(), &alice.cookie(), Duration::from_millis(500));

    node.process.pause();
    assert!(
        impatient.try_incr().await.is_err(),
        "a SIGSTOPped node answered"
    );
    node.process.resume();
    // The request that timed out may still run once the node wakes: 1 or 2.
    let count = alice.http.incr().await;
    assert!((1..=2).contains(&count), "count after resume: {count}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_gone_at_once() {
    let mut node = DemoNode::start(&[]);
    let alice = node.login("alice").await;
    let pid = node.process.pid();
    node.process.kill();
    assert!(!node.process.is_running());
    assert!(!exists(pid), "the killed node was not reaped");
    assert!(alice.http.try_incr().await.is_err());
}

#[test]
fn a_process_dies_with_its_guard_even_when_the_test_panics() {
    let mut pid = 0;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let sleeper = Process::spawn("sleeper", Command::new("sleep").arg("600"));
        pid = sleeper.pid();
        assert!(exists(pid));
        panic!("a failing test, holding a process");
    }));
    assert!(outcome.is_err());
    assert!(!exists(pid), "the process outlived the panicking test");
}

#[test]
fn a_process_log_is_kept_and_searchable() {
    let mut echo = Process::spawn(
        "echo",
        Command::new("sh").args(["-c", "echo first; echo 'port 4242' >&2; sleep 600"]),
    );
    let port: u16 = echo.wait_for_line(Duration::from_secs(5), |line| {
        line.strip_prefix("port ").and_then(|p| p.parse().ok())
    });
    assert_eq!(port, 4242);
    assert!(echo.log().contains("first"));
    let err = echo
        .try_wait_for_line(Duration::from_millis(200), |line| {
            line.contains("never").then_some(())
        })
        .unwrap_err();
    assert!(err.contains("no expected line"), "{err}");
}

#[test]
fn redis_server_starts_on_a_free_port_and_restarts_empty() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    assert!(redis.url().starts_with("redis://127.0.0.1:"));
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(redis.cli(&["GET", "k"]), "v");
    let port = redis.port();
    redis.restart();
    assert_eq!(redis.port(), port);
    assert_eq!(
        redis.cli(&["GET", "k"]),
        "",
        "nothing persists across a restart"
    );
    let pid = redis.process.pid();
    redis.stop();
    assert!(!exists(pid));
}

//! [`Relay`]: a TCP relay on a free port of 127.0.0.1 in front of a server (a Redis), that
//! injects network faults between one node and that server on demand:
//!
//! | [`Fault`] | what the node sees |
//! |---|---|
//! | `None` | the server, as if directly |
//! | `Delay(d)` | every byte arrives `d` later, each way (a round trip costs `2 d` more) |
//! | `Blackhole` | connections stay open but nothing arrives either way: a partition. What was sent meanwhile is held and delivered on heal, late, as TCP's retransmissions would after a short partition |
//! | `Cut` | every connection closed, new ones closed at once, until healed |
//!
//! The relay runs on threads of its own (two per connection and direction), so its timing
//! does not depend on the test's runtime, and a delay is kept to a few tens of microseconds
//! (a thread's sleep, not a timer wheel's millisecond). Dropping it closes every connection. A standalone binary of it, `relay` (this
//! crate's `src/bin/relay.rs`), adds a fixed delay for the benchmark.
//!
//! ```no_run
//! use std::time::Duration;
//! use session_harness::{relay::Fault, Relay, RedisServer};
//!
//! let Some(redis) = RedisServer::start() else { return };
//! let relay = Relay::start(redis.port());
//! // A node given `relay.redis_url()` reaches Redis through the relay.
//! relay.set(Fault::Blackhole);
//! relay.set(Fault::None); // heal: what was held is delivered now
//! relay.set(Fault::Delay(Duration::from_millis(1)));
//! ```

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError,
    },
    thread,
    time::{Duration, Instant},
};

/// What the relay does to the traffic (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    Delay(Duration),
    Blackhole,
    Cut,
}

/// A running relay (see the module docs).
pub struct Relay {
    port: u16,
    shared: Arc<Shared>,
}

/// What the relay's threads share.
struct Shared {
    fault: Mutex<Fault>,
    /// Signalled on every change of `fault`: writers held by a blackhole wait on it.
    changed: Condvar,
    /// Both ends of every connection, to close them on a cut.
    streams: Mutex<Vec<TcpStream>>,
    closed: AtomicBool,
}

impl Shared {
    fn fault(&self) -> MutexGuard<'_, Fault> {
        self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close_all(&self) {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        for stream in streams.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Relay {
    /// Starts relaying a free port of 127.0.0.1 to `target_port` on 127.0.0.1, with no fault.
    pub fn start(target_port: u16) -> Self {
        Self::start_with(target_port, Fault::None)
    }

    /// [`Relay::start`] with `fault` from the first connection on.
    pub fn start_with(target_port: u16, fault: Fault) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target_port));
        let shared = Arc::new(Shared {
            fault: Mutex::new(fault),
            changed: Condvar::new(),
            streams: Mutex::default(),
            closed: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        spawn(format!("relay:{port}"), move || {
            for client in listener.incoming() {
                if accepting.closed.load(Ordering::Acquire) {
                    return;
                }
                let Ok(client) = client else { continue };
                if *accepting.fault() == Fault::Cut {
                    continue; // dropped: closed at once
                }
                let shared = accepting.clone();
                spawn(format!("relay:{port}:conn"), move || {
                    connect(client, target, shared)
                });
            }
        });
        Self { port, shared }
    }

    /// The port the relay listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`, for a node's `REDIS_URL`.
    pub fn redis_url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Applies `fault` from now on; [`Fault::None`] heals.
    pub fn set(&self, fault: Fault) {
        *self.shared.fault() = fault;
        self.shared.changed.notify_all();
        if fault == Fault::Cut {
            self.shared.close_all();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.set(Fault::Cut);
        // Wakes the acceptor, which then sees `closed`.
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

fn spawn(name: String, run: impl FnOnce() + Send + 'static) {
    thread::Builder::new()
        .name(name)
        .spawn(run)
        .expect("a relay thread");
}

/// One connection: connects to the target and carries both directions until either side
/// closes or the relay cuts it.
fn connect(client: TcpStream, target: SocketAddr, shared: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let (Ok(client_in), Ok(server_in)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    {
        let mut streams = shared
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        streams.retain(|stream| stream.peer_addr().is_ok());
        for stream in [&client, &server] {
            if let Ok(stream) = stream.try_clone() {
                streams.push(stream);
            }
        }
    }
    let upstream = shared.clone();
    spawn("relay:up".into(), move || pipe(client_in, server, upstream));
    pipe(server_in, client, shared);
}

/// Carries one direction: each chunk stamped with when it may be delivered (now + the delay
/// in force when it was read), held while the relay is a blackhole.
fn pipe(mut from: TcpStream, mut to: TcpStream, shared: Arc<Shared>) {
    let (chunks, queued) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = shared.clone();
    spawn("relay:write".into(), move || {
        for (at, chunk) in queued {
            let left = at.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                thread::sleep(left);
            }
            let mut fault = writer.fault();
            while *fault == Fault::Blackhole {
                fault = writer
                    .changed
                    .wait(fault)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            let cut = *fault == Fault::Cut;
            drop(fault);
            if cut || to.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0; 16 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        let delay = match *shared.fault() {
            Fault::Delay(delay) => delay,
            _ => Duration::ZERO,
        };
        if chunks
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .is_err()
        {
            return;
        }
    }
}

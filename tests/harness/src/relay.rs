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
//! The relay runs on a thread and a runtime of its own, so its timing does not depend on the
//! test's. Dropping it closes every connection. A standalone binary of it, `relay` (this
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
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{tcp, TcpListener, TcpStream},
    sync::{mpsc, watch},
    time::Instant,
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
    fault: watch::Sender<Fault>,
}

impl Relay {
    /// Starts relaying a free port of 127.0.0.1 to `target_port` on 127.0.0.1, with no fault.
    pub fn start(target_port: u16) -> Self {
        Self::start_with(target_port, Fault::None)
    }

    /// [`Relay::start`] with `fault` from the first connection on.
    pub fn start_with(target_port: u16, fault: Fault) -> Self {
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("local address").port();
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, target_port));
        let (sender, faults) = watch::channel(fault);
        std::thread::Builder::new()
            .name(format!("relay:{port}"))
            .spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("relay runtime")
                    .block_on(serve(listener, target, faults))
            })
            .expect("relay thread");
        Self {
            port,
            fault: sender,
        }
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
        self.fault.send_replace(fault);
    }
}

/// Accepts connections until the [`Relay`] is dropped; the runtime's end then closes them.
async fn serve(
    listener: std::net::TcpListener,
    target: SocketAddr,
    mut faults: watch::Receiver<Fault>,
) {
    let listener = TcpListener::from_std(listener).expect("tokio listener");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                if *faults.borrow() == Fault::Cut {
                    continue; // dropped: closed at once
                }
                tokio::spawn(relay(client, target, faults.clone()));
            }
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// One connection: both directions, until either side closes or the relay cuts it.
async fn relay(client: TcpStream, target: SocketAddr, faults: watch::Receiver<Fault>) {
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    for stream in [&client, &server] {
        let _ = stream.set_nodelay(true);
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let mut cut = faults.clone();
    tokio::select! {
        () = async {
            tokio::join!(
                pipe(client_read, server_write, faults.clone()),
                pipe(server_read, client_write, faults),
            );
        } => {}
        _ = cut.wait_for(|fault| *fault == Fault::Cut) => {}
    }
}

/// Carries one direction: each chunk stamped with when it may be delivered (now + the delay
/// in force when it was read), held while the relay is a blackhole.
async fn pipe(
    mut from: tcp::OwnedReadHalf,
    mut to: tcp::OwnedWriteHalf,
    faults: watch::Receiver<Fault>,
) {
    let (chunks, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = {
        let faults = faults.clone();
        async move {
            let mut buf = vec![0; 16 * 1024];
            while let Ok(n @ 1..) = from.read(&mut buf).await {
                let delay = match *faults.borrow() {
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
    };
    let write = async move {
        let mut faults = faults;
        while let Some((at, chunk)) = queued.recv().await {
            tokio::time::sleep_until(at).await;
            if faults
                .wait_for(|fault| *fault != Fault::Blackhole)
                .await
                .is_err()
                || to.write_all(&chunk).await.is_err()
            {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(read, write);
}

//! Memory knobs of `bench_server` (issue 10, scale): each one is a setting a user can copy,
//! measured one at a time by `run.sh` (the section "Idle memory" of the report).
//!
//! - `--bare`: no session layers at all (bare socketioxide, the baseline);
//! - `--max-buffer-size N`: socketioxide's per-socket packet buffer (the bench's default is
//!   16 384, socketioxide's 128);
//! - `--ws-read-buffer N`: engineioxide's websocket read buffer (`ws_read_buffer_size`,
//!   default 4 096), allocated once per socket;
//! - `--own-head`: copies the handshake request's URI and header values out of hyper's read
//!   buffer before socket.io keeps them (`session_runtime::scale::own_request_head`);
//! - `--backlog N`: the listening socket's accept queue (tokio's `TcpListener::bind` asks for
//!   1 024; Linux caps it at `net.core.somaxconn`): a reconnect storm that overflows it has its
//!   connections retried by the clients' kernels after 1 s, 3 s, ...
//!
//! The allocator is a knob too, chosen at build time: the `bench_server_mimalloc` and
//! `bench_server_jemalloc` binaries are this server with another `#[global_allocator]`.

use socketioxide::SocketIoBuilder;

#[derive(Clone, Debug, Default)]
pub struct Knobs {
    pub bare: bool,
    pub max_buffer_size: Option<usize>,
    pub ws_read_buffer: Option<usize>,
    pub own_head: bool,
    pub backlog: Option<u32>,
}

impl Knobs {
    /// Takes `flag` (and its value from `value`) if it is one of the knobs.
    pub fn parse(
        &mut self,
        flag: &str,
        value: &mut dyn FnMut() -> Result<String, String>,
    ) -> Result<bool, String> {
        let mut num = || {
            value()?
                .parse::<usize>()
                .map_err(|e| format!("{flag}: {e}"))
        };
        match flag {
            "--bare" => self.bare = true,
            "--own-head" => self.own_head = true,
            "--max-buffer-size" => self.max_buffer_size = Some(num()?),
            "--ws-read-buffer" => self.ws_read_buffer = Some(num()?),
            "--backlog" => self.backlog = Some(num()? as u32),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn socket_io<A: socketioxide::adapter::Adapter>(
        &self,
        mut builder: SocketIoBuilder<A>,
    ) -> SocketIoBuilder<A> {
        if let Some(n) = self.max_buffer_size {
            builder = builder.max_buffer_size(n);
        }
        if let Some(n) = self.ws_read_buffer {
            builder = builder.ws_read_buffer_size(n);
        }
        builder
    }
}

impl Knobs {
    /// The listening socket on 127.0.0.1:`port`, with the `--backlog` knob.
    pub fn listen(&self, port: u16) -> std::io::Result<tokio::net::TcpListener> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(self.backlog.unwrap_or(1024))
    }
}

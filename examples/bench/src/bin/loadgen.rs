//! A load generator for any server that speaks the demo protocol (`bench-protocol.md`):
//! socket.io v4 over websocket (engine.io protocol 5), with the websocket and socket.io framing
//! written by hand on the TCP stream so that it stays cheaper per event than the servers it
//! drives.
//!
//! ```text
//! cargo run --release -p session-bench --bin loadgen -- --url http://127.0.0.1:3000 --mode loop \
//!     --clients 50 --duration 5 --event incr --pid <server pid> --label autosave/memory
//! ```
//!
//! Every client logs in (`POST /login`, keeps the cookie; `--sessions S` logins shared
//! round-robin by the clients), connects with the cookie, then:
//!
//! - `--mode loop`: a closed loop of `--event` with acks for `--duration` seconds (after
//!   `--warmup` seconds);
//! - `--mode burst`: `--burst K` concurrent events per socket, all sockets at once;
//! - `--mode idle`: connects and holds the sockets, and reports the server's RSS per socket;
//! - `--mode storm`: a reconnect storm, as after a restart: the logged-in clients all connect
//!   at once and each sends a first `whoami`; reports the time until every one is acknowledged,
//!   handshakes/s, handshake p50/p99, errors and the server's peak RSS (module `storm`).
//!
//! It prints one JSON object per run on stdout (and appends it to `--out`): events/s,
//! p50/p99/p999 latency, lost updates (acks vs. the `count` read back over `GET /session`), and,
//! given `--pid`, the server's CPU time per event (user+sys from `/proc/<pid>/stat`), the CPU
//! the load generator and the rest of the machine used meanwhile, and the store operations per
//! event (`--stats`: the bench server's `GET /_bench/stats`). `--no-count-check` skips the
//! read-back, for servers whose `incr` does not touch the session. `--hook-start CMD` and
//! `--hook-end CMD` run a shell command right before the events start and right after they
//! end (e.g. `callgrind_control --zero PID` / `--dump PID`, to profile only the events).
//!
//! Several nodes: `--url A,B` spreads the sockets over the nodes round-robin (logins and
//! read-backs go to the first), so a burst on one session crosses nodes; `--pid P,Q` sums their
//! CPU and RSS. `--redis-monitor PORT` counts, with `redis-cli MONITOR` on that Redis during
//! the events, the commands the nodes sent (a script counts once, not the commands it runs):
//! Redis round trips per event. MONITOR slows Redis down: use it on a run of its own.
//! `--pg-statements URL` counts, in `pg_stat_statements` of that PostgreSQL (the extension
//! created there), the statements run during the events, the ones that read the view left out:
//! PostgreSQL round trips per event (each client sends one statement a round trip). It costs
//! the server nothing and may share a run with the figures.

use std::{
    io::Write,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use session_runtime::postgres::sqlx::{self, Connection, PgConnection};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// How long any single wait may take before the run is declared failed: nothing hangs.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Loop,
    Burst,
    Idle,
    Storm,
}

#[derive(Clone, Debug)]
struct Opts {
    url: String,
    urls: Vec<String>,
    mode: Mode,
    clients: usize,
    sessions: usize,
    duration: f64,
    warmup: f64,
    burst: usize,
    event: String,
    pid: Option<u32>,
    pids: Vec<u32>,
    redis_monitor: Option<u16>,
    pg_statements: Option<String>,
    label: String,
    out: Option<PathBuf>,
    stats: bool,
    hold: f64,
    check_count: bool,
    hook_start: Option<String>,
    hook_end: Option<String>,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        url: "http://127.0.0.1:3000".into(),
        urls: Vec::new(),
        mode: Mode::Loop,
        clients: 50,
        sessions: 0,
        duration: 5.0,
        warmup: 1.0,
        burst: 200,
        event: "incr".into(),
        pid: None,
        pids: Vec::new(),
        redis_monitor: None,
        pg_statements: None,
        label: String::new(),
        out: None,
        stats: false,
        hold: 2.0,
        check_count: true,
        hook_start: None,
        hook_end: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--stats" {
            o.stats = true;
            continue;
        }
        if flag == "--no-count-check" {
            o.check_count = false;
            continue;
        }
        let value = it.next().ok_or(format!("`{flag}` needs a value"))?;
        let num = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--url" => {
                o.urls = value
                    .split(',')
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .collect();
                o.url = o.urls[0].clone();
            }
            "--mode" => {
                o.mode = match value.as_str() {
                    "loop" => Mode::Loop,
                    "burst" => Mode::Burst,
                    "idle" => Mode::Idle,
                    "storm" => Mode::Storm,
                    other => {
                        return Err(format!(
                            "unknown mode `{other}`: expected `loop`, `burst`, `idle` or `storm`"
                        ))
                    }
                }
            }
            "--clients" => o.clients = num(&value)? as usize,
            "--sessions" => o.sessions = num(&value)? as usize,
            "--duration" => o.duration = num(&value)?,
            "--warmup" => o.warmup = num(&value)?,
            "--burst" => o.burst = num(&value)? as usize,
            "--event" => o.event = value,
            "--pid" => {
                o.pids = value
                    .split(',')
                    .map(|p| num(p).map(|p| p as u32))
                    .collect::<Result<_, _>>()?;
                o.pid = o.pids.first().copied();
            }
            "--redis-monitor" => o.redis_monitor = Some(num(&value)? as u16),
            "--pg-statements" => o.pg_statements = Some(value),
            "--label" => o.label = value,
            "--out" => o.out = Some(value.into()),
            "--hold" => o.hold = num(&value)?,
            "--hook-start" => o.hook_start = Some(value),
            "--hook-end" => o.hook_end = Some(value),
            other => return Err(format!("unknown option `{other}`")),
        }
    }
    if o.clients == 0 {
        return Err("`--clients` must be at least 1".into());
    }
    if o.urls.is_empty() {
        o.urls.push(o.url.clone());
    }
    if o.sessions == 0 || o.sessions > o.clients {
        o.sessions = o.clients;
    }
    Ok(o)
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(err) => {
            eprintln!("loadgen: {err}");
            std::process::exit(2);
        }
    };
    // One thread: the script pins it to its own core, so its CPU use tells whether it, and
    // not the server, was the limit.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(opts.clone())) {
        Ok(result) => {
            let line = result.to_string();
            println!("{line}");
            if let Some(path) = &opts.out {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .expect("open --out");
                writeln!(f, "{line}").expect("write --out");
            }
        }
        Err(err) => {
            eprintln!("loadgen [{}]: {err}", opts.label);
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU and memory accounting from /proc.

/// USER_HZ: the unit of `/proc/<pid>/stat` times, 100 on every Linux ABI.
const TICKS_PER_SEC: f64 = 100.0;

/// (user, system) ticks of a process, all its threads.
fn proc_cpu_ticks(pid: &str) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may itself hold spaces: state is field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?))
}

/// (busy, total) ticks of the whole machine.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The servers' RSS, summed over their processes.
fn total_rss_kib(pids: &[u32]) -> Option<u64> {
    pids.iter().map(|&p| rss_kib(p)).sum()
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    server: (u64, u64),
    me: (u64, u64),
    busy: u64,
}

/// The servers' CPU, summed over their processes (several nodes).
fn sample(pids: &[u32]) -> Sample {
    let server = pids
        .iter()
        .filter_map(|p| proc_cpu_ticks(&p.to_string()))
        .fold((0, 0), |(u, s), (du, ds)| (u + du, s + ds));
    Sample {
        at: Instant::now(),
        server,
        me: proc_cpu_ticks("self").unwrap_or_default(),
        busy: machine_ticks().0,
    }
}

fn cpu_fields(a: Sample, b: Sample, events: u64, pid: Option<u32>) -> Value {
    let wall = (b.at - a.at).as_secs_f64();
    let secs = |ticks: u64| ticks as f64 / TICKS_PER_SEC;
    let server_user = secs(b.server.0 - a.server.0);
    let server_sys = secs(b.server.1 - a.server.1);
    let server = server_user + server_sys;
    let me = secs(b.me.0 + b.me.1 - a.me.0 - a.me.1);
    let other = (secs(b.busy - a.busy) - server - me).max(0.0);
    let per_event = |s: f64| (events > 0).then(|| s * 1e6 / events as f64);
    json!({
        "wall_s": wall,
        "server_cpu_us_per_event": pid.and_then(|_| per_event(server)),
        "server_user_us_per_event": pid.and_then(|_| per_event(server_user)),
        "server_sys_us_per_event": pid.and_then(|_| per_event(server_sys)),
        "server_cores": pid.map(|_| server / wall),
        "loadgen_cpu_us_per_event": per_event(me),
        "loadgen_cores": me / wall,
        "other_cores": other / wall,
    })
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// HTTP: login, read back, store stats.

async fn login(http: &reqwest::Client, url: &str, user: &str) -> Result<String, Error> {
    let resp = http
        .post(format!("{url}/login"))
        .json(&json!({ "user": user }))
        .send()
        .await?;
    if !resp.status().is_success() {
        return Err(format!("POST /login: {}", resp.status()).into());
    }
    let cookie = resp
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    if cookie.is_empty() {
        return Err("POST /login set no cookie".into());
    }
    Ok(cookie)
}

async fn read_count(http: &reqwest::Client, url: &str, cookie: &str) -> Result<i64, Error> {
    let body: Value = http
        .get(format!("{url}/session"))
        .header(reqwest::header::COOKIE, cookie)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    body["count"]
        .as_i64()
        .ok_or_else(|| format!("GET /session: no count in {body}").into())
}

async fn read_counts(
    http: &reqwest::Client,
    url: &str,
    cookies: &[String],
) -> Result<Vec<i64>, Error> {
    let mut out = Vec::with_capacity(cookies.len());
    for cookie in cookies {
        out.push(read_count(http, url, cookie).await?);
    }
    Ok(out)
}

async fn store_stats(http: &reqwest::Client, url: &str) -> Result<Value, Error> {
    Ok(http
        .get(format!("{url}/_bench/stats"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

async fn login_all(http: &reqwest::Client, url: &str, n: usize) -> Result<Vec<String>, Error> {
    let limit = Arc::new(Semaphore::new(64));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (http, url, limit) = (http.clone(), url.to_owned(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            login(&http, &url, &format!("user{i}")).await
        }));
    }
    let mut cookies = Vec::with_capacity(n);
    for t in tasks {
        cookies.push(t.await??);
    }
    Ok(cookies)
}

// ---------------------------------------------------------------------------------------------
// socket.io over websocket, by hand: RFC 6455 client framing straight on the TCP stream, so an
// event costs one write and one read and no allocation on the load generator's side.

/// A websocket client connection that speaks just what engine.io needs: text frames, pings,
/// close.
struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already handed out.
    pos: usize,
    mask: [u8; 4],
    out: Vec<u8>,
}

const OP_TEXT: u8 = 0x1;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

impl Ws {
    async fn handshake(addr: &str, cookie: &str, mask: [u8; 4]) -> Result<Self, Error> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Cookie: {cookie}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut ws = Ws {
            stream,
            buf: Vec::with_capacity(8192),
            pos: 0,
            mask,
            out: Vec::with_capacity(256),
        };
        let end = loop {
            if let Some(i) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if ws.buf.len() > 16 * 1024 {
                return Err("handshake response too long".into());
            }
            ws.fill().await?;
        };
        let head = String::from_utf8_lossy(&ws.buf[..end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!(
                "websocket upgrade refused: {}",
                head.lines().next().unwrap_or("")
            )
            .into());
        }
        // Frames that came with the response stay in the buffer.
        ws.pos = end;
        Ok(ws)
    }

    /// Reads more bytes into the buffer, within `STEP_TIMEOUT`.
    async fn fill(&mut self) -> Result<(), Error> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > self.buf.capacity() / 2 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(8192);
        }
        let n = tokio::time::timeout(STEP_TIMEOUT, self.stream.read_buf(&mut self.buf))
            .await
            .map_err(|_| "timed out waiting for the server")??;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(())
    }

    /// Queues one masked frame; `flush` writes everything queued in one go.
    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        self.out.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            self.out.push(0x80 | len as u8);
        } else if len <= u16::MAX as usize {
            self.out.push(0x80 | 126);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0x80 | 127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.out.extend_from_slice(&self.mask);
        let mask = self.mask;
        self.out
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    async fn send_text(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.queue(OP_TEXT, payload);
        self.flush().await
    }

    /// The next text message, answering websocket pings and engine.io pings (`2`) on the way.
    /// The returned range indexes `self.buf` and is valid until the next call.
    async fn next_text(&mut self) -> Result<std::ops::Range<usize>, Error> {
        loop {
            let Some((opcode, range)) = self.parse_frame()? else {
                self.fill().await?;
                continue;
            };
            match opcode {
                OP_TEXT => {
                    if &self.buf[range.clone()] == b"2" {
                        self.send_text(b"3").await?;
                        continue;
                    }
                    return Ok(range);
                }
                OP_PING => {
                    let payload = self.buf[range].to_vec();
                    self.queue(OP_PONG, &payload);
                    self.flush().await?;
                }
                OP_CLOSE => return Err("the server closed the websocket".into()),
                _ => {}
            }
        }
    }

    fn parse_frame(&mut self) -> Result<Option<(u8, std::ops::Range<usize>)>, Error> {
        let b = &self.buf[self.pos..];
        if b.len() < 2 {
            return Ok(None);
        }
        if b[0] & 0x80 == 0 {
            return Err("fragmented websocket messages are not supported".into());
        }
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let (len, mut head) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return Ok(None),
            n => (n as usize, 2),
        };
        if masked {
            head += 4;
        }
        if b.len() < head + len {
            return Ok(None);
        }
        if masked {
            let mask: [u8; 4] = b[head - 4..head].try_into().unwrap();
            let start = self.pos + head;
            for (i, byte) in self.buf[start..start + len].iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
        }
        let start = self.pos + head;
        self.pos = start + len;
        Ok(Some((opcode, start..start + len)))
    }

    fn text(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    async fn close(mut self) {
        self.queue(OP_CLOSE, &[]);
        let _ = self.flush().await;
        let _ = self.stream.shutdown().await;
    }
}

async fn connect(url: &str, cookie: &str, mask: [u8; 4]) -> Result<Ws, Error> {
    let addr = url
        .strip_prefix("http://")
        .ok_or("`--url` must start with http://")?;
    let mut ws = tokio::time::timeout(STEP_TIMEOUT, Ws::handshake(addr, cookie, mask))
        .await
        .map_err(|_| "timed out connecting")??;
    let open = ws.next_text().await?;
    if ws.text(open).first() != Some(&b'0') {
        return Err("expected an engine.io open packet".into());
    }
    ws.send_text(b"40").await?;
    loop {
        let r = ws.next_text().await?;
        let msg = ws.text(r);
        if msg.starts_with(b"40") {
            return Ok(ws);
        }
        if msg.starts_with(b"44") {
            return Err(format!("connect refused: {}", String::from_utf8_lossy(msg)).into());
        }
    }
}

/// `n` sockets, the `i`-th with cookie `i % cookies` on node `i % urls`.
async fn connect_all(urls: &[String], cookies: &[String], n: usize) -> Result<Vec<Ws>, Error> {
    let limit = Arc::new(Semaphore::new(128));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (url, cookie, limit) = (
            urls[i % urls.len()].clone(),
            cookies[i % cookies.len()].clone(),
            limit.clone(),
        );
        // Any mask is valid; vary it so servers see ordinary traffic.
        let mask = (i as u32).wrapping_mul(0x9E37_79B9).to_le_bytes();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await?;
            connect(&url, &cookie, mask).await
        }));
    }
    let mut sockets = Vec::with_capacity(n);
    for t in tasks {
        sockets.push(t.await??);
    }
    Ok(sockets)
}

enum Ack {
    Ok,
    Error,
}

/// An acknowledgement `43<id>[...]`: its id and whether it carries `{"error": ..}`.
fn parse_ack(msg: &[u8]) -> Option<(u64, Ack)> {
    let rest = msg.strip_prefix(b"43")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let id = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    let ack = if rest[digits..].starts_with(b"[{\"error\"") {
        Ack::Error
    } else {
        Ack::Ok
    };
    Some((id, ack))
}

/// Reads until the ack of `want` arrives; other packets are ignored.
async fn wait_ack(ws: &mut Ws, want: u64) -> Result<Ack, Error> {
    loop {
        let r = ws.next_text().await?;
        if let Some((id, ack)) = parse_ack(ws.text(r)) {
            if id == want {
                return Ok(ack);
            }
        }
    }
}

/// `42<id>["<event>"]` into `out`, without allocating.
fn event_packet(out: &mut Vec<u8>, id: u64, event: &str) {
    use std::io::Write as _;
    out.clear();
    let _ = write!(out, "42{id}[\"{event}\"]");
}

#[derive(Default)]
struct ClientResult {
    latencies_us: Vec<u32>,
    counted: u64,
    ok: u64,
    errors: u64,
}

async fn closed_loop(
    mut ws: Ws,
    event: Arc<str>,
    measure_from: Instant,
    end: Instant,
) -> Result<(ClientResult, Ws), Error> {
    let mut r = ClientResult {
        latencies_us: Vec::with_capacity(1 << 14),
        ..Default::default()
    };
    let mut id = 0u64;
    let mut packet = Vec::with_capacity(64);
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        id += 1;
        event_packet(&mut packet, id, &event);
        ws.send_text(&packet).await?;
        let ack = wait_ack(&mut ws, id).await?;
        let done = Instant::now();
        match ack {
            Ack::Ok => r.ok += 1,
            Ack::Error => r.errors += 1,
        }
        if sent >= measure_from && done <= end {
            r.counted += 1;
            r.latencies_us
                .push((done - sent).as_micros().min(u32::MAX as u128) as u32);
        }
    }
    Ok((r, ws))
}

async fn burst(
    mut ws: Ws,
    event: Arc<str>,
    k: usize,
    start: Arc<tokio::sync::Barrier>,
) -> Result<(ClientResult, Ws), Error> {
    let mut r = ClientResult {
        latencies_us: Vec::with_capacity(k),
        ..Default::default()
    };
    start.wait().await;
    let t0 = Instant::now();
    let mut packet = Vec::with_capacity(64);
    for id in 1..=k {
        event_packet(&mut packet, id as u64, &event);
        ws.queue(OP_TEXT, &packet);
    }
    ws.flush().await?;
    let mut pending = k;
    while pending > 0 {
        let range = ws.next_text().await?;
        let Some((_, ack)) = parse_ack(ws.text(range)) else {
            continue;
        };
        match ack {
            Ack::Ok => r.ok += 1,
            Ack::Error => r.errors += 1,
        }
        r.latencies_us
            .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        pending -= 1;
    }
    r.counted = k as u64;
    Ok((r, ws))
}

/// `redis-cli -p PORT MONITOR`, counting the commands clients send: a script is one line, the
/// commands it runs are lines marked `lua` and not counted, nor is MONITOR's own `OK`.
struct RedisMonitor {
    child: std::process::Child,
    counter: std::thread::JoinHandle<u64>,
}

impl RedisMonitor {
    fn start(port: u16) -> Result<Self, Error> {
        use std::io::BufRead;
        let mut child = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "monitor"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("redis-cli monitor: {e}"))?;
        let stdout = child.stdout.take().ok_or("redis-cli monitor: no stdout")?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let counter = std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            // `OK` once MONITOR is on: only then do the events start.
            let _ = lines.next();
            let _ = ready_tx.send(());
            lines
                .map_while(Result::ok)
                .filter(|l| !l.contains(" lua]") && !l.contains("unix:"))
                .count() as u64
        });
        ready_rx
            .recv_timeout(STEP_TIMEOUT)
            .map_err(|_| "redis-cli monitor did not start")?;
        Ok(Self { child, counter })
    }

    fn stop(mut self) -> Result<u64, Error> {
        // Let the last replies' commands reach the monitor before it ends.
        std::thread::sleep(Duration::from_millis(200));
        self.child.kill()?;
        self.child.wait()?;
        self.counter
            .join()
            .map_err(|_| "redis-cli monitor counter panicked".into())
    }
}

/// The statements a PostgreSQL ran, from `pg_stat_statements` (see the module docs).
struct PgStatements {
    conn: PgConnection,
    before: i64,
}

impl PgStatements {
    const SUM: &'static str = "select coalesce(sum(calls), 0)::bigint from pg_stat_statements \
                               where query not ilike '%pg_stat_statements%'";

    async fn start(url: &str) -> Result<Self, Error> {
        let mut conn = PgConnection::connect(url)
            .await
            .map_err(|e| format!("--pg-statements: {e}"))?;
        let before = Self::sum(&mut conn).await?;
        Ok(Self { conn, before })
    }

    async fn sum(conn: &mut PgConnection) -> Result<i64, Error> {
        let (sum,): (i64,) = sqlx::query_as(Self::SUM)
            .fetch_one(conn)
            .await
            .map_err(|e| format!("--pg-statements (is pg_stat_statements created?): {e}"))?;
        Ok(sum)
    }

    async fn stop(mut self) -> Result<u64, Error> {
        // As for the Redis monitor: a statement a node sends after the last ack (none of ours
        // does) gets a moment to be counted.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let after = Self::sum(&mut self.conn).await?;
        Ok((after - self.before).max(0) as u64)
    }
}

fn run_hook(cmd: Option<&str>) -> Result<(), Error> {
    let Some(cmd) = cmd else { return Ok(()) };
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()?;
    if !status.success() {
        return Err(format!("hook `{cmd}` failed: {status}").into());
    }
    Ok(())
}

fn percentile(sorted: &[u32], q: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64) * q).floor() as usize;
    Some(sorted[i.min(sorted.len() - 1)])
}

// ---------------------------------------------------------------------------------------------

async fn run(o: Opts) -> Result<Value, Error> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(STEP_TIMEOUT)
        .build()?;
    let load_before = loadavg();
    let cookies = login_all(&http, &o.url, o.sessions).await?;
    let counts_event = o.check_count && o.event == "incr" && o.mode != Mode::Idle;
    let before_counts = if counts_event {
        read_counts(&http, &o.url, &cookies).await?
    } else {
        Vec::new()
    };

    let mut out = json!({
        "label": o.label,
        "mode": format!("{:?}", o.mode).to_lowercase(),
        "event": o.event,
        "clients": o.clients,
        "sessions": o.sessions,
        "loadavg_before": load_before,
    });

    if o.mode == Mode::Storm {
        return storm::run(&o, &cookies, out).await;
    }

    if o.mode == Mode::Idle {
        o.pid.ok_or("`--mode idle` needs `--pid`")?;
        // Let the logins' garbage settle before the baseline.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = total_rss_kib(&o.pids).ok_or("cannot read the server's RSS")?;
        let sockets = connect_all(&o.urls, &cookies, o.clients).await?;
        // Keep answering pings while holding.
        let mut readers = Vec::with_capacity(sockets.len());
        for mut ws in sockets {
            // `next_text` answers pings; nothing else is expected.
            readers.push(tokio::spawn(async move {
                while ws.next_text().await.is_ok() {}
            }));
        }
        // The server's CPU while every socket sits idle (heartbeats, expiry timers): the second
        // half of the hold, once the connections have settled.
        tokio::time::sleep(Duration::from_secs_f64(o.hold / 2.0)).await;
        let idle_from = sample(&o.pids);
        tokio::time::sleep(Duration::from_secs_f64(o.hold / 2.0)).await;
        let idle_to = sample(&o.pids);
        let rss_after = total_rss_kib(&o.pids).ok_or("cannot read the server's RSS")?;
        let idle_secs = (idle_to.at - idle_from.at).as_secs_f64();
        let idle_ticks = (idle_to.server.0 + idle_to.server.1)
            .saturating_sub(idle_from.server.0 + idle_from.server.1);
        out["idle_server_cpu_ms_per_s"] =
            json!(idle_ticks as f64 / TICKS_PER_SEC * 1e3 / idle_secs);
        for r in &readers {
            r.abort();
        }
        out["rss_before_kib"] = json!(rss_before);
        out["rss_after_kib"] = json!(rss_after);
        out["rss_per_socket_bytes"] =
            json!((rss_after as f64 - rss_before as f64) * 1024.0 / o.clients as f64);
        out["loadavg_after"] = json!(loadavg());
        return Ok(out);
    }

    let sockets = connect_all(&o.urls, &cookies, o.clients).await?;
    let event: Arc<str> = Arc::from(o.event.as_str());
    let stats_before = if o.stats {
        Some(store_stats(&http, &o.url).await?)
    } else {
        None
    };

    run_hook(o.hook_start.as_deref())?;
    let monitor = o.redis_monitor.map(RedisMonitor::start).transpose()?;
    let statements = match &o.pg_statements {
        Some(url) => Some(PgStatements::start(url).await?),
        None => None,
    };
    let (results, a, b, measured_wall) = match o.mode {
        Mode::Loop => {
            let start = Instant::now();
            let measure_from = start + Duration::from_secs_f64(o.warmup);
            let end = measure_from + Duration::from_secs_f64(o.duration);
            // A thread, so that busy client tasks never delay the samples.
            let pids = o.pids.clone();
            let sampler = std::thread::spawn(move || {
                std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
                let a = sample(&pids);
                std::thread::sleep(end.saturating_duration_since(Instant::now()));
                (a, sample(&pids))
            });
            let mut tasks = Vec::with_capacity(sockets.len());
            for ws in sockets {
                tasks.push(tokio::spawn(closed_loop(
                    ws,
                    event.clone(),
                    measure_from,
                    end,
                )));
            }
            let mut results = Vec::with_capacity(tasks.len());
            for t in tasks {
                results.push(t.await??);
            }
            let (a, b) = sampler.join().expect("sampler thread");
            (results, a, b, o.duration)
        }
        Mode::Burst => {
            let barrier = Arc::new(tokio::sync::Barrier::new(sockets.len() + 1));
            let mut tasks = Vec::with_capacity(sockets.len());
            for ws in sockets {
                tasks.push(tokio::spawn(burst(
                    ws,
                    event.clone(),
                    o.burst,
                    barrier.clone(),
                )));
            }
            let a = sample(&o.pids);
            barrier.wait().await;
            let mut results = Vec::with_capacity(tasks.len());
            for t in tasks {
                results.push(t.await??);
            }
            let b = sample(&o.pids);
            let wall = (b.at - a.at).as_secs_f64();
            (results, a, b, wall)
        }
        Mode::Idle | Mode::Storm => unreachable!(),
    };

    let redis_commands = monitor.map(RedisMonitor::stop).transpose()?;
    let pg_statements = match statements {
        Some(statements) => Some(statements.stop().await?),
        None => None,
    };
    run_hook(o.hook_end.as_deref())?;

    let mut lat: Vec<u32> = Vec::new();
    let (mut counted, mut ok, mut errors) = (0u64, 0u64, 0u64);
    let mut ok_per_session = vec![0i64; cookies.len()];
    let mut sockets = Vec::with_capacity(results.len());
    // Socket `i` is on node `i % nodes` (see `connect_all`): each node's share of a burst.
    let mut lat_by_node: Vec<Vec<u32>> = vec![Vec::new(); o.urls.len()];
    for (i, (r, ws)) in results.into_iter().enumerate() {
        lat.extend_from_slice(&r.latencies_us);
        lat_by_node[i % o.urls.len()].extend_from_slice(&r.latencies_us);
        counted += r.counted;
        ok += r.ok;
        errors += r.errors;
        ok_per_session[i % cookies.len()] += r.ok as i64;
        sockets.push(ws);
    }
    lat.sort_unstable();
    let total = ok + errors;
    out["events"] = json!(counted);
    out["events_total"] = json!(total);
    out["acked_ok"] = json!(ok);
    out["ack_errors"] = json!(errors);
    out["events_per_s"] = json!(counted as f64 / measured_wall);
    out["p50_us"] = json!(percentile(&lat, 0.50));
    out["p99_us"] = json!(percentile(&lat, 0.99));
    out["p999_us"] = json!(percentile(&lat, 0.999));
    out["max_us"] = json!(lat.last());
    if o.mode == Mode::Burst {
        out["burst"] = json!(o.burst);
        // Fairness between nodes: each node's p99, and when its last ack came.
        for node in &mut lat_by_node {
            node.sort_unstable();
        }
        let p99s: Vec<_> = lat_by_node.iter().map(|l| percentile(l, 0.99)).collect();
        let last: Vec<_> = lat_by_node.iter().map(|l| l.last().copied()).collect();
        out["p99_us_by_node"] = json!(p99s);
        out["last_ack_us_by_node"] = json!(last);
    }
    // Burst and loop both: every event sent was acknowledged (or the run failed), so CPU
    // per event divides by every event in the window.
    let cpu_events = if o.mode == Mode::Burst {
        total
    } else {
        counted
    };
    out["cpu"] = cpu_fields(a, b, cpu_events, o.pid);
    if let Some(commands) = redis_commands {
        out["redis_commands"] = json!(commands);
        out["redis_round_trips_per_event"] = json!(commands as f64 / total.max(1) as f64);
    }
    if let Some(statements) = pg_statements {
        out["pg_statements"] = json!(statements);
        out["pg_round_trips_per_event"] = json!(statements as f64 / total.max(1) as f64);
    }

    if let Some(before) = stats_before {
        let after = store_stats(&http, &o.url).await?;
        let per = |k: &str| {
            let d = after[k].as_f64().unwrap_or(0.0) - before[k].as_f64().unwrap_or(0.0);
            d / total.max(1) as f64
        };
        out["store_ops_per_event"] = json!({
            "load": per("load"), "save": per("save"), "create": per("create"), "delete": per("delete"),
        });
    }
    if counts_event {
        let after = read_counts(&http, &o.url, &cookies).await?;
        let applied: i64 = after.iter().zip(&before_counts).map(|(a, b)| a - b).sum();
        let acked: i64 = ok_per_session.iter().sum();
        out["applied"] = json!(applied);
        out["lost_updates"] = json!(acked - applied);
    }
    out["loadavg_after"] = json!(loadavg());
    for ws in sockets {
        ws.close().await;
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reconnect storm (issue 10, scale).

mod storm {
    use super::*;

    /// One client of the storm: connect with the cookie (TCP, websocket upgrade, engine.io
    /// open, socket.io CONNECT), then a first `whoami` and its ack. Returns (handshake done,
    /// whoami acked), both from the storm's start, and the socket: every socket stays
    /// connected until the storm is over, as after a restart.
    async fn client(
        url: String,
        cookie: String,
        mask: [u8; 4],
        t0: Instant,
    ) -> Result<(Duration, Duration, Ws), Error> {
        let mut ws = connect(&url, &cookie, mask).await?;
        let connected = t0.elapsed();
        let mut packet = Vec::with_capacity(32);
        event_packet(&mut packet, 1, "whoami");
        ws.send_text(&packet).await?;
        match wait_ack(&mut ws, 1).await? {
            Ack::Ok => {}
            Ack::Error => return Err("whoami acknowledged with an error".into()),
        }
        Ok((connected, t0.elapsed(), ws))
    }

    /// The server's RSS, sampled every 5 ms by a thread until `stop`: the storm's peak.
    fn rss_sampler(
        pids: Vec<u32>,
        stop: Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<u64> {
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(total_rss_kib(&pids).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak.max(total_rss_kib(&pids).unwrap_or(0))
        })
    }

    pub(super) async fn run(o: &Opts, cookies: &[String], mut out: Value) -> Result<Value, Error> {
        // Let the logins' garbage settle before the baseline.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = total_rss_kib(&o.pids);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = rss_sampler(o.pids.clone(), stop.clone());
        let a = sample(&o.pids);
        let t0 = Instant::now();
        let mut tasks = Vec::with_capacity(o.clients);
        for i in 0..o.clients {
            let url = o.urls[i % o.urls.len()].clone();
            let cookie = cookies[i % cookies.len()].clone();
            let mask = (i as u32).wrapping_mul(0x9E37_79B9).to_le_bytes();
            tasks.push(tokio::spawn(client(url, cookie, mask, t0)));
        }
        let mut handshakes = Vec::with_capacity(o.clients);
        let mut completions = Vec::with_capacity(o.clients);
        let mut sockets = Vec::with_capacity(o.clients);
        let mut errors = 0u64;
        let mut first_error = None;
        for t in tasks {
            match t.await? {
                Ok((connected, acked, ws)) => {
                    handshakes.push(connected.as_micros().min(u32::MAX as u128) as u32);
                    completions.push(acked);
                    sockets.push(ws);
                }
                Err(err) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| err.to_string());
                }
            }
        }
        let b = sample(&o.pids);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let rss_peak = sampler.join().map_err(|_| "RSS sampler panicked")?;
        let all_acked = completions.iter().max().copied().unwrap_or_default();
        handshakes.sort_unstable();
        let secs = all_acked.as_secs_f64();
        out["errors"] = json!(errors);
        out["first_error"] = json!(first_error);
        out["completed"] = json!(completions.len());
        out["all_acked_s"] = json!(secs);
        out["handshakes_per_s"] = json!(completions.len() as f64 / secs.max(1e-9));
        out["handshake_p50_us"] = json!(percentile(&handshakes, 0.50));
        out["handshake_p99_us"] = json!(percentile(&handshakes, 0.99));
        out["handshake_max_us"] = json!(handshakes.last());
        out["rss_before_kib"] = json!(rss_before);
        out["rss_peak_kib"] = json!((rss_peak > 0).then_some(rss_peak));
        out["cpu"] = cpu_fields(a, b, completions.len() as u64, o.pid);
        out["loadavg_after"] = json!(loadavg());
        drop(sockets);
        Ok(out)
    }
}

//! The clients: each a device of a user, logging in, incrementing over its socket and over
//! HTTP (on any node), reading, rotating its id, logging out here, elsewhere or everywhere,
//! and sometimes leaving its session idle until it expires; every operation recorded in the
//! [`History`] with what it could know of its outcome.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use futures_util::future::join_all;
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use session_harness::{AckFailure, RawSocket};
use time::OffsetDateTime;

use crate::{
    cluster::now,
    history::{End, Epoch, Heard, History, IdEnd, Op, Outcome},
};

/// How long a client waits for any answer before it counts the operation unknown.
pub const PATIENCE: Duration = Duration::from_secs(3);

/// How long a replaced socket is kept open, listening, before what it heard is recorded:
/// past the longest bound a push can have (an outage and its reconnection, then 1 s).
const KEEP_LISTENING: Duration = Duration::from_secs(10);

/// An HTTP answer: the status, the JSON body and the cookie `Set-Cookie` hands out; or the
/// outcome a failure means, and why.
pub type Answer = Result<(u16, Value, Option<String>), (Outcome, String)>;

/// What every client shares.
pub struct World {
    pub urls: Vec<String>,
    pub http: reqwest::Client,
    /// The sessions' idle window.
    pub window: Duration,
    pub history: Mutex<History>,
    pub devices: Vec<Mutex<Device>>,
    /// Each client's user: devices of one user share it.
    pub users: Vec<String>,
    pub stop: AtomicBool,
}

impl World {
    /// A world of `clients` devices of `users` users (client `i` is a device of user
    /// `i % users`) on the nodes at `urls`.
    pub fn new(urls: Vec<String>, clients: usize, users: usize, window: Duration) -> Arc<Self> {
        Arc::new(Self {
            urls,
            http: reqwest::Client::builder()
                .timeout(PATIENCE)
                .build()
                .expect("an HTTP client"),
            window,
            history: Mutex::default(),
            devices: (0..clients).map(|_| Mutex::default()).collect(),
            users: (0..clients).map(|i| format!("user{}", i % users)).collect(),
            stop: AtomicBool::new(false),
        })
    }

    fn history(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap()
    }

    /// `method path` on node `node` with `cookie`: the status, the JSON body and the cookie
    /// `Set-Cookie` hands out, or the outcome a failure means.
    pub async fn request(
        &self,
        method: reqwest::Method,
        node: usize,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.urls[node]));
        if let Some(cookie) = cookie {
            request = request.header(reqwest::header::COOKIE, cookie);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|err| {
            // Refused before it was sent: the node never saw it.
            let outcome = if err.is_connect() {
                Outcome::Error
            } else {
                Outcome::Unknown
            };
            (outcome, err.to_string())
        })?;
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(str::to_owned);
        let body = response
            .json()
            .await
            .map_err(|err| (Outcome::Unknown, err.to_string()))?;
        Ok((status, body, set_cookie))
    }
}

/// A client's state that devices of the same user change: a logout elsewhere ends this
/// device's session.
#[derive(Default)]
pub struct Device {
    /// The session life it is in, and its cookie now.
    pub live: Option<(usize, String, OffsetDateTime)>,
    /// Set by another device: how this device's session ended.
    pub ended: Option<End>,
    /// When its rotation now in flight was sent.
    pub rotating: Option<OffsetDateTime>,
    /// When its last rotation was answered.
    pub rotated: Option<OffsetDateTime>,
}

/// A socket of the client's session.
struct Sock {
    socket: RawSocket,
    node: usize,
    connected: OffsetDateTime,
    epoch: usize,
    cookie: String,
}

impl Sock {
    fn heard(&self) -> Heard {
        Heard {
            epoch: self.epoch,
            cookie: self.cookie.clone(),
            node: self.node,
            connected: self.connected,
            gone: self.socket.heard("session:gone"),
            closed: self.socket.heard("close").first().map(|(_, at)| *at),
            until: now(),
        }
    }
}

/// One client (see the module docs).
pub struct Client {
    i: usize,
    user: String,
    rng: StdRng,
    world: Arc<World>,
    epoch: Option<usize>,
    cookie: String,
    socket: Option<Sock>,
    retiring: Vec<(Sock, OffsetDateTime)>,
    /// The outcomes of its last operations, newest last.
    recent: Vec<Outcome>,
    last_unknown: Option<OffsetDateTime>,
    /// Cookies of its sessions that ended, to probe.
    ended: Vec<String>,
}

impl Client {
    /// Client `i` of `world`, its choices drawn from `seed`.
    pub fn new(world: Arc<World>, i: usize, seed: u64) -> Self {
        Self {
            i,
            user: world.users[i].clone(),
            rng: StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            world,
            epoch: None,
            cookie: String::new(),
            socket: None,
            retiring: Vec::new(),
            recent: Vec::new(),
            last_unknown: None,
            ended: Vec::new(),
        }
    }

    /// Runs until the world stops; returns itself for the final reads.
    pub async fn run(mut self) -> Self {
        while !self.world.stop.load(Ordering::Relaxed) {
            let pause = self.rng.gen_range(30..120);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            self.step().await;
        }
        self
    }

    async fn step(&mut self) {
        self.retire_old(false);
        let flagged = self.world.devices[self.i].lock().unwrap().ended.take();
        if let Some(end) = flagged {
            self.finish(end);
            return;
        }
        let Some(epoch) = self.epoch else {
            return self.login().await;
        };
        if let Some(sock) = &self.socket {
            if let Some((reason, _)) = sock.socket.heard("session:gone").first() {
                let why = format!("its socket heard session:gone {reason}");
                return self.found(why);
            }
            if !sock.socket.heard("close").is_empty() {
                self.retire();
            }
        }
        if self.socket.is_none() && self.rng.gen_bool(0.7) {
            return self.connect(epoch).await;
        }
        // Per thousand steps.
        match self.rng.gen_range(0..1000) {
            0..=259 => self.socket_incr(epoch, 1).await,
            // A burst on two nodes: what a lease must serialise, and a paused holder's late
            // write must not undo.
            260..=459 => self.socket_incr(epoch, 3).await,
            460..=659 => self.http_incr(epoch).await,
            660..=769 => {
                self.read().await;
            }
            770..=829 => self.whoami(epoch).await,
            830..=869 => self.rotate(epoch).await,
            870..=899 => self.logout(epoch).await,
            900..=909 => self.logout_elsewhere(true).await,
            910..=919 => self.logout_elsewhere(false).await,
            920..=949 => self.idle(epoch).await,
            _ => self.probe().await,
        }
    }

    fn node(&mut self) -> usize {
        self.rng.gen_range(0..self.world.urls.len())
    }

    /// Records an operation; its outcome also decides what an idle period may assume. A
    /// success is activity of the session.
    fn record(
        &mut self,
        kind: &'static str,
        node: usize,
        sent: OffsetDateTime,
        outcome: Outcome,
        detail: String,
    ) {
        self.record_op(kind, node, sent, outcome, detail, outcome == Outcome::Ok);
    }

    /// [`Client::record`] of a success that is no activity of the session (it found the
    /// session gone, or it does not extend it).
    fn record_gone(
        &mut self,
        kind: &'static str,
        node: usize,
        sent: OffsetDateTime,
        detail: String,
    ) {
        self.record_op(kind, node, sent, Outcome::Ok, detail, false);
    }

    fn record_op(
        &mut self,
        kind: &'static str,
        node: usize,
        sent: OffsetDateTime,
        outcome: Outcome,
        detail: String,
        activity: bool,
    ) {
        let done = now();
        if outcome == Outcome::Unknown {
            self.last_unknown = Some(done);
        }
        self.recent.push(outcome);
        if self.recent.len() > 3 {
            self.recent.remove(0);
        }
        let mut history = self.world.history();
        if let (Some(epoch), true) = (self.epoch, activity) {
            history.epochs[epoch].last_activity = done;
        }
        history.ops.push(Op {
            client: self.i,
            epoch: self.epoch,
            kind,
            node,
            sent,
            done,
            outcome,
            detail,
        });
    }

    fn anomaly(&self, what: String) {
        self.world.history().anomalies.push(what);
    }

    /// Ends the session life, keeping its socket listening a while.
    fn finish(&mut self, end: End) {
        let Some(epoch) = self.epoch.take() else {
            return;
        };
        {
            let mut history = self.world.history();
            let record = &mut history.epochs[epoch];
            // An end of unknown outcome may have left the session there: not probed.
            if !matches!(end, End::Abandoned(_)) {
                self.ended.extend(record.cookies.iter().cloned());
            }
            if record.end == End::Live {
                record.end = end;
            }
        }
        self.world.devices[self.i].lock().unwrap().live = None;
        self.retire();
    }

    fn found(&mut self, why: String) {
        self.finish(End::Found { at: now(), why });
    }

    fn retire(&mut self) {
        if let Some(sock) = self.socket.take() {
            let until = now() + KEEP_LISTENING;
            self.retiring.push((sock, until));
        }
    }

    /// Records what the retired sockets heard, those kept long enough (or all: `all`).
    pub fn retire_old(&mut self, all: bool) {
        let now = now();
        let (done, keep): (Vec<_>, Vec<_>) = self
            .retiring
            .drain(..)
            .partition(|(_, until)| all || *until <= now);
        self.retiring = keep;
        if done.is_empty() {
            return;
        }
        let heard: Vec<Heard> = done.iter().map(|(sock, _)| sock.heard()).collect();
        self.world.history().sockets.extend(heard);
    }

    async fn login(&mut self) {
        let node = self.node();
        let body = json!({ "user": self.user });
        let (sent, answer) = self
            .ask(reqwest::Method::POST, node, "/login", None, Some(body))
            .await;
        match answer {
            Ok((200, _, Some(cookie))) => {
                let began = now();
                let epoch = {
                    let mut history = self.world.history();
                    history.epochs.push(Epoch {
                        client: self.i,
                        user: self.user.clone(),
                        began,
                        cookies: vec![cookie.clone()],
                        acked: Vec::new(),
                        unknown: 0,
                        refused: 0,
                        last_activity: began,
                        end: End::Live,
                        final_count: None,
                    });
                    history.epochs.len() - 1
                };
                self.world.devices[self.i].lock().unwrap().live =
                    Some((epoch, cookie.clone(), began));
                self.cookie = cookie;
                self.record("login", node, sent, Outcome::Ok, String::new());
                self.epoch = Some(epoch);
            }
            Ok((status, body, _)) => self.record(
                "login",
                node,
                sent,
                Outcome::Unknown,
                format!("{status} {body}"),
            ),
            Err((outcome, why)) => self.record("login", node, sent, outcome, why),
        }
    }

    async fn connect(&mut self, epoch: usize) {
        let node = self.node();
        let sent = now();
        let url = self.world.urls[node].clone();
        let connected =
            tokio::time::timeout(PATIENCE, RawSocket::connect(&url, "/", Some(&self.cookie))).await;
        match connected {
            Ok(Ok(socket)) => {
                // A handshake reads the session but does not extend it: no activity.
                self.record_gone("connect", node, sent, String::new());
                self.socket = Some(Sock {
                    socket,
                    node,
                    connected: now(),
                    epoch,
                    cookie: self.cookie.clone(),
                });
            }
            Ok(Err(err)) => self.record("connect", node, sent, Outcome::Error, format!("{err:?}")),
            Err(_) => self.record("connect", node, sent, Outcome::Error, "timed out".into()),
        }
    }

    /// `n` increments at once over the socket (and, for a burst, one over HTTP on a node of
    /// its own beside them).
    async fn socket_incr(&mut self, epoch: usize, n: usize) {
        let Some(sock) = &self.socket else {
            return self.http_incr(epoch).await;
        };
        let node = sock.node;
        let sent = now();
        let acks: Vec<_> = (0..n)
            .map(|_| sock.socket.try_emit("incr", vec![], PATIENCE))
            .collect();
        let (acks, ()) = tokio::join!(join_all(acks), async {
            if n > 1 {
                let other = (node + 1 + self.rng.gen_range(0..self.world.urls.len() - 1))
                    % self.world.urls.len();
                self.http_incr_on(epoch, other).await;
            }
        });
        let mut gone = None;
        for ack in acks {
            let (outcome, detail) = match ack {
                Ok(Value::Number(count)) => {
                    let count = count.as_i64().expect("a count");
                    self.world.history().epochs[epoch].acked.push(count);
                    (Outcome::Ok, count.to_string())
                }
                Ok(answer) => {
                    let error = answer["error"].as_str().unwrap_or_default().to_owned();
                    if error.contains("gone") || error.contains("no session") {
                        gone = Some(error.clone());
                    }
                    (definite(&error), answer.to_string())
                }
                Err(AckFailure::NotSent) => (Outcome::Error, AckFailure::NotSent.to_string()),
                Err(failure) => (Outcome::Unknown, failure.to_string()),
            };
            self.count(epoch, outcome);
            self.record("socket incr", node, sent, outcome, detail);
        }
        if let Some(error) = gone {
            self.found(format!("a socket incr answered {error:?}"));
        }
    }

    fn count(&self, epoch: usize, outcome: Outcome) {
        let mut history = self.world.history();
        let record = &mut history.epochs[epoch];
        match outcome {
            Outcome::Ok => {}
            Outcome::Error => record.refused += 1,
            Outcome::Unknown => record.unknown += 1,
        }
    }

    async fn http_incr(&mut self, epoch: usize) {
        let node = self.node();
        self.http_incr_on(epoch, node).await;
    }

    async fn http_incr_on(&mut self, epoch: usize, node: usize) {
        let cookie = self.cookie.clone();
        let (sent, answer) = self
            .ask(reqwest::Method::POST, node, "/incr", Some(&cookie), None)
            .await;
        match answer {
            Ok((200, body, _)) => {
                let count = body["count"].as_i64().expect("a count");
                let fresh = {
                    let history = self.world.history();
                    let record = &history.epochs[epoch];
                    // (After unknown increments only, a 1 may be the first that applied.)
                    count == 1 && !record.acked.is_empty()
                };
                if fresh {
                    // A count of 1 after others: the cookie's session was gone and this
                    // request made a new, anonymous one (which this client never uses).
                    self.record_gone("http incr", node, sent, "1, a new session".into());
                    self.found("an HTTP incr answered 1: its session was new".into());
                    return;
                }
                self.world.history().epochs[epoch].acked.push(count);
                self.record("http incr", node, sent, Outcome::Ok, count.to_string());
            }
            Ok((status, body, _)) => {
                self.count(epoch, Outcome::Unknown);
                self.record(
                    "http incr",
                    node,
                    sent,
                    Outcome::Unknown,
                    format!("{status} {body}"),
                );
            }
            Err((outcome, why)) => {
                self.count(epoch, outcome);
                self.record("http incr", node, sent, outcome, why);
            }
        }
    }

    /// `GET /session`: the count if the session is there with its user.
    async fn read(&mut self) -> Option<i64> {
        let node = self.node();
        let cookie = self.cookie.clone();
        let (sent, answer) = self
            .ask(reqwest::Method::GET, node, "/session", Some(&cookie), None)
            .await;
        match answer {
            Ok((200, body, _)) if body["user"] == json!(self.user) => {
                self.record("read", node, sent, Outcome::Ok, body.to_string());
                body["count"].as_i64()
            }
            Ok((200, body, _)) => {
                self.record_gone("read", node, sent, body.to_string());
                self.found(format!("a read answered {body}"));
                None
            }
            Ok((status, body, _)) => {
                self.record(
                    "read",
                    node,
                    sent,
                    Outcome::Unknown,
                    format!("{status} {body}"),
                );
                None
            }
            Err((outcome, why)) => {
                self.record("read", node, sent, outcome, why);
                None
            }
        }
    }

    async fn whoami(&mut self, epoch: usize) {
        let Some(sock) = &self.socket else {
            return self.http_incr(epoch).await;
        };
        let node = sock.node;
        let sent = now();
        let ack = sock.socket.try_emit("whoami", vec![], PATIENCE);
        match ack.await {
            Ok(answer) if answer["user"] == json!(self.user) => {
                self.record("whoami", node, sent, Outcome::Ok, answer.to_string())
            }
            Ok(answer) if answer["user"].is_null() && answer.get("error").is_none() => {
                self.record_gone("whoami", node, sent, answer.to_string());
                self.found(format!("whoami answered {answer}"));
            }
            Ok(answer) => self.record("whoami", node, sent, Outcome::Unknown, answer.to_string()),
            Err(failure) => {
                self.record("whoami", node, sent, Outcome::Unknown, failure.to_string())
            }
        }
    }

    /// A login again on the session: a new id, the data kept.
    async fn rotate(&mut self, epoch: usize) {
        // Only a session seen there now: a login on a gone one would start another.
        if self.read().await.is_none() || self.epoch != Some(epoch) {
            return;
        }
        let node = self.node();
        let sent = now();
        self.world.devices[self.i].lock().unwrap().rotating = Some(sent);
        let old = self.cookie.clone();
        let body = json!({ "user": self.user });
        let answer = self
            .world
            .request(
                reqwest::Method::POST,
                node,
                "/login",
                Some(&old),
                Some(body),
            )
            .await;
        let done = now();
        {
            let mut device = self.world.devices[self.i].lock().unwrap();
            device.rotating = None;
            device.rotated = Some(done);
        }
        match answer {
            Ok((200, _, Some(cookie))) => {
                self.record("rotate", node, sent, Outcome::Ok, String::new());
                {
                    let mut history = self.world.history();
                    history.ends.push(IdEnd {
                        epoch,
                        cookie: old.clone(),
                        sent,
                        at: done,
                        origin: Some(node),
                        reason: "rotated",
                    });
                    history.epochs[epoch].cookies.push(cookie.clone());
                }
                if let Some((_, current, _)) = &mut self.world.devices[self.i].lock().unwrap().live
                {
                    current.clone_from(&cookie);
                }
                self.ended.push(old);
                self.cookie = cookie;
                self.retire();
            }
            Ok((status, body, _)) => {
                let failure = (Outcome::Unknown, format!("{status} {body}"));
                self.unanswered("rotate", node, sent, failure);
            }
            Err(failure) => self.unanswered("rotate", node, sent, failure),
        }
    }

    /// [`World::request`], and when it was sent.
    async fn ask(
        &self,
        method: reqwest::Method,
        node: usize,
        path: &str,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> (OffsetDateTime, Answer) {
        let sent = now();
        (
            sent,
            self.world.request(method, node, path, cookie, body).await,
        )
    }

    /// A rotation or a logout that was not answered with success: one never sent leaves the
    /// session as it was; any other may have ended it, and it is checked no further.
    fn unanswered(
        &mut self,
        kind: &'static str,
        node: usize,
        sent: OffsetDateTime,
        (outcome, why): (Outcome, String),
    ) {
        self.record(kind, node, sent, outcome, why.clone());
        if outcome != Outcome::Error {
            self.finish(End::Abandoned(format!("{kind}: {outcome}, {why}")));
        }
    }

    async fn logout(&mut self, epoch: usize) {
        let Some(count) = self.read().await else {
            return;
        };
        if self.epoch != Some(epoch) {
            return;
        }
        let node = self.node();
        let cookie = self.cookie.clone();
        let (sent, answer) = self
            .ask(reqwest::Method::POST, node, "/logout", Some(&cookie), None)
            .await;
        match answer {
            Ok((200, _, _)) => {
                self.record("logout", node, sent, Outcome::Ok, String::new());
                let mut history = self.world.history();
                history.epochs[epoch].final_count = Some(count);
                history.ends.push(IdEnd {
                    epoch,
                    cookie,
                    sent,
                    at: now(),
                    origin: Some(node),
                    reason: "logged out",
                });
                drop(history);
                self.finish(End::Logout);
            }
            Ok((status, body, _)) => {
                let failure = (Outcome::Unknown, format!("{status} {body}"));
                self.unanswered("logout", node, sent, failure);
            }
            Err(failure) => self.unanswered("logout", node, sent, failure),
        }
    }

    /// `POST /logout/everywhere` (`everywhere`) or `/logout/others`.
    async fn logout_elsewhere(&mut self, everywhere: bool) {
        let (kind, path) = if everywhere {
            ("logout everywhere", "/logout/everywhere")
        } else {
            ("logout others", "/logout/others")
        };
        let node = self.node();
        let cookie = self.cookie.clone();
        let (sent, answer) = self
            .ask(reqwest::Method::POST, node, path, Some(&cookie), None)
            .await;
        let done = now();
        let unauthorized = matches!(answer, Ok((401, _, _)));
        let outcome = match &answer {
            Ok((200, _, _)) => Outcome::Ok,
            Ok((401, _, _)) => Outcome::Error,
            Ok(_) => Outcome::Unknown,
            Err((outcome, _)) => *outcome,
        };
        let detail = match &answer {
            Ok((status, body, _)) => format!("{status} {body}"),
            Err((_, why)) => why.clone(),
        };
        self.record(kind, node, sent, outcome, detail);
        if unauthorized {
            return self.found(format!("{kind} answered 401"));
        }
        if outcome == Outcome::Error {
            return; // never sent
        }
        // Every device of the user: the others always, this one for `everywhere`.
        for other in 0..self.world.devices.len() {
            if self.world.users[other] != self.user || (other == self.i && !everywhere) {
                continue;
            }
            let mut device = self.world.devices[other].lock().unwrap();
            let Some((their_epoch, their_cookie, began)) = device.live.clone() else {
                continue;
            };
            let raced = device.rotating.is_some() || device.rotated.is_some_and(|at| at >= sent);
            let end = if outcome != Outcome::Ok {
                End::Abandoned(format!("{kind} of unknown outcome"))
            } else if began >= sent {
                End::Abandoned(format!("logged in while {kind} ran"))
            } else if raced {
                End::Abandoned(format!("rotated while {kind} ran"))
            } else {
                self.world.history().ends.push(IdEnd {
                    epoch: their_epoch,
                    cookie: their_cookie,
                    sent,
                    at: done,
                    origin: Some(node),
                    reason: "logged out everywhere",
                });
                End::LoggedOutElsewhere
            };
            if other == self.i {
                drop(device);
                self.finish(end);
            } else {
                device.ended = Some(end);
            }
        }
    }

    /// Leaves the session idle past its window, its socket connected: the socket must hear
    /// `expired`, and the session must be gone.
    async fn idle(&mut self, epoch: usize) {
        let settled = self.recent.len() == 3
            && self.recent.iter().all(|outcome| *outcome == Outcome::Ok)
            && self
                .last_unknown
                .is_none_or(|at| now() - at > time::Duration::seconds(5));
        if self.socket.is_none() || !settled {
            return;
        }
        let window = self.world.window;
        let last = self.world.history().epochs[epoch].last_activity;
        let at = last + window;
        self.world.history().ends.push(IdEnd {
            epoch,
            cookie: self.cookie.clone(),
            sent: last,
            at,
            origin: None,
            reason: "expired",
        });
        let wake = at + Duration::from_millis(1500);
        tokio::time::sleep((wake - now()).try_into().unwrap_or_default()).await;
        let node = self.node();
        let cookie = self.cookie.clone();
        let (sent, answer) = self
            .ask(reqwest::Method::GET, node, "/session", Some(&cookie), None)
            .await;
        if let Ok((200, body, _)) = &answer {
            if body["user"] == json!(self.user) {
                self.anomaly(format!(
                    "client {} ({}): its session, idle since {last}, outlived its {window:?} \
                     window: {body} at {sent}",
                    self.i, self.user
                ));
            }
        }
        self.record("idle", node, sent, Outcome::Ok, String::new());
        self.finish(End::Idle);
    }

    /// A read with the cookie of an ended session: it must show no user.
    async fn probe(&mut self) {
        if self.ended.is_empty() {
            return;
        }
        let cookie = self.ended[self.rng.gen_range(0..self.ended.len())].clone();
        let node = self.node();
        let (sent, answer) = self
            .ask(reqwest::Method::GET, node, "/session", Some(&cookie), None)
            .await;
        if let Ok((200, body, _)) = &answer {
            if body["user"] == json!(self.user) {
                self.anomaly(format!(
                    "client {} ({}): an ended session came back: {body} at {sent} on node {node}",
                    self.i, self.user
                ));
            }
        }
        let outcome = match answer {
            Ok((200, _, _)) => Outcome::Ok,
            Ok(_) => Outcome::Unknown,
            Err((outcome, _)) => outcome,
        };
        // About another session: no activity of this one.
        self.record_op("probe", node, sent, outcome, String::new(), false);
    }

    /// After the run: the count of its live session (if the session is there), the cookies of
    /// its ended sessions for the final probe, and what its sockets heard.
    pub async fn wind_up(&mut self) -> Vec<String> {
        if let Some(epoch) = self.epoch {
            for _ in 0..3 {
                if let Some(count) = self.read().await {
                    self.world.history().epochs[epoch].final_count = Some(count);
                    break;
                }
                if self.epoch.is_none() {
                    break;
                }
            }
        }
        self.retire();
        self.retire_old(true);
        self.ended.clone()
    }
}

/// The outcome an `{"error": ...}` ack means: the runtime refuses before it writes (busy,
/// gone, a lapsed lease or an overrun handler: "nothing was saved"); a store failure may come
/// after a write that is there.
fn definite(error: &str) -> Outcome {
    const REFUSALS: [&str; 6] = [
        "busy",
        "gone",
        "no session",
        "nothing was saved",
        "could not lock",
        "not attached",
    ];
    if REFUSALS.iter().any(|refusal| error.contains(refusal)) {
        Outcome::Error
    } else {
        Outcome::Unknown
    }
}

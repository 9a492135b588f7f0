//! What the clients did and saw: every operation with its outcome, each session's life from
//! its login to its end, every end of a session id the sockets must hear of, and the sockets.

use std::{collections::BTreeMap, fmt};

use serde_json::Value;
use time::OffsetDateTime;

/// An operation's outcome, as a client can know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Answered with success.
    Ok,
    /// Refused: the server says nothing was done (a busy session, a gone session, a lapsed
    /// lease: "nothing was saved"), or the request never left the client.
    Error,
    /// No answer, or an answer that cannot say (a timeout, a closed connection, a store
    /// failure after which the write may be there).
    Unknown,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Unknown => "unknown",
        })
    }
}

/// One operation of one client.
#[derive(Debug, Clone)]
pub struct Op {
    pub client: usize,
    /// The session life it belongs to, if any ([`History::epochs`]).
    pub epoch: Option<usize>,
    pub kind: &'static str,
    pub node: usize,
    pub sent: OffsetDateTime,
    pub done: OffsetDateTime,
    pub outcome: Outcome,
    /// The answer, or why there was none.
    pub detail: String,
}

/// How a session's life ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// Still live when the run stopped.
    Live,
    /// `POST /logout` of its own client.
    Logout,
    /// Ended by `logout/everywhere` or `logout/others` of a device of its user.
    LoggedOutElsewhere,
    /// Left idle for longer than its window.
    Idle,
    /// Found ended by its own client (`why`): an error saying it is gone, a push, a read
    /// that shows no user.
    Found { at: OffsetDateTime, why: String },
    /// An operation whose outcome is unknown may or may not have ended it (a logout, a
    /// rotation): it is checked no further.
    Abandoned(String),
}

/// One life of a session: from a login of a client to the end of the ids it had.
#[derive(Debug, Clone)]
pub struct Epoch {
    pub client: usize,
    pub user: String,
    pub began: OffsetDateTime,
    /// Its cookies, the first from the login, one more per rotation.
    pub cookies: Vec<String>,
    /// The counts acknowledged by successful increments.
    pub acked: Vec<i64>,
    /// Increments that may or may not have been applied.
    pub unknown: u32,
    /// Increments refused.
    pub refused: u32,
    /// The last successful operation's answer, for the expiry bound.
    pub last_activity: OffsetDateTime,
    pub end: End,
    /// The count read with its user still there, just before its own logout or at the end of
    /// the run: what the increments are checked against.
    pub final_count: Option<i64>,
}

/// The end of one session id: its sockets must hear `session:gone` (or be disconnected)
/// within 1 s of `at`, once their node can do its work.
#[derive(Debug, Clone)]
pub struct IdEnd {
    pub epoch: usize,
    pub cookie: String,
    /// When the ending request was sent (sockets connected after may be anonymous already).
    pub sent: OffsetDateTime,
    /// When it was answered, or when the window of an idle session ran out.
    pub at: OffsetDateTime,
    /// The node that served the ending request (its push leaves from there), if any.
    pub origin: Option<usize>,
    pub reason: &'static str,
}

/// A socket of a session, and what it heard.
#[derive(Debug, Clone)]
pub struct Heard {
    pub epoch: usize,
    pub cookie: String,
    pub node: usize,
    /// When its connection was established.
    pub connected: OffsetDateTime,
    /// Every `session:gone` it heard.
    pub gone: Vec<(Value, OffsetDateTime)>,
    /// When its connection closed, if it did.
    pub closed: Option<OffsetDateTime>,
    /// When this was read off the socket: nothing later is known.
    pub until: OffsetDateTime,
}

/// The whole history of a run.
#[derive(Debug, Default)]
pub struct History {
    pub ops: Vec<Op>,
    pub epochs: Vec<Epoch>,
    pub ends: Vec<IdEnd>,
    pub sockets: Vec<Heard>,
    /// What the clients found wrong as they went (a read of an ended session with its user).
    pub anomalies: Vec<String>,
}

impl History {
    /// Operations by kind and outcome.
    pub fn tally(&self) -> BTreeMap<(&'static str, Outcome), usize> {
        let mut tally = BTreeMap::new();
        for op in &self.ops {
            *tally.entry((op.kind, op.outcome)).or_default() += 1;
        }
        tally
    }
}

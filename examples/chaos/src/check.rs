//! The checker: reads the whole history after the run and says what broke a promise.
//!
//! - **Counts**: for every session life whose count was read with its user still there (before
//!   its own logout, or at the end), the count is within [acknowledged, acknowledged +
//!   unknown] and no count was acknowledged twice (a lost update or a double apply).
//! - **Pushes**: every socket of a session id that ended, connected before the end was asked
//!   for, heard `session:gone` or was disconnected within 1 s of the end, or of the nodes being
//!   able to work again when an outage (of the database, of the socket's node or of the node
//!   that served the end) overlapped that second.
//! - **Ends**: a session found ended by its own client was ended by something: a logout
//!   elsewhere of its user, or a window without a successful write (a read's touch may fail
//!   and still answer; an acknowledged increment moved the expiry a window past its sending).
//!   What the clients found as they went (an ended session read back with its user, an idle
//!   one outliving its window) is in [`History::anomalies`].

use std::{collections::HashMap, time::Duration};

use time::OffsetDateTime;

use crate::{
    cluster::Outage,
    history::{End, History, Outcome},
};

/// The bound on a push, from the end of a session (or from its node's recovery).
pub const PUSH_BOUND: Duration = Duration::from_secs(1);

/// What the checker found: the anomalies, and how many sockets it judged.
#[derive(Debug, Default)]
pub struct Verdict {
    pub anomalies: Vec<String>,
    /// Session lives whose counts were checked, and the increments they held.
    pub counted: usize,
    pub increments: usize,
    /// Sockets that had to hear of an end, and those whose record stopped before its bound
    /// (not judged).
    pub sockets_judged: usize,
    pub sockets_unjudged: usize,
}

/// Checks `history` against the `outages` injected, for sessions of `window`.
pub fn check(history: &History, outages: &[Outage], window: Duration) -> Verdict {
    let mut verdict = Verdict {
        anomalies: history.anomalies.clone(),
        ..Verdict::default()
    };
    counts(history, &mut verdict);
    pushes(history, outages, &mut verdict);
    ends(history, window, &mut verdict);
    verdict
}

fn counts(history: &History, verdict: &mut Verdict) {
    for (e, epoch) in history.epochs.iter().enumerate() {
        let Some(count) = epoch.final_count else {
            continue;
        };
        if !matches!(epoch.end, End::Live | End::Logout) {
            continue;
        }
        verdict.counted += 1;
        verdict.increments += epoch.acked.len();
        let acked = epoch.acked.len() as i64;
        let unknown = i64::from(epoch.unknown);
        let who = format!("session life {e} (client {}, {})", epoch.client, epoch.user);
        if count < acked || count > acked + unknown {
            verdict.anomalies.push(format!(
                "{who}: count {count}, outside [acknowledged {acked}, acknowledged + unknown {}]",
                acked + unknown
            ));
        }
        let mut seen: HashMap<i64, usize> = HashMap::new();
        for value in &epoch.acked {
            *seen.entry(*value).or_default() += 1;
        }
        let mut twice: Vec<_> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
        twice.sort();
        for (value, n) in twice {
            verdict
                .anomalies
                .push(format!("{who}: count {value} acknowledged {n} times"));
        }
        if let Some(max) = epoch.acked.iter().max().filter(|max| **max > count) {
            verdict.anomalies.push(format!(
                "{who}: count {max} acknowledged, {count} read at the end"
            ));
        }
    }
}

/// The instant by which a socket on `node` must hear of an end at `at` served by `origin`:
/// 1 s later, pushed back past every outage that overlaps that second, of the database, of
/// the socket's node or of the node the push leaves from.
pub fn deadline(
    at: OffsetDateTime,
    node: usize,
    origin: Option<usize>,
    outages: &[Outage],
) -> OffsetDateTime {
    let mut deadline = at + PUSH_BOUND;
    loop {
        let later = outages
            .iter()
            .filter(|outage| outage.node.is_none_or(|n| n == node || Some(n) == origin))
            .filter(|outage| outage.from < deadline && outage.recovered > at)
            .map(|outage| outage.recovered + PUSH_BOUND)
            .filter(|bound| *bound > deadline)
            .max();
        match later {
            Some(bound) => deadline = bound,
            None => return deadline,
        }
    }
}

fn pushes(history: &History, outages: &[Outage], verdict: &mut Verdict) {
    // The first end of each id.
    let mut ends: HashMap<&str, &crate::history::IdEnd> = HashMap::new();
    for end in &history.ends {
        ends.entry(end.cookie.as_str())
            .and_modify(|first| {
                if end.at < first.at {
                    *first = end;
                }
            })
            .or_insert(end);
    }
    for socket in &history.sockets {
        let Some(end) = ends.get(socket.cookie.as_str()) else {
            continue;
        };
        if socket.connected >= end.sent || socket.closed.is_some_and(|closed| closed <= end.sent) {
            continue;
        }
        let deadline = deadline(end.at, socket.node, end.origin, outages);
        let told = socket
            .gone
            .iter()
            .map(|(_, at)| *at)
            .chain(socket.closed)
            .min();
        match told {
            Some(told) if told <= deadline => verdict.sockets_judged += 1,
            None if socket.until < deadline => verdict.sockets_unjudged += 1,
            _ => {
                verdict.sockets_judged += 1;
                let told = told.map_or("never (while it listened)".to_owned(), |at| {
                    format!("at {at}, {} ms late", (at - deadline).whole_milliseconds())
                });
                verdict.anomalies.push(format!(
                    "a socket of session life {} on node {} was not told its session was {} \
                     (at {}) by {deadline}: told {told}",
                    end.epoch, socket.node, end.reason, end.at
                ));
            }
        }
    }
}

fn ends(history: &History, window: Duration, verdict: &mut Verdict) {
    // A save of an increment sets the expiry a window past the save, itself past the
    // request's sending; 50 ms for the clocks of the expiry's timer.
    let lives_at_least = window.saturating_sub(Duration::from_millis(50));
    for (e, epoch) in history.epochs.iter().enumerate() {
        let End::Found { at, why } = &epoch.end else {
            continue;
        };
        let last_write = history
            .ops
            .iter()
            .filter(|op| {
                op.epoch == Some(e) && op.kind.ends_with("incr") && op.outcome == Outcome::Ok
            })
            // An HTTP increment answering 1 may have made a new, anonymous session of a
            // cookie whose session was gone: no write of this one.
            .filter(|op| {
                !(op.kind == "http incr"
                    && (op.detail == "1" || op.detail.contains("a new session")))
            })
            .map(|op| op.sent)
            .max();
        if last_write.is_none_or(|sent| *at >= sent + lives_at_least) {
            continue;
        }
        // A logout elsewhere by a device of its user, answered or not, that may have run
        // while this session lived.
        let elsewhere = history.ops.iter().any(|op| {
            op.client != epoch.client
                && history_user(history, op.client) == Some(epoch.user.as_str())
                && op.kind.starts_with("logout ")
                && op.sent <= *at
                && op.done >= epoch.began
        });
        if !elsewhere {
            let ops: Vec<String> = history
                .ops
                .iter()
                .filter(|op| op.epoch == Some(e))
                .map(|op| {
                    format!(
                        "\n      {} .. {} {} on node {}: {} {}",
                        op.sent.time(),
                        op.done.time(),
                        op.kind,
                        op.node,
                        op.outcome,
                        op.detail
                    )
                })
                .collect();
            let tail = &ops[ops.len().saturating_sub(8)..];
            verdict.anomalies.push(format!(
                "session life {e} (client {}, {}) ended with nothing to end it: {why}, at {}, \
                 {} ms after its last acknowledged increment was sent; its last operations:{}",
                epoch.client,
                epoch.user,
                at.time(),
                last_write.map_or(0, |sent| (*at - sent).whole_milliseconds()),
                tail.concat()
            ));
        }
    }
}

/// The user of `client`, from any session life of it.
fn history_user(history: &History, client: usize) -> Option<&str> {
    history
        .epochs
        .iter()
        .find(|epoch| epoch.client == client)
        .map(|epoch| epoch.user.as_str())
}

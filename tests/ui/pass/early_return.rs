//! `?` and `return` leave the body, and the wrapper still saves (or not) and acknowledges.

#[path = "../support.rs"]
mod support;
use std::fmt;

use session_runtime::{with_session, SocketSession, SessionError};
use socketioxide::extract::Data;

#[derive(Debug)]
enum SpendError {
    Refused(&'static str),
    Session(SessionError),
}

impl fmt::Display for SpendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpendError::Refused(why) => f.write_str(why),
            SpendError::Session(err) => err.fmt(f),
        }
    }
}

impl From<SessionError> for SpendError {
    fn from(err: SessionError) -> Self {
        SpendError::Session(err)
    }
}

#[with_session(autosave, require = "user")]
async fn spend(session: SocketSession, Data(amount): Data<i64>) -> Result<i64, SpendError> {
    if amount <= 0 {
        return Err(SpendError::Refused("the amount must be positive"));
    }
    // `?` converts through `From`, as in any function returning this type.
    let balance: i64 = session.get("balance")?.unwrap_or(0);
    if balance < amount {
        return Err(SpendError::Refused("not enough credit"));
    }
    session.insert("balance", balance - amount)?;
    Ok(balance - amount)
}

#[with_session(autosave)]
async fn reset(session: SocketSession) -> Option<i64> {
    let old = session.remove::<i64>("balance").ok()??;
    if old == 0 {
        return None;
    }
    Some(old)
}

fn main() {
    support::serve_each!(spend, reset);
}

//! The seeded fault schedule: which fault, on which node, when, for how long. The same seed
//! gives the same schedule (the clients' timing is the machine's).

use std::{fmt, time::Duration};

use rand::{rngs::StdRng, Rng, SeedableRng};
use session_harness::backend::Kind;

/// A kind of fault (what the nemesis does, see [`crate::cluster::Cluster::inject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGSTOP to a node, SIGCONT after the fault's length: longer than the lease, so its
    /// late writes must be fenced off.
    NodePause,
    /// SIGKILL to a node, started again on its port after the fault's length.
    NodeKill,
    /// SIGSTOP to the database (Redis: the master, promoted away from when paused past the
    /// sentinels' 1 s; PostgreSQL: every process of the server).
    DbPause,
    /// Redis: SIGKILL to the master; the sentinels promote the replica, and the old master
    /// comes back as the new one's replica.
    MasterKill,
    /// PostgreSQL: every connection of one node cut by its relay, healed after the fault's
    /// length. (On Sentinel a relay cannot stand between one node and the master: the
    /// sentinels hand every node the master's own address.)
    RelayCut,
    /// PostgreSQL: SIGKILL to every process of the server, started again (crash recovery).
    DbCrash,
}

impl FaultKind {
    /// Whether it stops one node (or its link), not the database of all.
    pub fn one_node(self) -> bool {
        matches!(self, Self::NodePause | Self::NodeKill | Self::RelayCut)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NodePause => "node paused",
            Self::NodeKill => "node killed",
            Self::DbPause => "database paused",
            Self::MasterKill => "master killed",
            Self::RelayCut => "node cut off",
            Self::DbCrash => "database crashed",
        })
    }
}

/// One fault of the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Fault {
    /// When, from the start of the run.
    pub at: Duration,
    pub kind: FaultKind,
    /// The node, for [`FaultKind::one_node`] kinds.
    pub node: usize,
    /// How long it lasts before it is healed (a master kill lasts until the promotion).
    pub length: Duration,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>7.2} s  {}", self.at.as_secs_f64(), self.kind)?;
        if self.kind.one_node() {
            write!(f, " (node-{})", char::from(b'a' + self.node as u8))?;
        }
        if self.kind != FaultKind::MasterKill {
            write!(f, " for {} ms", self.length.as_millis())?;
        }
        Ok(())
    }
}

/// How far apart master kills are (see [`schedule`]).
pub const FAILOVERS_APART: Duration = Duration::from_secs(12);

/// The faults of a run on `kind` lasting `chaos`, from `seed`: one at a time, 0.5 to 2 s
/// apart, each 0.3 to 2 s long (Redis pauses under 0.9 s), master kills
/// [`FAILOVERS_APART`] apart.
pub fn schedule(seed: u64, kind: Kind, chaos: Duration, nodes: usize) -> Vec<Fault> {
    let kinds: &[(FaultKind, u32)] = match kind {
        Kind::Redis => &[
            (FaultKind::NodePause, 3),
            (FaultKind::NodeKill, 2),
            (FaultKind::DbPause, 2),
            (FaultKind::MasterKill, 2),
        ],
        Kind::Postgres => &[
            (FaultKind::NodePause, 3),
            (FaultKind::NodeKill, 2),
            (FaultKind::DbPause, 2),
            (FaultKind::RelayCut, 2),
            (FaultKind::DbCrash, 1),
        ],
    };
    let total: u32 = kinds.iter().map(|(_, weight)| weight).sum();
    let kind_of_db = kind;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = Vec::new();
    let mut last_failover = None;
    // The first second runs without faults: every client logs in once.
    let mut at = Duration::from_secs(1);
    loop {
        at += Duration::from_millis(rng.gen_range(500..2000));
        let length = Duration::from_millis(rng.gen_range(300..2000));
        if at + length >= chaos {
            return faults;
        }
        let mut pick = rng.gen_range(0..total);
        let kind = kinds
            .iter()
            .find_map(|&(kind, weight)| {
                if pick < weight {
                    Some(kind)
                } else {
                    pick -= weight;
                    None
                }
            })
            .expect("a pick below the total weight");
        let node = rng.gen_range(0..nodes);
        let (kind, length) = match (kind, last_failover) {
            // The sentinels fail a master over once per 10 s (twice their failover timeout):
            // a master killed sooner stays dead, writes fail meanwhile, and the run becomes
            // one long failover. An operator's crashes come further apart.
            (FaultKind::MasterKill, Some(last)) if at < last + FAILOVERS_APART => {
                (FaultKind::NodePause, length)
            }
            // A Redis pause stays under the sentinels' patience (3 s): a pause, not a failover.
            (FaultKind::DbPause, _) if kind_of_db == Kind::Redis => {
                (kind, Duration::from_millis(rng.gen_range(300..900)))
            }
            _ => (kind, length),
        };
        if kind == FaultKind::MasterKill {
            last_failover = Some(at);
        }
        faults.push(Fault {
            at,
            kind,
            node,
            length,
        });
        // The nemesis injects one fault at a time: the next starts after this one ends (a
        // master kill takes its promotion, about 2 s, whatever `length` says).
        at += length.max(Duration::from_secs(
            2 * u64::from(kind == FaultKind::MasterKill),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_its_schedule() {
        let chaos = Duration::from_secs(60);
        let one = schedule(7, Kind::Redis, chaos, 3);
        let again = schedule(7, Kind::Redis, chaos, 3);
        let other = schedule(8, Kind::Redis, chaos, 3);
        let show = |faults: &[Fault]| faults.iter().map(ToString::to_string).collect::<Vec<_>>();
        assert_eq!(show(&one), show(&again));
        assert_ne!(show(&one), show(&other));
        assert!(one.len() > 10, "{} faults in 60 s", one.len());
        assert!(one.iter().all(|fault| fault.at + fault.length < chaos));
    }
}

//! [`Backend`]: the database several demo nodes share, Redis or PostgreSQL, for the
//! cross-node suites that must hold on both (`tests/nodes.rs`, `tests/node_faults.rs`).
//!
//! ```no_run
//! use session_harness::backend::{Backend, Kind};
//!
//! let Some(backend) = Backend::start(Kind::Postgres) else { return }; // SKIPPED without it
//! let [a, b] = backend.nodes::<2>(&[]);
//! backend.pause(); // SIGSTOP: connections stay open, nothing answers
//! backend.resume();
//! ```

use crate::{random_key, DemoNode, PostgresServer, RedisServer, Relay};

/// Which database (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `redis-server` of the test's own; the demo's `REDIS_URL`.
    Redis,
    /// A PostgreSQL server of the test's own; the demo's `DATABASE_URL`.
    Postgres,
}

/// A running database of one [`Kind`].
pub enum Backend {
    /// See [`RedisServer`].
    Redis(RedisServer),
    /// See [`PostgresServer`].
    Postgres(PostgresServer),
}

impl Backend {
    /// Starts one, or `None` (after saying `SKIPPED`) when its server is not installed.
    pub fn start(kind: Kind) -> Option<Self> {
        match kind {
            Kind::Redis => RedisServer::start().map(Self::Redis),
            Kind::Postgres => PostgresServer::start().map(Self::Postgres),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        match self {
            Self::Redis(_) => Kind::Redis,
            Self::Postgres(_) => Kind::Postgres,
        }
    }

    /// `N` demo nodes on it (its URL in their `REDIS_URL` or `DATABASE_URL`), with `more` in
    /// their environment too; one shared `SESSION_KEY`, as [`DemoNode::start_many`] gives.
    pub fn nodes<const N: usize>(&self, more: &[(&str, &str)]) -> [DemoNode; N] {
        let (var, url) = match self {
            Self::Redis(redis) => ("REDIS_URL", redis.url()),
            Self::Postgres(pg) => ("DATABASE_URL", pg.url()),
        };
        let mut env = vec![(var, url.as_str())];
        env.extend_from_slice(more);
        DemoNode::start_many(&env)
    }

    /// Node A on it directly and node B through a new [`Relay`] to it (cut B off alone with
    /// [`Relay::set`]), sharing one `SESSION_KEY`, with `more` in their environment too.
    pub fn nodes_one_relayed(&self, more: &[(&str, &str)]) -> (Relay, DemoNode, DemoNode) {
        let (var, port) = match self {
            Self::Redis(redis) => ("REDIS_URL", redis.port()),
            Self::Postgres(pg) => ("DATABASE_URL", pg.port()),
        };
        let relay = Relay::start(port);
        let key = random_key();
        let start = |name: &str, port: u16| {
            let url = self.url_on(port);
            let mut env = vec![(var, url.as_str()), ("SESSION_KEY", key.as_str())];
            env.extend_from_slice(more);
            DemoNode::start_named(name, &env)
        };
        let a = start("node-a", port);
        let b = start("node-b", relay.port());
        (relay, a, b)
    }

    /// Its URL with `port` in place of its own (a relay's).
    fn url_on(&self, port: u16) -> String {
        match self {
            Self::Redis(_) => format!("redis://127.0.0.1:{port}"),
            Self::Postgres(_) => PostgresServer::url_at(port),
        }
    }

    /// Whether some node holds a session's lease now (a lease row or key that has not
    /// lapsed).
    pub fn lease_held(&self) -> bool {
        match self {
            Self::Redis(redis) => !redis.cli(&["KEYS", "*:lock"]).is_empty(),
            Self::Postgres(pg) => {
                pg.psql(
                    r#"SELECT count(*) FROM "tower_sessions"."session_lease"
                       WHERE expires_at > clock_timestamp()"#,
                ) != "0"
            }
        }
    }

    /// The lease rows or keys there are, lapsed or not.
    pub fn leases(&self) -> usize {
        match self {
            Self::Redis(redis) => redis
                .cli(&["KEYS", "*:lock"])
                .lines()
                .filter(|l| !l.is_empty())
                .count(),
            Self::Postgres(pg) => pg
                .psql(r#"SELECT count(*) FROM "tower_sessions"."session_lease""#)
                .parse()
                .expect("a count"),
        }
    }

    /// SIGSTOP to every process of the server: connections stay open and nothing answers.
    pub fn pause(&self) {
        match self {
            Self::Redis(redis) => redis.process.pause(),
            Self::Postgres(pg) => pg.pause(),
        }
    }

    /// SIGCONT after [`Backend::pause`].
    pub fn resume(&self) {
        match self {
            Self::Redis(redis) => redis.process.resume(),
            Self::Postgres(pg) => pg.resume(),
        }
    }

    /// SIGKILL: connections drop, as in a crash.
    pub fn stop(&mut self) {
        match self {
            Self::Redis(redis) => redis.stop(),
            Self::Postgres(pg) => pg.stop(),
        }
    }

    /// Starts it again on the same port after [`Backend::stop`]: Redis (no persistence) empty,
    /// PostgreSQL with every committed record, after crash recovery.
    pub fn start_again(&mut self) {
        match self {
            Self::Redis(redis) => redis.restart(),
            Self::Postgres(pg) => pg.start_again(),
        }
    }

    /// Whether the records survive [`Backend::stop`] and [`Backend::start_again`].
    pub fn keeps_records(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }
}

/// Each `case(kind)` flow as two tests, `case::redis` and `case::postgres` (each on a
/// two-worker runtime), so a flow is written once for both databases.
///
/// ```
/// use session_harness::backend::{Backend, Kind};
///
/// async fn a_database_starts(kind: Kind) {
///     let Some(_db) = Backend::start(kind) else {
///         return; // SKIPPED: no server installed
///     };
/// }
///
/// session_harness::on_both_backends!(a_database_starts);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$case($crate::backend::Kind::Redis).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case($crate::backend::Kind::Postgres).await
            }
        }
    )*};
}

/// Each `case(kind)` flow as three tests: `case::one_node` (`None`: one in-process server),
/// `case::redis` and `case::postgres` (`Some(kind)`: demo nodes on that database).
///
/// ```
/// use session_harness::backend::Kind;
///
/// async fn a_flow(kind: Option<Kind>) {
///     let _ = kind;
/// }
///
/// session_harness::on_one_node_and_both_backends!(a_flow);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! on_one_node_and_both_backends {
    ($($case:ident),* $(,)?) => {$(
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_node() {
                super::$case(None).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$case(Some($crate::backend::Kind::Redis)).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case(Some($crate::backend::Kind::Postgres)).await
            }
        }
    )*};
}

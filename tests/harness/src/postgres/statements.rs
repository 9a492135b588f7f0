//! The statements the server ran, counted by `pg_stat_statements`, for the round-trip tests.

use super::PostgresServer;

impl PostgresServer {
    /// How many statements it ran since [`PostgresServer::reset_statements`] (the sum of
    /// `calls` in `pg_stat_statements`, those that read `pg_stat_statements` left out). A
    /// client that sends one statement a round trip makes it its number of round trips.
    pub fn statements_calls(&self) -> u64 {
        let sum = self.psql(
            "select coalesce(sum(calls), 0) from pg_stat_statements \
             where query not ilike '%pg_stat_statements%'",
        );
        sum.parse()
            .unwrap_or_else(|err| panic!("the sum of calls {sum:?}: {err}"))
    }

    /// Forgets the statements counted so far (`pg_stat_statements_reset()`).
    pub fn reset_statements(&self) {
        self.psql("select pg_stat_statements_reset()");
    }
}

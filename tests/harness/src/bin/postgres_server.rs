//! `postgres_server`: the harness's [`PostgresServer`] as a process, for the benchmark: starts
//! a PostgreSQL server of its own (a temporary cluster, a free port of 127.0.0.1,
//! `pg_stat_statements` created), prints `url postgres://…`, and runs until its standard
//! input closes, then stops the server and removes the cluster. Exits 3 without PostgreSQL.
//!
//! Holding its stdin open from a shell, so that the server ends with the script however it
//! ends (the script's descriptors close when it exits):
//!
//! ```text
//! mkfifo pg.in
//! postgres_server < pg.in > pg.out &
//! exec 4> pg.in   # from here until `exec 4>&-` or the script's end
//! ```

use std::io::Read;

use session_harness::PostgresServer;

fn main() {
    let Some(server) = PostgresServer::start() else {
        std::process::exit(3);
    };
    println!("url {}", server.url());
    // Reads until end of file: the caller's end of the pipe closed.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(server);
}

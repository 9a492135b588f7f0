//! The chaos run as a command (see the crate docs):
//!
//! ```text
//! cargo run -p session-chaos
//! ```
//!
//! Environment:
//! - `CHAOS_BACKEND`: `redis`, `postgres` or `both` (default `both`, one after the other);
//! - `CHAOS_SECS`: how long faults are injected on each (default 45);
//! - `CHAOS_SEED`: the seed of the schedule and the clients' choices (default: drawn, printed);
//! - `LOGIN_LOGOUT_BIN`: a prebuilt demo (else it is built with cargo, in debug);
//! - `CHAOS_RESULTS`: a file to append each database's figures to, one JSON object a line
//!   (the benchmark's `results.jsonl`, from which `bench_report` writes the chaos section).
//!
//! Exits with 1 when the checker found an anomaly (the nodes' logs are then printed too).

use std::{env, process::ExitCode, time::Duration};

use session_chaos::{run, Config};
use session_harness::backend::Kind;

#[tokio::main]
async fn main() -> ExitCode {
    let kinds = match env::var("CHAOS_BACKEND").as_deref() {
        Ok("redis") => vec![Kind::Redis],
        Ok("postgres") => vec![Kind::Postgres],
        Ok("both") | Err(_) => vec![Kind::Redis, Kind::Postgres],
        Ok(other) => {
            eprintln!("`CHAOS_BACKEND` is `redis`, `postgres` or `both`, not {other:?}");
            return ExitCode::from(2);
        }
    };
    let secs = match env::var("CHAOS_SECS").map(|secs| secs.parse::<u64>()) {
        Ok(Ok(secs)) if secs >= 5 => secs,
        Err(_) => 45,
        Ok(_) => {
            eprintln!("`CHAOS_SECS` is a number of seconds, at least 5");
            return ExitCode::from(2);
        }
    };
    let seed = match env::var("CHAOS_SEED").map(|seed| seed.parse::<u64>()) {
        Ok(Ok(seed)) => seed,
        Err(_) => rand::random(),
        Ok(Err(err)) => {
            eprintln!("`CHAOS_SEED` is a number: {err}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for kind in kinds {
        let Some(report) = run(Config::new(kind, seed, Duration::from_secs(secs))).await else {
            failed = true;
            continue;
        };
        println!("{report}");
        if let Ok(path) = env::var("CHAOS_RESULTS") {
            if let Err(err) = append(&path, &report.to_json()) {
                eprintln!("could not append the figures to {path}: {err}");
                failed = true;
            }
        }
        if !report.verdict.anomalies.is_empty() {
            if let Some(logs) = &report.logs {
                println!("{logs}");
            }
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Appends `figures` to the file at `path` as one line.
fn append(path: &str, figures: &serde_json::Value) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{figures}")
}

//! PostgreSQL's programs, and the user who runs them: `postgres` when the test runs as root.

use std::{env, fs, path::PathBuf};

use nix::unistd::{Gid, Uid, User};

use crate::required;

/// Where PostgreSQL's programs are.
pub(super) struct Tools {
    pub(super) initdb: PathBuf,
    pub(super) postgres: PathBuf,
    pub(super) psql: PathBuf,
}

/// PostgreSQL's programs: the highest `/usr/lib/postgresql/<N>/bin/` with `initdb`, `pg_ctl`
/// and `postgres` (Debian's layout), else `initdb` and `postgres` on `PATH`; says `SKIPPED`
/// for `suite` if there are none.
pub(super) fn tools_found(suite: &str) -> Option<Tools> {
    let tools = debian_bin_dir()
        .map(|bin| Tools {
            initdb: bin.join("initdb"),
            postgres: bin.join("postgres"),
            psql: Some(bin.join("psql"))
                .filter(|psql| psql.is_file())
                .or_else(|| on_path("psql"))
                .unwrap_or_else(|| "psql".into()),
        })
        .or_else(|| {
            Some(Tools {
                initdb: on_path("initdb")?,
                postgres: on_path("postgres")?,
                psql: on_path("psql")?,
            })
        });
    if tools.is_none() {
        required::skip(
            suite,
            "PostgreSQL not found (apt-get install -y postgresql)",
        );
    }
    tools
}

fn debian_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|tool| bin.join(tool).is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn on_path(program: &str) -> Option<PathBuf> {
    env::split_paths(&env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// Who runs `initdb` and the server: `Some(postgres)` as root (PostgreSQL refuses to run as
/// root), `None` (the test's own user) otherwise; says `SKIPPED` for `suite` as root without
/// a user `postgres`.
pub(super) fn owner_found(suite: &str) -> Option<Option<(Uid, Gid)>> {
    if !Uid::effective().is_root() {
        return Some(None);
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Some(Some((user.uid, user.gid))),
        _ => {
            required::skip(
                suite,
                "PostgreSQL refuses root and there is no user postgres \
                 (apt-get install -y postgresql creates it)",
            );
            None
        }
    }
}

//! [`TestStore`]: the real store a test server runs on, wrapped to observe and disturb it.
//!
//! [`StoreKind`] names the published stores the runtime is meant to plug into; [`StoreKind::open`]
//! builds one. The wrapper counts operations, remembers every id it wrote (so
//! [`TestStore::record_count`] is exact for any store), sleeps before each operation to make
//! races bite, and fails on demand with `session_store::Error::Backend`:
//!
//! ```
//! use session_harness::{StoreKind, INJECTED_FAILURE};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (store, _sqlite) = StoreKind::Memory.open().await;
//! store.fail_writes(true);
//! let mut record = tower_sessions::session::Record {
//!     id: Default::default(),
//!     data: Default::default(),
//!     expiry_date: tower_sessions::cookie::time::OffsetDateTime::now_utc(),
//! };
//! use tower_sessions::SessionStore as _;
//! let err = store.create(&mut record).await.unwrap_err();
//! assert!(err.to_string().contains(INJECTED_FAILURE));
//! assert_eq!(store.writes(), 0);
//! # }
//! ```

use std::{
    collections::HashSet,
    fmt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tower_sessions::{
    session::{Id, Record},
    session_store, MemoryStore, SessionStore,
};
use tower_sessions_moka_store::MokaStore;
use tower_sessions_sqlx_store::{
    sqlx::{sqlite::SqlitePoolOptions, SqlitePool},
    SqliteStore,
};

// ------------------------------------------------------------------------------------------

/// Which real store backs the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `tower_sessions::MemoryStore`.
    Memory,
    /// `tower_sessions_moka_store::MokaStore`.
    Moka,
    /// `tower_sessions_sqlx_store::SqliteStore` on `sqlite::memory:` (one connection, since
    /// every connection to `:memory:` is a database of its own).
    SqliteMemory,
    /// `SqliteStore` on a temporary file, removed when the server drops.
    SqliteFile,
}

impl StoreKind {
    /// Every kind, for tests that run the same flow on each.
    pub const ALL: [StoreKind; 4] = [
        Self::Memory,
        Self::Moka,
        Self::SqliteMemory,
        Self::SqliteFile,
    ];

    /// Opens a new, empty store of this kind, wrapped. The SQLite handle (for
    /// [`Sqlite::rows`]) is `None` for the other kinds; it removes its file when dropped.
    pub async fn open(self) -> (TestStore, Option<Sqlite>) {
        match self {
            Self::Memory => (TestStore::new(MemoryStore::default()), None),
            Self::Moka => (TestStore::new(MokaStore::new(Some(100_000))), None),
            Self::SqliteMemory | Self::SqliteFile => {
                let (pool, file) = if self == Self::SqliteMemory {
                    let pool = SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect("sqlite::memory:")
                        .await;
                    (pool, None)
                } else {
                    let path = unique_temp_path("sqlite");
                    let url = format!("sqlite://{}?mode=rwc", path.display());
                    let pool = SqlitePoolOptions::new()
                        .max_connections(4)
                        .connect(&url)
                        .await;
                    (pool, Some(path))
                };
                let pool = pool.expect("open sqlite");
                let store = SqliteStore::new(pool.clone());
                store.migrate().await.expect("migrate the sqlite store");
                (TestStore::new(store), Some(Sqlite { pool, file }))
            }
        }
    }
}

/// The SQLite database behind a [`StoreKind::SqliteMemory`] or [`StoreKind::SqliteFile`] store.
pub struct Sqlite {
    pool: SqlitePool,
    file: Option<PathBuf>,
}

impl Sqlite {
    /// Rows of the store's table, counted by SQL.
    pub async fn rows(&self) -> i64 {
        let (n,): (i64,) =
            tower_sessions_sqlx_store::sqlx::query_as("select count(*) from tower_sessions")
                .fetch_one(&self.pool)
                .await
                .expect("count sqlite rows");
        n
    }

    /// The database file, for a file store.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        if let Some(path) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn unique_temp_path(ext: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "session-runtime-test-{}-{}.{ext}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// The error [`TestStore`] returns while failing; tests look for it in messages.
pub const INJECTED_FAILURE: &str = "injected failure: the store is unavailable";

/// A real store wrapped to observe and disturb it: counts operations, remembers every id it
/// created or saved, sleeps `latency` before each operation, and fails on demand.
///
/// Failing is failure injection, not a mock: the wrapped store is the real one, and while a
/// failure flag is set the operation returns `session_store::Error::Backend` without reaching it.
#[derive(Clone)]
pub struct TestStore {
    inner: Arc<dyn SessionStore>,
    stats: Arc<StoreStats>,
}

#[derive(Default)]
struct StoreStats {
    loads: AtomicUsize,
    creates: AtomicUsize,
    saves: AtomicUsize,
    deletes: AtomicUsize,
    latency_us: AtomicU64,
    fail_loads: AtomicBool,
    fail_writes: AtomicBool,
    fail_one_in: AtomicUsize,
    calls: AtomicUsize,
    hang_loads: AtomicBool,
    hang_writes: AtomicBool,
    written_ids: Mutex<HashSet<Id>>,
}

impl fmt::Debug for TestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestStore")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl TestStore {
    /// Wraps `inner`.
    pub fn new(inner: impl SessionStore) -> Self {
        Self {
            inner: Arc::new(inner),
            stats: Arc::default(),
        }
    }

    /// Sleeps this long before every operation, so that races between writers would bite.
    pub fn set_latency(&self, latency: Duration) {
        self.stats
            .latency_us
            .store(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// While set, `load` fails.
    pub fn fail_loads(&self, fail: bool) {
        self.stats.fail_loads.store(fail, Ordering::SeqCst);
    }

    /// While set, `create`, `save` and `delete` fail.
    pub fn fail_writes(&self, fail: bool) {
        self.stats.fail_writes.store(fail, Ordering::SeqCst);
    }

    /// Every operation fails (or none).
    pub fn fail_all(&self, fail: bool) {
        self.fail_loads(fail);
        self.fail_writes(fail);
    }

    /// A flaky store: one operation in `n` fails, loads and writes alike, counting from the
    /// next (`0`: none). With `n == 2` every autosave transaction (a load, then a save) fails.
    pub fn fail_one_in(&self, n: usize) {
        self.stats.calls.store(0, Ordering::SeqCst);
        self.stats.fail_one_in.store(n, Ordering::SeqCst);
    }

    /// While set, `load` does not answer (a stuck store): it waits until the flag is cleared,
    /// unless its caller gives up first.
    pub fn hang_loads(&self, hang: bool) {
        self.stats.hang_loads.store(hang, Ordering::SeqCst);
    }

    /// While set, `create`, `save` and `delete` do not answer (see [`TestStore::hang_loads`]).
    pub fn hang_writes(&self, hang: bool) {
        self.stats.hang_writes.store(hang, Ordering::SeqCst);
    }

    /// Successful `save` calls so far.
    pub fn saves(&self) -> usize {
        self.stats.saves.load(Ordering::SeqCst)
    }

    /// Successful `create` calls so far.
    pub fn creates(&self) -> usize {
        self.stats.creates.load(Ordering::SeqCst)
    }

    /// Successful `create` + `save` calls so far: every way a record can come to exist.
    pub fn writes(&self) -> usize {
        self.creates() + self.saves()
    }

    /// Successful `load` calls so far.
    pub fn loads(&self) -> usize {
        self.stats.loads.load(Ordering::SeqCst)
    }

    /// Successful `delete` calls so far.
    pub fn deletes(&self) -> usize {
        self.stats.deletes.load(Ordering::SeqCst)
    }

    /// The record under `id`, read from the real store (no latency, no failure, not counted).
    pub async fn record(&self, id: Id) -> Option<Record> {
        self.inner.load(&id).await.expect("the real store failed")
    }

    /// Makes the record under `id` expired a minute ago, in the real store, as if time had
    /// passed.
    pub async fn expire(&self, id: Id) {
        let a_minute_ago =
            tower_sessions::cookie::time::OffsetDateTime::now_utc() - Duration::from_secs(60);
        self.set_expiry_date(id, a_minute_ago).await;
    }

    /// Sets the expiry of the record under `id` to `at`, in the real store, behind the
    /// runtime's back (no lock, no timer told): as if the record had been saved long ago.
    pub async fn set_expiry_date(&self, id: Id, at: tower_sessions::cookie::time::OffsetDateTime) {
        let mut record = self.record(id).await.expect("no record to change");
        record.expiry_date = at;
        self.inner
            .save(&record)
            .await
            .expect("the real store failed");
    }

    /// How many records the store holds: every record was written through this wrapper, so
    /// counting the ids it wrote that still load is exact, for any store.
    pub async fn record_count(&self) -> usize {
        let ids: Vec<Id> = self
            .stats
            .written_ids
            .lock()
            .unwrap()
            .iter()
            .copied()
            .collect();
        let mut count = 0;
        for id in ids {
            count += usize::from(self.record(id).await.is_some());
        }
        count
    }

    async fn before(&self, write: bool) -> session_store::Result<()> {
        let latency = self.stats.latency_us.load(Ordering::Relaxed);
        if latency > 0 {
            tokio::time::sleep(Duration::from_micros(latency)).await;
        }
        let (failing, hanging) = if write {
            (&self.stats.fail_writes, &self.stats.hang_writes)
        } else {
            (&self.stats.fail_loads, &self.stats.hang_loads)
        };
        while hanging.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let call = self.stats.calls.fetch_add(1, Ordering::SeqCst);
        let one_in = self.stats.fail_one_in.load(Ordering::SeqCst);
        let flaky = one_in > 0 && call % one_in == one_in - 1;
        if failing.load(Ordering::SeqCst) || flaky {
            return Err(session_store::Error::Backend(INJECTED_FAILURE.into()));
        }
        Ok(())
    }

    fn wrote(&self, id: Id, counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.stats.written_ids.lock().unwrap().insert(id);
    }
}

#[async_trait::async_trait]
impl SessionStore for TestStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        self.before(true).await?;
        self.inner.create(record).await?;
        self.wrote(record.id, &self.stats.creates);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        self.before(true).await?;
        self.inner.save(record).await?;
        self.wrote(record.id, &self.stats.saves);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        self.before(false).await?;
        let record = self.inner.load(id).await?;
        self.stats.loads.fetch_add(1, Ordering::SeqCst);
        Ok(record)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.before(true).await?;
        self.inner.delete(id).await?;
        self.stats.deletes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Server
// ------------------------------------------------------------------------------------------

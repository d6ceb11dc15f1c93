//! Connections: one writer, a pool of readers, all used from tokio's blocking pool; how
//! SQLite errors become the seam's; and the statement helpers the resource modules share.

use crate::clock::now_ms;
use crate::migrate;
use crescendo_domain::{Id, IdGen};
use crescendo_store::StoreError;
use crescendo_store::outbox::{self, PendingJob};
use crescendo_telemetry::names;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// SQLite's `synchronous` setting in WAL mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync the WAL at every commit: an acknowledged write survives power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: an acknowledged write survives a crash of the process,
    /// but the last commits may be lost if the machine loses power. Faster writes.
    Normal,
}

/// How to open the database.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The database file (created with its WAL beside it).
    pub path: PathBuf,
    /// How many reader connections at most.
    pub readers: usize,
    /// How long a statement waits for a lock before failing as unavailable.
    pub busy_timeout: Duration,
    /// Durability of commits.
    pub synchronous: Synchronous,
}

impl SqliteOptions {
    /// Defaults for a file at `path`: 4 readers, 5 s busy timeout, `synchronous=FULL`.
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            readers: 4,
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Full,
        }
    }
}

/// A small pool of connections opened on demand.
///
/// The semaphore bounds how many are in use; the vector holds the idle ones. A connection
/// lost to a panicking closure is simply not returned, and a new one is opened next time.
struct Pool {
    role: &'static str,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    open: Box<dyn Fn() -> rusqlite::Result<Connection> + Send + Sync>,
}

/// The database: one writer, a pool of readers.
#[derive(Clone)]
pub(crate) struct Db {
    writer: Arc<Pool>,
    readers: Arc<Pool>,
    /// IDs are made here, for the single writer's transactions, so they never collide.
    ids: Arc<IdGen>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

fn configure(conn: &Connection, opts: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(opts.busy_timeout)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(
        None,
        "synchronous",
        match opts.synchronous {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        },
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

impl Db {
    /// Opens (creating if needed) and migrates the database.
    pub(crate) fn open(opts: &SqliteOptions) -> Result<Self, StoreError> {
        let mut conn = Connection::open(&opts.path).map_err(map_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(map_err)?;
        configure(&conn, opts).map_err(map_err)?;
        migrate::migrate(&mut conn).map_err(map_err)?;

        let w = opts.clone();
        let writer = Pool {
            role: "writer",
            idle: Mutex::new(vec![conn]),
            permits: Semaphore::new(1),
            open: Box::new(move || {
                let c = Connection::open(&w.path)?;
                configure(&c, &w)?;
                Ok(c)
            }),
        };
        let r = opts.clone();
        let readers = Pool {
            role: "reader",
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(opts.readers.max(1)),
            open: Box::new(move || {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX
                    | OpenFlags::SQLITE_OPEN_URI;
                let c = Connection::open_with_flags(&r.path, flags)?;
                configure(&c, &r)?;
                Ok(c)
            }),
        };
        Ok(Self {
            writer: Arc::new(writer),
            readers: Arc::new(readers),
            ids: Arc::new(IdGen::new()),
        })
    }

    /// The maker of this database's IDs.
    pub(crate) fn ids(&self) -> &IdGen {
        &self.ids
    }

    /// Runs `f` on a reader connection.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        run(&self.readers, f).await
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction on the writer; commits if `f`
    /// returns `Ok`, rolls back otherwise, so nothing is ever half-written. The jobs pending
    /// in the caller's `crescendo_store::outbox` scope are added to the outbox in the same
    /// transaction (this is the single commit point of every write).
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let jobs = outbox::take();
        let kept = jobs.clone();
        let done = run(&self.writer, move |conn: &Connection| {
            // `Connection::transaction` needs `&mut`; the writer is exclusive, so this is safe.
            let tx = rusqlite::Transaction::new_unchecked(
                conn,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(map_err)?;
            let v = f(&tx)?; // an error drops `tx`, which rolls back
            let ids = add_jobs(&tx, &jobs)?;
            tx.commit().map_err(map_err)?;
            Ok((v, ids))
        })
        .await;
        match done {
            Ok((v, ids)) => {
                outbox::written(&kept, &ids);
                Ok(v)
            }
            Err(e) => {
                outbox::restore(kept);
                Err(e)
            }
        }
    }

    /// Runs one statement in its own write transaction; how many rows it changed.
    pub(crate) async fn execute<P>(&self, sql: &'static str, params: P) -> Result<usize, StoreError>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.write(move |tx| {
            tx.prepare_cached(sql)
                .and_then(|mut st| st.execute(params))
                .map_err(map_err)
        })
        .await
    }
}

/// Inserts `jobs` into the outbox, each leased by its writer for its `lease_ms`; their IDs.
fn add_jobs(tx: &rusqlite::Transaction<'_>, jobs: &[PendingJob]) -> Result<Vec<i64>, StoreError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let mut st = tx
        .prepare_cached(
            "INSERT INTO outbox (queue, payload, lease_until, created_at) VALUES (?1, ?2, ?3, ?4)
             RETURNING id",
        )
        .map_err(map_err)?;
    jobs.iter()
        .map(|j| {
            st.query_row(
                rusqlite::params![j.queue, j.payload, now.saturating_add(j.lease_ms), now],
                |r| r.get(0),
            )
            .map_err(map_err)
        })
        .collect()
}

async fn run<T, F>(pool: &Arc<Pool>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    let _permit = pool
        .permits
        .acquire()
        .await
        .map_err(|_| StoreError::Unavailable("pool closed".into()))?;
    metrics::counter!(names::DB_QUERIES, "role" => "sqlite").increment(1);
    crescendo_store::fence::note_query();
    let pool2 = Arc::clone(pool);
    let gauge = metrics::gauge!(names::DB_POOL_IN_USE, "role" => pool.role);
    gauge.increment(1.0);
    let res = tokio::task::spawn_blocking(move || {
        let conn = pool2
            .idle
            .lock()
            .expect("pool lock is never poisoned")
            .pop();
        let conn = match conn {
            Some(c) => c,
            None => {
                let c = (pool2.open)().map_err(map_err)?;
                metrics::gauge!(names::DB_POOL_OPEN, "role" => pool2.role).increment(1.0);
                c
            }
        };
        let out = f(&conn);
        pool2
            .idle
            .lock()
            .expect("pool lock is never poisoned")
            .push(conn);
        out
    })
    .await;
    gauge.decrement(1.0);
    match res {
        Ok(r) => r,
        Err(join) => {
            metrics::gauge!(names::DB_POOL_OPEN, "role" => pool.role).decrement(1.0);
            Err(StoreError::Other(Box::new(join)))
        }
    }
}

/// The `Store::ping` of this engine: one trivial statement on a reader.
pub(crate) async fn ping(db: &Db) -> Result<(), StoreError> {
    db.read(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err))
        .await
}

/// Maps SQLite errors to the seam's: unique violations name their field, lock time-outs are
/// "unavailable".
pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        match f.code {
            ErrorCode::ConstraintViolation => {
                let m = msg.as_deref().unwrap_or("");
                if m.contains("usernames.username") {
                    return StoreError::Conflict {
                        constraint: "username",
                    };
                }
                if m.contains("emails.email") {
                    return StoreError::Conflict {
                        constraint: "email",
                    };
                }
            }
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::CannotOpen
            | ErrorCode::DiskFull => {
                return StoreError::Unavailable(e.to_string());
            }
            _ => {}
        }
    }
    StoreError::Other(Box::new(e))
}

/// A JSON array of IDs, bound as one parameter and read with `json_each`, so a statement
/// with an `IN` list of any length is prepared once and cached.
pub(crate) fn id_list(ids: &[Id]) -> String {
    let mut s = String::with_capacity(ids.len() * 20 + 2);
    s.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.as_i64().to_string());
    }
    s.push(']');
    s
}

/// The IDs in the first column of what `sql` selects.
pub(crate) fn ids_from(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Id>, StoreError> {
    c.prepare_cached(sql)
        .and_then(|mut st| {
            st.query_map(params, |r| Ok(Id::from_i64(r.get(0)?)))?
                .collect()
        })
        .map_err(map_err)
}

/// The number `sql` (a `SELECT COUNT(*) …`) answers.
pub(crate) fn count(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<u64, StoreError> {
    c.prepare_cached(sql)
        .and_then(|mut st| st.query_row(params, |r| r.get::<_, i64>(0)))
        .map(|n| n as u64)
        .map_err(map_err)
}

//! Where each statement runs: reads on a replica that may serve them or on the primary,
//! writes in transactions on the primary, each commit's position noted for read-your-writes
//! (see [`crate::cluster`] and `crescendo_store::fence`); and how sqlx errors become the
//! seam's. With stale reads on, [`guarded`] gives up a call stuck on a primary that was
//! lost, and reads the primary would serve go to a replica meanwhile
//! ([`crate::cluster::stale`]).

use crate::clock::now_ms;
use crate::cluster::{Cluster, Node};
use crescendo_domain::{Id, LogicalShard};
use crescendo_store::jobs::FeedJob;
use crescendo_store::outbox::{self, PendingJob};
use crescendo_store::{StoreError, StoreResult, fence};
use crescendo_telemetry::names;
use sqlx::postgres::{PgArguments, PgPool};
use sqlx::query::Query;
use sqlx::{Postgres, Transaction};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// A transaction on the primary.
pub(crate) type Tx<'a> = Transaction<'a, Postgres>;

/// How a database's commits treat the jobs pending in the caller's
/// `crescendo_store::outbox` scope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutboxIds {
    /// They are written to this database's outbox; their IDs are the table's.
    Plain,
    /// They are written to the outbox of cluster `index` of a sharded store; their IDs as
    /// the seam sees them encode the cluster (see `sharded::outbox`).
    Cluster(i64),
    /// This database has no outbox (a sharded store's catalogue): they wait for the commit
    /// of a cluster.
    None,
}

/// The primary and its replicas, as the resource modules use them.
#[derive(Clone)]
pub(crate) struct Db {
    cluster: Arc<Cluster>,
    /// A cluster of a sharded store: every write checks that its logical shard is here.
    fenced: bool,
    /// Whether commits here carry the pending outbox jobs, and how their IDs read.
    outbox: OutboxIds,
    /// A cluster of a sharded store: its number, which tags its positions in read fences
    /// (`crescendo_store::fence::on_cluster_tagged`); 0: positions are not tagged.
    tag: u8,
}

impl Db {
    /// Statements over `cluster`.
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        Self {
            cluster,
            fenced: false,
            outbox: OutboxIds::Plain,
            tag: 0,
        }
    }

    /// This database as cluster number `tag` (1 to 255) of a sharded store: its commits'
    /// positions are tagged with it, and its reads compare only positions so tagged.
    pub(crate) fn tagged(mut self, tag: u8) -> Self {
        self.tag = tag;
        self
    }

    /// The scope's read fence as a position of this database (see the field `tag`).
    fn fence_here(&self) -> u64 {
        let fence = fence::read_after();
        if self.tag == 0 {
            fence
        } else {
            fence::for_cluster(fence, self.tag)
        }
    }

    /// This database's commits treat pending outbox jobs as `outbox` says.
    pub(crate) fn with_outbox(mut self, outbox: OutboxIds) -> Self {
        self.outbox = outbox;
        self
    }

    /// This database as one cluster of a sharded store: writes are fenced by
    /// `owned_shards` (see [`Db::begin_for`]).
    pub(crate) fn fenced(mut self) -> Self {
        self.fenced = true;
        self
    }

    /// Whether this is a cluster of a sharded store, whose writes add feed jobs (fan-out on
    /// write to timelines) to their own transactions.
    pub(crate) fn keeps_timelines(&self) -> bool {
        self.fenced
    }

    /// The outbox entry of `job` when this database keeps timelines (none otherwise), for
    /// [`Db::commit_with`].
    pub(crate) fn feed_jobs(&self, job: FeedJob) -> Vec<PendingJob> {
        if !self.keeps_timelines() {
            return Vec::new();
        }
        vec![PendingJob {
            queue: FeedJob::QUEUE,
            payload: job.encode(),
            lease_ms: 0,
        }]
    }

    /// The servers, for what the store reports about them and for migrations.
    pub(crate) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Reports the primary's pool use.
    fn pool_gauges(pool: &PgPool) {
        let (size, idle) = (pool.size(), pool.num_idle() as u32);
        metrics::gauge!(names::DB_POOL_OPEN, "role" => "primary").set(f64::from(size));
        metrics::gauge!(names::DB_POOL_IN_USE, "role" => "primary")
            .set(f64::from(size.saturating_sub(idle)));
    }

    /// Runs a read on a replica that may serve it, else on the primary. A replica that
    /// fails is taken out of rotation and the read is repeated on the primary.
    pub(crate) async fn read<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        if let Some(node) = self.cluster.replica_for_read(self.fence_here()).await {
            self.cluster.count_read(node);
            if self.cluster.reading_stale() {
                fence::note_stale(self.cluster.staleness(node));
            }
            match f(node.pool.clone()).await {
                Err(StoreError::Unavailable(why)) => {
                    tracing::warn!(node = %node.name, error = %why, "read failed on a replica; repeating it on the primary");
                    node.mark_down();
                }
                done => return done,
            }
        }
        self.read_primary(f).await
    }

    /// Runs a read on the primary. A broken pooled connection is retried once. With stale
    /// reads on, a read the primary cannot serve (lost, or lost while the read waits on
    /// it, or unavailable twice) goes to a replica, marked stale.
    pub(crate) async fn read_primary<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        if !self.cluster.serves_stale_reads() {
            return self.read_on_primary(&f).await;
        }
        if !self.cluster.reading_stale() {
            let primary = Arc::clone(self.cluster.primary());
            tokio::select! {
                read = self.read_on_primary(&f) => match read {
                    Err(StoreError::Unavailable(why)) => {
                        tracing::warn!(error = %why, "read failed on the primary; reading a replica, stale");
                    }
                    done => return done,
                },
                () = self.until_lost(&primary) => {}
            }
        }
        let Some(node) = self.cluster.stale_replica() else {
            return Err(StoreError::Unavailable(
                "the primary is not answering and no replica is".into(),
            ));
        };
        self.cluster.count_read(node);
        fence::note_stale(self.cluster.staleness(node));
        f(node.pool.clone()).await
    }

    /// [`Db::read_primary`] without stale reads.
    async fn read_on_primary<T, F, Fut>(&self, f: &F) -> StoreResult<T>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let primary = self.cluster.primary();
        self.cluster.count_read(primary);
        self.primary_answering()?;
        Self::pool_gauges(&primary.pool);
        match f(primary.pool.clone()).await {
            Err(StoreError::Unavailable(_)) => f(self.cluster.primary().pool.clone()).await,
            done => done,
        }
    }

    /// Returns once `primary` is lost (see [`Cluster::primary_lost`]), looking every check
    /// interval; never with a single server, which has no monitor.
    async fn until_lost(&self, primary: &Arc<Node>) {
        if !self.cluster.has_replicas() {
            return std::future::pending().await;
        }
        let mut tick = tokio::time::interval(self.cluster.check_interval());
        loop {
            tick.tick().await;
            if self.cluster.primary_lost(primary) {
                return;
            }
        }
    }

    /// Fails fast while the primary is known to be down (a failover is due), instead of
    /// waiting out the pool's acquire time-out on a server that is gone.
    fn primary_answering(&self) -> StoreResult<()> {
        if self.cluster.has_replicas() && !self.cluster.primary().is_up() {
            return Err(StoreError::Unavailable(format!(
                "primary {} is not answering",
                self.cluster.primary().name
            )));
        }
        Ok(())
    }

    /// Notes the position a write committed at, for read-your-writes. Only replicas
    /// need it, so without them it costs nothing.
    async fn committed(&self) {
        if !self.cluster.has_replicas() {
            return;
        }
        let position =
            sqlx::query_scalar::<_, i64>("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
                .fetch_one(&self.cluster.primary().pool)
                .await;
        match position {
            Ok(p) if self.tag == 0 => fence::note_write(p as u64),
            Ok(p) => fence::note_write(fence::on_cluster_tagged(self.tag, p as u64)),
            Err(e) => {
                // the write is committed but where is unknown: read from the primary
                tracing::warn!(error = %e, "no commit position; this writer reads from the primary for a while");
                fence::note_write(u64::MAX);
            }
        }
    }

    /// A transaction on the primary. BEGIN changes nothing, so a broken pooled connection
    /// is retried once.
    pub(crate) async fn begin(&self) -> StoreResult<Tx<'static>> {
        self.cluster.count_write();
        self.primary_answering()?;
        match self.begin_on_primary().await {
            Ok(tx) => Ok(tx),
            Err(_) => self.begin_on_primary().await,
        }
    }

    /// BEGIN on the primary, given up as soon as the monitor finds the primary down (a
    /// connection attempt to a dead server would otherwise wait out the acquire time-out).
    /// With stale reads on, the call's [`guarded`] watch is told that it now waits on the
    /// primary.
    async fn begin_on_primary(&self) -> StoreResult<Tx<'static>> {
        let primary = Arc::clone(self.cluster.primary());
        let _ = ON_PRIMARY.try_with(|on| {
            *on.lock().expect("the primary watch lock is never poisoned") =
                Some(Arc::clone(&primary));
        });
        tokio::select! {
            tx = primary.pool.begin() => tx.map_err(map_err),
            () = self.until_lost(&primary) => {
                Err(StoreError::Unavailable(format!("primary {} is not answering", primary.name)))
            }
        }
    }

    /// A transaction on the primary for a write to logical shard `shard`. On a cluster of
    /// a sharded store it first takes a share lock on the shard's row of `owned_shards`, so
    /// a move of the shard waits for it, and it fails with [`StoreError::Moved`] when the
    /// shard is not (or no longer) here.
    pub(crate) async fn begin_for(&self, shard: LogicalShard) -> StoreResult<Tx<'static>> {
        let mut tx = self.begin().await?;
        if self.fenced {
            let held: Option<i32> =
                sqlx::query_scalar("SELECT shard FROM owned_shards WHERE shard = $1 FOR SHARE")
                    .bind(i32::from(shard.get()))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_err)?;
            if held.is_none() {
                return Err(StoreError::Moved(shard.get()));
            }
        }
        Ok(tx)
    }

    /// [`Db::execute`] as a write to logical shard `shard` (see [`Db::begin_for`]).
    pub(crate) async fn execute_for(
        &self,
        shard: LogicalShard,
        statement: Query<'_, Postgres, PgArguments>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin_for(shard).await?;
        let n = statement.execute(&mut *tx).await.map_err(map_err)?;
        self.commit(tx).await?;
        Ok(n.rows_affected())
    }

    /// Commits, then notes the commit's position for read-your-writes. This is the single
    /// commit point of every write here: the jobs pending in the caller's
    /// `crescendo_store::outbox` scope are inserted into the outbox first, in `tx`.
    pub(crate) async fn commit(&self, tx: Tx<'static>) -> StoreResult<()> {
        self.commit_with(tx, Vec::new()).await
    }

    /// [`Db::commit`], adding `own` jobs (the store's own, for a relay at once: no lease)
    /// to the outbox too, whether or not the caller opened a scope.
    pub(crate) async fn commit_with(
        &self,
        mut tx: Tx<'static>,
        own: Vec<PendingJob>,
    ) -> StoreResult<()> {
        let scoped = match self.outbox {
            OutboxIds::None => Vec::new(),
            _ => outbox::take(),
        };
        let own_len = own.len();
        let mut jobs = own;
        jobs.extend(scoped);
        let ids = match add_jobs(&mut tx, &jobs).await {
            Ok(ids) => ids,
            Err(e) => {
                outbox::restore(jobs.split_off(own_len));
                return Err(e);
            }
        };
        if let Err(e) = tx.commit().await {
            outbox::restore(jobs.split_off(own_len));
            return Err(map_err(e));
        }
        let ids: Vec<i64> = match self.outbox {
            OutboxIds::Cluster(i) => ids
                .into_iter()
                .map(|id| id * crate::sharded::MAX_CLUSTERS + i)
                .collect(),
            _ => ids,
        };
        outbox::written(&jobs, &ids);
        self.committed().await;
        Ok(())
    }

    /// Runs one statement in its own transaction on the primary; how many rows it changed.
    pub(crate) async fn execute(
        &self,
        statement: Query<'_, Postgres, PgArguments>,
    ) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let n = statement.execute(&mut *tx).await.map_err(map_err)?;
        self.commit(tx).await?;
        Ok(n.rows_affected())
    }
}

tokio::task_local! {
    /// The primary the current store call has begun a transaction on, if it has: what
    /// [`guarded`] watches.
    static ON_PRIMARY: Arc<Mutex<Option<Arc<Node>>>>;
}

/// Runs one store call. With stale reads on, a call that has begun a transaction on the
/// primary is given up with [`StoreError::Unavailable`] as soon as that primary is lost (a
/// statement on a connection to a primary behind a WAN cut would wait for as long as TCP
/// does; a commit in flight then has an unknown outcome, which the caller is told as
/// "unavailable" too). Calls that never wait on the primary run untouched.
pub(crate) async fn guarded<T>(
    db: &Db,
    call: impl Future<Output = StoreResult<T>>,
) -> StoreResult<T> {
    if !db.cluster.serves_stale_reads() {
        return call.await;
    }
    let on = Arc::new(Mutex::new(None));
    let watch = async {
        let mut tick = tokio::time::interval(db.cluster.check_interval());
        loop {
            tick.tick().await;
            let primary = on
                .lock()
                .expect("the primary watch lock is never poisoned")
                .clone();
            if let Some(p) = primary
                && db.cluster.primary_lost(&p)
            {
                return p;
            }
        }
    };
    tokio::select! {
        done = ON_PRIMARY.scope(Arc::clone(&on), call) => done,
        lost = watch => Err(StoreError::Unavailable(format!(
            "primary {} stopped answering during the call",
            lost.name
        ))),
    }
}

/// Inserts `jobs` into the outbox in `tx`, each leased by its writer for its `lease_ms`;
/// their IDs.
async fn add_jobs(tx: &mut Tx<'static>, jobs: &[PendingJob]) -> StoreResult<Vec<i64>> {
    let now = now_ms();
    let mut ids = Vec::with_capacity(jobs.len());
    for j in jobs {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO outbox (queue, payload, lease_until, created_at) VALUES ($1, $2, $3, $4)
             RETURNING id",
        )
        .bind(j.queue)
        .bind(&j.payload)
        .bind(now.saturating_add(j.lease_ms))
        .bind(now)
        .fetch_one(&mut **tx)
        .await
        .map_err(map_err)?;
        ids.push(id);
    }
    Ok(ids)
}

/// The `Store::ping` of this engine: one trivial statement on the primary.
pub(crate) async fn ping(db: &Db) -> StoreResult<()> {
    db.read_primary(select_one).await
}

/// Whether some server of `db` serves reads: a replica that may (see [`Db::read`]), else
/// the primary.
pub(crate) async fn ping_any(db: &Db) -> StoreResult<()> {
    db.read(select_one).await
}

/// One trivial statement on `pool`.
async fn select_one(pool: PgPool) -> StoreResult<()> {
    sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .map_err(map_err)
        .map(drop)
}

/// IDs as `bigint`s, for `= ANY($1)`.
pub(crate) fn raw(ids: &[Id]) -> Vec<i64> {
    ids.iter().map(|i| i.as_i64()).collect()
}

/// Maps sqlx errors to the seam's: unique violations name their field, connection trouble
/// is "unavailable".
pub(crate) fn map_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => match db.constraint() {
            Some("usernames_pkey") => StoreError::Conflict {
                constraint: "username",
            },
            Some("emails_pkey") => StoreError::Conflict {
                constraint: "email",
            },
            _ => StoreError::Other(Box::new(e)),
        },
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => StoreError::Unavailable(e.to_string()),
        // the server is shutting down or starting (57P0x), a read on a replica was cancelled
        // by replay (40001), or the server is read-only: try elsewhere
        sqlx::Error::Database(db)
            if db
                .code()
                .is_some_and(|c| c.starts_with("57P") || c == "40001" || c == "25006") =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Other(Box::new(e)),
    }
}

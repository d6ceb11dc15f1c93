//! `ShardedStore`: the `Store` seam over several PostgreSQL clusters (rung 10).
//!
//! Users and their rows are spread over clusters by logical shard (the 12 bits every user,
//! article and upload ID carries). A small catalogue database holds the shard map, with its
//! epoch, and the directory of usernames and emails; every node caches the map and reloads
//! it when the epoch moves. Each method runs where its rows live (see each module's notes):
//! one cluster for a user's, an article's or an upload's own rows, every cluster for
//! global lists, the reader's cluster (their timeline, filled by fan-out on write) and the
//! clusters of the celebrities they follow for the feed.
//!
//! Writes are fenced: each takes a share lock on its logical shard's row of the cluster's
//! `owned_shards` in its own transaction, so a cluster the shard has left refuses it
//! (`Moved`), and the store reloads the map and writes on the new home. `reshard` moves
//! shards between clusters online, by logical replication.
//!
//! Every cluster has the same schema (`migrations/postgres/`, with no key across logical
//! shards) and the catalogue its own (`migrations/catalogue/`). Each cluster is a primary
//! with streaming replicas of its own, or none, as at rung 4: a read goes to a replica of
//! its cluster that has replayed the request's fence, else to that cluster's primary, and
//! `failover` promotes a cluster's replica. Read fences are positions of one cluster, tagged
//! with its number (kept in the catalogue, so every node agrees on it), and never compared
//! across clusters: a fence of another cluster sends a read to the primary
//! (`crescendo_store::fence::for_cluster`). While a cluster's primary is lost, such reads
//! are served by its replica, marked stale (`crate::cluster::stale`), and its writes fail at
//! once. The catalogue may have replicas too, read the same way (its number is kept under
//! a name no cluster can have).

mod articles;
pub(crate) mod catalogue;
mod comments;
mod db;
mod lists;
mod outbox;
mod reshard;
mod timelines;
mod uploads;
mod users;

pub use catalogue::Swept;
pub(crate) use outbox::MAX_CLUSTERS;
pub use reshard::{ReshardOptions, ReshardReport, ReshardTarget};

use crate::cluster::{Cluster, ClusterOptions};
use crate::db::{Db, map_err};
use crate::{PgOptions, migrate};
use crescendo_store::shard_map::ShardMap;
use crescendo_store::{StoreError, StoreResult};
use db::Shards;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// Each table `reshard` moves, and the column that carries its logical shard (every table
/// keyed by a logical shard: one added to the schema must be listed here).
pub(crate) const MOVED_TABLES: &[(&str, &str)] = &[
    ("users", "id"),
    ("usernames", "user_id"),
    ("emails", "user_id"),
    ("follows", "follower_id"),
    ("followers", "followee_id"),
    ("follower_counts", "followee_id"),
    ("timelines", "owner_id"),
    ("uploads", "id"),
    ("articles", "id"),
    ("article_tags", "article_id"),
    ("favorites", "article_id"),
    ("comments", "article_id"),
];

/// How to connect to a sharded deployment.
#[derive(Clone, Debug)]
pub struct ShardedOptions {
    /// The catalogue database.
    pub catalogue: PgOptions,
    /// Every cluster, by name (a cluster's name is how the map refers to it).
    pub clusters: Vec<(String, PgOptions)>,
    /// How often the catalogue's map epoch is checked.
    pub map_check_interval: Duration,
    /// A sign-up reservation this old whose user is still missing is swept.
    pub sweep_after: Duration,
    /// Clusters the first map gives no logical shard: connected and migrated, ready for
    /// `reshard` to add them.
    pub spare: Vec<String>,
    /// Authors with more followers than this are celebrities: their articles are not fanned
    /// out to timelines but merged into feeds at read time.
    pub celebrity_followers: u64,
}

impl ShardedOptions {
    /// The catalogue and the clusters, checked every second, sweeping reservations older
    /// than a minute, with celebrities above 1,000 followers.
    pub fn new(catalogue: PgOptions, clusters: Vec<(String, PgOptions)>) -> Self {
        Self {
            catalogue,
            clusters,
            map_check_interval: Duration::from_secs(1),
            sweep_after: Duration::from_secs(60),
            spare: Vec::new(),
            celebrity_followers: db::DEFAULT_CELEBRITY_FOLLOWERS,
        }
    }
}

/// One server of a cluster as its monitor sees it: (`host:port`, is the primary, takes
/// reads, lag).
pub type ServerView = (String, bool, bool, Duration);

/// One cluster as `crescendo shards` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterReport {
    /// The cluster's name.
    pub name: String,
    /// How many logical shards the map gives it.
    pub shards: usize,
    /// Users stored there.
    pub users: u64,
    /// Articles stored there.
    pub articles: u64,
    /// Rows of every data table stored there.
    pub rows: u64,
}

/// The `Store` seam on several PostgreSQL clusters.
#[derive(Clone)]
pub struct ShardedStore {
    db: Arc<Shards>,
}

impl std::fmt::Debug for ShardedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedStore")
            .field("clusters", &self.db.map().clusters())
            .field("epoch", &self.db.map().epoch())
            .finish()
    }
}

/// Fills each cluster's `owned_shards` from the first map (epoch 1), where it is still
/// empty: the fences of a fresh deployment. Later maps are made by moves, which keep the
/// tables themselves.
async fn own_first_map(shards: &Shards) -> StoreResult<()> {
    let map = shards.map();
    if map.epoch() != 1 {
        return Ok(());
    }
    for (name, db) in shards.clusters() {
        let mine: Vec<i32> = map
            .homes()
            .filter(|(_, c)| c == name)
            .map(|(n, _)| i32::from(n))
            .collect();
        let fill = sqlx::query(
            "INSERT INTO owned_shards (shard) SELECT unnest($1::int[])
             WHERE NOT EXISTS (SELECT 1 FROM owned_shards) ON CONFLICT DO NOTHING",
        )
        .bind(mine);
        db.execute(fill).await?;
    }
    Ok(())
}

/// The name under which the catalogue's own number is kept among the clusters' (one no
/// cluster can have: clusters are named with letters, digits, `-` and `_`).
const CATALOGUE_NUMBER: &str = "(catalogue)";

/// A cluster's (or the catalogue's) primary and its replicas.
fn servers(opts: &PgOptions) -> StoreResult<Db> {
    let urls = std::iter::once(opts.url.clone())
        .chain(opts.replicas.iter().cloned())
        .collect();
    let cluster = Cluster::new(&ClusterOptions {
        urls,
        max_connections: opts.max_connections,
        acquire_timeout: opts.acquire_timeout,
        max_replica_lag: opts.max_replica_lag,
        check_interval: opts.check_interval,
        // while a cluster's primary is lost (until its failover), a read only its primary
        // could serve (a fence of this cluster it has not replayed, or of another cluster)
        // is served by its replica, marked stale, rather than failing
        serve_stale_reads: true,
    })
    .map_err(map_err)?;
    Ok(Db::new(cluster))
}

impl ShardedStore {
    /// Connects to the catalogue and every cluster, brings every schema up to date, stores
    /// the first map (the clusters' consistent-hash placement, epoch 1) if the catalogue
    /// has none, and loads the map in force. A background task then reloads the map when
    /// its epoch moves and sweeps stale sign-up reservations.
    ///
    /// # Errors
    /// A malformed URL, no clusters or more than 64, a database that cannot be reached or
    /// migrated, or a stored map naming a cluster not given here.
    pub async fn open(opts: &ShardedOptions) -> StoreResult<Self> {
        let count = opts.clusters.len() as i64;
        if count == 0 || count > outbox::MAX_CLUSTERS {
            return Err(StoreError::Other(
                format!(
                    "a sharded store needs 1 to {} clusters",
                    outbox::MAX_CLUSTERS
                )
                .into(),
            ));
        }
        let catalogue = servers(&opts.catalogue)?;
        migrate::migrate(&catalogue, migrate::CATALOGUE).await?;
        let all: Vec<&str> = std::iter::once(CATALOGUE_NUMBER)
            .chain(opts.clusters.iter().map(|(n, _)| n.as_str()))
            .collect();
        let mut numbers = catalogue::cluster_numbers(&catalogue, &all)
            .await?
            .into_iter();
        let catalogue = catalogue.tagged(numbers.next().unwrap_or_default());
        let mut clusters = Vec::with_capacity(opts.clusters.len());
        for ((name, o), number) in opts.clusters.iter().zip(numbers) {
            let db = servers(o)?.fenced().tagged(number);
            migrate::migrate(&db, migrate::DATA).await?;
            clusters.push((name.clone(), db));
        }
        for db in std::iter::once(&catalogue).chain(clusters.iter().map(|(_, db)| db)) {
            if db.cluster().has_replicas() {
                // replicas serve reads once measured
                db.cluster().check().await;
            }
        }
        let names: Vec<&str> = opts
            .clusters
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| !opts.spare.iter().any(|s| s == n))
            .collect();
        if names.is_empty() {
            return Err(StoreError::Other("every cluster is spare".into()));
        }
        let first = ShardMap::place(&names, 1);
        let map = catalogue::init_map(&catalogue, &first).await?;
        let mut shards = Shards::new(catalogue, clusters, first);
        shards.celebrity_followers = opts.celebrity_followers;
        let shards = Arc::new(shards);
        shards.install(map)?;
        own_first_map(&shards).await?;
        tokio::spawn(monitor(
            Arc::downgrade(&shards),
            opts.map_check_interval,
            opts.sweep_after,
        ));
        Ok(Self { db: shards })
    }

    /// The map in force on this node.
    pub fn map(&self) -> ShardMap {
        ShardMap::clone(&self.db.map())
    }

    /// Reloads the map if the catalogue's epoch moved; says whether it did.
    ///
    /// # Errors
    /// The catalogue cannot be read, or its map names an unknown cluster.
    pub async fn refresh_map(&self) -> StoreResult<bool> {
        self.db.refresh().await
    }

    /// Checks every cluster now (as the background task does every second): one that
    /// does not answer within a second is left out of global reads until it answers again.
    pub async fn check_clusters(&self) {
        self.db.check(Duration::from_secs(1)).await;
    }

    /// Moves logical shards towards `target` while traffic flows (see `reshard`), saying
    /// what it does through `progress`.
    ///
    /// # Errors
    /// A run is in progress already, a cluster is unknown or unreachable, or a cut-over's
    /// checks fail (the batch stays on its source; the run can be resumed).
    pub async fn reshard(
        &self,
        target: &ReshardTarget,
        opts: &ReshardOptions,
        progress: &(dyn Fn(&str) + Sync),
    ) -> StoreResult<ReshardReport> {
        reshard::start(&self.db, target, opts, progress).await
    }

    /// Resumes an interrupted resharding run from the plan in the catalogue.
    ///
    /// # Errors
    /// As [`ShardedStore::reshard`].
    pub async fn resume_reshard(
        &self,
        opts: &ReshardOptions,
        progress: &(dyn Fn(&str) + Sync),
    ) -> StoreResult<ReshardReport> {
        reshard::run(&self.db, opts, progress).await
    }

    /// Ends an unfinished resharding run by returning to the placement before it: the
    /// shards not cut over yet stay on their source, and those already cut over move back
    /// the way they came, under a later epoch (see `reshard::abort`). Returns the report of
    /// the moving back. An interrupted abort is finished by a resume or another abort.
    ///
    /// # Errors
    /// As [`ShardedStore::reshard`].
    pub async fn abort_reshard(
        &self,
        opts: &ReshardOptions,
        progress: &(dyn Fn(&str) + Sync),
    ) -> StoreResult<ReshardReport> {
        reshard::abort(&self.db, opts, progress).await
    }

    /// Logical shards an unfinished resharding run (or an abort) has still to move (0: no
    /// run is in progress, or it has cut every shard over).
    ///
    /// # Errors
    /// The catalogue cannot be read.
    pub async fn pending_moves(&self) -> StoreResult<u64> {
        self.db
            .catalogue
            .read_primary(|pool| async move {
                let n: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM reshard_moves WHERE NOT moved")
                        .fetch_one(&pool)
                        .await
                        .map_err(map_err)?;
                Ok(n as u64)
            })
            .await
    }

    /// The catalogue's servers (named `catalogue`), then each cluster's, as their monitors
    /// see them now.
    pub fn servers(&self) -> Vec<(String, Vec<ServerView>)> {
        let catalogue = (
            "catalogue".to_string(),
            self.db.catalogue.cluster().describe(),
        );
        std::iter::once(catalogue)
            .chain(
                self.db
                    .clusters()
                    .iter()
                    .map(|(name, db)| (name.clone(), db.cluster().describe())),
            )
            .collect()
    }

    /// Each cluster's name and whether it is up (not left out of global reads).
    pub fn clusters_up(&self) -> Vec<(String, bool)> {
        self.db.up()
    }

    /// Settles sign-up reservations older than `age` (see [`Swept`]).
    ///
    /// # Errors
    /// The catalogue or a cluster cannot be reached.
    pub async fn sweep(&self, age: Duration) -> StoreResult<Swept> {
        catalogue::sweep(&self.db, age).await
    }

    /// Each cluster: its logical shards under the map in force, and its users, articles and
    /// rows of data.
    ///
    /// # Errors
    /// A cluster cannot be reached.
    pub async fn report(&self) -> StoreResult<Vec<ClusterReport>> {
        let map = self.db.map();
        let counts = map.shard_counts();
        // the rows of every table a shard's move carries, so the total is what moves
        let every_table: Vec<String> = MOVED_TABLES
            .iter()
            .map(|(table, _)| format!("(SELECT COUNT(*) FROM {table})"))
            .collect();
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM articles), {}",
            every_table.join(" + ")
        );
        let mut out = Vec::new();
        for (name, db) in self.db.clusters() {
            let sql = &sql;
            let (users, articles, rows): (i64, i64, i64) = db
                .read_primary(|pool| async move {
                    sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                        .fetch_one(&pool)
                        .await
                        .map_err(map_err)
                })
                .await?;
            out.push(ClusterReport {
                name: name.clone(),
                shards: counts.get(name.as_str()).copied().unwrap_or(0),
                users: users as u64,
                articles: articles as u64,
                rows: rows as u64,
            });
        }
        Ok(out)
    }
}

/// Checks every cluster and the map's epoch every `interval`, and sweeps reservations older than `sweep_after`
/// every `sweep_after / 2`, until the store is dropped.
async fn monitor(shards: Weak<Shards>, interval: Duration, sweep_after: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let sweep_every = (sweep_after / 2).max(interval);
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        let Some(s) = shards.upgrade() else { return };
        s.check(interval.clamp(Duration::from_millis(100), Duration::from_secs(1)))
            .await;
        if let Err(e) = s.refresh().await {
            tracing::warn!(error = %e, "cannot check the shard map");
        }
        if last_sweep.elapsed() >= sweep_every {
            last_sweep = tokio::time::Instant::now();
            if let Err(e) = catalogue::sweep(&s, sweep_after).await {
                tracing::warn!(error = %e, "cannot sweep sign-up reservations");
            }
        }
    }
}

crescendo_store::store_by_resource_modules!(ShardedStore);

//! `PgStore` and its options: connecting, checking the servers, migrating, and the `Store`
//! seam, each method answered by the module of its resource.

use crate::cluster::{Cluster, ClusterOptions};
use crate::db::{self, Db, map_err};
use crate::{articles, comments, lists, migrate, outbox, regions, uploads, users};
use crescendo_store::StoreResult;
use std::time::Duration;

/// How to connect.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// `postgres://user@host:port/db`.
    pub url: String,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// How long a query waits for a connection before the store is "unavailable".
    pub acquire_timeout: Duration,
    /// Streaming replicas of `url`, for reads.
    pub replicas: Vec<String>,
    /// A replica further behind than this gets no reads.
    pub max_replica_lag: Duration,
    /// How often the primary and replicas are checked.
    pub check_interval: Duration,
    /// While the primary cannot be reached, serve reads from a replica, marked stale, and
    /// give up calls waiting on the primary (see `cluster::stale`).
    pub serve_stale_reads: bool,
}

impl PgOptions {
    /// Defaults for `url`: no replicas, 16 connections per server, 2 s acquire time-out,
    /// replicas checked every 200 ms and skipped beyond 1 s of lag, no stale reads.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            replicas: Vec::new(),
            max_replica_lag: Duration::from_secs(1),
            check_interval: Duration::from_millis(200),
            serve_stale_reads: false,
        }
    }
}

/// The `Store` seam on PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) db: Db,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("servers", &self.db.cluster().describe())
            .finish()
    }
}

impl PgStore {
    /// Connects (lazily: the first query opens the first connection). With replicas, the
    /// servers are checked every `check_interval` from one interval on; until a check has
    /// measured a replica, reads go to the primary, so call [`PgStore::check_servers`] at
    /// start.
    ///
    /// # Errors
    /// A malformed URL.
    pub fn connect(opts: &PgOptions) -> StoreResult<Self> {
        let cluster = Cluster::new(&ClusterOptions {
            urls: std::iter::once(&opts.url)
                .chain(&opts.replicas)
                .cloned()
                .collect(),
            max_connections: opts.max_connections,
            acquire_timeout: opts.acquire_timeout,
            max_replica_lag: opts.max_replica_lag,
            check_interval: opts.check_interval,
            serve_stale_reads: opts.serve_stale_reads,
        })
        .map_err(map_err)?;
        Ok(Self {
            db: Db::new(cluster),
        })
    }

    /// Checks every server now (roles, positions, lag) instead of at the next interval:
    /// at start, so a node started after a failover writes to the new primary at once.
    pub async fn check_servers(&self) {
        if self.db.cluster().has_replicas() {
            self.db.cluster().check().await;
        }
    }

    /// Each server as the store sees it now: (`host:port`, is the primary, takes reads, lag).
    pub fn servers(&self) -> Vec<(String, bool, bool, Duration)> {
        self.db.cluster().describe()
    }

    /// Brings the schema up to date, each migration in its own transaction, serialised by an
    /// advisory lock so that several nodes starting together migrate once.
    ///
    /// # Errors
    /// The database is unreachable or a migration fails.
    pub async fn migrate(&self) -> StoreResult<usize> {
        migrate::migrate(&self.db, migrate::DATA).await
    }
}

crescendo_store::store_by_resource_modules!(PgStore, guard = db::guarded,
    regions::record_invalidation(region: &str, keys: &[String], position: u64, at_ms: u64) -> ();
);

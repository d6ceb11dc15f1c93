//! Where each call of the sharded store runs: the catalogue, the cluster that holds a
//! logical shard under the current map, or every cluster at once.

use crate::db::{Db, OutboxIds};
use crescendo_domain::{Id, LogicalShard};
use crescendo_store::shard_map::ShardMap;
use crescendo_store::{StoreError, StoreResult, fence};
use crescendo_telemetry::names;
use futures_util::future::join_all;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How long a write waits for its logical shard to finish moving before it fails.
pub(crate) const MOVE_PATIENCE: Duration = Duration::from_secs(10);

/// The celebrity threshold unless configured (`ShardedOptions::celebrity_followers`).
pub(crate) const DEFAULT_CELEBRITY_FOLLOWERS: u64 = 1_000;

/// The catalogue, the clusters by name, and the map that places logical shards on them.
pub(crate) struct Shards {
    /// Authors with more followers than this are merged into feeds on read, not fanned out.
    pub(crate) celebrity_followers: u64,
    /// The catalogue database: the map and the username and email directory.
    pub(crate) catalogue: Db,
    /// Every cluster, sorted by name.
    clusters: Vec<(String, Db)>,
    /// Per cluster (same order): found down by a call or a check, and not yet back.
    down: Vec<AtomicBool>,
    /// The map in force; replaced whole when the catalogue's epoch moves.
    map: RwLock<Arc<ShardMap>>,
}

impl Shards {
    /// The clusters (names unique) and a first map, which must name only them.
    /// Jobs a write adds to the outbox go to the cluster that commits its data (each
    /// cluster's outbox IDs encode its index here); the catalogue has no outbox.
    pub(crate) fn new(catalogue: Db, mut clusters: Vec<(String, Db)>, map: ShardMap) -> Self {
        clusters.sort_by(|a, b| a.0.cmp(&b.0));
        let clusters: Vec<(String, Db)> = clusters
            .into_iter()
            .enumerate()
            .map(|(i, (name, db))| (name, db.with_outbox(OutboxIds::Cluster(i as i64))))
            .collect();
        Self {
            celebrity_followers: DEFAULT_CELEBRITY_FOLLOWERS,
            catalogue: catalogue.with_outbox(OutboxIds::None),
            down: clusters.iter().map(|_| AtomicBool::new(false)).collect(),
            clusters,
            map: RwLock::new(Arc::new(map)),
        }
    }

    /// The map in force.
    pub(crate) fn map(&self) -> Arc<ShardMap> {
        Arc::clone(&self.map.read().expect("map lock is never poisoned"))
    }

    /// Puts `map` in force if it is newer than the current one and names only known
    /// clusters; says whether it did.
    pub(crate) fn install(&self, map: ShardMap) -> StoreResult<bool> {
        if let Some(unknown) = map.clusters().iter().find(|c| self.find(c).is_none()) {
            return Err(StoreError::Unavailable(format!(
                "the shard map names cluster {unknown}, which this node is not configured for"
            )));
        }
        let mut current = self.map.write().expect("map lock is never poisoned");
        if map.epoch() <= current.epoch() {
            return Ok(false);
        }
        tracing::info!(from = current.epoch(), to = map.epoch(), "new shard map");
        *current = Arc::new(map);
        Ok(true)
    }

    /// The cluster named `name`, if configured.
    pub(crate) fn find(&self, name: &str) -> Option<&Db> {
        self.clusters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, db)| db)
    }

    /// The cluster named `name`.
    pub(crate) fn cluster(&self, name: &str) -> &Db {
        self.find(name)
            .expect("every map in force names only configured clusters")
    }

    /// The clusters, by name.
    pub(crate) fn clusters(&self) -> &[(String, Db)] {
        &self.clusters
    }

    /// Runs the write `f` on the cluster that holds `shard`, failing at once while that
    /// cluster is known to be down. A cluster that no longer
    /// holds it ([`StoreError::Moved`]: the map in force here is older than a move) makes
    /// this node reload the map and run `f` again on the shard's new home; while the
    /// shard is mid-move (the map still names the old home) it waits a little between
    /// tries, for up to [`MOVE_PATIENCE`].
    pub(crate) async fn write<'a, T, F, Fut>(&'a self, shard: LogicalShard, f: F) -> StoreResult<T>
    where
        F: Fn(&'a Db) -> Fut,
        Fut: Future<Output = StoreResult<T>> + 'a,
    {
        let give_up = tokio::time::Instant::now() + MOVE_PATIENCE;
        loop {
            let name = self.map().cluster_of(shard).to_string();
            if self.is_down(&name) {
                // known down: fail now instead of waiting out the pool's time-out
                return Err(StoreError::Unavailable(format!(
                    "shard cluster {name} is down"
                )));
            }
            match f(self.cluster(&name)).await {
                Err(StoreError::Moved(_)) if tokio::time::Instant::now() < give_up => {
                    let before = self.map().epoch();
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "cannot reload the shard map");
                    }
                    if self.map().epoch() == before {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                done => return done,
            }
        }
    }

    /// Reloads the map when the catalogue's epoch is newer than the one in force; says
    /// whether it did.
    pub(crate) async fn refresh(&self) -> StoreResult<bool> {
        if super::catalogue::epoch(&self.catalogue).await? <= self.map().epoch() {
            return Ok(false);
        }
        match super::catalogue::load_map(&self.catalogue).await? {
            Some(map) => self.install(map),
            None => Ok(false),
        }
    }

    /// The cluster that holds logical shard `shard`.
    pub(crate) fn holding(&self, shard: LogicalShard) -> &Db {
        self.cluster(self.map().cluster_of(shard))
    }

    /// The cluster that holds the rows of `id` (a user, an article, an upload).
    pub(crate) fn of(&self, id: Id) -> &Db {
        self.holding(id.shard())
    }

    /// `ids` grouped by the cluster that holds them, each group in the given order.
    pub(crate) fn group(&self, ids: &[Id]) -> Vec<(&Db, Vec<Id>)> {
        let map = self.map();
        let mut groups: Vec<(&str, Vec<Id>)> = Vec::new();
        for &id in ids {
            let name = map.cluster_of(id.shard());
            match groups.iter_mut().find(|(n, _)| *n == name) {
                Some((_, g)) => g.push(id),
                None => groups.push((name, vec![id])),
            }
        }
        groups
            .into_iter()
            .map(|(name, g)| (self.cluster(name), g))
            .collect()
    }

    /// Runs `f` on every cluster that is up, at once, for a read that may leave out what a
    /// cluster that is down holds: a cluster known to be down is skipped, one whose call
    /// fails as unavailable is marked down, and either makes the answer partial
    /// ([`fence::note_partial`]). `f` gets each cluster's index in [`Shards::clusters`].
    /// Fails only when no cluster answers, or on any other error.
    pub(crate) async fn on_up<'a, T, F, Fut>(&'a self, f: F) -> StoreResult<Vec<T>>
    where
        F: Fn(usize, &'a Db) -> Fut,
        Fut: Future<Output = StoreResult<T>> + 'a,
    {
        let asks = self.clusters.iter().enumerate().map(|(i, (_, db))| {
            let skip = self.down[i].load(Ordering::Acquire);
            let ask = (!skip).then(|| f(i, db));
            async move {
                match ask {
                    Some(ask) => (i, Some(ask.await)),
                    None => (i, None),
                }
            }
        });
        let mut out = Vec::with_capacity(self.clusters.len());
        let mut last_error = None;
        for (i, answer) in join_all(asks).await {
            match answer {
                Some(Ok(v)) => out.push(v),
                Some(Err(StoreError::Unavailable(why))) => {
                    self.mark(i, false, &why);
                    self.left_out(i);
                    last_error = Some(why);
                }
                Some(Err(e)) => return Err(e),
                None => self.left_out(i),
            }
        }
        if out.is_empty() {
            return Err(StoreError::Unavailable(
                last_error.unwrap_or_else(|| "every shard cluster is down".to_string()),
            ));
        }
        Ok(out)
    }

    fn left_out(&self, i: usize) {
        fence::note_partial();
        metrics::counter!(names::SHARD_PARTIAL_READS, "cluster" => self.clusters[i].0.clone())
            .increment(1);
    }

    /// Records whether cluster `i` answers; `why` says what failed.
    fn mark(&self, i: usize, up: bool, why: &str) {
        let name = &self.clusters[i].0;
        if self.down[i].swap(!up, Ordering::AcqRel) == up {
            if up {
                tracing::info!(cluster = %name, "shard cluster answering again");
            } else {
                tracing::warn!(cluster = %name, error = why, "shard cluster down; global reads leave it out");
            }
        }
        metrics::gauge!(names::SHARD_CLUSTER_UP, "cluster" => name.clone()).set(if up {
            1.0
        } else {
            0.0
        });
    }

    /// Whether the cluster named `name` is known to be down.
    fn is_down(&self, name: &str) -> bool {
        self.clusters
            .iter()
            .position(|(n, _)| n == name)
            .is_some_and(|i| self.down[i].load(Ordering::Acquire))
    }

    /// Each cluster's name and whether it is up.
    pub(crate) fn up(&self) -> Vec<(String, bool)> {
        self.clusters
            .iter()
            .zip(&self.down)
            .map(|((name, _), down)| (name.clone(), !down.load(Ordering::Acquire)))
            .collect()
    }

    /// Checks every cluster once, within `limit`: one that serves reads (its primary, or a
    /// replica while the primary is lost) is up again, one that does not is down. Writes to
    /// a cluster whose primary is lost fail fast on their own (see `Db::begin`).
    pub(crate) async fn check(&self, limit: Duration) {
        let checks = self.clusters.iter().map(|(_, db)| async move {
            match tokio::time::timeout(limit, crate::db::ping_any(db)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
            }
        });
        for (i, result) in join_all(checks).await.into_iter().enumerate() {
            match result {
                Ok(()) => self.mark(i, true, ""),
                Err(why) => self.mark(i, false, &why),
            }
        }
    }

    /// Runs `f` on each group of [`Shards::group`]; the answers concatenated.
    pub(crate) async fn on_groups<'a, T, F, Fut>(&'a self, ids: &[Id], f: F) -> StoreResult<Vec<T>>
    where
        F: Fn(&'a Db, Vec<Id>) -> Fut,
        Fut: Future<Output = StoreResult<Vec<T>>> + 'a,
    {
        let answers = join_all(self.group(ids).into_iter().map(|(db, g)| f(db, g))).await;
        let mut out = Vec::with_capacity(ids.len());
        for a in answers {
            out.extend(a?);
        }
        Ok(out)
    }
}

/// The `Store::ping` of the sharded store: the catalogue and at least one cluster answer
/// (a node serves the clusters that are up; one cluster down takes no node out).
pub(crate) async fn ping(s: &Shards) -> StoreResult<()> {
    crate::db::ping(&s.catalogue).await?;
    s.on_up(|_, db| crate::db::ping_any(db)).await.map(drop)
}

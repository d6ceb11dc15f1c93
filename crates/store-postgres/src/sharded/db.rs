//! Where each call of the sharded store runs: the catalogue, the cluster that holds a
//! logical shard under the current map, or every cluster at once.

use crate::db::Db;
use crescendo_domain::{Id, LogicalShard};
use crescendo_store::shard_map::ShardMap;
use crescendo_store::{StoreError, StoreResult};
use futures_util::future::join_all;
use std::future::Future;
use std::sync::{Arc, RwLock};

/// The catalogue, the clusters by name, and the map that places logical shards on them.
pub(crate) struct Shards {
    /// The catalogue database: the map and the username and email directory.
    pub(crate) catalogue: Db,
    /// Every cluster, sorted by name.
    clusters: Vec<(String, Db)>,
    /// The map in force; replaced whole when the catalogue's epoch moves.
    map: RwLock<Arc<ShardMap>>,
}

impl Shards {
    /// The clusters (names unique) and a first map, which must name only them.
    pub(crate) fn new(catalogue: Db, mut clusters: Vec<(String, Db)>, map: ShardMap) -> Self {
        clusters.sort_by(|a, b| a.0.cmp(&b.0));
        Self {
            catalogue,
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

    fn find(&self, name: &str) -> Option<&Db> {
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

    /// Runs `f` on every cluster at once; the answers in cluster order, or the first error.
    pub(crate) async fn on_all<'a, T, F, Fut>(&'a self, f: F) -> StoreResult<Vec<T>>
    where
        F: Fn(&'a Db) -> Fut,
        Fut: Future<Output = StoreResult<T>> + 'a,
    {
        join_all(self.clusters.iter().map(|(_, db)| f(db)))
            .await
            .into_iter()
            .collect()
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

/// The `Store::ping` of the sharded store: the catalogue and every cluster answer.
pub(crate) async fn ping(s: &Shards) -> StoreResult<()> {
    crate::db::ping(&s.catalogue).await?;
    s.on_all(crate::db::ping).await.map(drop)
}

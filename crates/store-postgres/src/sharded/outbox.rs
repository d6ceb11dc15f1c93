//! The outbox on a sharded store: every cluster keeps its own, written in its own
//! transactions. A claim takes entries from every cluster; an entry's ID as the seam sees
//! it is its cluster's ID times [`MAX_CLUSTERS`] plus the cluster's index, so a removal
//! finds its cluster again.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use super::db::Shards;
use crate::outbox;
use crescendo_store::{OutboxEntry, StoreResult};

/// Most clusters a sharded store can name (the factor in an outbox entry's ID).
pub(crate) const MAX_CLUSTERS: i64 = 64;

pub(crate) async fn claim_outbox(
    s: &Shards,
    limit: u32,
    lease_ms: i64,
) -> StoreResult<Vec<OutboxEntry>> {
    // a cluster that is down keeps its entries until it is back
    let per_cluster = s
        .on_up(|i, db| async move {
            let entries = outbox::claim_outbox(db, limit, lease_ms).await?;
            Ok(entries.into_iter().map(move |mut e| {
                e.id = e.id * MAX_CLUSTERS + i as i64;
                e
            }))
        })
        .await?;
    let mut all: Vec<OutboxEntry> = per_cluster.into_iter().flatten().collect();
    all.sort_by_key(|e| e.id);
    Ok(all)
}

pub(crate) async fn remove_outbox(s: &Shards, ids: &[i64]) -> StoreResult<()> {
    let clusters = s.clusters();
    let mut per_cluster: Vec<Vec<i64>> = vec![Vec::new(); clusters.len()];
    for &id in ids {
        if let Some(g) = per_cluster.get_mut(id.rem_euclid(MAX_CLUSTERS) as usize) {
            g.push(id.div_euclid(MAX_CLUSTERS));
        }
    }
    for ((_, db), local) in clusters.iter().zip(per_cluster) {
        outbox::remove_outbox(db, &local).await?;
    }
    Ok(())
}

pub(crate) async fn outbox_len(s: &Shards) -> StoreResult<u64> {
    let per_cluster = s
        .on_up(|_, db| async move { outbox::outbox_len(db).await })
        .await?;
    Ok(per_cluster.into_iter().sum())
}

//! Timelines on a sharded store: the feed by fan-out on write. A user's timeline lives on
//! the user's cluster (`timelines`, keyed by owner), so reading it is single-shard. The
//! application's feed jobs fill it: an article's fan-out adds it to each follower's timeline
//! (batched per cluster), a follow back-fills the followee's newest articles, a deletion
//! removes the article everywhere; an unfollow removes the followee's entries in its own
//! transaction (`users::unfollow`). Authors with more than `celebrity_followers` followers
//! are not fanned out: `lists::feed` merges their newest articles in at read time.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use super::db::{MOVE_PATIENCE, Shards};
use crate::db::{Db, map_err};
use crescendo_domain::Id;
use crescendo_store::{IdPage, Page, StoreError, StoreResult, TimelineEntry};
use std::collections::BTreeMap;
use std::time::Duration;

pub(crate) async fn timeline_threshold(s: &Shards) -> StoreResult<Option<u64>> {
    Ok(Some(s.celebrity_followers))
}

/// Writes each cluster's entries in one transaction, fenced on every owner's logical shard
/// at once; entries whose shard has left a cluster are written again on its new home once
/// the map is reloaded (for up to [`MOVE_PATIENCE`]).
pub(crate) async fn add_to_timelines(
    s: &Shards,
    entries: &[TimelineEntry],
) -> StoreResult<Vec<Id>> {
    let give_up = tokio::time::Instant::now() + MOVE_PATIENCE;
    let mut todo = entries.to_vec();
    let mut added = Vec::new();
    loop {
        let map = s.map();
        let mut groups: BTreeMap<&str, Vec<TimelineEntry>> = BTreeMap::new();
        for e in todo {
            groups
                .entry(map.cluster_of(e.owner.shard()))
                .or_default()
                .push(e);
        }
        let mut moved = Vec::new();
        for (name, group) in groups {
            let (owners, left) = add_on(s.cluster(name), group).await?;
            added.extend(owners);
            moved.extend(left);
        }
        let Some(first) = moved.first() else {
            return Ok(added);
        };
        if tokio::time::Instant::now() >= give_up {
            return Err(StoreError::Moved(first.owner.shard().get()));
        }
        let before = map.epoch();
        if let Err(e) = s.refresh().await {
            tracing::warn!(error = %e, "cannot reload the shard map");
        }
        if s.map().epoch() == before {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        todo = moved;
    }
}

/// Adds the entries whose owner's shard `db` holds, each only while its owner follows its
/// author (the follow's row is share-locked, so an unfollow that removes the author's
/// entries waits and then sees these); returns the owner of each new entry, and the entries
/// whose shard is not here.
async fn add_on(db: &Db, group: Vec<TimelineEntry>) -> StoreResult<(Vec<Id>, Vec<TimelineEntry>)> {
    let mut shards: Vec<i32> = group
        .iter()
        .map(|e| i32::from(e.owner.shard().get()))
        .collect();
    shards.sort_unstable();
    shards.dedup();
    let mut tx = db.begin().await?;
    let held: Vec<i32> = sqlx::query_scalar(
        "SELECT shard FROM owned_shards WHERE shard = ANY($1) ORDER BY shard FOR SHARE",
    )
    .bind(&shards)
    .fetch_all(&mut *tx)
    .await
    .map_err(map_err)?;
    let (here, left): (Vec<TimelineEntry>, Vec<TimelineEntry>) = group.into_iter().partition(|e| {
        held.binary_search(&i32::from(e.owner.shard().get()))
            .is_ok()
    });
    let mut added = Vec::new();
    if !here.is_empty() {
        let column = |f: fn(&TimelineEntry) -> Id| -> Vec<i64> {
            here.iter().map(|e| f(e).as_i64()).collect()
        };
        let owners: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO timelines (owner_id, article_id, author_id)
             SELECT e.o, e.a, e.au FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS e(o, a, au)
             WHERE EXISTS (SELECT 1 FROM follows f
                           WHERE f.follower_id = e.o AND f.followee_id = e.au FOR SHARE)
             ON CONFLICT DO NOTHING RETURNING owner_id",
        )
        .bind(column(|e| e.owner))
        .bind(column(|e| e.article))
        .bind(column(|e| e.author))
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
        added = owners.into_iter().map(Id::from_i64).collect();
    }
    db.commit(tx).await?;
    Ok((added, left))
}

/// Deletes the article's entries on every cluster (a cluster that is down fails the call,
/// and the job is retried), each only where the owner's logical shard is held: rows of a
/// shard being moved go from its source, and logical replication carries the deletion.
pub(crate) async fn remove_from_timelines(s: &Shards, article: Id) -> StoreResult<Vec<Id>> {
    let sql = "DELETE FROM timelines t WHERE t.article_id = $1 AND EXISTS
                 (SELECT 1 FROM owned_shards o WHERE o.shard = (t.owner_id & 4095)::int FOR SHARE)
               RETURNING t.owner_id";
    remove_everywhere(s, sql, article, None).await
}

/// Deletes `author`'s entries from the timelines of `owners` on every cluster, as
/// [`remove_from_timelines`] does an article's.
pub(crate) async fn remove_author_from_timelines(
    s: &Shards,
    author: Id,
    owners: &[Id],
) -> StoreResult<Vec<Id>> {
    let sql = "DELETE FROM timelines t WHERE t.author_id = $1 AND t.owner_id = ANY($2) AND EXISTS
                 (SELECT 1 FROM owned_shards o WHERE o.shard = (t.owner_id & 4095)::int FOR SHARE)
               RETURNING t.owner_id";
    remove_everywhere(s, sql, author, Some(owners)).await
}

/// Runs a deletion of timeline rows (`sql`, bound to `id`, then to `owners` if given) in a
/// transaction on each cluster in turn; the owner of each row that went.
async fn remove_everywhere(
    s: &Shards,
    sql: &'static str,
    id: Id,
    owners: Option<&[Id]>,
) -> StoreResult<Vec<Id>> {
    let owners: Option<Vec<i64>> = owners.map(|o| o.iter().map(|o| o.as_i64()).collect());
    let mut removed = Vec::new();
    for (_, db) in s.clusters() {
        let mut tx = db.begin().await?;
        let mut q = sqlx::query_scalar::<_, i64>(sql).bind(id.as_i64());
        if let Some(owners) = &owners {
            q = q.bind(owners.clone());
        }
        let gone: Vec<i64> = q.fetch_all(&mut *tx).await.map_err(map_err)?;
        db.commit(tx).await?;
        removed.extend(gone.into_iter().map(Id::from_i64));
    }
    Ok(removed)
}

pub(crate) async fn timeline(s: &Shards, owner: Id, page: Page) -> StoreResult<IdPage> {
    s.of(owner)
        .read(|pool| async move {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT article_id FROM timelines WHERE owner_id = $1
                 ORDER BY article_id DESC LIMIT $2 OFFSET $3",
            )
            .bind(owner.as_i64())
            .bind(i64::from(page.limit))
            .bind(i64::from(page.offset))
            .fetch_all(&pool)
            .await
            .map_err(map_err)?;
            let total: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM timelines WHERE owner_id = $1")
                    .bind(owner.as_i64())
                    .fetch_one(&pool)
                    .await
                    .map_err(map_err)?;
            Ok(IdPage {
                ids: ids.into_iter().map(Id::from_i64).collect(),
                total: total as u64,
            })
        })
        .await
}

/// Every user with more than `s.celebrity_followers` followers, from `follower_counts` on
/// each cluster at once (an index reads only those above the threshold), by ascending ID. A
/// cluster that is down is left out and the answer is partial.
pub(crate) async fn celebrities(s: &Shards) -> StoreResult<Vec<Id>> {
    let limit = i64::try_from(s.celebrity_followers).unwrap_or(i64::MAX);
    let per_cluster = s
        .on_up(|_, db| {
            db.read(move |pool| async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT followee_id FROM follower_counts WHERE followers > $1",
                )
                .bind(limit)
                .fetch_all(&pool)
                .await
                .map_err(map_err)
            })
        })
        .await?;
    let mut ids: Vec<Id> = per_cluster
        .into_iter()
        .flatten()
        .map(Id::from_i64)
        .collect();
    // a shard being moved has its rows on both clusters until the old ones are removed
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

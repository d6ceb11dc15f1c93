//! Article lists and popular tags on a sharded store, by design:
//!
//! - **single-shard**: articles by one author (with or without other filters) are read on
//!   the author's cluster alone;
//! - **scatter-gather**: everything, by tag, and favourited by a user (favourites live with
//!   their articles) are asked of every cluster at once, each for its first
//!   `offset + limit` IDs, and merged newest first, so paging is exact: no repeats, no gaps;
//!   totals are summed;
//! - **the feed**, fan-out on write with celebrities merged on read: the reader's timeline
//!   (filled by the fan-out of each followee's articles, see `timelines`) is read on the
//!   reader's cluster, and the newest articles of the followees with more followers than the
//!   celebrity threshold (never fanned out) on the clusters holding them; each part gives its
//!   first `offset + limit` IDs, merged newest first without repeats.
//!
//! A scatter-gather read leaves out a cluster that is down and is marked partial
//! (`crescendo_store::fence::note_partial`); the HTTP answer says so in a header.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use super::db::Shards;
use super::timelines;
use crate::db::{Db, map_err, raw};
use crate::{lists, users};
use crescendo_domain::Id;
use crescendo_store::{ArticleFilter, IdPage, Page, StoreResult};

use std::collections::HashMap;
pub(crate) use timelines::{
    add_to_timelines, celebrities, remove_author_from_timelines, remove_from_timelines, timeline,
    timeline_threshold,
};

pub(crate) async fn list_article_ids(
    s: &Shards,
    filter: &ArticleFilter,
    page: Page,
) -> StoreResult<IdPage> {
    let head = Page {
        limit: page.limit.saturating_add(page.offset),
        offset: 0,
    };
    let parts = match filter {
        ArticleFilter::Author(a)
        | ArticleFilter::Match {
            author: Some(a), ..
        } => return lists::list_article_ids(s.of(*a), filter, page).await,
        ArticleFilter::Feed(reader) => return feed(s, *reader, page).await,
        _ => {
            s.on_up(|_, db| lists::list_article_ids(db, filter, head))
                .await?
        }
    };
    Ok(merge(parts, page))
}

/// The feed: the first `offset + limit` IDs of the reader's timeline and of the celebrities'
/// articles, merged. An author who became a celebrity after some fan-outs has articles in
/// both parts; the merge keeps each once.
async fn feed(s: &Shards, reader: Id, page: Page) -> StoreResult<IdPage> {
    let followees = users::followees(s.of(reader), reader).await?;
    if followees.is_empty() {
        return Ok(IdPage::default());
    }
    let head = Page {
        limit: page.limit.saturating_add(page.offset),
        offset: 0,
    };
    let (mine, celebrities) = futures_util::future::join(
        timelines::timeline(s, reader, head),
        timelines::celebrities(s),
    )
    .await;
    let mut parts = vec![mine?];
    let all = celebrities?;
    let celebrities: Vec<Id> = followees
        .iter()
        .copied()
        .filter(|f| all.binary_search(f).is_ok())
        .collect();
    if !celebrities.is_empty() {
        let map = s.map();
        let celebrities = &celebrities;
        parts.extend(
            s.on_up(|i, db| {
                let name = &s.clusters()[i].0;
                let here: Vec<Id> = celebrities
                    .iter()
                    .copied()
                    .filter(|a| map.cluster_of(a.shard()) == name)
                    .collect();
                async move {
                    if here.is_empty() {
                        return Ok(IdPage::default());
                    }
                    by_authors(db, here, head.limit).await
                }
            })
            .await?,
        );
    }
    Ok(merge(parts, page))
}

/// The newest first `offset + limit` IDs of every part, merged: the page asked for, and
/// the sum of the parts' totals.
fn merge(parts: Vec<IdPage>, page: Page) -> IdPage {
    let total = parts.iter().map(|p| p.total).sum();
    let mut ids: Vec<Id> = parts.into_iter().flat_map(|p| p.ids).collect();
    ids.sort_unstable_by_key(|id| std::cmp::Reverse(id.as_i64()));
    ids.dedup();
    IdPage {
        ids: ids
            .into_iter()
            .skip(page.offset as usize)
            .take(page.limit as usize)
            .collect(),
        total,
    }
}

/// The newest `limit` articles by any of `authors` on `db`, and how many they have there.
async fn by_authors(db: &Db, authors: Vec<Id>, limit: u32) -> StoreResult<IdPage> {
    let authors = raw(&authors);
    db.read(|pool| {
        let authors = authors.clone();
        async move {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM articles WHERE author_id = ANY($1) ORDER BY id DESC LIMIT $2",
            )
            .bind(&authors)
            .bind(i64::from(limit))
            .fetch_all(&pool)
            .await
            .map_err(map_err)?;
            let total: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM articles WHERE author_id = ANY($1)")
                    .bind(&authors)
                    .fetch_one(&pool)
                    .await
                    .map_err(map_err)?;
            Ok(IdPage {
                ids: ids.into_iter().map(Id::from_i64).collect(),
                total: total as u64,
            })
        }
    })
    .await
}

pub(crate) async fn popular_tags(s: &Shards, limit: u32) -> StoreResult<Vec<String>> {
    // every cluster's counts, summed: a tag's rank is global, not per cluster
    let counts = s.on_up(|_, db| tag_counts(db)).await?;
    let mut total: HashMap<String, i64> = HashMap::new();
    for (tag, n) in counts.into_iter().flatten() {
        *total.entry(tag).or_default() += n;
    }
    let mut ranked: Vec<(String, i64)> = total.into_iter().collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(ranked
        .into_iter()
        .take(limit as usize)
        .map(|(tag, _)| tag)
        .collect())
}

async fn tag_counts(db: &Db) -> StoreResult<Vec<(String, i64)>> {
    db.read(|pool| async move {
        sqlx::query_as("SELECT tag, COUNT(*) FROM article_tags GROUP BY tag")
            .fetch_all(&pool)
            .await
            .map_err(map_err)
    })
    .await
}

//! Articles and favourites on a sharded store. An article lives with its author (its ID
//! carries the author's logical shard); a favourite lives with its article, in the
//! transaction that keeps the article's count, so the favouriter's answer carries the new
//! count at once. A user's favourites are therefore spread over every cluster, and
//! [`favorite_ids`] gathers them from all.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use super::db::Shards;
use crate::articles;
use crescendo_domain::Id;
use crescendo_store::{ArticleChanges, ArticleRecord, NewArticle, StoreResult};

pub(crate) async fn create_article(s: &Shards, new: NewArticle) -> StoreResult<ArticleRecord> {
    s.write(new.author_id.shard(), |db| {
        articles::create_article(db, new.clone())
    })
    .await
}

pub(crate) async fn articles_by_ids(s: &Shards, ids: &[Id]) -> StoreResult<Vec<ArticleRecord>> {
    s.on_groups(ids, |db, group| async move {
        articles::articles_by_ids(db, &group).await
    })
    .await
}

pub(crate) async fn update_article(
    s: &Shards,
    id: Id,
    changes: ArticleChanges,
) -> StoreResult<ArticleRecord> {
    s.write(id.shard(), |db| {
        articles::update_article(db, id, changes.clone())
    })
    .await
}

pub(crate) async fn delete_article(s: &Shards, id: Id) -> StoreResult<bool> {
    s.write(id.shard(), |db| articles::delete_article(db, id))
        .await
}

pub(crate) async fn favorite(s: &Shards, user: Id, article: Id) -> StoreResult<bool> {
    s.write(article.shard(), |db| articles::favorite(db, user, article))
        .await
}

pub(crate) async fn unfavorite(s: &Shards, user: Id, article: Id) -> StoreResult<bool> {
    s.write(article.shard(), |db| {
        articles::unfavorite(db, user, article)
    })
    .await
}

pub(crate) async fn favorite_ids(s: &Shards, user: Id) -> StoreResult<Vec<Id>> {
    let mut ids: Vec<Id> = s
        .on_up(|_, db| articles::favorite_ids(db, user))
        .await?
        .into_iter()
        .flatten()
        .collect();
    ids.sort_unstable_by_key(|id| std::cmp::Reverse(id.as_i64()));
    Ok(ids)
}

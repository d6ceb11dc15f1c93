//! Comments on a sharded store: they live with their article, so every call is on the
//! article's cluster.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use super::db::Shards;
use crate::comments;
use crescendo_domain::{CommentId, Id};
use crescendo_store::{CommentRecord, StoreResult};

pub(crate) async fn create_comment(
    s: &Shards,
    article: Id,
    author: Id,
    body: String,
) -> StoreResult<CommentRecord> {
    s.write(article.shard(), |db| {
        comments::create_comment(db, article, author, body.clone())
    })
    .await
}

pub(crate) async fn comments_for(s: &Shards, article: Id) -> StoreResult<Vec<CommentRecord>> {
    comments::comments_for(s.of(article), article).await
}

pub(crate) async fn comment(
    s: &Shards,
    article: Id,
    id: CommentId,
) -> StoreResult<Option<CommentRecord>> {
    comments::comment(s.of(article), article, id).await
}

pub(crate) async fn delete_comment(s: &Shards, article: Id, id: CommentId) -> StoreResult<bool> {
    s.write(article.shard(), |db| {
        comments::delete_comment(db, article, id)
    })
    .await
}

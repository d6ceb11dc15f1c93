//! Comments on articles.
//!
//! Each `pub(crate)` async function is the `Store` method of the same name, whose contract
//! the trait documents.

use crate::articles::{ArticleLock, lock_article};
use crate::clock::now_ms;
use crate::db::{Db, map_err};
use crescendo_domain::{CommentId, Id};
use crescendo_store::{CommentRecord, StoreResult};
use sqlx::Row;
use sqlx::postgres::PgRow;

fn comment_row(r: &PgRow) -> CommentRecord {
    CommentRecord {
        id: CommentId::from_i64(r.get(0)),
        article_id: Id::from_i64(r.get(1)),
        author_id: Id::from_i64(r.get(2)),
        body: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
    }
}

pub(crate) async fn create_comment(
    db: &Db,
    article: Id,
    author: Id,
    body: String,
) -> StoreResult<CommentRecord> {
    let mut tx = db.begin_for(article.shard()).await?;
    lock_article(&mut tx, article, ArticleLock::Share).await?;
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO comments (id, article_id, author_id, body, created_at, updated_at)
         VALUES (next_comment_id(), $1, $2, $3, $4, $4) RETURNING id",
    )
    .bind(article.as_i64())
    .bind(author.as_i64())
    .bind(&body)
    .bind(now)
    .fetch_one(&mut *tx)
    .await
    .map_err(map_err)?;
    db.commit(tx).await?;
    Ok(CommentRecord {
        id: CommentId::from_i64(id),
        article_id: article,
        author_id: author,
        body,
        created_at: now,
        updated_at: now,
    })
}

pub(crate) async fn comments_for(db: &Db, article: Id) -> StoreResult<Vec<CommentRecord>> {
    db.read(|pool| async move {
        let rows = sqlx::query(
            "SELECT id, article_id, author_id, body, created_at, updated_at FROM comments WHERE article_id = $1 ORDER BY id",
        )
        .bind(article.as_i64())
        .fetch_all(&pool)
        .await
        .map_err(map_err)?;
        Ok(rows.iter().map(comment_row).collect())
    })
    .await
}

pub(crate) async fn comment(
    db: &Db,
    article: Id,
    id: CommentId,
) -> StoreResult<Option<CommentRecord>> {
    db.read(|pool| async move {
        let row = sqlx::query(
            "SELECT id, article_id, author_id, body, created_at, updated_at FROM comments WHERE id = $1 AND article_id = $2",
        )
        .bind(id.as_i64())
        .bind(article.as_i64())
        .fetch_optional(&pool)
        .await
        .map_err(map_err)?;
        Ok(row.as_ref().map(comment_row))
    })
    .await
}

pub(crate) async fn delete_comment(db: &Db, article: Id, id: CommentId) -> StoreResult<bool> {
    let delete = sqlx::query("DELETE FROM comments WHERE id = $1 AND article_id = $2")
        .bind(id.as_i64())
        .bind(article.as_i64());
    Ok(db.execute_for(article.shard(), delete).await? == 1)
}
